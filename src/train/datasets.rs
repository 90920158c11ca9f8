//! From a config's `[data]` section to train / validation / test sets.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::data::download::{official_source, shell_word};
use crate::data::{load_cifar10_dir, load_idx_dir, load_image_folder, Dataset, FASHION_MNIST_CLASSES};
use crate::error::{Error, Result};
use crate::train::run::DatasetKind;

pub struct Splits {
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
    pub class_names: Vec<String>,
}

/// The data folder: the override (command line), else the config's path, else the default.
pub fn data_dir(cfg: &Config, over: Option<&Path>) -> PathBuf {
    let data = &cfg.run.data;
    over.map(Path::to_path_buf)
        .or_else(|| data.path.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(data.dataset.default_path()))
}

/// Loads the training and test sets and takes the validation set from the end of training.
pub fn load_splits(cfg: &Config, over: Option<&Path>) -> Result<Splits> {
    let dir = data_dir(cfg, over);
    let (train, test) = load_train_test(cfg, &dir)?;
    let [h, w, c] = cfg.model.input;
    for ds in [&train, &test] {
        if (ds.height, ds.width, ds.channels) != (h, w, c) {
            return Err(Error::data(
                &dir,
                format!(
                    "images are {}x{}x{} but the model {} expects input [{h}, {w}, {c}]",
                    ds.height, ds.width, ds.channels, cfg.model.name
                ),
            ));
        }
    }
    let class_names = train.class_names.clone();
    let (train, val) = train.split_validation(cfg.run.data.validation)?;
    Ok(Splits { train, val, test, class_names })
}

/// (train, test) of the kind the config names. When files of CIFAR-10, Fashion-MNIST or MNIST
/// are missing, the error says how to download them into `dir`.
pub fn load_train_test(cfg: &Config, dir: &Path) -> Result<(Dataset, Dataset)> {
    load_kind(cfg, dir).map_err(|e| with_download_hint(e, cfg.run.data.dataset, dir))
}

/// Adds "(download it with `convnet download <name> --dir <dir>`)" to a data error when the data
/// set's files are not all in `dir` (and not to one about a file that is there but bad).
fn with_download_hint(e: Error, kind: DatasetKind, dir: &Path) -> Error {
    let name = match kind {
        DatasetKind::Cifar10 => "cifar10",
        DatasetKind::FashionMnist => "fashion-mnist",
        DatasetKind::Mnist => "mnist",
        DatasetKind::ImageFolder => return e,
    };
    let missing = official_source(name).is_some_and(|source| !source.missing_files(dir).is_empty());
    match e {
        Error::Data { path, detail } if missing && !dir.is_file() => {
            Error::Data { path, detail: format!("{detail} (download it with `convnet download {name} --dir {}`)", shell_word(dir)) }
        }
        e => e,
    }
}

fn load_kind(cfg: &Config, dir: &Path) -> Result<(Dataset, Dataset)> {
    match cfg.run.data.dataset {
        DatasetKind::Cifar10 => load_cifar10_dir(dir),
        DatasetKind::FashionMnist => load_idx_dir(dir, FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()),
        DatasetKind::Mnist => load_idx_dir(dir, (0..10).map(|d| d.to_string()).collect()),
        DatasetKind::ImageFolder => {
            let [h, w, c] = cfg.model.input;
            let train = load_image_folder(dir.join("train"), h, w, c)?;
            let test = load_image_folder(dir.join("test"), h, w, c)?;
            if train.class_names != test.class_names {
                return Err(Error::data(
                    dir,
                    format!("train classes {:?} differ from test classes {:?}", train.class_names, test.class_names),
                ));
            }
            Ok((train, test))
        }
    }
}
