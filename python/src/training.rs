//! `convnet.train`: convnet's training loop (the one `convnet train` runs) from Python.
//!
//! The run goes on a thread of its own with the GIL released, while the calling thread wakes
//! every 50 ms to let Python handle signals: Ctrl-C raises KeyboardInterrupt there, which sets
//! the run's stop flag; the run ends after the step in progress with last.safetensors holding
//! its exact position (resumable with `resume=True`), and the KeyboardInterrupt is re-raised.
//! A second Ctrl-C while the run is ending is noted and otherwise ignored (the run ends within a
//! step). After every epoch the run folder's curves.png and curves.svg are redrawn, as by the
//! command. The `on_epoch` callback runs on the calling thread, while the training thread waits
//! for it; an exception it raises ends the run (the epoch's checkpoint is already written) and
//! is re-raised.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use convnet::train::{train, EpochMetrics, ExistingRun, TrainOptions, TrainReport};
use convnet::viz::write_curves_for;
use convnet::Config;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py;

/// How often the calling thread checks for Ctrl-C while the run goes on.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

fn metrics_dict<'py>(py: Python<'py>, m: &EpochMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", m.epoch)?;
    d.set_item("train_loss", m.train_loss)?;
    d.set_item("train_accuracy", m.train_accuracy)?;
    d.set_item("val_loss", m.val_loss)?;
    d.set_item("val_accuracy", m.val_accuracy)?;
    d.set_item("test_loss", m.test_loss)?;
    d.set_item("test_accuracy", m.test_accuracy)?;
    d.set_item("lr", m.lr)?;
    d.set_item("seconds", m.seconds)?;
    d.set_item("images_per_second", m.images_per_second)?;
    Ok(d)
}

fn report_dict<'py>(py: Python<'py>, report: &TrainReport, out: &std::path::Path) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let epochs = report.epochs.iter().map(|m| metrics_dict(py, m)).collect::<PyResult<Vec<_>>>()?;
    d.set_item("epochs", epochs)?;
    d.set_item("test_loss", report.final_test.as_ref().map(|t| t.loss))?;
    d.set_item("test_accuracy", report.final_test.as_ref().map(|t| t.accuracy))?;
    d.set_item("class_names", report.class_names.clone())?;
    d.set_item("stopped", report.stopped.map(|s| s.to_string()))?;
    d.set_item("run_dir", out.to_path_buf())?;
    d.set_item("checkpoint", out.join("last.safetensors"))?;
    Ok(d)
}

/// Trains the model of the config file `config` (see `convnet.train` for the arguments).
#[pyfunction(name = "train")]
#[pyo3(signature = (config, data=None, epochs=None, out=None, on_epoch=None, resume=false, overwrite=false, init_from=None, verbose=true))]
#[allow(clippy::too_many_arguments)]
fn train_native<'py>(
    py: Python<'py>,
    config: PathBuf,
    data: Option<PathBuf>,
    epochs: Option<usize>,
    out: Option<PathBuf>,
    on_epoch: Option<Py<PyAny>>,
    resume: bool,
    overwrite: bool,
    init_from: Option<PathBuf>,
    verbose: bool,
) -> PyResult<Bound<'py, PyDict>> {
    if resume && overwrite {
        return Err(PyValueError::new_err(
            "resume and overwrite exclude each other: resume continues the run in `out`, overwrite replaces it",
        ));
    }
    let mut cfg = Config::load(&config).map_err(to_py)?;
    if let Some(epochs) = epochs {
        if epochs == 0 {
            return Err(PyValueError::new_err("epochs must be at least 1, got 0"));
        }
        cfg.run.train.epochs = epochs;
    }
    let out_dir = out.unwrap_or_else(|| PathBuf::from("runs").join(&cfg.model.name));
    let stop = Arc::new(AtomicBool::new(false));
    let mut opts = TrainOptions::new(cfg, &out_dir);
    opts.data_dir = data;
    opts.verbose = verbose;
    opts.stop = Some(stop.clone());
    opts.init_from = init_from;
    opts.existing = match (resume, overwrite) {
        (true, _) => ExistingRun::Resume,
        (_, true) => ExistingRun::Overwrite,
        _ => ExistingRun::Refuse,
    };

    // The hook on the training thread hands each epoch's metrics to the calling thread (which
    // holds the GIL between its sleeps) and waits for the callback's verdict: the callback then
    // runs on the caller's thread, where Python code expects to run (signal handlers, GUI
    // toolkits, asyncio), and a Ctrl-C inside it is an ordinary exception of the callback.
    let (metrics_tx, metrics_rx) = mpsc::channel::<EpochMetrics>();
    // Behind a lock only because waiting on it with the GIL released needs it shared (Sync).
    let metrics_rx = Mutex::new(metrics_rx);
    let (verdict_tx, verdict_rx) = mpsc::channel::<bool>();
    let wants_callback = on_epoch.is_some();
    let (curves_png, curves_svg) = (out_dir.join("curves.png"), out_dir.join("curves.svg"));
    let label = opts.config.model.name.clone();
    let mut hook = move |history: &[EpochMetrics]| -> convnet::Result<()> {
        // The curves, redrawn after every epoch as `convnet train` does; a picture that cannot be
        // drawn does not stop training.
        if let Err(e) = write_curves_for(&[(label.clone(), history.to_vec())], &curves_png, Some(&curves_svg)) {
            eprintln!("warning: could not draw the training curves: {e}");
        }
        let Some(last) = history.last().filter(|_| wants_callback) else { return Ok(()) };
        // The calling thread is alive until this thread ends, so neither channel is closed here.
        let answered = metrics_tx.send(last.clone()).is_ok() && verdict_rx.recv().unwrap_or(false);
        if answered {
            Ok(())
        } else {
            Err(convnet::Error::invalid("train", "the on_epoch callback raised an exception"))
        }
    };

    let mut interrupt: Option<PyErr> = None;
    let mut callback_error: Option<PyErr> = None;
    let result = std::thread::scope(|scope| {
        let run = std::thread::Builder::new()
            .name("convnet-train".into())
            .spawn_scoped(scope, || train(&opts, &mut hook))
            .map_err(|e| PyErr::new::<pyo3::exceptions::PyRuntimeError, _>(format!("cannot start the training thread: {e}")))?;
        while !run.is_finished() {
            let metrics = py.detach(|| metrics_rx.lock().ok()?.recv_timeout(SIGNAL_POLL).ok());
            if let (Some(metrics), Some(callback)) = (metrics, on_epoch.as_ref()) {
                let outcome = metrics_dict(py, &metrics).and_then(|d| callback.call1(py, (d,)));
                if let Err(e) = &outcome {
                    callback_error = Some(e.clone_ref(py));
                }
                // The training thread waits for this answer; it ends if the receiver is gone.
                let _ = verdict_tx.send(outcome.is_ok());
            }
            if let Err(e) = py.check_signals() {
                if interrupt.is_none() {
                    stop.store(true, Ordering::SeqCst);
                    interrupt = Some(e);
                } else if verbose {
                    // A second Ctrl-C: the run is already ending after the step in progress.
                    eprintln!("already stopping after the step in progress (last.safetensors keeps its position)");
                }
            }
        }
        run.join()
            .map_err(|_| PyErr::new::<pyo3::exceptions::PyRuntimeError, _>("the training thread panicked (a convnet bug: please report)"))
    })?;
    if let Some(e) = callback_error {
        return Err(e);
    }
    let report = result.map_err(to_py)?;
    if let Some(e) = interrupt {
        if verbose {
            if let Some(at) = report.stopped {
                eprintln!("{at}; {} holds the position: train(..., resume=True) continues", out_dir.join("last.safetensors").display());
            }
        }
        return Err(e);
    }
    report_dict(py, &report, &out_dir)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train_native, m)?)
}
