//! `convnet eval`: accuracy, per-class accuracy and confusion matrix of a checkpoint.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

use convnet::ops::Precision;
use convnet::train::datasets::load_splits;
use convnet::train::{evaluate, Checkpoint, EvalOptions};
use convnet::viz::write_confusion_png;

#[derive(Clone, Copy, ValueEnum)]
enum Split {
    Train,
    Val,
    Test,
}

/// Evaluate a checkpoint on its data set: accuracy, per-class accuracy and the confusion matrix,
/// printed and drawn as a heat map (confusion.png next to the checkpoint: rows are the true
/// classes, columns the predictions, each cell shows its count and is coloured by its share of
/// the row, white 0% to dark blue 100% on a square-root scale so that small confusions show).
/// The checkpoint carries its config, class names and
/// normalisation, so nothing else is needed.
#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint written by `convnet train` (best.safetensors or last.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// The data folder (default: the one in the checkpoint's config).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    split: Split,
    /// Where to draw the confusion matrix [default: confusion.png next to the checkpoint].
    #[arg(long, value_name = "PATH.png")]
    confusion: Option<PathBuf>,
    /// The precision of the products: f32, bf16, bf16-tiles or bf16-winograd [default: the
    /// checkpoint's train.precision, as the model was trained].
    #[arg(long)]
    precision: Option<Precision>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: EvalArgs) -> convnet::Result<()> {
    crate::set_threads(args.threads)?;
    let ck = Checkpoint::load(&args.model)?;
    let mut net = ck.network()?;
    if let Some(p) = args.precision {
        net.set_precision(p);
    }
    convnet::ops::precision::announce(net.precision());
    let splits = load_splits(&ck.config, args.data.as_deref())?;
    if splits.class_names.len() != net.num_classes() {
        return Err(convnet::Error::Checkpoint {
            path: args.model.clone(),
            detail: format!(
                "the model outputs {} classes but the data set has {} ({})",
                net.num_classes(),
                splits.class_names.len(),
                convnet::train::datasets::data_dir(&ck.config, args.data.as_deref()).display()
            ),
        });
    }
    let (name, ds) = match args.split {
        Split::Train => ("train", &splits.train),
        Split::Val => ("validation", &splits.val),
        Split::Test => ("test", &splits.test),
    };
    if ds.is_empty() {
        // Only the validation split can be empty: the config sets aside no training examples.
        return Err(convnet::Error::invalid(
            "--split",
            format!("{}'s config keeps no validation split ([train] validation = 0): use --split test or train", args.model.display()),
        ));
    }
    let e = evaluate(&mut net, ds, &ck.meta.normalization, EvalOptions::for_run(&ck.config.run))?;
    println!("{} on {name} ({} images): accuracy {:.2}%, loss {:.4}", ck.config.model.name, ds.len(), 100.0 * e.accuracy, e.loss);
    let names = &ck.meta.class_names;
    let width = names.iter().map(|n| n.len()).max().unwrap_or(5).max(5);
    println!("\nper-class accuracy:");
    for (name, acc) in names.iter().zip(e.per_class_accuracy()) {
        println!("  {name:<width$}  {:6.2}%", 100.0 * acc);
    }
    println!("\nconfusion matrix (rows: true class, columns: predicted):");
    // Row labels are "<index> <name>".
    let width = width + 1 + names.len().saturating_sub(1).to_string().len();
    print!("  {:<width$}", "");
    for i in 0..names.len() {
        print!(" {i:>5}");
    }
    println!();
    for (i, row) in e.confusion.iter().enumerate() {
        print!("  {:<width$}", format!("{i} {}", names.get(i).map_or("", |s| s.as_str())));
        for v in row {
            print!(" {v:>5}");
        }
        println!();
    }
    let picture = args.confusion.unwrap_or_else(|| args.model.with_file_name("confusion.png"));
    let title = format!("{}: confusion matrix on {name} ({} images, accuracy {:.2}%)", ck.config.model.name, ds.len(), 100.0 * e.accuracy);
    write_confusion_png(&e.confusion, names, &title, &picture)?;
    println!("\nconfusion matrix picture: {}", picture.display());
    Ok(())
}
