//! ONNX: the message subset ([`proto`]), the exporter ([`export`]), the importer ([`import`]).

pub mod export;
pub mod import;
pub mod proto;

pub use export::{export_onnx, onnx_model};
pub use import::{import_onnx, Imported};
