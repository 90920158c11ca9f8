//! NumPy arrays in and out of the engine's [`Tensor`]s.
//!
//! In: a float32 array is copied into a tensor (one memcpy when it is C-contiguous, which the
//! Python layer arranges): the engine's tensors own their buffers, so borrowing NumPy's memory
//! would need a view type through every kernel. The copy took 1.1% of a `conv_forward` on
//! the tutorial's second layer (docs/python.md). Out: the tensor's buffer becomes the
//! array's, without a copy.

use convnet::Tensor;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A copy of `array` as a tensor of the same shape; `name` is the argument's name in errors.
pub fn tensor(array: &PyReadonlyArrayDyn<'_, f32>, name: &str) -> PyResult<Tensor> {
    let data = match array.as_slice() {
        Ok(contiguous) => contiguous.to_vec(),
        Err(_) => array.as_array().iter().copied().collect(),
    };
    Tensor::from_vec(array.shape(), data).map_err(|e| PyValueError::new_err(format!("{name}: {e}")))
}

/// `tensor` for an array that must have `rank` dimensions, none of them empty.
pub fn tensor_of_rank(array: &PyReadonlyArrayDyn<'_, f32>, name: &str, rank: usize) -> PyResult<Tensor> {
    if array.ndim() != rank {
        return Err(PyValueError::new_err(format!("{name} must have {rank} dimensions, got shape {:?}", array.shape())));
    }
    if array.shape().contains(&0) {
        // The kernels split their work by channels and rows: an empty axis has no work to split.
        return Err(PyValueError::new_err(format!("{name} has an empty axis: shape {:?}", array.shape())));
    }
    tensor(array, name)
}

/// The tensor as a NumPy array of its shape, owning the tensor's buffer.
pub fn numpy(py: Python<'_>, t: Tensor) -> Bound<'_, PyArrayDyn<f32>> {
    let shape = t.shape().to_vec();
    let array = ArrayD::from_shape_vec(IxDyn(&shape), t.into_vec()).expect("a tensor's length is its shape's product");
    array.into_pyarray(py)
}

/// `numpy` with a new shape of the same size (a bias [C] as the tutorial's (1, 1, 1, C)).
pub fn numpy_shaped<'py>(py: Python<'py>, t: Tensor, shape: &[usize]) -> Bound<'py, PyArrayDyn<f32>> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), t.into_vec()).expect("the caller's shape has the tensor's size");
    array.into_pyarray(py)
}
