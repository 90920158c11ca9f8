//! The official sources of the data sets `convnet download` fetches, with their published MD5
//! checksums, and the `--mirror` rewrite.
//!
//! Where each checksum is published:
//! - CIFAR-10: <https://www.cs.toronto.edu/~kriz/cifar.html>, the table of versions ("CIFAR-10
//!   binary version (suitable for C programs)", md5sum c32a1d4a...).
//! - Fashion-MNIST: the README of <https://github.com/zalandoresearch/fashion-mnist>, section
//!   "Get the Data" (the table of files with their MD5 checksums); the files are served from
//!   <http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/>.
//! - MNIST: Yann LeCun's page no longer serves the files reliably; torchvision downloads them
//!   from the mirror <https://ossci-datasets.s3.amazonaws.com/mnist/> and checks the MD5
//!   checksums listed in `torchvision/datasets/mnist.py` (`MNIST.resources`), which are these.

use super::{DataSource, RemoteFile, Unpack};

/// The names `convnet download` takes, which are also the `dataset` names of a config's `[data]`.
pub const DATA_SET_NAMES: [&str; 3] = ["cifar10", "fashion-mnist", "mnist"];

const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

const FASHION_MNIST_BASE: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
const FASHION_MNIST: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
];

const MNIST_BASE: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
const MNIST: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
];

/// The folder inside the CIFAR-10 archive, and the files in it the reader needs.
const CIFAR10_FOLDER: &str = "cifar-10-batches-bin";
const CIFAR10_FILES: [&str; 7] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
    "batches.meta.txt",
];

/// The official source of a data set by its name (`cifar10`, `fashion-mnist`, `mnist`); `None`
/// for any other name.
pub fn official_source(name: &str) -> Option<DataSource> {
    let idx_files = |base: &str, files: &[(&str, &str)]| -> Vec<RemoteFile> {
        files.iter().map(|&(file, md5)| RemoteFile::new(format!("{base}{file}"), file, md5)).collect()
    };
    let idx_layout = |files: &[(&str, &str)]| files.iter().map(|(f, _)| f.to_string()).collect();
    match name {
        "cifar10" => Some(DataSource {
            name: name.into(),
            title: "CIFAR-10".into(),
            files: vec![RemoteFile::new(CIFAR10_URL, "cifar-10-binary.tar.gz", CIFAR10_MD5)],
            unpack: Unpack::TarGz { folder: CIFAR10_FOLDER.into() },
            layout: CIFAR10_FILES.iter().map(|f| f.to_string()).collect(),
        }),
        "fashion-mnist" => Some(DataSource {
            name: name.into(),
            title: "Fashion-MNIST".into(),
            files: idx_files(FASHION_MNIST_BASE, &FASHION_MNIST),
            unpack: Unpack::None,
            layout: idx_layout(&FASHION_MNIST),
        }),
        "mnist" => Some(DataSource {
            name: name.into(),
            title: "MNIST".into(),
            files: idx_files(MNIST_BASE, &MNIST),
            unpack: Unpack::None,
            layout: idx_layout(&MNIST),
        }),
        _ => None,
    }
}

impl DataSource {
    /// The same files fetched from `base` instead: each from `<base>/<file name>` (a local
    /// copy of the official files, a company mirror, a test server).
    pub fn with_mirror(&self, base: &str) -> DataSource {
        let base = base.trim_end_matches('/');
        let mut source = self.clone();
        for file in &mut source.files {
            file.url = format!("{base}/{}", file.file_name);
        }
        source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_official_source_is_well_formed() {
        for name in DATA_SET_NAMES {
            let source = official_source(name).unwrap();
            assert_eq!(source.name, name);
            assert!(!source.files.is_empty() && !source.layout.is_empty());
            for file in &source.files {
                assert_eq!(file.md5.len(), 32, "{}", file.file_name);
                assert!(file.md5.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{}", file.md5);
                assert!(file.url.starts_with("http://") || file.url.starts_with("https://"), "{}", file.url);
                assert!(file.url.ends_with(&format!("/{}", file.file_name)), "{}", file.url);
            }
        }
        assert!(official_source("image-folder").is_none());
    }

    #[test]
    fn a_mirror_replaces_the_host_and_keeps_the_file_names() {
        let source = official_source("mnist").unwrap().with_mirror("http://127.0.0.1:8000/mnist/");
        let urls: Vec<_> = source.files.iter().map(|f| f.url.as_str()).collect();
        assert_eq!(urls[0], "http://127.0.0.1:8000/mnist/train-images-idx3-ubyte.gz");
        assert_eq!(urls[3], "http://127.0.0.1:8000/mnist/t10k-labels-idx1-ubyte.gz");
        assert_eq!(source.files[0].md5, "f68b3c2dcbeaaa9fbdd348bbdeb94873", "the checksums stay the published ones");
    }
}
