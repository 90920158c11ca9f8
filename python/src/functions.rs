//! The ops behind the tutorial's functions (python/convnet/functions.py gives them the
//! tutorial's names, hparameters and caches): each copies its inputs, releases the GIL, runs
//! convnet's fast path (the same code a training step runs) and returns new arrays.

use convnet::ops::activation::Activation;
use convnet::ops::conv2d::{conv2d_backward, conv2d_forward};
use convnet::ops::lrn::{lrn_backward, lrn_forward, LrnParams};
use convnet::ops::pool::{avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward};
use convnet::ops::softmax::{softmax, softmax_cross_entropy};
use convnet::ops::window::{Padding, Window};
use convnet::Tensor;
use numpy::{PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{numpy, numpy_shaped, tensor, tensor_of_rank};
use crate::errors::OrPyErr;

/// A float32 array returned to Python.
type Array<'py> = Bound<'py, PyArrayDyn<f32>>;

/// The convolution's window: an f_h x f_w kernel, the same stride and zero padding on both axes.
fn conv_window(w: &Tensor, stride: usize, pad: usize) -> Window {
    Window::new(w.shape()[0], w.shape()[1], stride, stride, Padding::symmetric(pad))
}

/// A pooling window: f x f, no padding (the tutorial's pooling has none).
fn pool_window(f: usize, stride: usize) -> Window {
    Window::new(f, f, stride, stride, Padding::Valid)
}

fn positive(name: &str, v: usize) -> PyResult<usize> {
    if v == 0 {
        return Err(PyValueError::new_err(format!("{name} must be at least 1, got 0")));
    }
    Ok(v)
}

/// Z = conv(A_prev, W) + b: A_prev (m, n_H_prev, n_W_prev, n_C_prev), W (f, f, n_C_prev, n_C),
/// b (n_C,) -> Z (m, n_H, n_W, n_C).
#[pyfunction(name = "conv2d_forward")]
fn conv2d_forward_native<'py>(
    py: Python<'py>,
    a_prev: PyReadonlyArrayDyn<'py, f32>,
    w: PyReadonlyArrayDyn<'py, f32>,
    b: PyReadonlyArrayDyn<'py, f32>,
    stride: usize,
    pad: usize,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (x, w, b) = (tensor_of_rank(&a_prev, "A_prev", 4)?, tensor_of_rank(&w, "W", 4)?, tensor_of_rank(&b, "b", 1)?);
    let window = conv_window(&w, positive("stride", stride)?, pad);
    let z = py.detach(move || conv2d_forward(&x, &w, &b, &window, false)).py()?;
    Ok(numpy(py, z))
}

/// (dA_prev, dW, db) of a convolution, db as (1, 1, 1, n_C).
#[pyfunction(name = "conv2d_backward")]
fn conv2d_backward_native<'py>(
    py: Python<'py>,
    dz: PyReadonlyArrayDyn<'py, f32>,
    a_prev: PyReadonlyArrayDyn<'py, f32>,
    w: PyReadonlyArrayDyn<'py, f32>,
    stride: usize,
    pad: usize,
) -> PyResult<(Array<'py>, Array<'py>, Array<'py>)> {
    let (dz, x, w) = (tensor_of_rank(&dz, "dZ", 4)?, tensor_of_rank(&a_prev, "A_prev", 4)?, tensor_of_rank(&w, "W", 4)?);
    let window = conv_window(&w, positive("stride", stride)?, pad);
    let grads = py.detach(move || conv2d_backward(&x, &w, &dz, &window)).py()?;
    let c_out = grads.d_bias.len();
    Ok((numpy(py, grads.d_input), numpy(py, grads.d_weight), numpy_shaped(py, grads.d_bias, &[1, 1, 1, c_out])))
}

/// Max or average pooling, f x f at `stride`, no padding.
#[pyfunction(name = "pool_forward")]
fn pool_forward_native<'py>(
    py: Python<'py>,
    a_prev: PyReadonlyArrayDyn<'py, f32>,
    f: usize,
    stride: usize,
    max: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let x = tensor_of_rank(&a_prev, "A_prev", 4)?;
    let window = pool_window(positive("f", f)?, positive("stride", stride)?);
    let a = py.detach(move || if max { max_pool2d_forward(&x, &window).map(|(y, _)| y) } else { avg_pool2d_forward(&x, &window) }).py()?;
    Ok(numpy(py, a))
}

/// dA_prev of a pooling: for max, the gradient goes to the first maximum of each window (the
/// forward pass is recomputed to find it); for average, spread evenly over the window.
#[pyfunction(name = "pool_backward")]
fn pool_backward_native<'py>(
    py: Python<'py>,
    da: PyReadonlyArrayDyn<'py, f32>,
    a_prev: PyReadonlyArrayDyn<'py, f32>,
    f: usize,
    stride: usize,
    max: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (dy, x) = (tensor_of_rank(&da, "dA", 4)?, tensor_of_rank(&a_prev, "A_prev", 4)?);
    let window = pool_window(positive("f", f)?, positive("stride", stride)?);
    let dx = py
        .detach(move || {
            if max {
                let (y, argmax) = max_pool2d_forward(&x, &window)?;
                check_same_shape("dA", dy.shape(), y.shape())?;
                max_pool2d_backward(&dy, &argmax, x.shape(), &window)
            } else {
                avg_pool2d_backward(&dy, x.shape(), &window)
            }
        })
        .py()?;
    Ok(numpy(py, dx))
}

fn check_same_shape(name: &str, got: &[usize], expected: &[usize]) -> convnet::Result<()> {
    if got != expected {
        return Err(convnet::Error::shape(name, format!("{expected:?} (the forward output's shape)"), format!("{got:?}")));
    }
    Ok(())
}

fn activation(name: &str) -> PyResult<Activation> {
    match name {
        "relu" => Ok(Activation::Relu),
        "sigmoid" => Ok(Activation::Sigmoid),
        "tanh" => Ok(Activation::Tanh),
        other => Err(PyValueError::new_err(format!("unknown activation {other:?}: expected \"relu\", \"sigmoid\" or \"tanh\""))),
    }
}

/// A = g(Z) elementwise.
#[pyfunction(name = "activation_forward")]
fn activation_forward_native<'py>(py: Python<'py>, name: &str, z: PyReadonlyArrayDyn<'py, f32>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let act = activation(name)?;
    let mut a = tensor(&z, "Z")?;
    py.detach(|| act.forward(a.data_mut()));
    Ok(numpy(py, a))
}

/// dZ = dA * g'(Z), from the cached Z.
#[pyfunction(name = "activation_backward")]
fn activation_backward_native<'py>(
    py: Python<'py>,
    name: &str,
    da: PyReadonlyArrayDyn<'py, f32>,
    z: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let act = activation(name)?;
    let (mut dz, mut a) = (tensor(&da, "dA")?, tensor(&z, "Z")?);
    if dz.shape() != a.shape() {
        return Err(PyValueError::new_err(format!("dA has shape {:?} but the cached Z has shape {:?}", dz.shape(), a.shape())));
    }
    py.detach(|| {
        act.forward(a.data_mut());
        act.backward(a.data(), dz.data_mut());
    });
    Ok(numpy(py, dz))
}

fn lrn_params(depth_radius: usize, bias: f32, alpha: f32, beta: f32) -> PyResult<LrnParams> {
    let p = LrnParams { depth_radius, bias, alpha, beta };
    p.check().map_err(PyValueError::new_err)?;
    Ok(p)
}

/// Local response normalisation across channels (TensorFlow's definition).
#[pyfunction(name = "lrn_forward")]
fn lrn_forward_native<'py>(
    py: Python<'py>,
    a: PyReadonlyArrayDyn<'py, f32>,
    depth_radius: usize,
    bias: f32,
    alpha: f32,
    beta: f32,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (x, p) = (tensor_of_rank(&a, "A", 4)?, lrn_params(depth_radius, bias, alpha, beta)?);
    let (y, _) = py.detach(move || lrn_forward(&x, &p)).py()?;
    Ok(numpy(py, y))
}

/// dA of a local response normalisation, the forward pass recomputed from the cached A.
#[pyfunction(name = "lrn_backward")]
fn lrn_backward_native<'py>(
    py: Python<'py>,
    db: PyReadonlyArrayDyn<'py, f32>,
    a: PyReadonlyArrayDyn<'py, f32>,
    depth_radius: usize,
    bias: f32,
    alpha: f32,
    beta: f32,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (dy, x, p) = (tensor_of_rank(&db, "dB", 4)?, tensor_of_rank(&a, "A", 4)?, lrn_params(depth_radius, bias, alpha, beta)?);
    let dx = py
        .detach(move || {
            let (y, scale) = lrn_forward(&x, &p)?;
            check_same_shape("dB", dy.shape(), y.shape())?;
            lrn_backward(&x, &y, &scale, &dy, &p)
        })
        .py()?;
    Ok(numpy(py, dx))
}

/// Row-wise softmax of logits (m, n_classes).
#[pyfunction(name = "softmax")]
fn softmax_native<'py>(py: Python<'py>, logits: PyReadonlyArrayDyn<'py, f32>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let z = tensor_of_rank(&logits, "logits", 2)?;
    Ok(numpy(py, py.detach(move || softmax(&z)).py()?))
}

/// (mean cross-entropy, d loss / d logits) for logits (m, n_classes) and class indices (m,).
#[pyfunction(name = "softmax_cross_entropy")]
fn softmax_cross_entropy_native<'py>(
    py: Python<'py>,
    logits: PyReadonlyArrayDyn<'py, f32>,
    labels: Vec<usize>,
) -> PyResult<(f32, Bound<'py, PyArrayDyn<f32>>)> {
    let z = tensor_of_rank(&logits, "logits", 2)?;
    let (loss, grad) = py.detach(move || softmax_cross_entropy(&z, &labels)).py()?;
    Ok((loss, numpy(py, grad)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv2d_forward_native, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_backward_native, m)?)?;
    m.add_function(wrap_pyfunction!(pool_forward_native, m)?)?;
    m.add_function(wrap_pyfunction!(pool_backward_native, m)?)?;
    m.add_function(wrap_pyfunction!(activation_forward_native, m)?)?;
    m.add_function(wrap_pyfunction!(activation_backward_native, m)?)?;
    m.add_function(wrap_pyfunction!(lrn_forward_native, m)?)?;
    m.add_function(wrap_pyfunction!(lrn_backward_native, m)?)?;
    m.add_function(wrap_pyfunction!(softmax_native, m)?)?;
    m.add_function(wrap_pyfunction!(softmax_cross_entropy_native, m)?)?;
    Ok(())
}
