"""The model API end to end on the tiny generated data set of conftest.py: building a model from a
config, training (callbacks, errors, resuming, Ctrl-C), checkpoints, ONNX and PyTorch export,
prediction and the data set reader."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convnet as cn

EPOCH_KEYS = {
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "lr",
    "seconds",
    "images_per_second",
}
N_PARAMS = (3 * 3 * 1 * 4 + 4) + (4 * 4 * 4 * 10 + 10)  # conv 3x3 1 -> 4, dense 64 -> 10


def sample_images(n=6, seed=0):
    """n random uint8 images (n, 8, 8, 1)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)


def same_parameters(a: cn.Model, b: cn.Model) -> bool:
    pa, pb = a.parameters(), b.parameters()
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


@pytest.fixture
def trained(tmp_path, write_config, tiny_data):
    """A 4-epoch run on the tiny data set: (train's report, the run folder, the config)."""
    config = write_config(epochs=4)
    out = tmp_path / "run"
    report = cn.train(config, data=tiny_data, out=out, verbose=False)
    return report, out, config


# ----------------------------------------------------------------------------------------------
# Model.from_config
# ----------------------------------------------------------------------------------------------


def test_model_from_config(write_config):
    model = cn.Model.from_config(write_config())
    summary = model.summary()
    for layer in ("conv2d", "max_pool", "flatten", "dense"):
        assert layer in summary
    assert f"Total parameters: {N_PARAMS}" in summary
    assert model.num_params == N_PARAMS > 0
    assert model.input_shape == (8, 8, 1)
    assert model.name == "tiny"
    assert model.class_names == [str(i) for i in range(10)]
    assert model.normalization == ([0.0], [1.0])
    assert "tiny" in repr(model) and str(N_PARAMS) in repr(model)
    assert 'name = "tiny"' in model.config_toml()
    params = model.parameters()
    assert sum(p.size for p in params.values()) == N_PARAMS
    assert params["0.conv2d.weight"].shape == (3, 3, 1, 4)


def test_from_config_is_seeded(write_config, tmp_path):
    a = cn.Model.from_config(write_config(seed=3))
    b = cn.Model.from_config(write_config(seed=3))
    c = cn.Model.from_config(write_config(seed=4, name="other"))
    assert same_parameters(a, b)
    assert not same_parameters(a, c)


def test_predict_shapes_dtypes_and_probabilities(write_config):
    model = cn.Model.from_config(write_config())
    x = sample_images()
    p = model.predict(x)
    assert p.shape == (6, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(p >= 0)
    # Floats on the [0, 1] scale are the same images.
    np.testing.assert_allclose(model.predict(x / 255.0), p, atol=1e-6)
    np.testing.assert_allclose(model.predict((x / 255.0).astype(np.float32)), p, atol=1e-6)
    # One image (h, w, c) gives one row.
    single = model.predict(x[2])
    assert single.shape == (10,)
    np.testing.assert_allclose(single, p[2], atol=1e-6)
    # Logits: their softmax is the probabilities.
    logits = model.predict(x, logits=True)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), p, atol=1e-6)
    # A non-contiguous array holds the same images.
    big = np.zeros((12, 8, 16, 1), dtype=np.uint8)
    big[::2, :, ::2] = x
    np.testing.assert_array_equal(model.predict(big[::2, :, ::2]), p)
    # The last activation is the logits.
    activations = model.activations(x)
    assert [a.shape[0] for _, a in activations] == [6] * len(activations)
    assert activations[0][1].shape == (6, 8, 8, 4)
    np.testing.assert_allclose(activations[-1][1], logits, atol=1e-5)


def test_predict_rejects_the_wrong_shape_and_dtype(write_config):
    model = cn.Model.from_config(write_config())
    with pytest.raises(ValueError, match=re.escape("(m, 8, 8, 1)") + ".*" + re.escape("(2, 8, 8, 3)")):
        model.predict(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=re.escape("(m, 8, 8, 1)") + ".*" + re.escape("(2, 7, 8, 1)")):
        model.predict(np.zeros((2, 7, 8, 1)))
    with pytest.raises(ValueError, match=re.escape("(m, 8, 8, 1)") + ".*" + re.escape("got (9, 8, 1)")):
        model.predict(np.zeros((9, 8, 1), dtype=np.uint8))
    with pytest.raises(TypeError, match="images must be uint8.*int32"):
        model.predict(np.zeros((2, 8, 8, 1), dtype=np.int32))
    with pytest.raises(TypeError, match="images must be uint8.*complex"):
        model.predict(np.zeros((2, 8, 8, 1), dtype=complex))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_predict_of_an_image_without_its_channel_axis_names_the_shapes(write_config, dtype):
    model = cn.Model.from_config(write_config())
    with pytest.raises(ValueError, match=re.escape("(m, 8, 8, 1)")):
        model.predict(np.zeros((8, 8), dtype=dtype))


def test_class_names_can_be_set_and_are_checked(write_config, tmp_path):
    model = cn.Model.from_config(write_config())
    names = list("abcdefghij")
    model.class_names = names
    assert model.class_names == names
    with pytest.raises(ValueError, match="10 classes, got 3 class names"):
        model.class_names = ["a", "b", "c"]
    model.save(tmp_path / "named.safetensors")
    assert cn.Model.load(tmp_path / "named.safetensors").class_names == names


# ----------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------


def test_train_end_to_end(tmp_path, write_config, tiny_data, capfd):
    config = write_config(epochs=2)
    calls = []
    out = tmp_path / "run"
    report = cn.train(config, data=tiny_data, epochs=5, out=out, on_epoch=calls.append, verbose=False)
    # The epochs argument overrides the config's 2.
    assert [m["epoch"] for m in report["epochs"]] == [1, 2, 3, 4, 5]
    assert len(calls) == 5
    for m, c in zip(report["epochs"], calls):
        assert set(c) == EPOCH_KEYS
        assert c == m
    assert [c["epoch"] for c in calls] == [1, 2, 3, 4, 5]
    last = calls[-1]
    assert last["train_accuracy"] >= 0.95 and last["val_accuracy"] >= 0.95 and last["test_accuracy"] >= 0.95
    assert last["train_loss"] < calls[0]["train_loss"]
    assert last["lr"] == pytest.approx(0.01)
    assert last["seconds"] > 0 and last["images_per_second"] > 0
    assert report["test_accuracy"] >= 0.95 and report["test_loss"] < 0.5
    assert report["class_names"] == [str(i) for i in range(10)]
    assert report["stopped"] is None
    assert str(report["run_dir"]) == str(out)
    assert str(report["checkpoint"]) == str(out / "last.safetensors")
    for name in ("config.toml", "metrics.csv", "last.safetensors", "best.safetensors", "curves.png", "curves.svg"):
        assert (out / name).is_file(), name
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 6
    assert capfd.readouterr().err == ""  # verbose=False: nothing on stderr

    # The trained model answers the test set as train said.
    (_, _), (x_test, y_test), _ = cn.load_dataset("mnist", tiny_data)
    model = cn.Model.load(out / "last.safetensors")
    accuracy = float(np.mean(model.predict(x_test).argmax(axis=1) == y_test))
    assert accuracy == pytest.approx(report["test_accuracy"], abs=1e-6)
    assert accuracy >= 0.95
    # Trained with the data set's own normalisation (mean and std of the training pixels).
    (mean,), (std,) = model.normalization
    assert 0.2 < mean < 0.4 and 0.2 < std < 0.4


def test_train_is_reproducible(tmp_path, write_config, tiny_data):
    config = write_config()
    cn.train(config, data=tiny_data, epochs=2, out=tmp_path / "a", verbose=False)
    cn.train(config, data=tiny_data, epochs=2, out=tmp_path / "b", verbose=False)
    assert same_parameters(cn.Model.load(tmp_path / "a" / "last.safetensors"), cn.Model.load(tmp_path / "b" / "last.safetensors"))


def test_an_exception_in_on_epoch_propagates_and_leaves_a_checkpoint(tmp_path, write_config, tiny_data):
    class Stop(Exception):
        pass

    calls = []

    def on_epoch(metrics):
        calls.append(metrics["epoch"])
        raise Stop("enough")

    out = tmp_path / "run"
    with pytest.raises(Stop, match="enough"):
        cn.train(write_config(), data=tiny_data, epochs=5, out=out, on_epoch=on_epoch, verbose=False)
    assert calls == [1]
    assert (out / "last.safetensors").is_file()
    # The run can go on from there.
    report = cn.train(write_config(), data=tiny_data, epochs=3, out=out, resume=True, verbose=False)
    assert [m["epoch"] for m in report["epochs"]] == [1, 2, 3]


def test_training_into_a_folder_with_a_run_needs_resume_or_overwrite(trained, tiny_data):
    report, out, config = trained
    with pytest.raises(ValueError, match=re.escape(str(out)) + ".*earlier run"):
        cn.train(config, data=tiny_data, epochs=2, out=out, verbose=False)
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        cn.train(config, data=tiny_data, epochs=2, out=out, resume=True, overwrite=True, verbose=False)
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        cn.train(config, data=tiny_data, epochs=0, out=out, overwrite=True, verbose=False)
    # The refusals left the run alone.
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 5
    again = cn.train(config, data=tiny_data, epochs=2, out=out, overwrite=True, verbose=False)
    assert [m["epoch"] for m in again["epochs"]] == [1, 2]
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 3


def test_resume_with_more_epochs_continues_exactly(tmp_path, write_config, tiny_data):
    config = write_config()
    out = tmp_path / "run"
    cn.train(config, data=tiny_data, epochs=2, out=out, verbose=False)
    calls = []
    report = cn.train(config, data=tiny_data, epochs=4, out=out, resume=True, on_epoch=calls.append, verbose=False)
    assert [c["epoch"] for c in calls] == [3, 4]
    assert [m["epoch"] for m in report["epochs"]] == [1, 2, 3, 4]
    # The same weights as 4 epochs in one go.
    cn.train(config, data=tiny_data, epochs=4, out=tmp_path / "straight", verbose=False)
    assert same_parameters(cn.Model.load(out / "last.safetensors"), cn.Model.load(tmp_path / "straight" / "last.safetensors"))


def test_resume_without_a_run_is_an_error(tmp_path, write_config, tiny_data):
    with pytest.raises(ValueError, match="cannot resume"):
        cn.train(write_config(), data=tiny_data, epochs=2, out=tmp_path / "none", resume=True, verbose=False)


def test_init_from_starts_from_a_checkpoints_weights(trained, tmp_path, write_config, tiny_data):
    _, out, _ = trained
    # SGD with a learning rate of 1e-12 leaves the weights where they started.
    config = write_config(optimizer="sgd", lr=1e-12, name="finetune")
    report = cn.train(config, data=tiny_data, epochs=1, out=tmp_path / "ft", init_from=out / "last.safetensors", verbose=False)
    assert report["epochs"][0]["train_accuracy"] >= 0.95
    start = cn.Model.load(out / "last.safetensors").parameters()
    tuned = cn.Model.load(tmp_path / "ft" / "last.safetensors").parameters()
    for k in start:
        np.testing.assert_allclose(tuned[k], start[k], atol=1e-6)


def test_train_with_a_missing_data_folder_is_an_error(tmp_path, write_config):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nowhere"))):
        cn.train(write_config(), data=tmp_path / "nowhere", epochs=1, out=tmp_path / "run", verbose=False)


def test_negative_epochs_is_a_value_error(tmp_path, write_config, tiny_data):
    with pytest.raises(ValueError, match="epochs"):
        cn.train(write_config(), data=tiny_data, epochs=-1, out=tmp_path / "run", verbose=False)


CTRL_C_CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import convnet as cn

    config, data, out, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    seen = []
    handled = threading.Event()

    def on_sigint(signum, frame):
        # What Python's default handler does (raise KeyboardInterrupt), noting that it ran.
        handled.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)

    def on_epoch(metrics):
        # Runs on the calling (main) thread while the training thread waits. The Ctrl-C comes
        # from another thread once the callback has returned, so it lands while the run trains
        # (taken by train()'s signal polling, every 50 ms) or at the next callback at the latest.
        seen.append(metrics["epoch"])
        if len(seen) == 1:
            threading.Thread(target=lambda: os.kill(os.getpid(), signal.SIGINT)).start()

    try:
        cn.train(config, data=data, epochs=epochs, out=out, on_epoch=on_epoch, verbose=False)
    except KeyboardInterrupt:
        print("INTERRUPTED after", len(seen), flush=True)
        sys.exit(0)
    print("COMPLETED", len(seen), flush=True)
    sys.exit(1)
    """
)


def test_ctrl_c_stops_the_run_resumably(tmp_path, write_config, tiny_data):
    epochs = 20
    config = write_config()
    script = tmp_path / "child.py"
    script.write_text(CTRL_C_CHILD)
    out = tmp_path / "run"
    child = subprocess.run(
        [sys.executable, str(script), str(config), str(tiny_data), str(out), str(epochs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert "INTERRUPTED after 1" in child.stdout
    assert (out / "last.safetensors").is_file()
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert 2 <= len(rows) < epochs + 1  # stopped early, after epoch 1 was recorded
    report = cn.train(config, data=tiny_data, epochs=epochs, out=out, resume=True, verbose=False)
    assert report["epochs"][-1]["epoch"] == epochs and report["stopped"] is None
    assert report["test_accuracy"] >= 0.95
    # Documented: resume=True continues the interrupted run exactly.
    cn.train(config, data=tiny_data, epochs=epochs, out=tmp_path / "straight", verbose=False)
    assert same_parameters(cn.Model.load(out / "last.safetensors"), cn.Model.load(tmp_path / "straight" / "last.safetensors"))


# ----------------------------------------------------------------------------------------------
# Checkpoints and exports
# ----------------------------------------------------------------------------------------------


def test_load_twice_gives_the_same_model(trained):
    _, out, _ = trained
    x = sample_images()
    a = cn.Model.load(out / "best.safetensors")
    b = cn.Model.load(str(out / "best.safetensors"))
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    # The same model twice in a row gives the same answer too.
    np.testing.assert_array_equal(a.predict(x), a.predict(x))
    assert same_parameters(a, b)


def test_save_then_load_is_identical(trained, tmp_path):
    _, out, _ = trained
    model = cn.Model.load(out / "last.safetensors")
    path = tmp_path / "copy.safetensors"
    model.save(path)
    model.save(path)  # replacing an existing file
    copy = cn.Model.load(path)
    x = sample_images()
    np.testing.assert_array_equal(copy.predict(x), model.predict(x))
    np.testing.assert_array_equal(copy.predict(x, logits=True), model.predict(x, logits=True))
    assert same_parameters(copy, model)
    assert copy.class_names == model.class_names
    assert copy.normalization == model.normalization
    assert copy.input_shape == model.input_shape and copy.name == model.name
    # A model from a config saves and loads too.
    fresh = cn.Model.from_config(out / "config.toml")
    fresh.save(tmp_path / "fresh.safetensors")
    assert same_parameters(cn.Model.load(tmp_path / "fresh.safetensors"), fresh)


def test_onnx_export_and_import_give_the_same_predictions(trained, tmp_path):
    _, out, _ = trained
    model = cn.Model.load(out / "last.safetensors")
    path = tmp_path / "model.onnx"
    model.export_onnx(path)
    assert path.is_file() and path.stat().st_size > 1000
    imported = cn.import_onnx(path)
    x = sample_images(20)
    np.testing.assert_allclose(imported.predict(x), model.predict(x), atol=1e-5)
    assert imported.input_shape == (8, 8, 1)
    assert imported.num_params == model.num_params
    named = cn.import_onnx(path, class_names=list("abcdefghij"))
    assert named.class_names == list("abcdefghij")
    with pytest.raises(ValueError, match="10 classes but 2 class names"):
        cn.import_onnx(path, class_names=["a", "b"])


def test_pytorch_export_writes_a_module(trained, tmp_path):
    _, out, _ = trained
    directory = tmp_path / "torch"
    cn.Model.load(out / "last.safetensors").export_pytorch(directory)
    source = (directory / "model.py").read_text()
    assert "torch" in source and "class" in source
    assert (directory / "model.safetensors").is_file()


def test_load_errors(tmp_path):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        cn.Model.load(missing)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a checkpoint " * 20)
    with pytest.raises(ValueError, match=re.escape(str(garbage))):
        cn.Model.load(garbage)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(str(empty))):
        cn.Model.load(empty)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.toml"))):
        cn.Model.from_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 3\n")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        cn.Model.from_config(bad)


# ----------------------------------------------------------------------------------------------
# load_dataset
# ----------------------------------------------------------------------------------------------


def test_load_dataset_reads_the_idx_files(tiny_data, tiny_arrays):
    (x_train, y_train), (x_test, y_test), names = cn.load_dataset("mnist", tiny_data)
    assert x_train.shape == (200, 8, 8, 1) and x_train.dtype == np.uint8
    assert y_train.shape == (200,) and y_train.dtype == np.int64
    assert x_test.shape == (60, 8, 8, 1) and x_test.dtype == np.uint8
    assert y_test.shape == (60,) and y_test.dtype == np.int64
    assert names == [str(i) for i in range(10)]
    (xt, yt), (xs, ys) = tiny_arrays
    np.testing.assert_array_equal(x_train[..., 0], xt)
    np.testing.assert_array_equal(y_train, yt)
    np.testing.assert_array_equal(x_test[..., 0], xs)
    np.testing.assert_array_equal(y_test, ys)
    # Fashion-MNIST is the same format, with its own class names.
    _, _, fashion = cn.load_dataset("fashion-mnist", tiny_data)
    assert len(fashion) == 10 and fashion != names


def test_load_dataset_errors(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        cn.load_dataset("imagenet", tiny_data)
    # A missing folder is a ValueError today (with a hint on getting the data); a
    # FileNotFoundError would suit it as well: either must name the folder.
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(str(tmp_path / "nowhere"))):
        cn.load_dataset("mnist", tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_data.iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[:-10] if "t10k-images" in f.name else f.read_bytes())
    with pytest.raises(ValueError, match="t10k-images"):
        cn.load_dataset("mnist", broken)


def test_on_epoch_runs_on_the_calling_thread(tmp_path, write_config, tiny_data):
    import threading

    threads = []
    cn.train(write_config(), data=tiny_data, epochs=2, out=tmp_path / "run", verbose=False,
             on_epoch=lambda m: threads.append(threading.get_ident()))
    assert threads == [threading.get_ident()] * 2


def test_a_bad_on_epoch_is_refused_before_the_run_starts(tmp_path, write_config, tiny_data):
    with pytest.raises(ValueError, match="on_epoch must be callable"):
        cn.train(write_config(), data=tiny_data, epochs=1, out=tmp_path / "run", on_epoch=3, verbose=False)
    assert not (tmp_path / "run").exists()


def test_a_diverged_run_is_a_floating_point_error(tmp_path, write_config, tiny_data):
    with pytest.raises(FloatingPointError, match="non-finite|NaN|diverged"):
        cn.train(write_config(optimizer="sgd", lr=1e30), data=tiny_data, epochs=2, out=tmp_path / "run", verbose=False)


def test_model_argument_checks(write_config, tmp_path):
    model = cn.Model.from_config(write_config())
    with pytest.raises(ValueError, match="empty batch"):
        model.activations(np.zeros((0, 8, 8, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="class_names must be a list"):
        model.class_names = "abcdefghij"
    with pytest.raises(ValueError, match="over 50000000 pixels"):
        cn.read_image(tmp_path / "any.png", size=(10**6, 10**6))
    with pytest.raises(ValueError, match="channels must be 1"):
        cn.read_image(tmp_path / "any.png", channels=2)
    with pytest.raises(ValueError, match="scale must be"):
        cn.save_grid(tmp_path / "g.png", [(np.zeros((2, 2), np.uint8), "a")], scale=-1)
    assert not (tmp_path / "g.png").exists()


def test_the_native_model_checks_image_shapes_itself(write_config):
    # The Python layer checks first; the native methods must not trust their caller either.
    native = cn.Model.from_config(write_config())._native
    with pytest.raises(ValueError, match=re.escape("(m, 8, 8, 1)")):
        native.predict(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=re.escape("(m, 8, 8, 1)")):
        native.predict(np.zeros((2, 7, 8, 1), np.float32))
