//! Data in and pictures out: convnet's readers for images and data sets, and its grid-of-tiles
//! PNG writer, so that the tutorial's scripts need nothing beyond NumPy.

use std::path::PathBuf;

use convnet::data::{load_cifar10_dir, load_idx_dir, read_image, Dataset, FASHION_MNIST_CLASSES};
use convnet::viz::grid::{write_grid_png, GridImage, GridSection, Tile};
use numpy::ndarray::{Array1, Array4, ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArray1, PyArray4, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::OrPyErr;

/// An image file (PNG or JPEG) as uint8 (height, width, channels); resized to `size`
/// (height, width) when given, converted to 1 (grey) or 3 (RGB) channels.
#[pyfunction(name = "read_image")]
#[pyo3(signature = (path, size=None, channels=3))]
fn read_image_native<'py>(
    py: Python<'py>,
    path: PathBuf,
    size: Option<(usize, usize)>,
    channels: usize,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let img = py.detach(|| read_image(&path, size, channels)).py()?;
    let array = ArrayD::from_shape_vec(IxDyn(&[img.height, img.width, img.channels]), img.pixels)
        .map_err(|e| PyValueError::new_err(format!("{}: {e}", path.display())))?;
    Ok(array.into_pyarray(py))
}

type Split<'py> = (Bound<'py, PyArray4<u8>>, Bound<'py, PyArray1<i64>>);

fn split<'py>(py: Python<'py>, ds: Dataset) -> PyResult<Split<'py>> {
    let labels: Vec<i64> = ds.labels.iter().map(|&l| i64::from(l)).collect();
    let images = Array4::from_shape_vec((ds.len(), ds.height, ds.width, ds.channels), ds.images)
        .map_err(|e| PyValueError::new_err(format!("data set of inconsistent size: {e}")))?;
    Ok((images.into_pyarray(py), Array1::from_vec(labels).into_pyarray(py)))
}

/// ((train images, train labels), (test images, test labels), class names) of CIFAR-10
/// (binary version), Fashion-MNIST or MNIST (IDX files) in `path`: images uint8 NHWC, labels
/// int64.
#[pyfunction(name = "load_dataset")]
fn load_dataset_native<'py>(py: Python<'py>, kind: &str, path: PathBuf) -> PyResult<(Split<'py>, Split<'py>, Vec<String>)> {
    let (train, test) = py
        .detach(|| match kind {
            "cifar10" => load_cifar10_dir(&path),
            "fashion-mnist" => load_idx_dir(&path, FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect()),
            "mnist" => load_idx_dir(&path, (0..10).map(|d| d.to_string()).collect()),
            other => Err(convnet::Error::invalid(
                "load_dataset",
                format!("unknown data set {other:?}: expected \"cifar10\", \"fashion-mnist\" or \"mnist\""),
            )),
        })
        .py()?;
    let names = train.class_names.clone();
    Ok((split(py, train)?, split(py, test)?, names))
}

/// Writes a PNG of labelled tiles (uint8 (h, w) grey or (h, w, 3) RGB arrays) under a title.
#[pyfunction(name = "save_grid")]
#[pyo3(signature = (path, tiles, title, columns, scale, notes=Vec::new()))]
fn save_grid_native(
    py: Python<'_>,
    path: PathBuf,
    tiles: Vec<(PyReadonlyArrayDyn<'_, u8>, String)>,
    title: String,
    columns: usize,
    scale: usize,
    notes: Vec<String>,
) -> PyResult<()> {
    let mut converted = Vec::with_capacity(tiles.len());
    for (i, (array, label)) in tiles.iter().enumerate() {
        let (h, w, c) = match *array.shape() {
            [h, w] => (h, w, 1),
            [h, w, c] => (h, w, c),
            ref other => {
                return Err(PyValueError::new_err(format!("tile {i} ({label:?}) must be (h, w) or (h, w, c), got shape {other:?}")));
            }
        };
        let pixels: Vec<u8> = array.as_array().iter().copied().collect();
        converted.push(Tile::new(w, h, c, pixels, label.clone()).map_err(|e| PyValueError::new_err(format!("tile {i}: {e}")))?);
    }
    let grid = GridImage {
        title,
        notes,
        sections: vec![GridSection { heading: String::new(), tiles: converted, scale: scale.max(1), columns }],
        max_width: 1600,
    };
    py.detach(|| write_grid_png(&grid, &path)).py()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_image_native, m)?)?;
    m.add_function(wrap_pyfunction!(load_dataset_native, m)?)?;
    m.add_function(wrap_pyfunction!(save_grid_native, m)?)?;
    Ok(())
}
