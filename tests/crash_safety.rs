//! Crash safety: `convnet train` killed with SIGKILL at several moments (while last.safetensors,
//! best.safetensors or metrics.csv is being written, and after random delays), then resumed
//! with `--resume` each time until the run completes, ends with exactly the weights, optimiser
//! state and metrics (less the timing columns) of a run never interrupted. After every kill
//! the files in the run folder must be whole: a checkpoint that loads and a metrics.csv that
//! parses, or none yet.
//!
//! The test hook CONVNET_TEST_SLOW_CHECKPOINT_MS makes every atomic write pause between
//! writing its temporary file and renaming it, so that a kill can be aimed inside the write.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use convnet::fs::SLOW_WRITE_ENV;
use convnet::train::metrics::read_metrics;
use convnet::train::Checkpoint;
use convnet::Tensor;
use rand::Rng;

const EPOCHS: usize = 5;
/// How long each atomic write pauses before its rename in the interrupted runs.
const SLOW_MS: &str = "150";

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `convnet train` on `cfg` into `out`, resuming when `out` holds a checkpoint.
fn spawn_train(cfg: &Path, out: &Path, slow: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convnet"));
    cmd.args(["train", "--config", s(cfg), "--out", s(out), "--seed", "5", "--threads", "2", "--quiet"]);
    if out.join("last.safetensors").exists() {
        cmd.arg("--resume");
    }
    if slow {
        cmd.env(SLOW_WRITE_ENV, SLOW_MS);
    } else {
        cmd.env_remove(SLOW_WRITE_ENV);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start convnet train")
}

/// The temporary file of an atomic write of `name` in `dir` by any process, if one is there.
fn temp_file_of(dir: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!(".{name}.tmp-");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
}

/// The temporary file of an atomic write of `name` by process `pid` (see `write_atomically`).
fn temp_file_of_pid(dir: &Path, name: &str, pid: u32) -> PathBuf {
    dir.join(format!(".{name}.tmp-{pid}"))
}

/// When to kill a run.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// While `name` is being written: its temporary file exists, the rename has not happened.
    DuringWriteOf(&'static str),
    /// After this many milliseconds.
    After(u64),
}

/// Runs one attempt and kills it at `moment`. Returns false if the run finished first.
fn run_and_kill(cfg: &Path, out: &Path, moment: Moment) -> bool {
    let mut child = spawn_train(cfg, out, true);
    let start = Instant::now();
    let deadline = Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                e.read_to_string(&mut err).ok();
            }
            assert!(status.success(), "convnet train failed ({status}) before the kill at {moment:?}: {err}");
            return false;
        }
        let now = match moment {
            Moment::DuringWriteOf(name) => temp_file_of_pid(out, name, child.id()).exists(),
            Moment::After(ms) => start.elapsed() >= Duration::from_millis(ms),
        };
        if now {
            break;
        }
        assert!(start.elapsed() < deadline, "waited a minute for {moment:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = child.id();
    child.kill().expect("SIGKILL convnet train");
    child.wait().expect("reap the child");
    if let Moment::DuringWriteOf(name) = moment {
        // The kill landed between writing the temporary file and the rename: the temporary
        // file is left behind, the real one untouched.
        assert!(temp_file_of_pid(out, name, pid).exists(), "the kill aimed inside the write of {name} came after its rename");
    }
    true
}

/// Whatever a kill left must be whole: the checkpoints load, metrics.csv parses and is not
/// behind the checkpoint by more than the one write that comes after it.
fn check_consistent(out: &Path, after: Moment) {
    let last = out.join("last.safetensors");
    let epoch = if last.exists() {
        let ck = Checkpoint::load(&last).unwrap_or_else(|e| panic!("after a kill at {after:?}: {e}"));
        ck.network().unwrap_or_else(|e| panic!("after a kill at {after:?}: {e}"));
        assert_eq!(ck.history.len(), ck.meta.epoch, "the checkpoint carries its metrics");
        ck.meta.epoch
    } else {
        0
    };
    let best = out.join("best.safetensors");
    if best.exists() {
        Checkpoint::load(&best).unwrap_or_else(|e| panic!("after a kill at {after:?}: {e}")).network().unwrap();
    }
    let csv = out.join("metrics.csv");
    if csv.exists() {
        let rows = read_metrics(&csv).unwrap_or_else(|e| panic!("after a kill at {after:?}: {e}"));
        // metrics.csv is written after last.safetensors: the same epochs or one fewer (or,
        // before the first checkpoint of a fresh start, whatever an earlier attempt left).
        if epoch > 0 {
            assert!(rows.len() == epoch || rows.len() + 1 == epoch, "metrics.csv has {} epochs, the checkpoint {epoch}", rows.len());
        }
    }
}

/// Parameters and optimiser state of a checkpoint.
fn state(path: &Path) -> (Vec<Tensor>, Vec<(String, Vec<f32>)>) {
    let ck = Checkpoint::load(path).unwrap();
    let net = ck.network().unwrap();
    (net.params().iter().map(|p| p.value.clone()).collect(), ck.optimizer_state())
}

/// metrics.csv without the two timing columns (seconds, images/s).
fn metrics_without_timing(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().map(|l| l.split(',').take(8).collect::<Vec<_>>().join(",")).collect()
}

#[test]
fn killed_and_resumed_runs_end_bit_identical_to_an_uninterrupted_one() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 400, 40, 8);
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("tiny.toml");
    std::fs::write(&cfg, tiny_config(data.path(), EPOCHS, "kind = \"adam\"\nlr = 0.01")).unwrap();

    // The reference: one run, never interrupted, no pauses.
    let reference = work.path().join("reference");
    let output = spawn_train(&cfg, &reference, false).wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let out = work.path().join("killed");
    let mut rng = rng(17);
    let mut moments = vec![
        // Inside the very first checkpoints: the run has to start afresh afterwards (best is
        // written first, and only while validation accuracy improves, so it comes early).
        Moment::DuringWriteOf("best.safetensors"),
        Moment::DuringWriteOf("last.safetensors"),
        Moment::After(rng.gen_range(100..600)),
        Moment::DuringWriteOf("metrics.csv"),
        Moment::DuringWriteOf("last.safetensors"),
    ];
    moments.extend((0..3).map(|_| Moment::After(rng.gen_range(50..1500))));
    let mut kills = 0;
    for &moment in &moments {
        if !run_and_kill(&cfg, &out, moment) {
            break; // finished before the kill
        }
        kills += 1;
        check_consistent(&out, moment);
        let epoch = Checkpoint::load(&out.join("last.safetensors")).map_or(0, |ck| ck.meta.epoch);
        let rows = read_metrics(&out.join("metrics.csv")).map_or(0, |r| r.len());
        eprintln!("kill {kills} at {moment:?}: last.safetensors after epoch {epoch}, metrics.csv {rows} epochs");
    }
    assert!(kills >= 5, "only {kills} kills landed before the run finished");

    // Resume until the run completes.
    for attempt in 0.. {
        assert!(attempt < 3, "the run does not complete");
        let output = spawn_train(&cfg, &out, true).wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        if read_metrics(&out.join("metrics.csv")).unwrap().len() == EPOCHS {
            break;
        }
    }

    assert_eq!(state(&out.join("last.safetensors")), state(&reference.join("last.safetensors")), "weights or optimiser state differ");
    assert_eq!(state(&out.join("best.safetensors")).0, state(&reference.join("best.safetensors")).0, "best.safetensors differs");
    assert_eq!(metrics_without_timing(&out), metrics_without_timing(&reference));
    assert_eq!(metrics_without_timing(&out).len(), EPOCHS + 1);
    // The temporary files the kills left behind were cleared by the runs that followed.
    for name in ["last.safetensors", "best.safetensors", "metrics.csv", "config.toml"] {
        assert_eq!(temp_file_of(&out, name), None, "a stale temporary file of {name} is left");
    }
}
