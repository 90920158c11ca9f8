//! Models in and out of convnet: ONNX export and import over a hand-written protobuf codec, and
//! PyTorch export (a state_dict and a model.py).

pub mod layout;
pub mod onnx;
pub mod protobuf;
pub mod pytorch;
