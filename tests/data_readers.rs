//! The data module on small files generated in temp dirs: IDX, CIFAR-10 binary and image
//! folders (round trips and every malformed-file error), the validation split, normalisation
//! statistics, epoch shuffling and batches.

use std::fmt::Debug;
use std::path::Path;

use convnet::data::{
    batch_ranges, decode_image, epoch_order, image_from_rgba, load_cifar10_dir, load_idx_dir, load_image, load_image_folder, make_batch,
    read_idx, read_image, write_cifar10_records, write_idx, Dataset, Normalization, FASHION_MNIST_CLASSES,
};
use tempfile::TempDir;

fn tmp() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// The error message of a result that must be an error.
fn err<T: Debug>(r: convnet::Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message {msg:?} should contain {p:?}");
    }
}

/// Deterministic pseudo-random bytes (no RNG needed for test data).
fn bytes(n: usize, salt: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(salt) >> 13) as u8).collect()
}

fn fashion_classes() -> Vec<String> {
    FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- IDX

#[test]
fn idx_raw_round_trip() {
    let dir = tmp();
    let path = dir.path().join("images");
    let data = bytes(3 * 4 * 5, 1);
    write_idx(&path, &[3, 4, 5], &data, false).unwrap();
    let raw = std::fs::read(&path).unwrap();
    assert_eq!(&raw[..4], &[0, 0, 8, 3], "magic 0x00000803");
    assert_eq!(&raw[4..8], &[0, 0, 0, 3], "big-endian first dimension");
    assert_eq!(raw.len(), 16 + 60);

    let arr = read_idx(&path).unwrap();
    assert_eq!(arr.dims, vec![3, 4, 5]);
    assert_eq!(arr.data, data);
}

#[test]
fn idx_gzip_round_trip_detected_by_content_not_name() {
    let dir = tmp();
    // No .gz suffix: compression must be recognised from the 1f 8b magic.
    let path = dir.path().join("labels-without-suffix");
    let data = bytes(1000, 2);
    write_idx(&path, &[1000], &data, true).unwrap();
    let raw = std::fs::read(&path).unwrap();
    assert_eq!(&raw[..2], &[0x1f, 0x8b]);

    let arr = read_idx(&path).unwrap();
    assert_eq!(arr.dims, vec![1000]);
    assert_eq!(arr.data, data);
}

#[test]
fn idx_truncated_data_reports_sizes() {
    let dir = tmp();
    let path = dir.path().join("short");
    write_idx(&path, &[10, 4, 4], &bytes(160, 3), false).unwrap();
    let raw = std::fs::read(&path).unwrap();
    std::fs::write(&path, &raw[..raw.len() - 30]).unwrap();
    assert_contains(&err(read_idx(&path)), &["short", "truncated", "160 bytes of data after the 16-byte header, found 130"]);
}

#[test]
fn idx_truncated_header() {
    let dir = tmp();
    let path = dir.path().join("tiny");
    std::fs::write(&path, [0, 0, 8, 3, 0, 0, 0, 1, 0]).unwrap();
    assert_contains(&err(read_idx(&path)), &["tiny", "truncated header", "16-byte header", "byte 9"]);
    std::fs::write(&path, [0, 0]).unwrap();
    assert_contains(&err(read_idx(&path)), &["truncated", "4-byte IDX magic"]);
}

#[test]
fn idx_truncated_gzip_stream_is_an_error() {
    let dir = tmp();
    let path = dir.path().join("cut.gz");
    write_idx(&path, &[2000], &bytes(2000, 4), true).unwrap();
    let raw = std::fs::read(&path).unwrap();
    std::fs::write(&path, &raw[..raw.len() / 2]).unwrap();
    assert_contains(&err(read_idx(&path)), &["cut.gz"]);
}

#[test]
fn idx_wrong_magic() {
    let dir = tmp();
    let path = dir.path().join("bad");
    // Element type 0x09 (signed byte) instead of 0x08.
    std::fs::write(&path, [0, 0, 9, 1, 0, 0, 0, 1, 5]).unwrap();
    assert_contains(&err(read_idx(&path)), &["bad", "0x00000901", "element type 0x09"]);
    // Not an IDX file at all.
    std::fs::write(&path, b"PK\x03\x04 a zip file").unwrap();
    assert_contains(&err(read_idx(&path)), &["not an IDX file", "0x504b0304"]);
    // Zero dimensions.
    std::fs::write(&path, [0, 0, 8, 0]).unwrap();
    assert_contains(&err(read_idx(&path)), &["0 dimensions"]);
}

#[test]
fn idx_trailing_bytes() {
    let dir = tmp();
    for gzip in [false, true] {
        let path = dir.path().join(format!("long-{gzip}"));
        // Write a 1-D file of 7 bytes, then declare only 5 of them.
        write_idx(&path, &[7], &bytes(7, 5), false).unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        raw[7] = 5;
        if gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&raw).unwrap();
            raw = enc.finish().unwrap();
        }
        std::fs::write(&path, &raw).unwrap();
        assert_contains(&err(read_idx(&path)), &["2 unexpected trailing bytes", "byte 13"]);
    }
}

#[test]
fn idx_fake_gzip_header_is_an_error_not_a_panic() {
    let dir = tmp();
    let path = dir.path().join("fake.gz");
    let mut raw = vec![0x1f, 0x8b];
    raw.extend(bytes(200, 6));
    std::fs::write(&path, &raw).unwrap();
    assert_contains(&err(read_idx(&path)), &["fake.gz", "gzip"]);
    // Just the two magic bytes.
    std::fs::write(&path, [0x1f, 0x8b]).unwrap();
    assert_contains(&err(read_idx(&path)), &["fake.gz"]);
}

/// Writes an MNIST-style directory with `n_train`/`n_test` images of 3x2 pixels.
fn write_mnist_dir(dir: &Path, n_train: usize, n_test: usize, labels_train: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let train = bytes(n_train * 6, 7);
    let test = bytes(n_test * 6, 8);
    // Mix raw and gzip names: either variant must be found.
    write_idx(dir.join("train-images-idx3-ubyte.gz"), &[n_train, 3, 2], &train, true).unwrap();
    write_idx(dir.join("train-labels-idx1-ubyte"), &[labels_train.len()], labels_train, false).unwrap();
    write_idx(dir.join("t10k-images-idx3-ubyte"), &[n_test, 3, 2], &test, false).unwrap();
    let test_labels: Vec<u8> = (0..n_test as u8).map(|i| i % 10).collect();
    write_idx(dir.join("t10k-labels-idx1-ubyte.gz"), &[n_test], &test_labels, true).unwrap();
    (train, test)
}

#[test]
fn idx_dir_round_trip() {
    let dir = tmp();
    let labels = [9, 0, 3, 7];
    let (train_px, test_px) = write_mnist_dir(dir.path(), 4, 3, &labels);
    let (train, test) = load_idx_dir(dir.path(), fashion_classes()).unwrap();
    assert_eq!((train.len(), train.height, train.width, train.channels), (4, 3, 2, 1));
    assert_eq!(train.images, train_px);
    assert_eq!(train.labels, labels);
    assert_eq!(train.class_names[9], "Ankle boot");
    assert_eq!(test.len(), 3);
    assert_eq!(test.images, test_px);
    assert_eq!(test.labels, [0, 1, 2]);
    assert_eq!(test.image(1), &test_px[6..12]);
}

#[test]
fn idx_dir_label_out_of_range() {
    let dir = tmp();
    write_mnist_dir(dir.path(), 5, 2, &[0, 1, 2, 12, 4]);
    assert_contains(
        &err(load_idx_dir(dir.path(), fashion_classes())),
        &["train-labels-idx1-ubyte", "record 3", "byte offset 11", "label 12", "10 classes"],
    );
}

#[test]
fn idx_dir_count_mismatch() {
    let dir = tmp();
    write_mnist_dir(dir.path(), 5, 2, &[0, 1, 2, 3]);
    assert_contains(&err(load_idx_dir(dir.path(), fashion_classes())), &["train-labels-idx1-ubyte", "4 labels", "5 images"]);
}

#[test]
fn idx_dir_wrong_rank() {
    let dir = tmp();
    write_mnist_dir(dir.path(), 2, 2, &[0, 1]);
    // A label file holding a 3-D array.
    write_idx(dir.path().join("train-labels-idx1-ubyte"), &[2, 1, 1], &[0, 1], false).unwrap();
    assert_contains(&err(load_idx_dir(dir.path(), fashion_classes())), &["train-labels-idx1-ubyte", "3 dimension(s)", "0x00000801"]);
}

#[test]
fn idx_dir_missing_file_and_dir_name_the_file_and_the_package() {
    let dir = tmp();
    write_mnist_dir(dir.path(), 2, 2, &[0, 1]);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_contains(
        &err(load_idx_dir(dir.path(), fashion_classes())),
        &["t10k-labels-idx1-ubyte", "not found", "apt-get install -y dataset-fashion-mnist"],
    );
    let missing = dir.path().join("nowhere");
    assert_contains(&err(load_idx_dir(&missing, fashion_classes())), &["nowhere", "not found", "apt-get install -y dataset-fashion-mnist"]);
}

// ---------------------------------------------------------------- CIFAR-10

const CIFAR_CLASSES: &str = "airplane\nautomobile\nbird\ncat\ndeer\n\ndog\nfrog\nhorse\nship\ntruck\n\n";

/// Images and labels.
type Split = (Vec<u8>, Vec<u8>);

/// Writes a complete CIFAR-10 folder: batch k holds k+1 images, the test batch 2.
/// Returns the images and labels of the training batches concatenated, and of the test batch.
fn write_cifar_dir(dir: &Path) -> (Split, Split) {
    std::fs::write(dir.join("batches.meta.txt"), CIFAR_CLASSES).unwrap();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for k in 1..=5usize {
        let px = bytes(k * 3072, k as u32);
        let lb: Vec<u8> = (0..k as u8).map(|i| (i + k as u8) % 10).collect();
        write_cifar10_records(dir.join(format!("data_batch_{k}.bin")), &px, &lb).unwrap();
        images.extend(px);
        labels.extend(lb);
    }
    let test_px = bytes(2 * 3072, 99);
    let test_lb = vec![9, 4];
    write_cifar10_records(dir.join("test_batch.bin"), &test_px, &test_lb).unwrap();
    ((images, labels), (test_px, test_lb))
}

#[test]
fn cifar_round_trip() {
    let dir = tmp();
    let ((images, labels), (test_px, test_lb)) = write_cifar_dir(dir.path());
    let (train, test) = load_cifar10_dir(dir.path()).unwrap();
    assert_eq!(train.len(), 15);
    assert_eq!((train.height, train.width, train.channels), (32, 32, 3));
    assert_eq!(train.images, images);
    assert_eq!(train.labels, labels);
    assert_eq!(test.images, test_px);
    assert_eq!(test.labels, test_lb);
    // Blank lines in batches.meta.txt are ignored.
    assert_eq!(train.class_names.len(), 10);
    assert_eq!(train.class_names[5], "dog");
    assert_eq!(test.class_names[9], "truck");
}

#[test]
fn cifar_planes_become_hwc() {
    let dir = tmp();
    write_cifar_dir(dir.path());
    // A hand-made record, written without the library's writer: label, R plane, G plane,
    // B plane, each 32x32 row-major.
    let mut record = vec![0u8; 3073];
    record[0] = 3;
    record[1 + (32 + 2)] = 7; // R at (row 1, col 2)
    record[1 + 1024] = 200; // G at (row 0, col 0)
    record[1 + 2048 + 31 * 32 + 31] = 99; // B at (row 31, col 31)
    std::fs::write(dir.path().join("test_batch.bin"), &record).unwrap();

    let (_, test) = load_cifar10_dir(dir.path()).unwrap();
    assert_eq!(test.labels, [3]);
    let img = test.image(0);
    assert_eq!(img[(32 + 2) * 3], 7);
    assert_eq!(img[1], 200);
    assert_eq!(img[(31 * 32 + 31) * 3 + 2], 99);
    assert_eq!(img.iter().filter(|&&v| v != 0).count(), 3, "no other pixel set");

    // And the writer produces exactly the hand-made bytes from the HWC image.
    let path = dir.path().join("again.bin");
    write_cifar10_records(&path, img, &[3]).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), record);
}

#[test]
fn cifar_wrong_record_size() {
    let dir = tmp();
    write_cifar_dir(dir.path());
    let path = dir.path().join("data_batch_2.bin");
    let mut raw = std::fs::read(&path).unwrap();
    raw.extend([1, 2, 3, 4, 5]);
    std::fs::write(&path, &raw).unwrap();
    assert_contains(
        &err(load_cifar10_dir(dir.path())),
        &["data_batch_2.bin", "6151 bytes", "3073-byte record", "2 whole records and 5 bytes left over"],
    );
    std::fs::write(&path, []).unwrap();
    assert_contains(&err(load_cifar10_dir(dir.path())), &["data_batch_2.bin", "empty"]);
}

#[test]
fn cifar_missing_files() {
    let dir = tmp();
    write_cifar_dir(dir.path());
    std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
    assert_contains(&err(load_cifar10_dir(dir.path())), &["test_batch.bin", "not found"]);

    write_cifar_dir(dir.path());
    std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
    assert_contains(&err(load_cifar10_dir(dir.path())), &["data_batch_4.bin", "not found"]);

    write_cifar_dir(dir.path());
    std::fs::remove_file(dir.path().join("batches.meta.txt")).unwrap();
    assert_contains(&err(load_cifar10_dir(dir.path())), &["batches.meta.txt", "not found", "class names"]);

    // The class names padded with blank lines to the 1 MiB limit load; one byte more is refused
    // (not read up to the limit and taken as it is).
    let limit = 1 << 20;
    let mut meta = CIFAR_CLASSES.as_bytes().to_vec();
    meta.resize(limit, b'\n');
    std::fs::write(dir.path().join("batches.meta.txt"), &meta).unwrap();
    assert_eq!(load_cifar10_dir(dir.path()).unwrap().0.class_names.len(), 10);
    meta.push(b'\n');
    std::fs::write(dir.path().join("batches.meta.txt"), &meta).unwrap();
    assert_contains(&err(load_cifar10_dir(dir.path())), &["batches.meta.txt", "larger than 1048576 bytes"]);

    assert_contains(&err(load_cifar10_dir(dir.path().join("absent"))), &["absent", "not found"]);
}

#[test]
fn cifar_label_out_of_range() {
    let dir = tmp();
    write_cifar_dir(dir.path());
    let path = dir.path().join("data_batch_3.bin");
    let mut raw = std::fs::read(&path).unwrap();
    raw[2 * 3073] = 10; // record 2's label byte
    std::fs::write(&path, &raw).unwrap();
    assert_contains(&err(load_cifar10_dir(dir.path())), &["data_batch_3.bin", "record 2", "byte offset 6146", "label 10", "10 classes"]);
}

// ---------------------------------------------------------------- image folders

fn rgb_image(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 31 + y * 17 + seed * 7) as u8;
        image::Rgb([v, v.wrapping_add(50), v.wrapping_mul(3)])
    })
}

#[test]
fn image_folder_two_classes_with_resize_and_grey_to_rgb() {
    let dir = tmp();
    let root = dir.path();
    std::fs::create_dir_all(root.join("cat")).unwrap();
    std::fs::create_dir_all(root.join("bird")).unwrap();
    let cat_b = rgb_image(6, 4, 1);
    cat_b.save(root.join("cat/b.png")).unwrap();
    // Different size and uniform colour: after resizing every pixel stays that colour.
    image::RgbImage::from_pixel(12, 8, image::Rgb([10, 100, 250])).save(root.join("cat/a.PNG")).unwrap();
    std::fs::write(root.join("cat/notes.txt"), "not an image").unwrap();
    let grey = image::GrayImage::from_fn(6, 4, |x, y| image::Luma([(x * 40 + y) as u8]));
    grey.save(root.join("bird/g.png")).unwrap();

    let ds = load_image_folder(root, 4, 6, 3).unwrap();
    // Classes sorted: bird = 0, cat = 1; files sorted within a class: a.PNG before b.png.
    assert_eq!(ds.class_names, ["bird", "cat"]);
    assert_eq!(ds.labels, [0, 1, 1]);
    assert_eq!((ds.len(), ds.height, ds.width, ds.channels), (3, 4, 6, 3));

    let g = ds.image(0);
    for (i, px) in g.chunks(3).enumerate() {
        let v = grey.as_raw()[i];
        assert_eq!(px, [v, v, v], "grey pixel {i} replicated into RGB");
    }
    for px in ds.image(1).chunks(3) {
        for (got, want) in px.iter().zip([10u8, 100, 250]) {
            assert!(got.abs_diff(want) <= 1, "resized uniform pixel {px:?}");
        }
    }
    assert_eq!(ds.image(2), cat_b.as_raw().as_slice(), "same-size image kept exactly");

    // Loading as one channel converts RGB to luma.
    let luma = load_image_folder(root, 4, 6, 1).unwrap();
    assert_eq!(luma.images.len(), 3 * 24);
    assert_eq!(luma.image(0), grey.as_raw().as_slice());
}

#[test]
fn image_folder_empty_and_class_without_images() {
    let dir = tmp();
    assert_contains(&err(load_image_folder(dir.path(), 8, 8, 3)), &["no class folders"]);
    std::fs::create_dir_all(dir.path().join("dog")).unwrap();
    std::fs::write(dir.path().join("dog/readme.md"), "x").unwrap();
    assert_contains(&err(load_image_folder(dir.path(), 8, 8, 3)), &["dog", "no .png, .jpg or .jpeg images"]);
    assert_contains(&err(load_image_folder(dir.path().join("missing"), 8, 8, 3)), &["missing"]);
}

#[test]
fn image_folder_corrupt_png_names_the_file() {
    let dir = tmp();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    rgb_image(4, 4, 2).save(dir.path().join("a/good.png")).unwrap();
    let mut raw = b"\x89PNG\r\n\x1a\n".to_vec();
    raw.extend(bytes(100, 3));
    std::fs::write(dir.path().join("a/zz-broken.png"), &raw).unwrap();
    assert_contains(&err(load_image_folder(dir.path(), 4, 4, 3)), &["zz-broken.png", "cannot decode"]);
    std::fs::write(dir.path().join("a/zz-broken.png"), "plain text").unwrap();
    assert_contains(&err(load_image_folder(dir.path(), 4, 4, 3)), &["zz-broken.png", "not a PNG or JPEG image"]);
}

#[test]
fn load_image_jpeg_and_bad_arguments() {
    let dir = tmp();
    let path = dir.path().join("photo.jpg");
    image::RgbImage::from_pixel(16, 16, image::Rgb([200, 40, 90])).save(&path).unwrap();
    let px = load_image(&path, 8, 8, 3).unwrap();
    assert_eq!(px.len(), 8 * 8 * 3);
    for p in px.chunks(3) {
        for (got, want) in p.iter().zip([200u8, 40, 90]) {
            assert!(got.abs_diff(want) <= 4, "jpeg pixel {p:?}");
        }
    }
    assert_contains(&err(load_image(&path, 8, 8, 4)), &["channels must be 1 (grey) or 3 (RGB), got 4"]);
    assert_contains(&err(load_image(&path, 0, 8, 3)), &["bad target size"]);
}

/// A PNG chunk: length, type, data, CRC of type and data.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

#[test]
fn load_image_refuses_huge_images_before_decoding() {
    // A valid header claiming 10000 x 6000 = 60 megapixels with almost no pixel data: the size
    // must be refused from the header, without allocating the 180 MB image.
    let dir = tmp();
    let path = dir.path().join("huge.png");
    std::fs::write(&path, huge_png_header()).unwrap();
    assert_contains(&err(load_image(&path, 32, 32, 3)), &["huge.png", "10000x6000", "50 megapixel limit"]);
}

/// A PNG whose header claims 10000 x 6000 = 60 megapixels, with almost no pixel data.
fn huge_png_header() -> Vec<u8> {
    let mut ihdr = 10_000u32.to_be_bytes().to_vec();
    ihdr.extend(6_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter method, no interlace
    let mut raw = b"\x89PNG\r\n\x1a\n".to_vec();
    raw.extend(png_chunk(b"IHDR", &ihdr));
    raw.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]));
    raw.extend(png_chunk(b"IEND", &[]));
    raw
}

#[test]
fn decode_image_reads_bytes_as_read_image_reads_the_file() {
    let dir = tmp();
    let colour = dir.path().join("colour.png");
    rgb_image(20, 12, 3).save(&colour).unwrap();
    let photo = dir.path().join("photo.jpg");
    rgb_image(16, 16, 5).save(&photo).unwrap();
    let grey = dir.path().join("grey.png");
    image::GrayImage::from_fn(9, 7, |x, y| image::Luma([(x * 20 + y * 9) as u8])).save(&grey).unwrap();
    for path in [&colour, &photo, &grey] {
        let bytes = std::fs::read(path).unwrap();
        for channels in [1, 3] {
            for size in [None, Some((8, 8)), Some((32, 40))] {
                let from_bytes = decode_image(&bytes, "dropped", size, channels).unwrap();
                assert_eq!(from_bytes, read_image(path, size, channels).unwrap(), "{} {channels} {size:?}", path.display());
            }
        }
    }
    // The same refusals, naming the name given.
    assert_contains(&err(decode_image(b"", "empty.png", None, 1)), &["empty.png", "empty file"]);
    assert_contains(&err(decode_image(b"GIF89a;;;;;;;;", "anim.gif", None, 1)), &["anim.gif", "unsupported image format GIF"]);
    assert_contains(&err(decode_image(b"hello there", "notes.png", None, 1)), &["notes.png", "not a PNG or JPEG image"]);
    assert_contains(&err(decode_image(&huge_png_header(), "huge.png", None, 3)), &["huge.png", "10000x6000", "50 megapixel limit"]);
    let png = std::fs::read(&colour).unwrap();
    assert_contains(&err(decode_image(&png[..png.len() / 2], "cut.png", None, 3)), &["cut.png", "cannot decode PNG image"]);
    assert_contains(&err(decode_image(&png, "colour.png", None, 2)), &["channels must be 1 (grey) or 3 (RGB), got 2"]);
    assert_contains(&err(decode_image(&png, "colour.png", Some((0, 4)), 3)), &["bad target size 0x4"]);
    assert_contains(&err(decode_image(&png, "colour.png", Some((4, 0)), 3)), &["bad target size 4x0"]);
}

#[test]
fn image_from_rgba_converts_as_read_image_converts_an_rgba_file() {
    let dir = tmp();
    let rgba = image::RgbaImage::from_fn(30, 18, |x, y| image::Rgba([(x * 8) as u8, (y * 13) as u8, ((x + y) * 5) as u8, (x * y) as u8]));
    let path = dir.path().join("canvas.png");
    rgba.save(&path).unwrap();
    for channels in [1, 3] {
        for size in [None, Some((8, 8)), Some((28, 28)), Some((40, 50))] {
            let canvas = image_from_rgba(rgba.as_raw(), 30, 18, size, channels).unwrap();
            assert_eq!(canvas, read_image(&path, size, channels).unwrap(), "{channels} {size:?}");
        }
    }
    assert_contains(&err(image_from_rgba(&[0; 15], 2, 2, None, 1)), &["15 bytes for a 2x2 RGBA image"]);
    assert_contains(&err(image_from_rgba(&[0; 17], 2, 2, None, 1)), &["17 bytes for a 2x2 RGBA image"]);
    assert_contains(&err(image_from_rgba(&[0; 4], usize::MAX, 2, None, 1)), &["4 bytes for a"]);
    // Over the limit: refused before the pixels are copied.
    let side = 8_000;
    let big = vec![0u8; side * side * 4];
    assert_contains(&err(image_from_rgba(&big, side, side, None, 1)), &["8000x8000 is over the 50 megapixel limit"]);
    assert_contains(&err(image_from_rgba(&[], 0, 5, None, 1)), &["0 bytes for a 0x5 RGBA image"]);
    assert_contains(&err(image_from_rgba(&[0; 16], 2, 2, None, 4)), &["got 4"]);
}

// ---------------------------------------------------------------- dataset, normalisation, batches

fn ramp_dataset(n: usize) -> Dataset {
    // 1x2 images with 2 channels: image i is [i, i+1, i+2, i+3].
    let images = (0..n).flat_map(|i| (0..4).map(move |k| (i + k) as u8)).collect();
    let labels = (0..n).map(|i| (i % 3) as u8).collect();
    Dataset::new(images, labels, 1, 2, 2, vec!["a".into(), "b".into(), "c".into()]).unwrap()
}

#[test]
fn validation_split_takes_the_last_n() {
    let ds = ramp_dataset(10);
    let (train, val) = ds.clone().split_validation(3).unwrap();
    assert_eq!(train.len(), 7);
    assert_eq!(val.len(), 3);
    assert_eq!(train, ds.subset(0..7));
    assert_eq!(val, ds.subset(7..10));
    assert_eq!(val.image(0), [7, 8, 9, 10]);
    assert_eq!(val.labels, [1, 2, 0]);
    assert_eq!(val.class_names, ds.class_names);

    assert_contains(&err(ds.clone().split_validation(10)), &["validation size 10", "10 images"]);
    let (train, val) = ds.split_validation(0).unwrap();
    assert_eq!((train.len(), val.len()), (10, 0));
}

#[test]
fn dataset_new_checks_sizes_and_labels() {
    assert_contains(&err(Dataset::new(vec![0; 5], vec![0, 0], 1, 1, 3, vec!["x".into()])), &["need 6", "found 5"]);
    assert_contains(&err(Dataset::new(vec![0; 2], vec![0, 1], 1, 1, 1, vec!["x".into()])), &["label 1 of image 1"]);
}

#[test]
fn normalization_statistics_by_hand() {
    // Two 1x2 images, 2 channels. Channel 0 takes 0, 51, 102, 255 = 0.0, 0.2, 0.4, 1.0 on the
    // [0,1] scale: mean = 1.6 / 4 = 0.4; deviations -0.4, -0.2, 0, 0.6 square to
    // 0.16 + 0.04 + 0 + 0.36 = 0.56; population variance 0.56 / 4 = 0.14; std = sqrt(0.14)
    // = 0.374166. Channel 1 is 128 everywhere: mean 128/255 = 0.501961, std 0 -> floored at 1e-6.
    let ds = Dataset::new(vec![0, 128, 51, 128, 102, 128, 255, 128], vec![0, 1], 1, 2, 2, vec!["a".into(), "b".into()]).unwrap();
    let norm = Normalization::from_dataset(&ds);
    assert!((norm.mean[0] - 0.4).abs() < 1e-6, "{norm:?}");
    assert!((norm.std[0] - 0.14f32.sqrt()).abs() < 1e-6, "{norm:?}");
    assert!((norm.mean[1] - 128.0 / 255.0).abs() < 1e-6, "{norm:?}");
    assert_eq!(norm.std[1], 1e-6);

    // 51 in channel 0: (0.2 - 0.4) / 0.374166 = -0.534522.
    let mut out = [0f32; 2];
    norm.apply(&[51, 128], &mut out);
    assert!((out[0] + 0.534_522).abs() < 1e-5, "{out:?}");
    // A constant channel maps to about 0: the f32 rounding of its mean (~1e-8) is divided by
    // the 1e-6 floor, so "about" means within a few hundredths.
    assert!(out[1].abs() < 0.05, "{out:?}");

    // Serializable, and validated against a channel count.
    let json = serde_json::to_string(&norm).unwrap();
    assert_eq!(serde_json::from_str::<Normalization>(&json).unwrap(), norm);
    norm.validate(2).unwrap();
    assert_contains(&err(norm.validate(3)), &["2 means and 2 stds for 3-channel"]);
    let bad = Normalization { mean: vec![0.0], std: vec![0.0] };
    assert_contains(&err(bad.validate(1)), &["channel 0"]);
}

#[test]
fn normalization_of_empty_dataset_is_identity_on_unit_scale() {
    let ds = Dataset::new(vec![], vec![], 2, 2, 3, vec!["a".into()]).unwrap();
    let norm = Normalization::from_dataset(&ds);
    assert_eq!(norm, Normalization { mean: vec![0.0; 3], std: vec![1.0; 3] });
}

#[test]
fn make_batch_values_by_hand() {
    let ds = ramp_dataset(4);
    let norm = Normalization { mean: vec![0.5, 0.25], std: vec![0.5, 0.25] };
    let (x, labels) = make_batch(&ds, &[3, 0], &norm);
    assert_eq!(x.shape(), [2, 1, 2, 2]);
    assert_eq!(labels, [0, 0]);
    // Image 3 is [3, 4, 5, 6]: channel 0 pixels 3 and 5, channel 1 pixels 4 and 6.
    // (3/255 - 0.5) / 0.5 = -0.976471; (4/255 - 0.25) / 0.25 = -0.937255;
    // (5/255 - 0.5) / 0.5 = -0.960784; (6/255 - 0.25) / 0.25 = -0.905882.
    // Image 0 is [0, 1, 2, 3]: -1; (1/255 - 0.25)/0.25 = -0.984314; -0.984314; -0.952941.
    let want = [-0.976471, -0.937255, -0.960784, -0.905882, -1.0, -0.984314, -0.984314, -0.952941];
    for (i, (g, w)) in x.data().iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-5, "element {i}: got {g}, want {w}");
    }
    let (x, labels) = make_batch(&ds, &[2, 1], &Normalization { mean: vec![0.0; 2], std: vec![1.0; 2] });
    assert_eq!(labels, [2, 1]);
    assert!((x.data()[0] - 2.0 / 255.0).abs() < 1e-7);
}

#[test]
fn epoch_order_is_a_reproducible_permutation() {
    let a = epoch_order(1000, 42, 3);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert_ne!(a, sorted, "shuffled");
    assert_eq!(a, epoch_order(1000, 42, 3), "same (seed, epoch) -> same order");
    assert_ne!(a, epoch_order(1000, 42, 4), "differs across epochs");
    assert_ne!(a, epoch_order(1000, 43, 3), "differs across seeds");
    assert_ne!(epoch_order(1000, 0, 0), epoch_order(1000, 0, 1));
    assert!(epoch_order(0, 1, 1).is_empty());
}

#[test]
fn batches_cover_every_example_once_with_a_partial_last_batch() {
    let ranges: Vec<_> = batch_ranges(10, 4).collect();
    assert_eq!(ranges, [0..4, 4..8, 8..10]);
    assert_eq!(batch_ranges(8, 4).count(), 2);
    assert_eq!(batch_ranges(0, 4).count(), 0);

    let n = 103;
    for epoch in 0..3 {
        let order = epoch_order(n, 7, epoch);
        let mut seen = vec![0u32; n];
        let sizes: Vec<usize> = batch_ranges(n, 16)
            .map(|r| {
                for &i in &order[r.clone()] {
                    seen[i] += 1;
                }
                r.len()
            })
            .collect();
        assert!(seen.iter().all(|&c| c == 1), "epoch {epoch}: every example exactly once");
        assert_eq!(sizes, [16, 16, 16, 16, 16, 16, 7]);
    }
}
