//! `convnet.Model`: a network with its config, class names and input normalisation, built from
//! a config file, loaded from a checkpoint or imported from ONNX; predicts, saves, exports.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use convnet::data::Normalization;
use convnet::interop::onnx::{export_onnx, import_onnx};
use convnet::interop::pytorch::export_pytorch;
use convnet::model::summary::summary;
use convnet::model::Network;
use convnet::ops::softmax::softmax;
use convnet::train::{checkpoint_bytes, Checkpoint, CheckpointMeta, RunRecord};
use convnet::{Config, Tensor};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArray4, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::numpy;
use crate::errors::OrPyErr;

/// Images per forward pass in `predict`: bounds the activations' memory for a large array.
const PREDICT_BATCH: usize = 256;

/// A batch of images (m, h, w, c): uint8 pixels, or floats on the [0, 1] scale.
#[derive(FromPyObject)]
pub enum Images<'py> {
    Uint8(PyReadonlyArray4<'py, u8>),
    Float(PyReadonlyArray4<'py, f32>),
}

#[pyclass(name = "Model", module = "convnet._convnet")]
pub struct PyModel {
    /// Behind a lock because a Python object may be shared between threads (PyO3 needs the
    /// class to be Sync); a forward pass needs the network mutably (its buffers).
    net: Mutex<Network>,
    config: Config,
    /// Behind a lock so that `class_names` can be set through a shared reference.
    meta: Mutex<CheckpointMeta>,
    /// Fixed at construction: the number of parameters, read without waiting for the network.
    num_params: usize,
}

/// The metadata of a model that has not been trained: classes "0", "1", ..., and the identity
/// normalisation on the [0, 1] scale (mean 0, std 1).
fn untrained_meta(net: &Network, seed: u64) -> CheckpointMeta {
    let channels = net.spec().input[2];
    CheckpointMeta {
        class_names: (0..net.num_classes()).map(|i| i.to_string()).collect(),
        normalization: Normalization { mean: vec![0.0; channels], std: vec![1.0; channels] },
        epoch: 0,
        optimizer_step: 0,
        seed,
        best_val_accuracy: -1.0,
    }
}

impl PyModel {
    pub fn from_checkpoint(ck: &Checkpoint) -> convnet::Result<PyModel> {
        Ok(PyModel::new(ck.network()?, ck.config.clone(), ck.meta.clone()))
    }

    fn new(net: Network, config: Config, meta: CheckpointMeta) -> PyModel {
        PyModel { num_params: net.num_params(), net: Mutex::new(net), config, meta: Mutex::new(meta) }
    }

    fn meta(&self) -> MutexGuard<'_, CheckpointMeta> {
        self.meta.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The network; a panic in an earlier call (a convnet bug) does not make it unusable.
    fn net(&self) -> MutexGuard<'_, Network> {
        self.net.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The model as checkpoint bytes (`path` names the file in errors).
    fn bytes(&self, path: &Path) -> convnet::Result<Vec<u8>> {
        checkpoint_bytes(path, &self.net(), &self.config.run, None, &self.meta(), RunRecord::default())
    }

    /// The model as a checkpoint in memory (`path` names it in errors), for the exporters.
    fn checkpoint(&self, path: &Path) -> convnet::Result<Checkpoint> {
        Checkpoint::from_bytes(&self.bytes(path)?, path)
    }

    /// Checks a batch of images against the model's input: (m, h, w, c) with the model's own
    /// (h, w, c).
    fn check_images(&self, shape: &[usize]) -> PyResult<()> {
        let input = self.config.model.input;
        if shape.len() != 4 || shape[1..] != input {
            return Err(PyValueError::new_err(format!(
                "images must have shape (m, {}, {}, {}) for model {:?}, got {shape:?}",
                input[0], input[1], input[2], self.config.model.name
            )));
        }
        Ok(())
    }

    /// The images checked against the model's input and normalised as in training: uint8 by
    /// the normalisation's own table (as training batches are made), floats on the [0, 1]
    /// scale by the same formula. Returns the values and the number of images.
    fn normalized(&self, images: &Images<'_>) -> PyResult<(Vec<f32>, usize)> {
        let shape = match images {
            Images::Uint8(a) => a.shape(),
            Images::Float(a) => a.shape(),
        };
        self.check_images(shape)?;
        let m = shape[0];
        let norm = self.meta().normalization.clone();
        let x = match images {
            Images::Uint8(a) => {
                let copied;
                let pixels = match a.as_slice() {
                    Ok(contiguous) => contiguous,
                    Err(_) => {
                        copied = a.as_array().iter().copied().collect::<Vec<u8>>();
                        &copied
                    }
                };
                let mut x = vec![0.0; pixels.len()];
                norm.apply(pixels, &mut x);
                x
            }
            Images::Float(a) => {
                let Normalization { mean, std } = &norm;
                let c = mean.len();
                a.as_array().iter().enumerate().map(|(i, &v)| (v - mean[i % c]) / std[i % c]).collect()
            }
        };
        Ok((x, m))
    }

    /// Logits or probabilities of normalised images, PREDICT_BATCH at a time, GIL released.
    fn run(&self, py: Python<'_>, x: Vec<f32>, m: usize, probabilities: bool) -> PyResult<Tensor> {
        let [h, w, c] = self.config.model.input;
        let per = h * w * c;
        py.detach(|| {
            let mut net = self.net();
            let mut rows = Vec::with_capacity(m * net.num_classes());
            for start in (0..m).step_by(PREDICT_BATCH) {
                let count = PREDICT_BATCH.min(m - start);
                let batch = Tensor::from_vec(&[count, h, w, c], x[start * per..(start + count) * per].to_vec())?;
                let logits = net.predict(&batch)?;
                let out = if probabilities { softmax(&logits)? } else { logits };
                rows.extend_from_slice(out.data());
            }
            Tensor::from_vec(&[m, net.num_classes()], rows)
        })
        .py()
    }
}

#[pymethods]
impl PyModel {
    /// A freshly initialised model from a config file (weights from the config's seed).
    #[staticmethod]
    fn from_config(py: Python<'_>, path: PathBuf) -> PyResult<PyModel> {
        let config = Config::load(&path).py()?;
        let seed = config.run.train.seed;
        let net = py.detach(|| Network::build(&config.model, seed)).py()?;
        let meta = untrained_meta(&net, seed);
        Ok(PyModel::new(net, config, meta))
    }

    /// A model from a checkpoint written by `convnet train` or `Model.save`.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<PyModel> {
        py.detach(|| Checkpoint::load(&path).and_then(|ck| PyModel::from_checkpoint(&ck))).py()
    }

    /// A model from an ONNX file (what `convnet import` reads), with its notes.
    #[staticmethod]
    #[pyo3(signature = (path, class_names=None))]
    fn import_onnx(py: Python<'_>, path: PathBuf, class_names: Option<Vec<String>>) -> PyResult<(PyModel, Vec<String>)> {
        py.detach(|| {
            let bytes = std::fs::read(&path).map_err(|e| convnet::Error::io(&path, e))?;
            let imported = import_onnx(&bytes, &path)?;
            let net = imported.network(&path)?;
            let classes = net.num_classes();
            let names = class_names.or_else(|| Some(imported.class_names.clone()).filter(|n| !n.is_empty()));
            let names = names.unwrap_or_else(|| (0..classes).map(|i| i.to_string()).collect());
            if names.len() != classes {
                return Err(convnet::Error::data(
                    &path,
                    format!("the model outputs {classes} classes but {} class names were given", names.len()),
                ));
            }
            let meta = CheckpointMeta { class_names: names, normalization: imported.normalization.clone(), ..untrained_meta(&net, 0) };
            let config = Config { model: imported.model.clone(), run: imported.run.clone() };
            Ok((PyModel::new(net, config, meta), imported.notes))
        })
        .py()
    }

    /// Probabilities (or logits) of images (m, h, w, c), uint8 or float32 on the [0, 1] scale,
    /// normalised as in training.
    #[pyo3(signature = (images, logits=false))]
    fn predict<'py>(&self, py: Python<'py>, images: Images<'py>, logits: bool) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (x, m) = self.normalized(&images)?;
        let out = self.run(py, x, m, !logits)?;
        Ok(numpy(py, out))
    }

    /// Every layer's output for images (as `predict` takes them): [(label, activations)], the
    /// last the logits.
    fn activations<'py>(&self, py: Python<'py>, images: Images<'py>) -> PyResult<Vec<(String, Bound<'py, PyArrayDyn<f32>>)>> {
        let (x, m) = self.normalized(&images)?;
        if m == 0 {
            return Err(PyValueError::new_err("images is an empty batch: activations needs at least one image"));
        }
        let [h, w, c] = self.config.model.input;
        let x = Tensor::from_vec(&[m, h, w, c], x).py()?;
        let trace = py.detach(|| self.net().forward_trace(&x)).py()?;
        Ok(trace.into_iter().map(|(label, t)| (label, numpy(py, t))).collect())
    }

    /// A Keras-style table: layer, output shape, parameters, MFLOPs per image.
    fn summary(&self, py: Python<'_>) -> String {
        py.detach(|| summary(&self.net()))
    }

    /// Writes the model as a checkpoint (safetensors), atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| convnet::fs::write_atomically(&path, &self.bytes(&path)?)).py()
    }

    /// Writes the model as ONNX (what `convnet export --format onnx` writes).
    fn export_onnx(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| {
            let bytes = export_onnx(&self.checkpoint(&path)?)?;
            convnet::fs::write_atomically(&path, &bytes)
        })
        .py()
    }

    /// Writes a PyTorch module (model.py and its state_dict model.safetensors) into a folder.
    fn export_pytorch(&self, py: Python<'_>, dir: PathBuf) -> PyResult<()> {
        py.detach(|| export_pytorch(&self.checkpoint(&dir.join("model.safetensors"))?, &dir)).py()
    }

    /// A copy of every parameter, by name: {"0.conv2d.weight": array, ...}.
    fn parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        let copies: Vec<(String, Vec<usize>, Vec<f32>)> =
            py.detach(|| self.net().params().iter().map(|p| (p.name.clone(), p.value.shape().to_vec(), p.value.data().to_vec())).collect());
        for (name, shape, values) in copies {
            let array = ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| PyValueError::new_err(format!("{name}: {e}")))?;
            dict.set_item(&name, array.into_pyarray(py))?;
        }
        Ok(dict)
    }

    #[getter]
    fn name(&self) -> String {
        self.config.model.name.clone()
    }

    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let [h, w, c] = self.config.model.input;
        (h, w, c)
    }

    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.meta().class_names.clone()
    }

    #[setter]
    fn set_class_names(&self, names: Vec<String>) -> PyResult<()> {
        let classes = self.meta().class_names.len();
        if names.len() != classes {
            return Err(PyValueError::new_err(format!("the model outputs {classes} classes, got {} class names", names.len())));
        }
        self.meta().class_names = names;
        Ok(())
    }

    #[getter]
    fn num_params(&self) -> usize {
        self.num_params
    }

    /// (mean, std) per channel on the [0, 1] scale: how images are normalised before the
    /// first layer.
    #[getter]
    fn normalization(&self) -> (Vec<f32>, Vec<f32>) {
        let meta = self.meta();
        (meta.normalization.mean.clone(), meta.normalization.std.clone())
    }

    /// The config as TOML text (the model and its run settings).
    fn config_toml(&self) -> String {
        self.config.to_toml()
    }

    fn __repr__(&self) -> String {
        let [h, w, c] = self.config.model.input;
        format!(
            "<convnet.Model {:?}: input ({h}, {w}, {c}), {} classes, {} parameters>",
            self.config.model.name,
            self.meta().class_names.len(),
            self.num_params()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()
}
