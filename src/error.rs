//! The library's error type. Every message names the op, layer, file or value at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was asked for something impossible: stride 0, a kernel larger than the padded input,
    /// a channel mismatch. `op` names the op, `detail` the shapes and the parameter.
    #[error("{op}: {detail}")]
    InvalidConfig { op: String, detail: String },

    /// Two shapes that must agree do not.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    Shape { op: String, expected: String, got: String },

    /// A model config that cannot be built (unknown layer, bad value, shapes that do not fit).
    #[error("config {file}: {detail}")]
    Config { file: String, detail: String },

    /// A data file that cannot be read or is malformed.
    #[error("{}: {detail}", path.display())]
    Data { path: PathBuf, detail: String },

    /// A checkpoint that cannot be read or does not match.
    #[error("checkpoint {}: {detail}", path.display())]
    Checkpoint { path: PathBuf, detail: String },

    /// Training diverged (NaN or infinite loss).
    #[error("{0}")]
    Diverged(String),

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub fn invalid(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::InvalidConfig { op: op.into(), detail: detail.into() }
    }
    pub fn shape(op: impl Into<String>, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Error::Shape { op: op.into(), expected: expected.into(), got: got.into() }
    }
    pub fn data(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Data { path: path.into(), detail: detail.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// User errors (bad file, bad config, bad argument) exit with code 2; others with 1.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Diverged(_))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
