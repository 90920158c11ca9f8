//! `convnet plot`: training curves of one or several runs.

use clap::Args;
use std::path::{Path, PathBuf};

use convnet::viz::write_curves;

const LONG_ABOUT: &str = "\
Draw the training curves of one or several runs from their metrics.csv.

The picture has two panels. Left, the loss per epoch: the mean cross-entropy (the training loss
also holds the L2 penalty and is averaged over the epoch while the weights change; validation
and test losses are measured on the weights at the end of each epoch). Right, the accuracy in
percent. With one run, training, validation and test have their own colours, test dashed.
With several runs, each run has its own colour and the line styles tell the splits apart:
training thin, validation thick, test dashed. Training accuracy climbing while validation stalls or falls is overfitting.

`convnet train` redraws runs/<name>/curves.png and curves.svg after every epoch by itself; use
this to redraw them or to compare runs:
  convnet plot runs/fashion-mnist
  convnet plot runs/adam runs/sgd --out compare.png";

/// Draw loss and accuracy per epoch of one or several runs (PNG and SVG).
#[derive(Args)]
#[command(long_about = LONG_ABOUT)]
pub struct PlotArgs {
    /// Run folders written by `convnet train` (or their metrics.csv files).
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// The PNG to write; an SVG of the same chart goes beside it (same name, .svg)
    /// [default: RUN_DIR/curves.png for one run, curves.png for several].
    #[arg(long, value_name = "FILE.png")]
    out: Option<PathBuf>,
    /// Legend label of each run, in the order of the runs (repeat the option) [default: the run
    /// folder's name].
    #[arg(long = "label", value_name = "LABEL")]
    labels: Vec<String>,
    /// Write only the PNG.
    #[arg(long)]
    no_svg: bool,
}

/// The run folder of a run folder or of a metrics.csv path.
fn run_folder(path: &Path) -> &Path {
    if path.is_file() {
        path.parent().unwrap_or(path)
    } else {
        path
    }
}

fn default_label(path: &Path) -> String {
    let dir = run_folder(path);
    let name = dir.file_name().map(|n| n.to_os_string());
    let name = name.or_else(|| std::fs::canonicalize(dir).ok().and_then(|p| p.file_name().map(|n| n.to_os_string())));
    name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string())
}

pub fn run(args: PlotArgs) -> convnet::Result<()> {
    if args.labels.len() > args.runs.len() {
        return Err(convnet::Error::invalid("--label", format!("{} labels for {} runs", args.labels.len(), args.runs.len())));
    }
    let runs: Vec<(PathBuf, String)> =
        args.runs.iter().enumerate().map(|(i, p)| (p.clone(), args.labels.get(i).cloned().unwrap_or_else(|| default_label(p)))).collect();
    let out = match args.out {
        Some(p) => p,
        None if runs.len() == 1 => run_folder(&runs[0].0).join("curves.png"),
        None => PathBuf::from("curves.png"),
    };
    if out.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
        return Err(convnet::Error::invalid("--out", "give the PNG's name (FILE.png); the SVG is written beside it"));
    }
    let svg = out.with_extension("svg");
    write_curves(&runs, &out, if args.no_svg { None } else { Some(&svg) })?;
    println!("wrote {}", out.display());
    if !args.no_svg {
        println!("wrote {}", svg.display());
    }
    Ok(())
}
