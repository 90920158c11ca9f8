//! `convnet import`: an ONNX model as a convnet checkpoint.

use clap::Args;
use std::path::PathBuf;

use convnet::interop::onnx::import_onnx;
use convnet::model::summary::summary;
use convnet::{Config, Error};

/// Read an ONNX model (as PyTorch's torch.onnx.export writes a CNN, or an NHWC graph in the style of Keras converters) into a
/// convnet checkpoint that eval, predict, visualize and `train --init-from` accept. The graph's
/// input is NCHW (or NHWC) float32 pixels in [0, 1]; per-channel Sub/Div at its start become
/// the checkpoint's normalisation. An operator or attribute convnet cannot express is an error
/// naming the node. Also writes the model's config beside the checkpoint (CKPT.toml), for
/// fine-tuning with `convnet train --config CKPT.toml --init-from CKPT.safetensors`. See
/// docs/interop.md for what is read.
#[derive(Args)]
pub struct ImportArgs {
    /// The ONNX file.
    #[arg(value_name = "MODEL.onnx")]
    model: PathBuf,
    /// The checkpoint to write (written whole or not at all).
    #[arg(long, value_name = "CKPT.safetensors")]
    out: PathBuf,
    /// Class names, one per line [default: the file's convnet metadata, else "class 0", ...].
    #[arg(long, value_name = "FILE")]
    classes: Option<PathBuf>,
}

pub fn run(args: ImportArgs) -> convnet::Result<()> {
    let bytes = std::fs::read(&args.model).map_err(|e| Error::io(&args.model, e))?;
    let imported = import_onnx(&bytes, &args.model)?;
    let classes = match &args.classes {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            Some(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
        }
        None => None,
    };
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    let net = imported.save(&args.model, &args.out, classes)?;
    // The config beside it: what `train --config X.toml --init-from X.safetensors` fine-tunes.
    let config_path = args.out.with_extension("toml");
    let config = Config { model: imported.model.clone(), run: imported.run.clone() };
    convnet::fs::write_atomically(&config_path, config.to_toml().as_bytes())?;
    print!("{}", summary(&net));
    println!("wrote {} and its config {}", args.out.display(), config_path.display());
    Ok(())
}
