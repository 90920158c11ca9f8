//! `mpirun -np 2 convnet train --distributed` (the `mpi` feature; .ci/run runs these with
//! `cargo test --features mpi --test distributed_mpi`): the seed network and the batch-norm
//! ResNet, two ranks of one thread each, end bit for bit where one process ends; a resumed
//! distributed run too; a killed rank ends the job at once with a resumable checkpoint;
//! ranks given different configs are refused. Data: small CIFAR-10 files written here.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{checkpoint_state, metrics_without_timing, rng};
use convnet::data::write_cifar10_records;
use rand::Rng;

const CONVNET: &str = env!("CARGO_BIN_EXE_convnet");

/// One MPI job at a time: the tests share two cores.
static ONE_JOB: Mutex<()> = Mutex::new(());

/// A CIFAR-10 folder of `train` training images (five files) and 128 test images: class k
/// brighter in channel k % 3, over noise, so that the networks learn something.
fn write_cifar(dir: &Path, train: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let classes = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    std::fs::write(dir.join("batches.meta.txt"), classes).unwrap();
    let mut r = rng(21);
    let mut write = |name: String, n: usize| {
        let labels: Vec<u8> = (0..n).map(|_| r.gen_range(0..10)).collect();
        let mut images = Vec::with_capacity(n * 3072);
        for &label in &labels {
            for pixel in 0..3072 {
                let lift = if pixel % 3 == usize::from(label) % 3 { 40 + 10 * label } else { 0 };
                images.push(r.gen_range(0..100u8) + lift);
            }
        }
        write_cifar10_records(dir.join(name), &images, &labels).unwrap();
    };
    for k in 1..=5 {
        write(format!("data_batch_{k}.bin"), train / 5);
    }
    write("test_batch.bin".into(), 128);
}

/// configs/`name` reading the data in `data`, with 256 validation images.
fn config(work: &Path, name: &str, data: &Path) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(name)).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l.split('=').next().map(str::trim) {
            Some("path") => format!("path = \"{}\"", data.display()),
            Some("validation") => "validation = 256".into(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = work.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn convnet(args: &[&str]) -> Command {
    let mut c = Command::new(CONVNET);
    c.args(args).args(["--threads", "1", "--quiet"]);
    c
}

fn mpirun(ranks: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", &ranks.to_string(), CONVNET]).args(args).args([
        "--distributed",
        "--threads",
        "1",
        "--quiet",
    ]);
    c
}

fn run(mut c: Command) -> Output {
    let out = c.output().expect("mpirun and convnet start");
    assert!(out.status.success(), "{c:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn assert_same_run(a: &Path, b: &Path, what: &str) {
    let (params_a, opt_a) = checkpoint_state(&a.join("last.safetensors"));
    let (params_b, opt_b) = checkpoint_state(&b.join("last.safetensors"));
    assert_eq!(params_a.len(), params_b.len());
    for (i, (pa, pb)) in params_a.iter().zip(&params_b).enumerate() {
        let bits = |t: &convnet::Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(pa), bits(pb), "{what}: parameter {i}");
    }
    for ((name, va), (_, vb)) in opt_a.iter().zip(&opt_b) {
        assert!(va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()), "{what}: optimiser state {name}");
    }
    assert_eq!(metrics_without_timing(a), metrics_without_timing(b), "{what}: metrics.csv");
}

/// Trains `config` for `epochs` in one process and on two ranks, and compares.
fn one_process_against_two_ranks(config_name: &str, train_images: usize, epochs: &str, batch: &str) {
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_cifar(&data, train_images);
    let cfg = config(work.path(), config_name, &data);
    let cfg = cfg.to_str().unwrap();
    let (alone, ranks) = (work.path().join("alone"), work.path().join("ranks"));
    let common = ["--config", cfg, "--epochs", epochs, "--batch-size", batch];
    run(convnet(&[&["train"], &common[..], &["--out", alone.to_str().unwrap()]].concat()));
    run(mpirun(2, &[&["train"], &common[..], &["--out", ranks.to_str().unwrap()]].concat()));
    assert_same_run(&alone, &ranks, &format!("{config_name} on 2 ranks"));
}

#[test]
fn the_seed_network_on_two_ranks_ends_with_the_bits_of_one_process() {
    // 3,840 training images in batches of 64: 60 steps an epoch, 3 epochs, 180 steps.
    one_process_against_two_ranks("cifar10-seed.toml", 4096, "3", "64");
}

#[test]
fn the_batch_norm_resnet_on_two_ranks_ends_with_the_bits_of_one_process() {
    // 1,792 training images in batches of 64: 28 steps an epoch, 4 epochs, 112 steps, with
    // synchronised batch norm (every rank normalises with the whole batch's statistics).
    one_process_against_two_ranks("cifar10-resnet.toml", 2048, "4", "64");
}

/// The process of rank `rank` among the children of `mpirun` (by its OpenMPI environment).
fn rank_pid(out_dir: &Path, rank: usize) -> Option<u32> {
    let marker = out_dir.to_str().unwrap();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.starts_with(CONVNET) || !cmdline.contains(marker) {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|v| v == format!("OMPI_COMM_WORLD_RANK={rank}").as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_rank_ends_the_job_at_once_and_the_run_resumes_to_the_same_bits() {
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_cifar(&data, 2048);
    let cfg = config(work.path(), "cifar10-seed.toml", &data);
    let cfg = cfg.to_str().unwrap();
    let (alone, ranks) = (work.path().join("alone"), work.path().join("ranks"));
    let common = ["--config", cfg, "--epochs", "3", "--batch-size", "64"];
    run(convnet(&[&["train"], &common[..], &["--out", alone.to_str().unwrap()]].concat()));

    let ranks_arg = ["--out", ranks.to_str().unwrap(), "--checkpoint-every", "4steps"];
    let mut job = mpirun(2, &[&["train"], &common[..], &ranks_arg[..]].concat());
    let job = job.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Once a checkpoint inside the first epoch exists, rank 1 is killed as the OOM killer would.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ranks.join("last.safetensors").exists() {
        assert!(Instant::now() < deadline, "no checkpoint within a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rank_pid(&ranks, 1).expect("rank 1 is running");
    let killed = Instant::now();
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    let out = job.wait_with_output().unwrap();
    let took = killed.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job failed");
    assert!(took < Duration::from_secs(10), "the job took {took:?} to end");
    assert!(stderr.contains("rank 1") && stderr.contains("signal 9"), "mpirun names the rank: {stderr}");
    // The checkpoint is whole, and the run resumes on two ranks to the one-process bits.
    run(mpirun(2, &[&["train"], &common[..], &["--out", ranks.to_str().unwrap(), "--resume"]].concat()));
    assert_same_run(&alone, &ranks, "killed and resumed on 2 ranks");
}

#[test]
fn ranks_given_different_configs_are_refused() {
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_cifar(&data, 640);
    let cfg = config(work.path(), "cifar10-seed.toml", &data);
    let other = work.path().join("other.toml");
    std::fs::write(&other, std::fs::read_to_string(&cfg).unwrap().replace("seed = 1", "seed = 2")).unwrap();
    let out = work.path().join("run");
    let rank =
        |c: &Path| ["-np", "1", CONVNET, "train", "--config", c.to_str().unwrap(), "--distributed", "--threads", "1"].map(String::from);
    let output = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe"])
        .args(rank(&cfg))
        .args(["--out", out.to_str().unwrap(), ":"])
        .args(rank(&other))
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("rank 1") && stderr.contains("different config"), "{stderr}");
    assert!(!out.join("last.safetensors").exists());
}

#[test]
fn a_rank_that_cannot_read_its_data_ends_every_rank_with_its_error() {
    let _one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    write_cifar(&data, 640);
    let cfg = config(work.path(), "cifar10-seed.toml", &data);
    let (out, missing) = (work.path().join("run"), work.path().join("no-such-folder"));
    let rank = |d: &Path| -> Vec<String> {
        let (c, d, o) = (cfg.to_str().unwrap(), d.to_str().unwrap(), out.to_str().unwrap());
        ["-np", "1", CONVNET, "train", "--config", c, "--data", d, "--distributed", "--threads", "1", "--out", o].map(String::from).to_vec()
    };
    let started = Instant::now();
    let output = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe"])
        .args(rank(&data))
        .arg(":")
        .args(rank(&missing))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Rank 0, waiting for rank 1 at the start-up check, is ended with it (MPI_Abort).
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: rank 1 of 2 (on ") && stderr.contains("no-such-folder"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(!out.join("last.safetensors").exists());
}
