//! `convnet download`: fetch CIFAR-10, Fashion-MNIST or MNIST into the folder `train` reads.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

use convnet::data::download::{download, official_source, shell_word, DownloadOptions, FileOutcome};

/// Download a data set from its official source into the folder `convnet train --data` takes,
/// checking every file against its published MD5 checksum.
///
/// Files go to DIR (default: data/<data set>, e.g. data/fashion-mnist): for Fashion-MNIST and
/// MNIST the four gzip-compressed IDX files, for CIFAR-10 the files of the archive's
/// cifar-10-batches-bin/ folder (the archive itself stays beside them). Each file is first
/// written as <file>.part and takes its final name only once its checksum is right; a transfer
/// that stops part-way keeps the .part, and running the same command again resumes it. Files
/// already there with the right checksum are not fetched again. The sources, checksums and
/// layout: docs/download.md.
#[derive(Args)]
pub struct DownloadArgs {
    /// The data set.
    #[arg(value_enum)]
    dataset: DataSetName,
    /// The folder to put it in: then the `--data` of `convnet train` (or the config's
    /// data.path) [default: data/<data set>].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Fetch every file from URL/<file name> instead of the official host (a local or company
    /// mirror holding the official files; the checksums are still the published ones).
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// No progress bars or per-file lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum DataSetName {
    /// CIFAR-10, binary version (cs.toronto.edu, about 170 MB).
    Cifar10,
    /// Fashion-MNIST (Zalando's S3 bucket, about 30 MB).
    FashionMnist,
    /// MNIST (the ossci-datasets S3 mirror torchvision uses, about 12 MB).
    Mnist,
}

impl DataSetName {
    fn name(self) -> &'static str {
        match self {
            DataSetName::Cifar10 => "cifar10",
            DataSetName::FashionMnist => "fashion-mnist",
            DataSetName::Mnist => "mnist",
        }
    }

    /// A config that trains on it, if the repository has one.
    fn config(self) -> Option<&'static str> {
        match self {
            DataSetName::Cifar10 => Some("configs/cifar10-seed.toml"),
            DataSetName::FashionMnist => Some("configs/fashion-mnist.toml"),
            DataSetName::Mnist => None,
        }
    }
}

pub fn run(args: DownloadArgs) -> convnet::Result<()> {
    let name = args.dataset.name();
    let mut source = official_source(name).ok_or_else(|| convnet::Error::invalid("download", format!("no source for {name}")))?;
    if let Some(mirror) = &args.mirror {
        if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
            return Err(convnet::Error::invalid("--mirror", format!("{mirror:?} is not an http:// or https:// URL")));
        }
        source = source.with_mirror(mirror);
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("data").join(name));
    let report = download(&source, &dir, &DownloadOptions { quiet: args.quiet })?;
    let fetched = report.files.iter().filter(|(_, o)| matches!(o, FileOutcome::Fetched { .. })).count();
    let data = shell_word(&dir);
    println!(
        "{} is in {} ({fetched} of {} files fetched, all checksums right). Train on it with:",
        source.title,
        dir.display(),
        report.files.len()
    );
    match args.dataset.config() {
        Some(config) => println!("  convnet train --config {config} --data {data}"),
        None => println!("  convnet train --config CONFIG --data {data}   # a config whose [data] says dataset = \"{name}\""),
    }
    Ok(())
}
