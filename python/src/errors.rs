//! convnet's errors as Python exceptions: a bad value or shape is a ValueError, a missing file a
//! FileNotFoundError, another I/O failure an OSError, a diverged run a FloatingPointError. The
//! message is convnet's own, which names the file, layer or value at fault.

use pyo3::exceptions::{PyFileNotFoundError, PyFloatingPointError, PyOSError, PyValueError};
use pyo3::PyErr;

pub fn to_py(e: convnet::Error) -> PyErr {
    let message = e.to_string();
    match e {
        convnet::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        convnet::Error::Io { .. } => PyOSError::new_err(message),
        convnet::Error::Diverged(_) => PyFloatingPointError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// `Result<T, convnet::Error>` into a `PyResult<T>`.
pub trait OrPyErr<T> {
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> OrPyErr<T> for convnet::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}
