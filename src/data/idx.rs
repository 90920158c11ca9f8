//! IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! Layout (all integers big-endian):
//! - bytes 0-1: zero; byte 2: element type (only 0x08, unsigned byte, is supported);
//!   byte 3: number of dimensions `d`. So images have magic 0x00000803 ([n, rows, cols])
//!   and labels 0x00000801 (`[n]`).
//! - `d` u32 dimension sizes, then exactly `product(dims)` bytes of data, row-major.
//!
//! Compression is detected from the gzip magic bytes 1f 8b, not from the file name, because
//! the `.gz` suffix is often dropped or kept wrongly when files are unpacked by hand.
//! Byte offsets in errors about a compressed file count in the decompressed stream.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::dataset::Dataset;
use crate::error::{Error, Result};

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Where the Debian package `dataset-fashion-mnist` installs Fashion-MNIST.
pub const FASHION_MNIST_DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const TYPE_U8: u8 = 0x08;

/// An IDX array of unsigned bytes: its dimensions and its row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes with any number of dimensions, raw or gzip-compressed.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    read_idx_rank(path.as_ref(), None).map(|(arr, _)| arr)
}

/// Parses the bytes of an IDX file (raw or gzip-compressed, detected from the content) held in
/// memory; `name` names the file in errors. The same parser as [`read_idx`], which streams the
/// file through it instead of reading it whole (the fuzzers call this one).
pub fn parse_idx(bytes: &[u8], name: impl AsRef<Path>) -> Result<IdxArray> {
    parse_idx_rank(bytes, name.as_ref(), None)
}

/// [`parse_idx`] requiring `rank` dimensions when it is given (1 for labels, 3 for images).
pub fn parse_idx_rank(bytes: &[u8], name: &Path, rank: Option<usize>) -> Result<IdxArray> {
    let gzip = bytes.starts_with(&GZIP_MAGIC);
    if gzip {
        parse_idx_stream(Box::new(MultiGzDecoder::new(bytes)), name, true, rank)
    } else {
        parse_idx_stream(Box::new(bytes), name, false, rank)
    }
}

/// Reads an IDX file, requiring `rank` dimensions when it is given; also says whether the
/// file was gzip-compressed, so later errors can say their offsets are decompressed ones.
fn read_idx_rank(path: &Path, rank: Option<usize>) -> Result<(IdxArray, bool)> {
    if path.is_dir() {
        return Err(Error::data(path, "is a directory, expected an IDX file"));
    }
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut start = Vec::with_capacity(2);
    (&mut file).take(2).read_to_end(&mut start).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;

    let gzip = start == GZIP_MAGIC;
    let reader: Box<dyn Read> = if gzip { Box::new(MultiGzDecoder::new(BufReader::new(file))) } else { Box::new(BufReader::new(file)) };
    let named_gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    match parse_idx_stream(reader, path, gzip, rank) {
        Ok(arr) => Ok((arr, gzip)),
        Err(Error::Data { path, detail }) if named_gz && !gzip => Err(Error::Data {
            path,
            detail: format!("{detail} (the name ends in .gz, but the file does not start with the gzip magic bytes 1f 8b)"),
        }),
        Err(e) => Err(e),
    }
}

/// Turns a read error into ours. For compressed input, flate2 reports a damaged stream as
/// InvalidInput/InvalidData/UnexpectedEof: that is a bad file, not an I/O failure.
fn read_error(path: &Path, gzip: bool, e: io::Error, during: &str) -> Error {
    let damaged = matches!(e.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof);
    if gzip && damaged {
        Error::data(path, format!("gzip-compressed (starts with 1f 8b) but the stream is damaged or truncated ({during}): {e}"))
    } else {
        Error::io(path, e)
    }
}

/// Reads until `buf` is full or the input ends; returns the number of bytes read.
fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The IDX parser proper: header, dimensions, data, nothing after it.
fn parse_idx_stream(mut r: Box<dyn Read + '_>, path: &Path, gzip: bool, rank: Option<usize>) -> Result<IdxArray> {
    let stream = if gzip { " (decompressed)" } else { "" };

    let mut magic = [0u8; 4];
    let n = read_up_to(&mut r, &mut magic).map_err(|e| read_error(path, gzip, e, "reading the header"))?;
    if n < magic.len() {
        return Err(Error::data(path, format!("truncated: {n} bytes{stream}, too short for the 4-byte IDX magic number")));
    }
    let magic_u32 = u32::from_be_bytes(magic);
    let [z0, z1, elem_type, ndims] = magic;
    if z0 != 0 || z1 != 0 {
        return Err(Error::data(
            path,
            format!(
                "not an IDX file: magic number 0x{magic_u32:08x} does not start with two zero bytes \
                 (expected 0x00000803 for images or 0x00000801 for labels)"
            ),
        ));
    }
    if elem_type != TYPE_U8 {
        return Err(Error::data(
            path,
            format!(
                "magic number 0x{magic_u32:08x}: element type 0x{elem_type:02x} is not supported, \
                 only 0x08 (unsigned byte)"
            ),
        ));
    }
    let ndims = usize::from(ndims);
    if let Some(rank) = rank {
        if ndims != rank {
            let what = if rank == 1 { "a label file" } else { "an image file" };
            return Err(Error::data(
                path,
                format!(
                    "magic number 0x{magic_u32:08x} declares {ndims} dimension(s); {what} needs \
                     {rank} (magic 0x0000080{rank})"
                ),
            ));
        }
    }
    if ndims == 0 {
        return Err(Error::data(path, "magic number 0x00000800 declares 0 dimensions"));
    }

    let header_len = 4 + 4 * ndims;
    let mut dim_bytes = vec![0u8; 4 * ndims];
    let n = read_up_to(&mut r, &mut dim_bytes).map_err(|e| read_error(path, gzip, e, "reading the header"))?;
    if n < dim_bytes.len() {
        return Err(Error::data(
            path,
            format!(
                "truncated header: {ndims} dimensions need a {header_len}-byte header, \
                 the file{stream} ends at byte {}",
                4 + n
            ),
        ));
    }
    let dims: Vec<usize> = dim_bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::data(path, format!("dimensions {dims:?} overflow the address space")))?;

    // Read through `take` instead of allocating `expected` bytes up front, so a header that
    // lies about its size cannot make us allocate more than the file really holds.
    let mut data = Vec::with_capacity(expected.min(64 << 20));
    r.by_ref()
        .take(expected as u64)
        .read_to_end(&mut data)
        .map_err(|e| read_error(path, gzip, e, &format!("reading the data after byte {header_len}")))?;
    if data.len() < expected {
        return Err(Error::data(
            path,
            format!(
                "truncated: dimensions {dims:?} need {expected} bytes of data after the \
                 {header_len}-byte header, found {}{stream} (the file ends at byte {})",
                data.len(),
                header_len + data.len()
            ),
        ));
    }

    // Count what follows the data, capped so a gzip bomb cannot keep us busy.
    const TRAILING_CAP: u64 = 1 << 30;
    let trailing = io::copy(&mut r.by_ref().take(TRAILING_CAP), &mut io::sink())
        .map_err(|e| read_error(path, gzip, e, &format!("after the data, at byte {}", header_len + expected)))?;
    if trailing > 0 {
        let at_least = if trailing == TRAILING_CAP { "at least " } else { "" };
        return Err(Error::data(
            path,
            format!(
                "{at_least}{trailing} unexpected trailing bytes{stream}: dimensions {dims:?} \
                 put the end of the data at byte {}",
                header_len + expected
            ),
        ));
    }

    Ok(IdxArray { dims, data })
}

/// Writes `data` as an IDX file of unsigned bytes with the given dimensions, gzip-compressed
/// if `gzip`. Used to make small test files; the inverse of [`read_idx`].
pub fn write_idx(path: impl AsRef<Path>, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    let path = path.as_ref();
    if dims.is_empty() || dims.len() > 255 {
        return Err(Error::invalid("write_idx", format!("an IDX file needs 1 to 255 dimensions, got {}", dims.len())));
    }
    let mut header = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| Error::invalid("write_idx", format!("dimension {d} does not fit the IDX u32 field")))?;
        header.extend_from_slice(&d.to_be_bytes());
    }
    if dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) != Some(data.len()) {
        return Err(Error::invalid("write_idx", format!("dimensions {dims:?} do not match {} bytes of data", data.len())));
    }

    let io_err = |e| Error::io(path, e);
    let file = BufWriter::new(File::create(path).map_err(io_err)?);
    if gzip {
        let mut enc = GzEncoder::new(file, Compression::default());
        enc.write_all(&header).map_err(io_err)?;
        enc.write_all(data).map_err(io_err)?;
        enc.finish().map_err(io_err)?.flush().map_err(io_err)?;
    } else {
        let mut file = file;
        file.write_all(&header).map_err(io_err)?;
        file.write_all(data).map_err(io_err)?;
        file.flush().map_err(io_err)?;
    }
    Ok(())
}

/// The hint added to "file not found" errors: where the packaged Fashion-MNIST comes from.
fn install_hint(dir: &Path) -> String {
    if dir == Path::new(FASHION_MNIST_DEFAULT_DIR) {
        "; the Debian package dataset-fashion-mnist provides it: apt-get install -y dataset-fashion-mnist".to_string()
    } else {
        format!(
            "; for Fashion-MNIST, `apt-get install -y dataset-fashion-mnist` installs the files in \
             {FASHION_MNIST_DEFAULT_DIR}"
        )
    }
}

/// `dir/base` or `dir/base.gz`, whichever exists (the raw one if both do).
fn find_idx_file(dir: &Path, base: &str) -> Result<PathBuf> {
    let raw = dir.join(base);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{base}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    for path in [&raw, &gz] {
        if path.is_dir() {
            return Err(Error::data(path, "is a directory, expected an IDX file"));
        }
    }
    Err(Error::data(raw, format!("file not found (looked for {base} and {base}.gz in {}){}", dir.display(), install_hint(dir))))
}

/// Reads one images/labels pair (prefix "train" or "t10k") into a single-channel data set.
fn load_split(dir: &Path, prefix: &str, class_names: &[String]) -> Result<Dataset> {
    let images_path = find_idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (images, _) = read_idx_rank(&images_path, Some(3))?;
    let (labels, labels_gzip) = read_idx_rank(&labels_path, Some(1))?;
    idx_pair_to_dataset(images, &images_path, labels, &labels_path, labels_gzip, class_names)
}

/// Checks that an images array `[n, rows, cols]` and a labels array `[n]` make a data set
/// with labels below `class_names.len()`, and builds it (single channel). The paths name the
/// files in errors; `labels_gzip` says the label file was compressed (offsets are then in the
/// decompressed stream).
pub fn idx_pair_to_dataset(
    images: IdxArray,
    images_path: &Path,
    labels: IdxArray,
    labels_path: &Path,
    labels_gzip: bool,
    class_names: &[String],
) -> Result<Dataset> {
    let (n, rows, cols) = match images.dims[..] {
        [n, rows, cols] => (n, rows, cols),
        _ => return Err(Error::data(images_path, format!("expected 3 dimensions, found {:?}", images.dims))),
    };
    if rows == 0 || cols == 0 {
        return Err(Error::data(images_path, format!("images of {rows}x{cols} pixels are empty")));
    }
    if rows.checked_mul(cols).is_none() {
        return Err(Error::data(images_path, format!("images of {rows}x{cols} pixels are impossibly large")));
    }
    if labels.dims.len() != 1 {
        return Err(Error::data(labels_path, format!("expected 1 dimension, found {:?}", labels.dims)));
    }
    if labels.data.len() != n {
        return Err(Error::data(labels_path, format!("{} labels, but {} holds {n} images", labels.data.len(), images_path.display())));
    }
    let compressed = if labels_gzip { " (decompressed)" } else { "" };
    for (i, &label) in labels.data.iter().enumerate() {
        if usize::from(label) >= class_names.len() {
            return Err(Error::data(
                labels_path,
                format!("record {i} (byte offset {}{compressed}): label {label} is out of range for {} classes", 8 + i, class_names.len()),
            ));
        }
    }
    Dataset::new(images.data, labels.data, rows, cols, 1, class_names.to_vec()).map_err(|e| Error::data(images_path, e.to_string()))
}

/// Loads an MNIST-style directory: train-images-idx3-ubyte, train-labels-idx1-ubyte,
/// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each raw or with a `.gz` suffix.
/// Returns (train, test), single-channel. `class_names` gives the label count and names,
/// e.g. [`FASHION_MNIST_CLASSES`].
pub fn load_idx_dir(dir: impl AsRef<Path>, class_names: Vec<String>) -> Result<(Dataset, Dataset)> {
    let dir = dir.as_ref();
    if class_names.is_empty() {
        return Err(Error::invalid("load_idx_dir", "no class names given"));
    }
    if !dir.is_dir() {
        let what = if dir.exists() { "not a directory" } else { "data directory not found" };
        return Err(Error::data(dir, format!("{what}{}", install_hint(dir))));
    }
    if dir.read_dir().map_err(|e| Error::io(dir, e))?.next().is_none() {
        return Err(Error::data(
            dir,
            format!(
                "the data directory is empty: expected train-images-idx3-ubyte, train-labels-idx1-ubyte, \
                 t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each raw or .gz){}",
                install_hint(dir)
            ),
        ));
    }
    let train = load_split(dir, "train", &class_names)?;
    let test = load_split(dir, "t10k", &class_names)?;
    if (train.height, train.width) != (test.height, test.width) {
        return Err(Error::data(
            dir,
            format!("training images are {}x{} but test images are {}x{}", train.height, train.width, test.height, test.width),
        ));
    }
    Ok((train, test))
}
