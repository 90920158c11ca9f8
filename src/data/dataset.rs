//! An in-memory labelled image set: u8 pixels in NHWC order (image `i` occupies
//! `images[i*h*w*c .. (i+1)*h*w*c]`, pixels row-major with channels interleaved) and one
//! u8 class label per image. Kept as u8 (not f32) so CIFAR-10's 50,000 training images take
//! 150 MB rather than 600 MB; batches are normalised to f32 on the fly.

use std::ops::Range;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub class_names: Vec<String>,
}

impl Dataset {
    /// A data set whose buffer sizes and labels are checked to agree with each other.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        height: usize,
        width: usize,
        channels: usize,
        class_names: Vec<String>,
    ) -> Result<Dataset> {
        let ds = Dataset { images, labels, height, width, channels, class_names };
        ds.check()?;
        Ok(ds)
    }

    /// Checks the invariants the accessors rely on: the pixel buffer holds exactly
    /// `len() * image_size()` bytes and every label names a class.
    pub fn check(&self) -> Result<()> {
        let expected = self.labels.len().checked_mul(self.image_size());
        if expected != Some(self.images.len()) {
            return Err(Error::invalid(
                "dataset",
                format!(
                    "{} labels of {}x{}x{} images need {} pixel bytes, found {}",
                    self.labels.len(),
                    self.height,
                    self.width,
                    self.channels,
                    expected.map_or_else(|| "more than usize::MAX".to_string(), |e| e.to_string()),
                    self.images.len()
                ),
            ));
        }
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|(_, &l)| usize::from(l) >= self.class_names.len()) {
            return Err(Error::invalid(
                "dataset",
                format!("label {l} of image {i} is out of range for {} classes", self.class_names.len()),
            ));
        }
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image: height * width * channels.
    pub fn image_size(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// The HWC pixels of image `i`. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.image_size();
        &self.images[i * size..(i + 1) * size]
    }

    /// Images `range` as a new data set (copied). Panics if the range is out of bounds.
    pub fn subset(&self, range: Range<usize>) -> Dataset {
        let size = self.image_size();
        Dataset {
            images: self.images[range.start * size..range.end * size].to_vec(),
            labels: self.labels[range].to_vec(),
            height: self.height,
            width: self.width,
            channels: self.channels,
            class_names: self.class_names.clone(),
        }
    }

    /// Splits off the last `n_val` images as a validation set: the tutorial's split of the
    /// 50,000 CIFAR-10 training images into 49,000 train / 1,000 validation. Taking the tail
    /// (not a random sample) keeps the split reproducible without a seed.
    /// Returns (train, validation); errors if `n_val >= len()` (nothing left to train on).
    pub fn split_validation(mut self, n_val: usize) -> Result<(Dataset, Dataset)> {
        if n_val >= self.len() {
            return Err(Error::invalid(
                "split_validation",
                format!("validation size {n_val} must be smaller than the training set ({} images)", self.len()),
            ));
        }
        let n_train = self.len() - n_val;
        let size = self.image_size();
        // split_off keeps the head in place, so the large training part is not copied.
        let val = Dataset {
            images: self.images.split_off(n_train * size),
            labels: self.labels.split_off(n_train),
            height: self.height,
            width: self.width,
            channels: self.channels,
            class_names: self.class_names.clone(),
        };
        Ok((self, val))
    }
}
