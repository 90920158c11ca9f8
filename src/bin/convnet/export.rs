//! `convnet export`: a checkpoint as an ONNX model, or as PyTorch weights and module.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

use convnet::interop::onnx::{export::OPSET, export_onnx};
use convnet::interop::pytorch::export_pytorch;
use convnet::train::Checkpoint;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// An ONNX model (opset 17) in one file: input `input` float32 [N, C, H, W] with pixels in
    /// [0, 1] (the normalisation is inside the graph), output `logits` [N, classes].
    Onnx,
    /// A folder with model.safetensors (a PyTorch state_dict: OIHW conv weights, [out, in]
    /// dense weights, batch-norm statistics) and model.py (the torch.nn.Module to load it into).
    Pytorch,
}

/// Export a checkpoint for other runtimes. ONNX: checked against onnxruntime and tract; its
/// metadata carries the class names, normalisation and config, so `convnet import`
/// gets the same checkpoint back. PyTorch: `Net().load_state_dict(load_file(...))` gives
/// convnet's logits. Test-time augmentation is not part of either. See docs/interop.md.
#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint written by `convnet train` or `convnet import`.
    #[arg(long)]
    model: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value = "onnx")]
    format: Format,
    /// The file (onnx) or folder (pytorch) to write; each file is written whole or not at all.
    #[arg(value_name = "OUT")]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> convnet::Result<()> {
    let ck = Checkpoint::load(&args.model)?;
    match args.format {
        Format::Onnx => {
            let bytes = export_onnx(&ck)?;
            convnet::fs::write_atomically(&args.out, &bytes)?;
            println!("wrote {} ({} bytes, ONNX opset {OPSET})", args.out.display(), bytes.len());
        }
        Format::Pytorch => {
            export_pytorch(&ck, &args.out)?;
            println!("wrote {0}/model.safetensors and {0}/model.py", args.out.display());
        }
    }
    Ok(())
}
