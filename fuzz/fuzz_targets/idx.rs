//! The IDX reader (MNIST / Fashion-MNIST files, raw or gzip): any bytes must give an IdxArray
//! or an error, never a panic, an abort or an unbounded allocation.
#![no_main]

use std::path::Path;

use convnet::data::{idx_pair_to_dataset, parse_idx, parse_idx_rank, Normalization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz-idx");
    let _ = parse_idx(data, name);

    // The first two bytes split the rest into an images file and a labels file, which then go
    // through the same checks as a real train/t10k pair.
    if data.len() < 2 {
        return;
    }
    let rest = &data[2..];
    let split = usize::from(u16::from_le_bytes([data[0], data[1]])) % (rest.len() + 1);
    let (images_bytes, labels_bytes) = rest.split_at(split);
    let (images_path, labels_path) = (Path::new("fuzz-images"), Path::new("fuzz-labels"));
    let (Ok(images), Ok(labels)) = (parse_idx_rank(images_bytes, images_path, Some(3)), parse_idx_rank(labels_bytes, labels_path, Some(1)))
    else {
        return;
    };
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let gzip = labels_bytes.starts_with(&[0x1f, 0x8b]);
    if let Ok(ds) = idx_pair_to_dataset(images, images_path, labels, labels_path, gzip, &classes) {
        let _ = Normalization::from_dataset(&ds);
        let _ = ds.split_validation(1);
    }
});
