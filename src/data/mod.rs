//! Data sets: readers, validation split, normalisation, batching.
//!
//! - `dataset`: the in-memory u8 NHWC [`Dataset`] and its validation split
//! - `idx`: MNIST / Fashion-MNIST IDX files, raw or gzip
//! - `cifar10`: the CIFAR-10 binary version
//! - `image_folder`: torchvision-style `root/<class>/<image>` folders of PNG/JPEG
//! - `normalize`: per-channel mean/std normalisation measured on the training set
//! - `batches`: per-epoch shuffling that can be recomputed on resume, and batch tensors
//! - `download`: fetching CIFAR-10, Fashion-MNIST and MNIST (`convnet download`): checksums,
//!   resumed transfers, files that are whole or absent, safe unpacking

pub mod augment;
pub mod batches;
pub mod cifar10;
pub mod dataset;
pub mod download;
pub mod idx;
pub mod image_folder;
pub mod normalize;

pub use batches::{batch_ranges, epoch_order, make_batch};
pub use cifar10::{load_cifar10_dir, parse_cifar10_records, parse_class_names, write_cifar10_records};
pub use dataset::Dataset;
pub use idx::{
    idx_pair_to_dataset, load_idx_dir, parse_idx, parse_idx_rank, read_idx, write_idx, IdxArray, FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEFAULT_DIR,
};
pub use image_folder::{decode_image, image_from_rgba, load_image, load_image_folder, read_image, LoadedImage, MAX_IMAGE_PIXELS};
pub use normalize::Normalization;
