//! Training runs that survive people (docs/reliability.md, "Stopping and resuming"):
//! `convnet train` as a child process, stopped with SIGINT and SIGTERM at chosen steps inside
//! epochs, inside a checkpoint's write, with a second SIGINT inside the stop's own write, and
//! killed with SIGKILL between periodic checkpoints; resumed each time; at the end its weights,
//! optimiser state, best checkpoint and metrics.csv (less the timing columns) must be
//! bit-identical to a run never stopped. Also: one training per run folder (a second one exits
//! 2 naming the holder), a lock left by a killed run taken over, no silent overwrite of an
//! earlier run, and the stop flag of the library.
//!
//! Where a child is, is known without a clock: with CONVNET_TEST_STEP_HANDSHAKE=1 it says
//! "convnet-test: after step G" after every step and waits for a line on stdin; with
//! CONVNET_TEST_WRITE_HANDSHAKE=1 it does the same inside every atomic write, before the rename.
#![cfg(target_os = "linux")]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::*;
use convnet::fs::{HANDSHAKE_PREFIX, WRITE_HANDSHAKE_ENV};
use convnet::train::metrics::read_metrics;
use convnet::train::{train, Checkpoint, ExistingRun, TrainOptions, STEP_HANDSHAKE_ENV, STEP_HANDSHAKE_PREFIX};
use convnet::Config;
use rand::Rng;

const EPOCHS: usize = 4;
/// 400 examples less 16 for validation, in batches of 8.
const STEPS_PER_EPOCH: usize = 48;
const TOTAL_STEPS: usize = EPOCHS * STEPS_PER_EPOCH;
/// `--checkpoint-every 7steps` in the stopped runs.
const EVERY: usize = 7;

/// A small network with every kind of state a resume must restore: batch norm (running
/// statistics), dropout (a mask per step), augmentation (crop, flip, cutout per step), AdamW
/// with a warm-up + cosine schedule (a learning rate per step), label smoothing.
fn config_text(data: &Path) -> String {
    format!(
        r#"
name = "stoppable"
input = [8, 8, 1]
[data]
dataset = "mnist"
path = "{}"
validation = 16
[train]
batch_size = 8
epochs = {EPOCHS}
seed = 9
label_smoothing = 0.1
[optimizer]
kind = "adamw"
lr = 0.01
weight_decay = 0.01
[schedule]
kind = "cosine"
warmup_epochs = 0.5
min_lr = 1e-4
[augment]
crop_padding = 1
padding_mode = "reflect"
flip = true
cutout = 3
[[layers]]
type = "conv2d"
filters = 4
kernel = 3
padding = "same"
[[layers]]
type = "batch_norm"
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dropout"
rate = 0.25
[[layers]]
type = "dense"
units = 10
"#,
        data.display()
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A data set and a config file in a fresh folder.
struct Setup {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    work: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_quadrant_idx(&data, 400, 40, 8);
    let cfg = dir.path().join("stoppable.toml");
    std::fs::write(&cfg, config_text(&data)).unwrap();
    let work = dir.path().to_path_buf();
    Setup { _dir: dir, cfg, work }
}

/// `convnet train` on `cfg` into `out` with `extra` arguments; with `hooks`, it waits on stdin
/// after every step and inside every write.
fn train_command(cfg: &Path, out: &Path, extra: &[&str], hooks: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convnet"));
    cmd.args(["train", "--config", s(cfg), "--out", s(out), "--seed", "5", "--threads", "2", "--quiet"]).args(extra);
    if hooks {
        cmd.env(STEP_HANDSHAKE_ENV, "1").env(WRITE_HANDSHAKE_ENV, "1").stdin(Stdio::piped());
    } else {
        cmd.env_remove(STEP_HANDSHAKE_ENV).env_remove(WRITE_HANDSHAKE_ENV).stdin(Stdio::null());
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

fn spawn_train(cfg: &Path, out: &Path, extra: &[&str], hooks: bool) -> Child {
    train_command(cfg, out, extra, hooks).spawn().expect("start convnet train")
}

/// Lets a hooked child go on from where it waits.
fn answer(stdin: &mut ChildStdin) {
    // The child may be gone already: nothing to answer then.
    let _ = stdin.write_all(b"\n").and_then(|()| stdin.flush());
}

/// Resume when there is something to resume, start afresh otherwise.
fn continue_args(out: &Path) -> &'static str {
    if out.join("last.safetensors").exists() {
        "--resume"
    } else {
        "--overwrite"
    }
}

/// A line of a hooked child's stderr.
#[derive(Debug, PartialEq)]
enum Event {
    /// The step with this whole-run index (from 0) is done.
    Step(usize),
    /// Inside the atomic write of this file, before its rename.
    Write(String),
    Other(String),
}

fn event(line: &str) -> Event {
    if let Some(g) = line.strip_prefix(STEP_HANDSHAKE_PREFIX) {
        Event::Step(g.parse().expect("a step index"))
    } else if let Some(name) = line.strip_prefix(HANDSHAKE_PREFIX) {
        Event::Write(name.to_string())
    } else {
        Event::Other(line.to_string())
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the id of a child that has not been reaped yet.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

/// What to do to a run, and where.
#[derive(Clone, Copy, Debug)]
enum Interrupt {
    /// SIGINT or SIGTERM once the step with this whole-run index is done.
    SignalAfterStep(i32, usize),
    /// SIGINT or SIGTERM inside the first write of last.safetensors after this step (a periodic
    /// checkpoint, or the end of an epoch's).
    SignalInsideNextCheckpoint(i32, usize),
    /// SIGINT after this step, and a second SIGINT inside the write that the first one causes.
    SecondSigintInsideStopWrite(usize),
    /// SIGKILL once the step with this index is done.
    KillAfterStep(usize),
}

/// How a stopped attempt ended.
struct Attempt {
    status: ExitStatus,
    stderr: String,
    pid: u32,
    /// Writes of last.safetensors that began after the (first) signal.
    last_writes_after_signal: usize,
}

/// Runs one attempt from wherever `out` stands and interrupts it as `what` says.
fn run_and_interrupt(cfg: &Path, out: &Path, what: Interrupt) -> Attempt {
    let mut child = spawn_train(cfg, out, &["--checkpoint-every", "7steps", continue_args(out)], true);
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut other = String::new();
    // Armed: the step has passed, waiting for the write it aims at.
    let mut armed = false;
    let mut signalled = false;
    let mut last_writes_after_signal = 0;
    for line in stderr.lines() {
        let line = line.expect("read the child's stderr");
        if signalled && event(&line) == Event::Write("last.safetensors".into()) {
            last_writes_after_signal += 1;
        }
        let go_on = match (event(&line), what) {
            (Event::Step(g), Interrupt::SignalAfterStep(sig, at)) if g == at => {
                signal(&child, sig);
                signalled = true;
                true
            }
            (Event::Step(g), Interrupt::KillAfterStep(at)) if g == at => {
                child.kill().unwrap();
                false
            }
            (Event::Step(g), Interrupt::SignalInsideNextCheckpoint(_, at)) if g == at => {
                armed = true;
                true
            }
            (Event::Write(name), Interrupt::SignalInsideNextCheckpoint(sig, _)) if armed && name == "last.safetensors" => {
                armed = false;
                signal(&child, sig);
                signalled = true;
                true
            }
            (Event::Step(g), Interrupt::SecondSigintInsideStopWrite(at)) if g == at => {
                signal(&child, libc::SIGINT);
                armed = true;
                signalled = true;
                true
            }
            (Event::Write(name), Interrupt::SecondSigintInsideStopWrite(_)) if armed && name == "last.safetensors" => {
                signal(&child, libc::SIGINT);
                false
            }
            (Event::Other(text), _) => {
                other.extend([text.as_str(), "\n"]);
                false
            }
            _ => true,
        };
        if go_on {
            answer(&mut stdin);
        }
    }
    let status = child.wait().unwrap();
    Attempt { status, stderr: other, pid, last_writes_after_signal }
}

/// Where the run that last.safetensors holds stands.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Position {
    epochs_done: usize,
    /// Steps done in the epoch after those (0 at the end of an epoch).
    steps_done: usize,
}

impl Position {
    /// Steps done in the whole run.
    fn steps(self) -> usize {
        self.epochs_done * STEPS_PER_EPOCH + self.steps_done
    }
}

/// The position last.safetensors holds (none done without one), checked whole.
fn position(out: &Path) -> Position {
    let path = out.join("last.safetensors");
    if !path.exists() {
        return Position { epochs_done: 0, steps_done: 0 };
    }
    let ck = Checkpoint::load(&path).unwrap();
    ck.network().unwrap();
    assert_eq!(ck.history.len(), ck.meta.epoch, "the checkpoint carries its metrics");
    let steps_done = ck.progress.as_ref().map_or(0, |p| {
        assert_eq!((p.steps_per_epoch, p.batch_size), (STEPS_PER_EPOCH, 8));
        p.steps_done
    });
    Position { epochs_done: ck.meta.epoch, steps_done }
}

/// The first position at or after `p` where last.safetensors is written: every 7 steps and at
/// the end of every epoch.
fn next_checkpoint(p: usize) -> usize {
    (p..).find(|q| q.is_multiple_of(EVERY) || q.is_multiple_of(STEPS_PER_EPOCH)).unwrap()
}

/// The line a stop prints at this position.
fn stop_line(cfg: &Path, out: &Path, at: Position) -> String {
    let text = if at.steps_done == 0 {
        format!("stopped after epoch {} of {EPOCHS}", at.epochs_done)
    } else {
        format!("stopped at epoch {} of {EPOCHS}, step {} of {STEPS_PER_EPOCH}", at.epochs_done + 1, at.steps_done)
    };
    let program = env!("CARGO_BIN_EXE_convnet");
    format!("{text}: resume with `{program} train --config {} --seed 5 --checkpoint-every 7steps --resume --out {}`", s(cfg), s(out))
}

fn temp_file_of(out: &Path, name: &str, pid: u32) -> PathBuf {
    out.join(format!(".{name}.tmp-{pid}"))
}

#[test]
fn runs_stopped_by_signals_and_kills_inside_epochs_resume_bit_identical_to_one_never_stopped() {
    let setup = setup();
    let cfg = &setup.cfg;
    // The reference: never stopped, and no checkpoints inside epochs.
    let reference = setup.work.join("reference");
    let output = spawn_train(cfg, &reference, &["--checkpoint-every", "0"], false).wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let out = setup.work.join("stopped");
    let mut rng = rng(23);
    let mut log = Vec::new();
    // Each interrupt lands a little after where the run stands; the kinds in turn.
    for round in 0..9 {
        let from = position(&out).steps();
        let g = (from + rng.gen_range(0..20)).min(TOTAL_STEPS - 2);
        let what = match round {
            0 => Interrupt::SignalAfterStep(libc::SIGINT, g),
            // The last step of an epoch: stopped with the epoch trained but not evaluated.
            1 => Interrupt::SignalAfterStep(libc::SIGTERM, (from / STEPS_PER_EPOCH + 1) * STEPS_PER_EPOCH - 1),
            2 => Interrupt::SignalInsideNextCheckpoint(libc::SIGTERM, g),
            // Not just before a periodic checkpoint, which would leave the stop nothing to write.
            3 => Interrupt::SecondSigintInsideStopWrite(if (g + 1).is_multiple_of(EVERY) { g + 1 } else { g }),
            4 => Interrupt::KillAfterStep(g),
            // The end of an epoch's checkpoint: stopped after that epoch.
            5 => Interrupt::SignalInsideNextCheckpoint(libc::SIGINT, (from / STEPS_PER_EPOCH + 1) * STEPS_PER_EPOCH - 1),
            6 => Interrupt::KillAfterStep(g),
            7 => Interrupt::SignalAfterStep(libc::SIGINT, g),
            _ => Interrupt::SignalAfterStep(libc::SIGTERM, g),
        };
        let attempt = run_and_interrupt(cfg, &out, what);
        let at = position(&out);
        let now = at.steps();
        let code = attempt.status.code();
        match what {
            Interrupt::SignalAfterStep(sig, g) => {
                assert_eq!(now, g + 1, "{what:?}: the stop saves the step just done");
                // Its own write, or the periodic one that was due at that step: one either way.
                assert_eq!(attempt.last_writes_after_signal, 1, "{what:?}");
                assert_eq!(code, Some(if sig == libc::SIGINT { 130 } else { 143 }), "{what:?}: {}", attempt.stderr);
                assert_eq!(attempt.stderr.trim_end(), stop_line(cfg, &out, at), "{what:?}");
            }
            Interrupt::SignalInsideNextCheckpoint(sig, g) => {
                assert_eq!(now, next_checkpoint(g + 1), "{what:?}: the write goes on, and the run stops there");
                assert_eq!(attempt.last_writes_after_signal, 0, "{what:?}: that checkpoint holds the position, no other is written");
                assert_eq!(code, Some(if sig == libc::SIGINT { 130 } else { 143 }), "{what:?}: {}", attempt.stderr);
                assert_eq!(attempt.stderr.trim_end(), stop_line(cfg, &out, at), "{what:?}");
            }
            Interrupt::SecondSigintInsideStopWrite(g) => {
                assert_eq!(code, Some(130), "{what:?}: the second Ctrl-C ends the process at once: {}", attempt.stderr);
                assert!(temp_file_of(&out, "last.safetensors", attempt.pid).exists(), "{what:?}: it came inside the write");
                assert!(now <= g && g < now + EVERY, "{what:?}: the checkpoint before, whole (at {now})");
                assert!(!attempt.stderr.contains("stopped"), "{}", attempt.stderr);
            }
            Interrupt::KillAfterStep(g) => {
                assert_eq!(code, None, "{what:?}: killed by a signal");
                // At most the interval lost: the periodic checkpoint at or before the step.
                assert!(now <= g + 1 && g + 1 - now < EVERY, "{what:?}: {} steps lost (checkpoint at {now})", g + 1 - now);
            }
        }
        let rows = read_metrics(&out.join("metrics.csv")).map_or(0, |r| r.len());
        assert_eq!(rows, at.epochs_done, "{what:?}: metrics.csv has the epochs of the checkpoint");
        log.push(format!("{what:?}: last.safetensors at step {now}"));
    }
    eprintln!("{}", log.join("\n"));

    // Resume to the end, with no hooks.
    let output = spawn_train(cfg, &out, &["--resume"], false).wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(checkpoint_state(&out.join("last.safetensors")), checkpoint_state(&reference.join("last.safetensors")));
    assert_eq!(checkpoint_state(&out.join("best.safetensors")).0, checkpoint_state(&reference.join("best.safetensors")).0);
    assert_eq!(metrics_without_timing(&out), metrics_without_timing(&reference));
    assert_eq!(metrics_without_timing(&out).len(), EPOCHS + 1);
    // Each epoch's time adds up the attempts that trained it.
    for m in read_metrics(&out.join("metrics.csv")).unwrap() {
        assert!(m.seconds > 0.0 && m.images_per_second > 0.0, "{m:?}");
    }
    let leftovers: Vec<_> =
        std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "temporary or lock files left: {leftovers:?}");
}

#[test]
fn a_second_training_on_a_run_folder_exits_2_naming_the_holder_and_a_killed_holders_lock_is_taken_over() {
    let setup = setup();
    let out = setup.work.join("run");
    let mut first = spawn_train(&setup.cfg, &out, &[], true);
    let mut first_stdin = first.stdin.take().unwrap();
    let mut first_err = BufReader::new(first.stderr.take().unwrap()).lines();
    // Wait until the first training is inside its first step: it holds the folder then.
    loop {
        let line = first_err.next().expect("the first training runs").unwrap();
        if let Event::Step(_) = event(&line) {
            break;
        }
        first_stdin.write_all(b"\n").unwrap();
    }
    for extra in [&[][..], &["--overwrite"], &["--resume"]] {
        let second = spawn_train(&setup.cfg, &out, extra, false).wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.starts_with(&format!("error: {}: the run folder is in use", s(&out))), "{extra:?}: {err}");
        assert!(err.contains(&format!("(process {})", first.id())), "{extra:?}: {err}");
    }
    // Killed while it holds the lock: the lock file stays, with its id.
    first.kill().unwrap();
    first.wait().unwrap();
    let lock = out.join(".convnet.lock");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), first.id().to_string());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convnet"));
    cmd.args(["train", "--config", s(&setup.cfg), "--out", s(&out), "--epochs", "1", "--threads", "2", "--overwrite"]);
    let third = cmd.env_remove(STEP_HANDSHAKE_ENV).env_remove(WRITE_HANDSHAKE_ENV).output().unwrap();
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(third.status.success(), "{err}");
    assert!(err.contains(&format!("note: {}: taking over the lock of process {}", s(&out), first.id())), "{err}");
    assert!(!lock.exists(), "a run that ends removes its lock file");
}

#[test]
fn an_earlier_run_is_kept_unless_resumed_or_overwritten_and_a_mid_epoch_resume_needs_its_batch_size() {
    let setup = setup();
    // A name a shell would split: the resume command quotes it.
    let out = setup.work.join("run 'x'");
    let run = |extra: &[&str]| spawn_train(&setup.cfg, &out, extra, false).wait_with_output().unwrap();
    let first = run(&["--epochs", "1"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let files = ["last.safetensors", "best.safetensors", "metrics.csv", "config.toml"];
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();

    let refused = run(&["--epochs", "2", "--lr", "0.02"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {}: holds an earlier run (last.safetensors, best.safetensors, metrics.csv): continue it with --resume, \
             or start afresh with --overwrite, which deletes its files; or train into another folder with --out",
            s(&out)
        )
    );
    let after: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();
    assert!(before == after, "a refused run changes nothing");
    let both = run(&["--resume", "--overwrite"]);
    assert_eq!(both.status.code(), Some(2), "--resume and --overwrite conflict");

    let overwritten = run(&["--epochs", "1", "--lr", "0.02", "--overwrite"]);
    assert!(overwritten.status.success(), "{}", String::from_utf8_lossy(&overwritten.stderr));
    assert_ne!(std::fs::read(out.join("last.safetensors")).unwrap(), before[0], "a new run, with another learning rate");
    assert_eq!(read_metrics(&out.join("metrics.csv")).unwrap().len(), 1);

    // Stopped inside an epoch, then resumed with another batch size: refused, saying which.
    let stopped = run_and_interrupt(&setup.cfg, &out, Interrupt::SignalAfterStep(libc::SIGINT, STEPS_PER_EPOCH + 4));
    assert_eq!(stopped.status.code(), Some(130), "{}", stopped.stderr);
    let quoted = format!(r"'{}/run '\''x'\'''", s(&setup.work));
    assert!(stopped.stderr.trim_end().ends_with(&format!("--resume --out {quoted}`")), "{}", stopped.stderr);
    let other_batch = run(&["--resume", "--batch-size", "16"]);
    let err = String::from_utf8_lossy(&other_batch.stderr);
    assert_eq!(other_batch.status.code(), Some(2), "{err}");
    assert!(err.contains("was written inside epoch 2 (step 5 of 48, batch size 8, 384 training examples); resuming inside an epoch needs the same steps over the same examples, but the run now has batch size 16 and 384 training examples (pass --batch-size 8,"), "{err}");
    // The same batch size over another training set (64 examples kept for validation, not 16).
    let other_split = setup.work.join("other-split.toml");
    std::fs::write(&other_split, std::fs::read_to_string(&setup.cfg).unwrap().replace("validation = 16", "validation = 64")).unwrap();
    let output = spawn_train(&other_split, &out, &["--resume"], false).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("the run now has batch size 8 and 336 training examples"), "{err}");
    // Fewer epochs than the one it stopped inside.
    let output = spawn_train(&setup.cfg, &out, &["--resume", "--epochs", "1"], false).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("384 training examples), but the run now has 1 epochs: pass --epochs 2 or more to finish it"), "{err}");
}

#[test]
fn periodic_checkpoints_come_every_k_steps_and_not_again_at_an_epochs_end() {
    let setup = setup();
    let out = setup.work.join("run");
    let mut child = spawn_train(&setup.cfg, &out, &["--epochs", "2", "--checkpoint-every", "12steps"], true);
    let mut stdin = child.stdin.take().unwrap();
    let mut writes = Vec::new();
    let mut steps = 0;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        match event(&line.unwrap()) {
            Event::Step(_) => steps += 1,
            Event::Write(name) if name == "last.safetensors" => writes.push(steps),
            _ => {}
        }
        answer(&mut stdin);
    }
    assert!(child.wait().unwrap().success());
    // After steps 12, 24 and 36 of each epoch, and at its end (48): not twice there.
    assert_eq!(writes, [12, 24, 36, 48, 60, 72, 84, 96]);
}

#[test]
fn the_library_stops_at_its_flag_and_resumes_from_there() {
    let setup = setup();
    let cfg = Config::from_toml(&config_text(&setup.work.join("data")), "stoppable.toml").unwrap();
    let reference = setup.work.join("reference");
    train(&TrainOptions::new(cfg.clone(), &reference), &mut |_| Ok(())).unwrap();

    // Set before the run starts: it stops before its first step, with a checkpoint to resume.
    let out = setup.work.join("stopped");
    let stop = Arc::new(AtomicBool::new(true));
    let opts = TrainOptions { stop: Some(Arc::clone(&stop)), ..TrainOptions::new(cfg.clone(), &out) };
    let report = train(&opts, &mut |_| Ok(())).unwrap();
    let at = report.stopped.expect("stopped");
    assert_eq!((at.epochs_done, at.steps_done, at.to_string().as_str()), (0, 0, "stopped before the first step"));
    assert!(report.final_test.is_none() && report.epochs.is_empty());
    assert_eq!(position(&out), Position { epochs_done: 0, steps_done: 0 });
    assert!(out.join("last.safetensors").exists());
    // Set by the epoch hook after the second epoch (as a KeyboardInterrupt would be): the run
    // stops after it, before the third.
    let opts = TrainOptions { existing: ExistingRun::Resume, stop: Some(Arc::clone(&stop)), ..TrainOptions::new(cfg.clone(), &out) };
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = train(&opts, &mut |history| {
        stop.store(history.len() == 2, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    })
    .unwrap();
    assert_eq!(report.stopped.map(|at| at.to_string()), Some(format!("stopped after epoch 2 of {EPOCHS}")));
    assert_eq!(report.epochs.len(), 2);
    let opts = TrainOptions { existing: ExistingRun::Resume, ..TrainOptions::new(cfg, &out) };
    let report = train(&opts, &mut |_| Ok(())).unwrap();
    assert!(report.stopped.is_none() && report.final_test.is_some());
    assert_eq!(checkpoint_state(&out.join("last.safetensors")), checkpoint_state(&reference.join("last.safetensors")));
}

#[test]
fn a_sigint_ignored_from_the_start_stays_ignored_and_sigterm_still_stops() {
    // As under `nohup`, or `cmd &` in a script: the Ctrl-C of the terminal's foreground job
    // must not stop this run.
    use std::os::unix::process::CommandExt;
    let setup = setup();
    let out = setup.work.join("run");
    let mut cmd = train_command(&setup.cfg, &out, &[], true);
    // SAFETY: signal(2) is async-signal-safe, the one call made between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        match event(&line.unwrap()) {
            Event::Step(3) => signal(&child, libc::SIGINT),
            Event::Step(9) => signal(&child, libc::SIGTERM),
            _ => {}
        }
        answer(&mut stdin);
    }
    assert_eq!(child.wait().unwrap().code(), Some(143), "SIGINT went unnoticed, SIGTERM stopped the run");
    assert_eq!(position(&out).steps(), 10);
}
