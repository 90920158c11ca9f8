//! Training end to end on small generated data: overfitting, determinism, resume.
mod common;

use common::*;
use convnet::model::{Loss, Network};
use convnet::optim::Optimizer;
use convnet::train::{train, Checkpoint, ExistingRun, TrainOptions};
use convnet::{Config, Tensor};

#[test]
fn a_tiny_network_overfits_a_tiny_data_set() {
    // 16 random 6x6x2 images with random labels out of 4: only memorisation can fit them.
    let cfg = Config::from_toml(
        r#"
name = "overfit"
input = [6, 6, 2]
[data]
dataset = "mnist"
[train]
batch_size = 16
epochs = 1
[optimizer]
kind = "adam"
lr = 0.01
[[layers]]
type = "conv2d"
filters = 8
kernel = 3
[[layers]]
type = "tanh"
[[layers]]
type = "avg_pool"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 16
[[layers]]
type = "sigmoid"
[[layers]]
type = "dense"
units = 4
"#,
        "overfit",
    )
    .unwrap();
    let mut net = Network::build(&cfg.model, 1).unwrap();
    let mut opt = Optimizer::new(cfg.run.optimizer.clone()).unwrap();
    let x = random(&[16, 6, 6, 2], 5);
    let labels: Vec<usize> = (0..16).map(|i| (i * 7 + 3) % 4).collect();
    let mut last = None;
    for _ in 0..300 {
        let s = net.compute_gradients(&x, &labels, Loss::default()).unwrap();
        net.apply_gradients(&mut opt, 0.01).unwrap();
        last = Some(s);
    }
    let s = last.unwrap();
    assert_eq!(s.correct, 16, "train accuracy {}/16, loss {}", s.correct, s.loss);
    assert!(s.loss < 0.05, "loss {}", s.loss);
}

fn run(dir: &std::path::Path, out: &std::path::Path, epochs: usize, resume: bool) -> convnet::train::TrainReport {
    let cfg = Config::from_toml(&tiny_config(dir, epochs, "kind = \"adam\"\nlr = 0.01"), "tiny").unwrap();
    let opts = TrainOptions { existing: if resume { ExistingRun::Resume } else { ExistingRun::Refuse }, ..TrainOptions::new(cfg, out) };
    train(&opts, &mut |_| Ok(())).unwrap()
}

fn weights(path: &std::path::Path) -> Vec<Tensor> {
    let net = Checkpoint::load(path).unwrap().network().unwrap();
    net.params().iter().map(|p| p.value.clone()).collect()
}

#[test]
fn training_learns_the_quadrant_data_set_and_writes_the_run_folder() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 400, 80, 1);
    let out = tempfile::tempdir().unwrap();
    let report = run(data.path(), out.path(), 4, false);
    assert_eq!(report.epochs.len(), 4);
    let last = report.epochs.last().unwrap();
    assert!(last.test_accuracy > 0.95, "test accuracy {}", last.test_accuracy);
    assert!(report.epochs[3].train_loss < report.epochs[0].train_loss);
    // The training accuracy, counted over each epoch's steps, rises with it.
    assert!(last.train_accuracy > 0.9 && last.train_accuracy > report.epochs[0].train_accuracy, "{:?}", report.epochs);
    for f in ["metrics.csv", "config.toml", "last.safetensors", "best.safetensors"] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    // The config written to the run folder parses back to the same config.
    let text = std::fs::read_to_string(out.path().join("config.toml")).unwrap();
    let back = Config::from_toml(&text, "config.toml").unwrap();
    assert_eq!(back.model.layers.len(), 6);
    // best.safetensors is enough to rebuild the network and predict.
    let ck = Checkpoint::load(&out.path().join("best.safetensors")).unwrap();
    assert_eq!(ck.meta.class_names.len(), 10);
    // The validation accuracy picks the best epoch; a tie keeps the first.
    let best = report.epochs.iter().map(|m| m.val_accuracy).fold(f32::NEG_INFINITY, f32::max);
    let first_best = report.epochs.iter().position(|m| m.val_accuracy == best).unwrap() + 1;
    assert_eq!(ck.meta.epoch, first_best, "{:?}", report.epochs.iter().map(|m| m.val_accuracy).collect::<Vec<_>>());
    // best.safetensors is enough to rebuild the network and predict: its own normalisation and
    // weights, image by image through `predict`, classify the 80 test images as the trainer's
    // evaluation of that epoch did.
    let mut net = ck.network().unwrap();
    let (_, test) = convnet::data::load_idx_dir(data.path(), ck.meta.class_names.clone()).unwrap();
    let pixels = test.height * test.width * test.channels;
    let mut correct = 0;
    for (image, &label) in test.images.chunks_exact(pixels).zip(&test.labels) {
        let mut x = Tensor::zeros(&[1, test.height, test.width, test.channels]);
        ck.meta.normalization.apply(image, x.data_mut());
        let logits = net.predict(&x).unwrap();
        correct += usize::from(convnet::model::network::argmax(logits.data()) == usize::from(label));
    }
    assert_eq!(test.labels.len(), 80);
    assert_eq!(correct as f32 / 80.0, report.epochs[first_best - 1].test_accuracy, "the rebuilt network's test accuracy");
    assert!(correct >= 76, "{correct}/80");
    // Each epoch's speed is its 384 training images (400 less 16 for validation) over its seconds.
    for m in &report.epochs {
        assert!((m.images_per_second * m.seconds - 384.0).abs() < 0.5, "{} images/s over {} s", m.images_per_second, m.seconds);
    }
}

#[test]
fn same_seed_gives_bit_identical_runs_and_resume_continues_bit_identically() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 200, 40, 2);
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ra = run(data.path(), a.path(), 3, false);
    let rb = run(data.path(), b.path(), 3, false);
    // Interrupted after epoch 1, then resumed to 3.
    run(data.path(), c.path(), 1, false);
    let rc = run(data.path(), c.path(), 3, true);

    let wa = weights(&a.path().join("last.safetensors"));
    assert_eq!(wa, weights(&b.path().join("last.safetensors")), "two runs with one seed differ");
    assert_eq!(wa, weights(&c.path().join("last.safetensors")), "resumed run differs from an uninterrupted one");
    let strip = |r: &convnet::train::TrainReport| {
        r.epochs.iter().map(|m| (m.train_loss, m.train_accuracy, m.val_loss, m.test_accuracy)).collect::<Vec<_>>()
    };
    assert_eq!(strip(&ra), strip(&rb));
    assert_eq!(strip(&ra), strip(&rc));
    // The metrics files agree except for the timing columns.
    assert_eq!(metrics_without_timing(a.path()), metrics_without_timing(c.path()));
    // A different seed gives different weights (the comparison above can fail).
    let d = tempfile::tempdir().unwrap();
    let cfg =
        Config::from_toml(&tiny_config(data.path(), 3, "kind = \"adam\"\nlr = 0.01").replace("seed = 3", "seed = 4"), "tiny").unwrap();
    train(&TrainOptions::new(cfg, d.path()), &mut |_| Ok(())).unwrap();
    assert_ne!(wa, weights(&d.path().join("last.safetensors")));
}

/// Resume's edge cases, each against the uninterrupted two-epoch run `a`.
#[test]
fn resume_keeps_the_runs_seed_reads_older_histories_from_metrics_and_reports_a_finished_run() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 120, 24, 4);
    let a = tempfile::tempdir().unwrap();
    let ra = run(data.path(), a.path(), 2, false);
    let last = |dir: &tempfile::TempDir| dir.path().join("last.safetensors");

    // Resumed under a config that says seed 4: the run goes on with its own seed, 3.
    let b = tempfile::tempdir().unwrap();
    run(data.path(), b.path(), 1, false);
    let reseeded = tiny_config(data.path(), 2, "kind = \"adam\"\nlr = 0.01").replace("seed = 3", "seed = 4");
    let opts = TrainOptions { existing: ExistingRun::Resume, ..TrainOptions::new(Config::from_toml(&reseeded, "tiny").unwrap(), b.path()) };
    train(&opts, &mut |_| Ok(())).unwrap();
    assert_eq!(weights(&last(&a)), weights(&last(&b)), "resumed with the config's seed, not the run's");

    // A checkpoint from before checkpoints carried the history, next to a metrics.csv one epoch
    // ahead of it (killed between the two writes): the history is metrics.csv's first epoch.
    let c = tempfile::tempdir().unwrap();
    run(data.path(), c.path(), 1, false);
    let bytes = std::fs::read(last(&c)).unwrap();
    let (mut header, _) = common::header(&bytes);
    assert!(header["__metadata__"].as_object_mut().unwrap().remove("history").is_some());
    std::fs::write(last(&c), common::with_header(&bytes, &header)).unwrap();
    std::fs::copy(a.path().join("metrics.csv"), c.path().join("metrics.csv")).unwrap();
    run(data.path(), c.path(), 2, true);
    assert_eq!(metrics_without_timing(a.path()), metrics_without_timing(c.path()));
    assert_eq!(weights(&last(&a)), weights(&last(&c)));

    // A finished run resumed: no epoch trained, and the test set evaluated by its weights.
    let again = run(data.path(), a.path(), 2, true);
    assert_eq!(again.epochs.len(), 2);
    let (before, after) = (ra.final_test.unwrap(), again.final_test.expect("a finished run still reports its test figures"));
    assert_eq!((before.loss, before.accuracy, before.confusion), (after.loss, after.accuracy, after.confusion));
}

#[test]
fn a_diverging_run_stops_with_a_message_naming_the_step_and_keeps_the_last_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 200, 40, 3);
    let out = tempfile::tempdir().unwrap();
    run(data.path(), out.path(), 1, false);
    let before = std::fs::read(out.path().join("last.safetensors")).unwrap();
    // An absurd learning rate with plain SGD blows the weights up.
    let cfg = Config::from_toml(&tiny_config(data.path(), 3, "kind = \"sgd\"\nlr = 1e12"), "tiny").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let err = train(&TrainOptions::new(cfg.clone(), fresh.path()), &mut |_| Ok(())).err().expect("training should diverge");
    let msg = err.to_string();
    assert!(msg.contains("diverged at epoch 1 step") && (msg.contains("layer") || msg.contains("loss")), "{msg}");
    assert!(!fresh.path().join("last.safetensors").exists(), "no checkpoint of a diverged model");
    // The earlier run's checkpoint is untouched.
    assert_eq!(before, std::fs::read(out.path().join("last.safetensors")).unwrap());
}

#[test]
fn gradients_are_bit_identical_for_any_thread_count() {
    // 19 images: more than two of the conv's fixed chunks of 8, the last one partial.
    let data = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml(&tiny_config(data.path(), 1, "kind = \"adam\"\nlr = 0.01"), "tiny").unwrap();
    let x = random(&[19, 8, 8, 1], 11);
    let labels: Vec<usize> = (0..19).map(|i| i % 10).collect();
    let grads = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut net = Network::build(&cfg.model, 5).unwrap();
            let stats = net.compute_gradients(&x, &labels, Loss::default()).unwrap();
            (stats.loss, net.params().iter().map(|p| p.grad.clone()).collect::<Vec<Tensor>>())
        })
    };
    let one = grads(1);
    assert!(one.1.iter().any(|g| g.data().iter().any(|&v| v != 0.0)), "gradients must not be all zero");
    assert_eq!(one, grads(2));
    assert_eq!(one, grads(3));
}

#[test]
fn the_seed_network_trains_bit_identically_on_any_thread_count() {
    // The real seed network (conv, pools, LRN, parallel dense GEMMs, parallel Adam) for two steps.
    let cfg = Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/cifar10-seed.toml"))).unwrap();
    let x = random(&[9, 32, 32, 3], 21);
    let labels: Vec<usize> = (0..9).map(|i| (i * 3) % 10).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut net = Network::build(&cfg.model, 5).unwrap();
            let mut opt = Optimizer::new(cfg.run.optimizer.clone()).unwrap();
            for _ in 0..2 {
                net.compute_gradients(&x, &labels, Loss::default()).unwrap();
                net.apply_gradients(&mut opt, 1e-3).unwrap();
            }
            net.params().iter().map(|p| p.value.clone()).collect::<Vec<Tensor>>()
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(4));
}

#[test]
fn the_first_layer_computes_no_input_gradient_and_no_other_keeps_one() {
    // Each layer's input gradient lives only until the layer before has read it; its buffer
    // then goes to another layer (src/layers/spare_buffers.rs). What the layers compute is
    // held by tests/layers.rs (a Sequential against its layers run one by one).
    let data = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml(&tiny_config(data.path(), 1, "kind = \"adam\"\nlr = 0.01"), "tiny").unwrap();
    let mut net = Network::build(&cfg.model, 5).unwrap();
    let x = random(&[3, 8, 8, 1], 11);
    net.compute_gradients(&x, &[1, 2, 3], Loss::default()).unwrap();
    let lens: Vec<usize> = net.layers().iter().map(|l| l.input_grad().len()).collect();
    assert!(lens.iter().all(|&n| n == 0), "nothing needs d loss / d image, and the others are lent out: {lens:?}");
}

#[test]
fn a_non_finite_loss_names_the_first_layer_whose_output_is_not_finite() {
    let data = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml(&tiny_config(data.path(), 1, "kind = \"adam\"\nlr = 0.01"), "tiny").unwrap();
    let x = random(&[2, 8, 8, 1], 12);
    for (param, layer) in [("5.dense.weight", "layer 5 (dense)"), ("0.conv2d.bias", "layer 0 (conv2d + relu)")] {
        let mut net = Network::build(&cfg.model, 5).unwrap();
        net.params_mut().into_iter().find(|p| p.name == param).unwrap().value.data_mut()[0] = f32::NAN;
        let err = net.compute_gradients(&x, &[1, 2], Loss::default()).unwrap_err().to_string();
        assert!(err.contains(&format!("the output of {layer} is not finite")), "{param}: {err}");
    }
}

#[test]
fn a_non_finite_output_lent_out_in_training_is_named_with_the_layer_after_it() {
    // The conv's output is not kept under a max pool (which keeps its argmax), nor the pool's
    // under flatten: the first output that can be looked at is flatten's, so all three are
    // named.
    let layers = "[[layers]]\ntype = \"conv2d\"\nfilters = 2\nkernel = 3\n[[layers]]\ntype = \"max_pool\"\nsize = 2\n\
                  [[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n";
    let cfg = Config::from_toml(&model_config("lent", "[8, 8, 1]", layers), "lent").unwrap();
    let mut net = Network::build(&cfg.model, 5).unwrap();
    net.params_mut().into_iter().find(|p| p.name == "0.conv2d.bias").unwrap().value.data_mut()[0] = f32::NAN;
    let err = net.compute_gradients(&random(&[2, 8, 8, 1], 12), &[1, 2], Loss::default()).unwrap_err().to_string();
    assert!(err.contains("the output of layer 0 (conv2d), layer 1 (max_pool) or layer 2 (flatten) is not finite"), "{err}");
}

#[test]
fn weights_that_overflow_at_an_epochs_last_step_are_caught_before_the_checkpoint() {
    // One step per epoch (the batch is the whole training set), and a learning rate and weight
    // decay that take every weight past f32's range at once (1e38 x 1e10 x w): that step's
    // forward pass was finite, so only the check of the weights after the update sees it, before
    // last.safetensors is written.
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 200, 40, 3);
    let text = tiny_config(data.path(), 1, "kind = \"sgd\"\nlr = 1e38\nweight_decay = 1e10").replace("batch_size = 8", "batch_size = 1024");
    let out = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml(&text, "tiny").unwrap();
    let err = train(&TrainOptions::new(cfg, out.path()), &mut |_| Ok(())).err().expect("the weights overflow").to_string();
    assert!(
        err.contains("training diverged at epoch 1 step 1 (global step 0): parameter")
            && err.contains("is not finite (NaN or infinity) after the update"),
        "{err}"
    );
    assert!(!out.path().join("last.safetensors").exists(), "no checkpoint of a diverged model");
}

#[test]
fn an_epochs_training_loss_and_accuracy_are_those_of_its_steps() {
    // One step per epoch (the batch is the whole training set), no L2 penalty, no dropout: the
    // epoch's training loss and accuracy are that one step's, i.e. the initial network's on the
    // training set, which `evaluate` computes on its own.
    let data = tempfile::tempdir().unwrap();
    write_quadrant_idx(data.path(), 200, 40, 3);
    let text =
        tiny_config(data.path(), 1, "kind = \"sgd\"\nlr = 0.01").replace("l2 = 0.001", "").replace("batch_size = 8", "batch_size = 1024");
    let cfg = Config::from_toml(&text, "tiny").unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = train(&TrainOptions::new(cfg.clone(), out.path()), &mut |_| Ok(())).unwrap();
    let splits = convnet::train::datasets::load_splits(&cfg, None).unwrap();
    let norm = convnet::data::Normalization::from_dataset(&splits.train);
    let mut initial = Network::build(&cfg.model, cfg.run.train.seed).unwrap();
    let expected = convnet::train::evaluate(&mut initial, &splits.train, &norm, convnet::train::EvalOptions::for_run(&cfg.run)).unwrap();
    let m = &report.epochs[0];
    assert!((m.train_loss - expected.loss).abs() <= 1e-5 * expected.loss, "{} vs {}", m.train_loss, expected.loss);
    assert_eq!(m.train_accuracy, expected.accuracy);
    assert!(expected.accuracy > 0.0 && expected.accuracy < 1.0, "{}", expected.accuracy);
}
