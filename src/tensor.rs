//! A dense f32 tensor: a shape and a row-major buffer. Activations are NHWC
//! (batch, height, width, channels); conv weights HWIO; dense weights [in, out].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
    /// See `version`.
    version: u64,
}

/// Two tensors are equal when their shapes and values are (whatever their versions).
impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.shape == other.shape && self.data == other.data
    }
}

/// A process-wide counter, so that no two states of any tensors share a version.
fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Default for Tensor {
    fn default() -> Tensor {
        Tensor::empty()
    }
}

impl Tensor {
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor { shape: shape.to_vec(), data: vec![0.0; shape.iter().product()], version: next_version() }
    }

    pub fn filled(shape: &[usize], value: f32) -> Tensor {
        Tensor { shape: shape.to_vec(), data: vec![value; shape.iter().product()], version: next_version() }
    }

    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::shape("tensor", format!("{expected} values for shape {shape:?}"), format!("{} values", data.len())));
        }
        Ok(Tensor { shape: shape.to_vec(), data, version: next_version() })
    }

    /// An empty tensor: a buffer to be sized by `resize` and filled by an op.
    pub fn empty() -> Tensor {
        Tensor { shape: vec![0], data: Vec::new(), version: next_version() }
    }

    /// Gives the tensor a new shape, reusing its buffer: no allocation once the buffer has been
    /// as large before. The values are unspecified: the caller overwrites (or fills) them.
    pub fn resize(&mut self, shape: &[usize]) {
        self.version = next_version();
        self.shape.clear();
        self.shape.extend_from_slice(shape);
        self.data.resize(shape.iter().product(), 0.0);
    }

    /// Takes the buffer of values away, keeping the shape: the tensor is then *hollow*
    /// (`is_hollow`; `data` is empty) until `resize` or `restore_values`. For a layer's buffer
    /// whose values nobody will read again but whose shape still describes the last pass
    /// (`Sequential` lends such buffers to other layers).
    pub fn take_values(&mut self) -> Vec<f32> {
        self.version = next_version();
        std::mem::take(&mut self.data)
    }

    /// Whether the values were taken away (`take_values`) and not given back.
    pub fn is_hollow(&self) -> bool {
        self.data.len() != self.shape.iter().product::<usize>()
    }

    /// Gives the tensor `shape` and no values (hollow, as after `take_values`): the output of a
    /// layer that a fused pass never wrote, whose shape the backward pass still checks. A
    /// buffer it held is freed.
    pub fn make_hollow(&mut self, shape: &[usize]) {
        self.version = next_version();
        self.shape.clear();
        self.shape.extend_from_slice(shape);
        self.data = Vec::new();
    }

    /// Gives a hollow tensor a buffer for its values (a buffer `take_values` returned, of any
    /// length: it is cut or grown to the shape); the values are unspecified, as after `resize`.
    pub fn restore_values(&mut self, mut buffer: Vec<f32>) {
        buffer.resize(self.shape.iter().product(), 0.0);
        self.data = buffer;
        self.version = next_version();
    }

    /// Makes `self` a copy of `other`, reusing the buffer.
    pub fn copy_from(&mut self, other: &Tensor) {
        self.resize(other.shape());
        self.data.copy_from_slice(other.data());
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// The values, to be changed: gives the tensor a new `version`.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.version = next_version();
        &mut self.data
    }

    /// An identifier of the tensor's current values: it changes with every mutable access
    /// (`data_mut`, `resize`, ...), is never shared by two different states of any tensors in
    /// the process, and is kept by a clone. A cache of something derived from a tensor (the
    /// Winograd-transformed conv weights) compares versions instead of values.
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Same data, new shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.data.len() {
            return Err(Error::shape("reshape", format!("{:?}", self.shape), format!("{shape:?}")));
        }
        self.shape = shape.to_vec();
        self.version = next_version();
        Ok(self)
    }

    /// (n, h, w, c) of a rank-4 tensor; `op` names the caller in the error.
    pub fn dims4(&self, op: &str) -> Result<(usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, h, w, c] => Ok((n, h, w, c)),
            _ => Err(Error::shape(op, "rank 4 [N, H, W, C]", format!("{:?}", self.shape))),
        }
    }

    /// (rows, cols) of a rank-2 tensor.
    pub fn dims2(&self, op: &str) -> Result<(usize, usize)> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(Error::shape(op, "rank 2 [N, features]", format!("{:?}", self.shape))),
        }
    }

    /// Rows `start..start+count` along the first axis, copied.
    pub fn slice_batch(&self, start: usize, count: usize) -> Tensor {
        let per: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = count;
        Tensor { shape, data: self.data[start * per..(start + count) * per].to_vec(), version: next_version() }
    }

    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }
}
