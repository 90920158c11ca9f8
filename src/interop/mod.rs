//! Models in and out of convnet: ONNX export and import, over a hand-written protobuf codec.

pub mod onnx;
pub mod protobuf;
