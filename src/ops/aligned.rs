//! A growable buffer whose values start on a 64-byte boundary: a cache line, and one row of an
//! AMX tile. The allocator hands large blocks 16-byte alignment (mmap's page plus its header),
//! so a plain `Vec` made every 64-byte tile row of the bf16 kernels straddle two cache lines.

use std::ops::{Deref, DerefMut};

const ALIGN: usize = 64;

/// `Vec`-like storage of `len` values from the first 64-byte boundary of its allocation.
#[derive(Default, Clone)]
pub struct Aligned64<T> {
    buf: Vec<T>,
    len: usize,
}

impl<T: Copy + Default> Aligned64<T> {
    /// Where the aligned values start in `buf`.
    fn start(&self) -> usize {
        let size = std::mem::size_of::<T>();
        let misalignment = self.buf.as_ptr() as usize % ALIGN;
        if misalignment == 0 || self.buf.is_empty() {
            0
        } else {
            (ALIGN - misalignment) / size
        }
    }

    /// As `Vec::resize`: the first values kept, new ones `value`.
    pub fn resize(&mut self, len: usize, value: T) {
        let spare = ALIGN / std::mem::size_of::<T>().max(1);
        if self.buf.len() < len + spare {
            let old = self.start();
            let mut grown = Aligned64 { buf: vec![value; len + spare], len: 0 };
            let new = grown.start();
            let kept = self.len.min(len);
            grown.buf[new..new + kept].copy_from_slice(&self.buf[old..old + kept]);
            grown.len = len;
            *self = grown;
            return;
        }
        let start = self.start();
        if len > self.len {
            self.buf[start + self.len..start + len].fill(value);
        }
        self.len = len;
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn extend_from_slice(&mut self, values: &[T]) {
        let old = self.len;
        self.resize(old + values.len(), T::default());
        self[old..].copy_from_slice(values);
    }
}

impl<T: Copy + Default> Deref for Aligned64<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        let start = self.start();
        &self.buf[start..start + self.len]
    }
}

impl<T: Copy + Default> DerefMut for Aligned64<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let start = self.start();
        &mut self.buf[start..start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_start_on_64_bytes_and_survive_growth_like_a_vec() {
        let mut a = Aligned64::<u32>::default();
        let mut v = Vec::new();
        for (round, len) in [3usize, 100, 50, 100_000, 7, 300_000].into_iter().enumerate() {
            a.resize(len, round as u32);
            v.resize(len, round as u32);
            assert_eq!(a.as_ptr() as usize % 64, 0, "len {len}");
            assert_eq!(&a[..], &v[..], "len {len}");
            a[len / 2] = 99;
            v[len / 2] = 99;
        }
        a.clear();
        a.extend_from_slice(&[1, 2, 3]);
        assert_eq!(&a[..], &[1, 2, 3]);
        assert_eq!(a.as_ptr() as usize % 64, 0);
    }
}
