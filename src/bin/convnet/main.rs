//! The convnet command line: train, evaluate, predict and inspect convolutional networks.

mod bench;
mod download;
mod eval;
mod export;
mod filter;
mod import;
mod plot;
mod predict;
mod serve_demo;
mod signals;
mod summary;
mod train;
mod visualize;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "convnet",
    version,
    about = "Train, evaluate and inspect convolutional neural networks written by hand in Rust",
    long_about = "Train, evaluate and inspect convolutional neural networks written by hand in Rust.\n\n\
Models are small TOML files (see configs/). Start with:\n  \
convnet summary --config configs/cifar10-seed.toml   # layers, shapes, parameters, FLOPs\n  \
convnet train                                        # Fashion-MNIST with configs/fashion-mnist.toml\n  \
convnet download cifar10                             # into data/cifar10, for train --data data/cifar10\n  \
convnet eval --model runs/fashion-mnist/best.safetensors\n  \
convnet predict --model runs/fashion-mnist/best.safetensors shirt.png\n\n\
See what the network does:\n  \
convnet plot runs/fashion-mnist                      # loss and accuracy curves\n  \
convnet visualize filters --model runs/fashion-mnist/best.safetensors filters.png\n  \
convnet visualize activations --model runs/fashion-mnist/best.safetensors shirt.png act.png\n  \
convnet filter --kernel sobel-x photo.png edges.png   # one hand-written kernel\n\n\
Take a model elsewhere:\n  \
convnet export --model runs/fashion-mnist/best.safetensors model.onnx\n  \
convnet import model.onnx --out imported.safetensors\n\n\
In the browser (docs/web.md):\n  \
scripts/build_web.sh && convnet serve-demo           # draw, and watch every layer respond"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Train(train::TrainArgs),
    Bench(bench::BenchArgs),
    Eval(eval::EvalArgs),
    Predict(predict::PredictArgs),
    Summary(summary::SummaryArgs),
    Plot(plot::PlotArgs),
    Filter(filter::FilterArgs),
    Visualize(visualize::VisualizeArgs),
    Export(export::ExportArgs),
    Import(import::ImportArgs),
    Download(download::DownloadArgs),
    ServeDemo(serve_demo::ServeDemoArgs),
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let success = |r: convnet::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        // A training stopped by Ctrl-C or SIGTERM ends with 130 or 143.
        Command::Train(a) => train::run(a),
        Command::Bench(a) => success(bench::run(a)),
        Command::Eval(a) => success(eval::run(a)),
        Command::Predict(a) => success(predict::run(a)),
        Command::Summary(a) => success(summary::run(a)),
        Command::Plot(a) => success(plot::run(a)),
        Command::Filter(a) => success(filter::run(a)),
        Command::Visualize(a) => success(visualize::run(a)),
        Command::Export(a) => success(export::run(a)),
        Command::Import(a) => success(import::run(a)),
        Command::Download(a) => success(download::run(a)),
        Command::ServeDemo(a) => success(serve_demo::run(a)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever a library below put in its message.
            let text = e.to_string();
            let line = if text.contains('\n') { text.split_whitespace().collect::<Vec<_>>().join(" ") } else { text };
            eprintln!("error: {line}");
            // Bad files, configs and arguments are the user's to fix (2); anything else is 1.
            if e.is_user_error() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `convnet eval ... | head` ends quietly when `head` has read enough, as `ls | head` does: the
/// Rust runtime ignores SIGPIPE, which turns every later print into a panic ("failed printing
/// to stdout: Broken pipe"); the default action ends the process instead.
fn restore_sigpipe() {
    #[cfg(target_os = "linux")]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Says on stderr what was done to an image to fit the model: a colour conversion ("note:
/// shirt.png is grayscale, converted to RGB for the model") and an enlargement of an image
/// smaller than the model's input (a 1x1 image works, but says little).
pub fn image_notes(path: &std::path::Path, img: &convnet::data::LoadedImage) {
    if let Some(conversion) = img.conversion() {
        eprintln!("note: {} is {conversion} for the model", path.display());
    }
    if (img.source_height as usize) < img.height || (img.source_width as usize) < img.width {
        eprintln!(
            "note: {} is {}x{} (width x height), smaller than the model's {}x{} input: enlarged to fit",
            path.display(),
            img.source_width,
            img.source_height,
            img.width,
            img.height
        );
    }
}

/// Sets the number of worker threads for the whole process (0 = one per core).
pub fn set_threads(threads: usize) -> convnet::Result<()> {
    check_threads(threads)?;
    // Workers pinned to CPUs (see convnet::threads; CONVNET_PIN_THREADS=0 turns that off).
    convnet::threads::init_pool(threads).map_err(|e| convnet::Error::invalid("--threads", e.to_string()))
}

fn check_threads(threads: usize) -> convnet::Result<()> {
    const MAX_THREADS: usize = 1024;
    if threads > MAX_THREADS {
        return Err(convnet::Error::invalid("--threads", format!("{threads} is over the limit of {MAX_THREADS} (0 means one per core)")));
    }
    Ok(())
}

/// `set_threads` for a rank of a distributed run: its share of this machine's cores, from
/// OpenMPI's count of the ranks on this machine (OMPI_COMM_WORLD_LOCAL_RANK and _LOCAL_SIZE;
/// see `convnet::threads::pool_builder_for_rank`).
pub fn set_threads_for_rank(threads: usize) -> convnet::Result<()> {
    check_threads(threads)?;
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
    let (rank, ranks) = (env("OMPI_COMM_WORLD_LOCAL_RANK").unwrap_or(0), env("OMPI_COMM_WORLD_LOCAL_SIZE").unwrap_or(1));
    convnet::threads::pool_builder_for_rank(threads, rank, ranks)
        .build_global()
        .map_err(|e| convnet::Error::invalid("--threads", e.to_string()))
}
