//! The CIFAR-10 reader: batch files (3073-byte records) and batches.meta.txt. Any bytes must
//! give records or an error, never a panic.
#![no_main]

use std::path::Path;

use convnet::data::{parse_cifar10_records, parse_class_names, Dataset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&classes, rest)) = data.split_first() else { return };
    // The first byte picks the number of classes (0 to 255), so labels out of range are hit.
    let n_classes = usize::from(classes);
    if let Ok((images, labels)) = parse_cifar10_records(rest, Path::new("fuzz-batch.bin"), n_classes) {
        assert_eq!(images.len(), labels.len() * 3072);
        let names = (0..n_classes).map(|i| i.to_string()).collect();
        // What the loader builds from them must pass the data set's own checks.
        Dataset::new(images, labels, 32, 32, 3, names).expect("records the parser accepted make a valid data set");
    }
    let _ = parse_class_names(data, Path::new("fuzz-batches.meta.txt"));
});
