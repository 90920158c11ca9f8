//! Crash safety: `convnet train` killed with SIGKILL at several moments (while last.safetensors,
//! best.safetensors or metrics.csv is being written, and after random delays), then resumed
//! with `--resume` each time until the run completes, ends with exactly the weights, optimiser
//! state and metrics (less the timing columns) of a run never interrupted. After every kill
//! the files in the run folder must be whole: a checkpoint that loads and a metrics.csv that
//! parses, or none yet.
//!
//! The test hook CONVNET_TEST_WRITE_HANDSHAKE makes every atomic write stop between writing its
//! temporary file and renaming it, say so on stderr and wait for a line on stdin: a kill is
//! aimed inside a write by reading that line, with no clock involved.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, Command, Stdio};
use std::time::Duration;

use common::*;
use convnet::fs::{HANDSHAKE_PREFIX, WRITE_HANDSHAKE_ENV};
use convnet::train::metrics::read_metrics;
use convnet::train::Checkpoint;
use rand::Rng;

const EPOCHS: usize = 5;

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `convnet train` on `cfg` into `out`, resuming when `out` holds a checkpoint (starting afresh
/// otherwise); with
/// `handshake`, every atomic write waits for a line on stdin before its rename.
fn spawn_train(cfg: &Path, out: &Path, handshake: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convnet"));
    cmd.args(["train", "--config", s(cfg), "--out", s(out), "--seed", "5", "--threads", "2", "--quiet"]);
    // A kill inside the first epoch's writes can leave best.safetensors without
    // last.safetensors: nothing to resume, and a run to start afresh over.
    cmd.arg(if out.join("last.safetensors").exists() { "--resume" } else { "--overwrite" });
    if handshake {
        cmd.env(WRITE_HANDSHAKE_ENV, "1").stdin(Stdio::piped());
    } else {
        cmd.env_remove(WRITE_HANDSHAKE_ENV).stdin(Stdio::null());
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
    /// While `name` is being written: its temporary file is written, the rename has not
    /// happened (the process has said so and waits).
    DuringWriteOf(&'static str),
    /// After this many milliseconds, wherever the run is then.
    After(u64),
}

/// A handshake child's stdin and stderr.
type Pipes = (ChildStdin, ChildStderr);

fn pipes(child: &mut Child) -> Pipes {
    (child.stdin.take().expect("a handshake child has a stdin pipe"), child.stderr.take().expect("stderr is piped"))
}

/// Reads the child's stderr line by line: each handshake line is passed to `on_write` with the
/// file's name (it answers on stdin, or returns false to stop reading); other lines are kept.
/// Returns the lines kept and whether the end of stderr (the child's exit) was reached. The
/// pipes stay open with the caller: a child stopped inside a write stays there (closing its
/// stdin would let it go on).
fn follow_stderr(pipes: &mut Pipes, mut on_write: impl FnMut(&str, &mut ChildStdin) -> bool) -> (String, bool) {
    let (stdin, stderr) = pipes;
    let mut other = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("read the child's stderr");
        match line.strip_prefix(HANDSHAKE_PREFIX) {
            Some(name) if !on_write(name, stdin) => return (other, false),
            Some(_) => {}
            None => other.extend([line.as_str(), "\n"]),
        }
    }
    (other, true)
}

/// Lets the write go on.
fn answer(stdin: &mut ChildStdin) {
    // The child may be gone already (a kill from the other thread): nothing to answer then.
    let _ = stdin.write_all(b"\n").and_then(|()| stdin.flush());
}

/// Runs one attempt and kills it at `moment`. Returns false if the run finished first.
fn run_and_kill(cfg: &Path, out: &Path, moment: Moment) -> bool {
    let mut child = spawn_train(cfg, out, true);
    let pid = child.id();
    match moment {
        Moment::DuringWriteOf(target) => {
            let mut pipes = pipes(&mut child);
            let (err, ended) = follow_stderr(&mut pipes, |name, stdin| {
                if name == target {
                    return false; // the child waits inside the write: kill it there
                }
                answer(stdin);
                true
            });
            if ended {
                let status = child.wait().expect("reap the child");
                assert!(status.success(), "convnet train failed ({status}) before the kill at {moment:?}: {err}");
                return false;
            }
            // Killed while it waits inside the write (its stdin still open): the temporary file
            // is left behind, the real one untouched.
            child.kill().expect("SIGKILL convnet train");
            child.wait().expect("reap the child");
            drop(pipes);
            assert!(temp_file_of_pid(out, target, pid).exists(), "the kill aimed inside the write of {target} came after its rename");
            true
        }
        Moment::After(ms) => {
            // Another thread answers every write while this one waits.
            let mut pipes = pipes(&mut child);
            let follower = std::thread::spawn(move || {
                follow_stderr(&mut pipes, |_, stdin| {
                    answer(stdin);
                    true
                })
            });
            std::thread::sleep(Duration::from_millis(ms));
            if let Some(status) = child.try_wait().expect("poll the child") {
                let (err, _) = follower.join().expect("the stderr follower");
                assert!(status.success(), "convnet train failed ({status}) before the kill at {moment:?}: {err}");
                return false;
            }
            child.kill().expect("SIGKILL convnet train");
            child.wait().expect("reap the child");
            follower.join().expect("the stderr follower");
            true
        }
    }
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

#[test]
fn killed_and_resumed_runs_end_bit_identical_to_an_uninterrupted_one() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 400, 40, 8);
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("tiny.toml");
    std::fs::write(&cfg, tiny_config(data.path(), EPOCHS, "kind = \"adam\"\nlr = 0.01")).unwrap();

    // The reference: one run, never interrupted, no pauses.
    let reference = work.path().join("reference");
    let start = std::time::Instant::now();
    let output = spawn_train(&cfg, &reference, false).wait_with_output().unwrap();
    let reference_ms = start.elapsed().as_millis() as u64;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let out = work.path().join("killed");
    // The aimed kills first: each lands for sure (the run cannot finish while it waits inside
    // a write). Inside the very first checkpoints the run has to start afresh afterwards (best
    // is written first, and only while validation accuracy improves, so it comes early).
    let aimed = [
        Moment::DuringWriteOf("best.safetensors"),
        Moment::DuringWriteOf("last.safetensors"),
        Moment::DuringWriteOf("metrics.csv"),
        Moment::DuringWriteOf("last.safetensors"),
    ];
    // Then kills at random moments, each a share of the uninterrupted run's wall time: most land
    // somewhere in an epoch; one that comes after the run has finished is not counted.
    let mut rng = rng(17);
    let random = (0..4).map(|_| Moment::After((reference_ms as f64 * rng.gen_range(0.05..0.5)) as u64 + 1));
    let mut kills = 0;
    for moment in aimed.into_iter().chain(random) {
        let landed = run_and_kill(&cfg, &out, moment);
        if let Moment::DuringWriteOf(name) = moment {
            assert!(landed, "the run finished before the kill inside the write of {name}");
        }
        if !landed {
            eprintln!("no kill at {moment:?}: the run had finished");
            continue;
        }
        kills += 1;
        check_consistent(&out, moment);
        let epoch = Checkpoint::load(&out.join("last.safetensors")).map_or(0, |ck| ck.meta.epoch);
        let rows = read_metrics(&out.join("metrics.csv")).map_or(0, |r| r.len());
        eprintln!("kill {kills} at {moment:?}: last.safetensors after epoch {epoch}, metrics.csv {rows} epochs");
    }
    assert!(kills >= aimed.len());

    // Resume until the run completes.
    for attempt in 0.. {
        assert!(attempt < 3, "the run does not complete");
        let output = spawn_train(&cfg, &out, false).wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        if read_metrics(&out.join("metrics.csv")).unwrap().len() == EPOCHS {
            break;
        }
    }

    assert_eq!(
        checkpoint_state(&out.join("last.safetensors")),
        checkpoint_state(&reference.join("last.safetensors")),
        "weights or optimiser state differ"
    );
    assert_eq!(
        checkpoint_state(&out.join("best.safetensors")).0,
        checkpoint_state(&reference.join("best.safetensors")).0,
        "best.safetensors differs"
    );
    assert_eq!(metrics_without_timing(&out), metrics_without_timing(&reference));
    assert_eq!(metrics_without_timing(&out).len(), EPOCHS + 1);
    // The temporary files the kills left behind were cleared by the runs that followed.
    for name in ["last.safetensors", "best.safetensors", "metrics.csv", "config.toml"] {
        assert_eq!(temp_file_of(&out, name), None, "a stale temporary file of {name} is left");
    }
}
