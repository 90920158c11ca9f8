//! `convnet._convnet`: the engine's ops, models and training for Python. The public API, with the
//! tutorial's signatures (hparameters dicts, caches), is the pure-Python package in
//! python/convnet, which checks arguments and calls these functions with contiguous float32
//! arrays. Every function here copies its inputs into the engine's tensors while holding the
//! GIL, releases the GIL for the computation, and hands its outputs to NumPy without a copy.

use pyo3::prelude::*;

mod arrays;
mod data;
mod errors;
mod functions;
mod model;
mod training;

#[pymodule]
fn _convnet(m: &Bound<'_, PyModule>) -> PyResult<()> {
    functions::register(m)?;
    data::register(m)?;
    model::register(m)?;
    training::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
