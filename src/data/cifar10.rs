//! CIFAR-10, binary version (the `cifar-10-batches-bin` folder).
//!
//! - `data_batch_1.bin` .. `data_batch_5.bin` (training, concatenated in that order) and
//!   `test_batch.bin`: fixed 3073-byte records, no header. A record is 1 label byte followed
//!   by 3072 pixel bytes: the 32x32 red plane, then green, then blue, each row-major.
//! - `batches.meta.txt`: the class names, one per line in label order; blank lines ignored.
//!
//! The planes are interleaved on load into the HWC layout every other part of the engine uses:
//! byte `1 + c*1024 + row*32 + col` of a record becomes pixel byte `(row*32 + col)*3 + c`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::dataset::Dataset;
use crate::error::{Error, Result};

pub const CIFAR10_SIDE: usize = 32;
pub const CIFAR10_CHANNELS: usize = 3;
const PLANE: usize = CIFAR10_SIDE * CIFAR10_SIDE;
const PIXELS: usize = PLANE * CIFAR10_CHANNELS;
/// Bytes per record: 1 label + 3 * 1024 pixels.
pub const CIFAR10_RECORD_BYTES: usize = 1 + PIXELS;

/// The meta file is a short list of names; anything much larger is the wrong file.
const META_MAX_BYTES: u64 = 1 << 20;

const LAYOUT: &str = "the CIFAR-10 binary version needs data_batch_1.bin to data_batch_5.bin, \
                      test_batch.bin and batches.meta.txt";

/// Loads a CIFAR-10 binary folder. Returns (train, test): the five training batches
/// concatenated in order (50,000 images for the real set) and `test_batch.bin`.
pub fn load_cifar10_dir(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset)> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        let what = if dir.exists() { "not a directory" } else { "CIFAR-10 directory not found" };
        return Err(Error::data(dir, format!("{what} ({LAYOUT})")));
    }
    if dir.read_dir().map_err(|e| Error::io(dir, e))?.next().is_none() {
        return Err(Error::data(dir, format!("the CIFAR-10 directory is empty ({LAYOUT})")));
    }
    let train_paths: Vec<PathBuf> = (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
    let test_path = dir.join("test_batch.bin");
    // Check every file is there before reading 150 MB, so a missing one fails at once.
    for path in train_paths.iter().chain([&test_path]) {
        if path.is_dir() {
            return Err(Error::data(path, format!("is a directory, expected a file of 3073-byte records ({LAYOUT})")));
        }
        if !path.is_file() {
            return Err(Error::data(path, format!("file not found ({LAYOUT})")));
        }
    }
    let class_names = read_class_names(&dir.join("batches.meta.txt"))?;

    let mut train = empty_dataset(&class_names);
    for path in &train_paths {
        read_batch(path, &mut train)?;
    }
    let mut test = empty_dataset(&class_names);
    read_batch(&test_path, &mut test)?;
    Ok((train, test))
}

fn empty_dataset(class_names: &[String]) -> Dataset {
    Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        height: CIFAR10_SIDE,
        width: CIFAR10_SIDE,
        channels: CIFAR10_CHANNELS,
        class_names: class_names.to_vec(),
    }
}

/// The class names in `batches.meta.txt`, one per line, blank lines skipped.
fn read_class_names(path: &Path) -> Result<Vec<String>> {
    if path.is_dir() {
        return Err(Error::data(path, "is a directory, expected the text file of class names"));
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::data(path, format!("file not found: it lists the class names, one per line ({LAYOUT})")))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut bytes = Vec::new();
    file.take(META_MAX_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    parse_class_names(&bytes, path)
}

/// Parses the text of `batches.meta.txt`: class names, one per line, blank lines skipped, at
/// most 256 (labels are one byte). `name` names the file in errors.
pub fn parse_class_names(bytes: &[u8], name: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = name.as_ref();
    if bytes.len() as u64 > META_MAX_BYTES {
        return Err(Error::data(path, format!("larger than {META_MAX_BYTES} bytes: expected a short list of class names")));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::data(path, format!("not UTF-8 text (invalid byte at offset {})", e.valid_up_to())))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.is_empty() {
        return Err(Error::data(path, "no class names (expected one per line)"));
    }
    if names.len() > 256 {
        return Err(Error::data(path, format!("{} class names; a label is one byte, so at most 256 are possible", names.len())));
    }
    Ok(names)
}

/// Appends the records of one batch file to `ds`, converting planes to HWC.
fn read_batch(path: &Path, ds: &mut Dataset) -> Result<()> {
    // Check the size from the metadata first, so a wrong (possibly huge) file is refused
    // without reading it; the length actually read is checked again by the parser.
    let size = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    check_size(path, size)?;
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let (images, labels) = parse_cifar10_records(&bytes, path, ds.class_names.len())?;
    ds.images.extend_from_slice(&images);
    ds.labels.extend_from_slice(&labels);
    Ok(())
}

/// Parses the bytes of one CIFAR-10 batch file (3073-byte records) held in memory: returns the
/// images as 32x32x3 HWC bytes, one after the other, and the labels, each checked to be below
/// `n_classes`. `name` names the file in errors, with the byte offset of a bad record.
pub fn parse_cifar10_records(bytes: &[u8], name: impl AsRef<Path>, n_classes: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let path = name.as_ref();
    check_size(path, bytes.len() as u64)?;
    let n = bytes.len() / CIFAR10_RECORD_BYTES;
    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
        // chunks_exact guarantees the record length, so the splits below cannot fail.
        let Some((&label, pixels)) = record.split_first() else { continue };
        if usize::from(label) >= n_classes {
            return Err(Error::data(
                path,
                format!(
                    "record {i} (byte offset {}): label {label} is out of range for the {n_classes} \
                     classes in batches.meta.txt",
                    i * CIFAR10_RECORD_BYTES
                ),
            ));
        }
        let (red, rest) = pixels.split_at(PLANE);
        let (green, blue) = rest.split_at(PLANE);
        for ((&r, &g), &b) in red.iter().zip(green).zip(blue) {
            images.extend_from_slice(&[r, g, b]);
        }
        labels.push(label);
    }
    Ok((images, labels))
}

fn check_size(path: &Path, size: u64) -> Result<()> {
    let record = CIFAR10_RECORD_BYTES as u64;
    if size == 0 {
        return Err(Error::data(path, "empty file: expected 3073-byte CIFAR-10 records"));
    }
    if !size.is_multiple_of(record) {
        return Err(Error::data(
            path,
            format!(
                "size {size} bytes is not a multiple of the {record}-byte record (1 label + 3072 \
                 pixels): {} whole records and {} bytes left over",
                size / record,
                size % record
            ),
        ));
    }
    Ok(())
}

/// Writes CIFAR-10 binary records: for each label, the label byte and the image's planes.
/// `images_nhwc` holds `labels.len()` 32x32x3 HWC images. Used to make small test files.
pub fn write_cifar10_records(path: impl AsRef<Path>, images_nhwc: &[u8], labels: &[u8]) -> Result<()> {
    let path = path.as_ref();
    if Some(images_nhwc.len()) != labels.len().checked_mul(PIXELS) {
        return Err(Error::invalid(
            "write_cifar10_records",
            format!(
                "{} labels need {} pixel bytes (32x32x3 each), got {}",
                labels.len(),
                labels.len().saturating_mul(PIXELS),
                images_nhwc.len()
            ),
        ));
    }
    let io_err = |e| Error::io(path, e);
    let mut out = BufWriter::new(File::create(path).map_err(io_err)?);
    let mut record = Vec::with_capacity(CIFAR10_RECORD_BYTES);
    for (&label, image) in labels.iter().zip(images_nhwc.chunks_exact(PIXELS)) {
        record.clear();
        record.push(label);
        for c in 0..CIFAR10_CHANNELS {
            record.extend(image.iter().skip(c).step_by(CIFAR10_CHANNELS));
        }
        out.write_all(&record).map_err(io_err)?;
    }
    out.flush().map_err(io_err)?;
    Ok(())
}
