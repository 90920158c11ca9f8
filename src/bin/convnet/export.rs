//! `convnet export`: a checkpoint as an ONNX model.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

use convnet::interop::onnx::export_onnx;
use convnet::train::Checkpoint;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// An ONNX model (opset 17): input `input` float32 [N, C, H, W] with pixels in [0, 1] (the
    /// normalisation is inside the graph), output `logits` [N, classes].
    Onnx,
}

/// Export a checkpoint for other runtimes. ONNX: runs in onnxruntime, tract, OpenCV's dnn and
/// the browser; the class names, normalisation and config go in its metadata, so `convnet
/// import` gets the same checkpoint back. See docs/interop.md for the conventions.
#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint written by `convnet train` or `convnet import`.
    #[arg(long)]
    model: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value = "onnx")]
    format: Format,
    /// The file to write (written whole or not at all).
    #[arg(value_name = "OUT.onnx")]
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> convnet::Result<()> {
    let ck = Checkpoint::load(&args.model)?;
    match args.format {
        Format::Onnx => {
            let bytes = export_onnx(&ck)?;
            convnet::fs::write_atomically(&args.out, &bytes)?;
            println!("wrote {} ({} bytes, ONNX opset {})", args.out.display(), bytes.len(), convnet::interop::onnx::export::OPSET);
        }
    }
    Ok(())
}
