"""Resumable training, atomic files, the non-finite-loss guard, and a clear early error for every bad input."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest

import data_fakes
import keras_calikd as ck
from keras_calikd.cli import common
from keras_calikd.cli import train as train_tool
from keras_calikd.training import callbacks as callbacks_lib
from keras_calikd.training import checkpoint
from keras_calikd.files import atomic_path, check_writable, write_json
from tiny import blobs, tiny_cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- atomic files

def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    write_json(str(path), {"accuracy": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as temporary:
            with open(temporary, "w") as f:
                f.write('{"accuracy": 0.')  # killed half-way
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert sorted(os.listdir(tmp_path)) == ["results.json"]


def test_state_checkpoint_round_trip_includes_optimizer_seeds_and_memory(tmp_path):
    x, y = blobs(64)
    crd = ck.distillations.CRD(num_samples=64, num_negatives=8, seed=0)

    def build():
        keras.utils.set_random_seed(3)
        distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=crd.from_config(crd.get_config()),
                                 augmentation=ck.augmentations.MixUp(seed=2))
        distiller.compile(optimizer=ck.training.SGD(0.05, momentum=0.9, l2_weight_decay=5e-4))
        distiller.optimizer.build(distiller.trainable_variables)
        return distiller

    indexed = {"image": x, "index": np.arange(64, dtype="int32")}
    trained = build()
    trained.fit(indexed, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    checkpoint.save_state(str(tmp_path / "state.npz"), trained, {"epoch": 1})
    restored = build()
    assert checkpoint.load_state(str(tmp_path / "state.npz"), restored)["epoch"] == 1
    for a, b in zip(checkpoint.state_variables(trained) + trained.optimizer.variables,
                    checkpoint.state_variables(restored) + restored.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert any("memory" in v.path for v in checkpoint.state_variables(restored))
    assert not {id(v) for v in restored.teacher.variables} & {id(v) for v in checkpoint.state_variables(restored)}
    # Both continue identically.
    after_trained = trained.fit(indexed, y, batch_size=32, epochs=1, verbose=0, shuffle=False).history["loss"]
    after_restored = restored.fit(indexed, y, batch_size=32, epochs=1, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(after_trained, after_restored, rtol=1e-5)


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    model = tiny_cnn(name="a")
    model.compile(optimizer="sgd", loss="mse")
    model.optimizer.build(model.trainable_variables)
    checkpoint.save_state(str(tmp_path / "state.npz"), model, {"epoch": 1})
    other = tiny_cnn(width=4, name="b")
    other.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="does not match this run"):
        checkpoint.load_state(str(tmp_path / "state.npz"), other)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="cannot be read"):
        checkpoint.load_state(str(tmp_path / "broken.npz"), model)


# ---------------------------------------------------------------- non-finite loss

def nan_on_marked_labels(y_true, y_pred):
    """Cross-entropy, but NaN for a batch holding a label >= 100 (the test's way to make a step diverge)."""
    labels = keras.ops.mod(keras.ops.cast(y_true, "int32"), 100)
    loss = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
    return loss * keras.ops.where(keras.ops.max(y_true) >= 100, np.nan, 1.0)


def test_training_stops_at_the_first_nan_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = blobs(128)
    y[96 + 2 * 8] += 100  # epoch 2, third batch of 8 (no shuffling)
    model = tiny_cnn(name="m")
    model.compile(optimizer="sgd", loss=nan_on_marked_labels)
    model.optimizer.build(model.trainable_variables)
    saver = callbacks_lib.ExperimentCheckpoint(
        state_path=str(tmp_path / "state.npz"), best_path=str(tmp_path / "best.keras"),
        last_path=str(tmp_path / "last.keras"), csv_path=str(tmp_path / "metrics.csv"), export_model=model,
        monitor="loss")
    guard = callbacks_lib.NonFiniteLossGuard(saver.describe_last)
    model.fit(x[:96], y[:96], batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[guard, saver])
    state_before = (tmp_path / "state.npz").read_bytes()
    with pytest.raises(ck.training.NonFiniteLossError, match=r"epoch 2, step 3.*state.npz \(after epoch 1\)"):
        model.fit(x[96:], y[96:], batch_size=8, epochs=2, initial_epoch=1, verbose=0, shuffle=False,
                  callbacks=[guard, saver])
    assert (tmp_path / "state.npz").read_bytes() == state_before  # nothing good was overwritten
    assert len((tmp_path / "metrics.csv").read_text().strip().splitlines()) == 2


# ---------------------------------------------------------------- kill and resume

def _train_args(runs_dir, data_dir):
    """`calikd-train` arguments of the killed-run test's teacher run (3 epochs of ResNet-8)."""
    bindings = {"RUNS_DIR": repr(str(runs_dir)), "DATA_DIR": repr(str(data_dir)), "Experiment.epochs": 3,
                "Experiment.batch_size": 32, "Experiment.eval_batch_size": 64, "Experiment.model": "'resnet8'",
                "Experiment.export": False, "Experiment.verbose": 0, "Experiment.train_split": "'train'",
                "Experiment.diagram_formats": "('png',)",
                "Experiment.validation_split": "'test'"}
    args = ["--gin", os.path.join(ROOT, "gin", "quickstart", "teacher.gin")]
    for key, value in bindings.items():
        args += ["--gin_param", f"{key} = {value}"]
    return args


def _train_command(runs_dir, data_dir):
    return [sys.executable, os.path.join(ROOT, "tools", "train.py"), *_train_args(runs_dir, data_dir)]


def _state_epoch(path):
    try:
        with np.load(path) as archive:
            return json.loads(archive["metadata"].tobytes().decode())["epoch"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return 0


@pytest.mark.heavy
@pytest.mark.jax_pass  # on TensorFlow: test_faults.py's chain kills a run inside every file write, then resumes it
def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    data_dir = tmp_path / "tfds"
    data_fakes.write_fashion_mnist(str(data_dir / "downloads" / "manual" / "fashion-mnist"), n_train=384, n_test=64)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    assert common.run(train_tool.main, _train_args(tmp_path / "whole", data_dir)) == 0  # uninterrupted

    runs = tmp_path / "killed"
    state = runs / "quickstart" / "teacher" / "checkpoints" / "state.npz"
    process = subprocess.Popen(_train_command(runs, data_dir), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while _state_epoch(state) < 1 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_after = _state_epoch(state)
    assert 1 <= killed_after < 3, "the run was killed before finishing"
    assert not (runs / "quickstart" / "teacher" / "results.json").exists()

    resumed = subprocess.run(_train_command(runs, data_dir), env=env, check=True, capture_output=True, text=True)
    assert f"Resuming quickstart/teacher after epoch {killed_after}" in resumed.stdout
    whole = json.loads((tmp_path / "whole" / "quickstart" / "teacher" / "results.json").read_text())
    again = json.loads((runs / "quickstart" / "teacher" / "results.json").read_text())
    for key in ("accuracy", "ece_100", "oe_100", "ece_15", "nll", "brier", "best_epoch"):
        assert again[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-6), key
    rows = (runs / "quickstart" / "teacher" / "logs" / "metrics.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3"]


# ---------------------------------------------------------------- the bad-input table

def _bad_inputs():
    x, y = blobs(32)

    def compiled(distiller):
        distiller.compile(optimizer="sgd")
        return distiller

    return {
        "wrong image shape": (lambda: compiled(ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))).fit(
            np.zeros((32, 8, 8, 3), "float32"), y, verbose=0), ValueError, r"images of shape \(8, 8, 1\)"),
        "wrong image dtype": (lambda: compiled(ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))).fit(
            x.astype(bool), y, verbose=0), ValueError, "dtype bool: give pixel values"),
        "labels out of range": (lambda: compiled(ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))).fit(
            x, y + 5, verbose=0), ValueError, r"class ids in \[0, 9\].*from 5 to 14"),
        "class-count mismatch": (lambda: ck.Distiller(tiny_cnn(10, name="t"), tiny_cnn(7, name="s")), ValueError,
                                 "teacher predicts 10 classes but the student predicts 7"),
        "input-shape mismatch": (lambda: ck.Distiller(tiny_cnn(input_shape=(8, 8, 1), name="t"),
                                                      tiny_cnn(input_shape=(9, 9, 1), name="s")),
                                 ValueError, "same images"),
        "alpha outside [0, 1]": (lambda: ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), alpha=2),
                                 ValueError, r"alpha` must be in \[0, 1\]"),
        "non-positive temperature": (lambda: ck.distillations.KD(temperature=0), ValueError, "temperature"),
        "unknown strategy": (lambda: ck.augmentations.get("mixpu"), ValueError, "Known names: .*cutmix.*mixup"),
        "unknown model": (lambda: ck.models.get("resnet9", num_classes=10), ValueError, "Known names: .*resnet8"),
        "unknown data set": (lambda: ck.data.load("cifar1000", "train", 8), ValueError, "cifar100"),
        "full disk": (lambda: check_writable(ROOT, needed_bytes=10**18), OSError, "free"),
        "output folder not writable": (lambda: check_writable(os.path.join(os.path.abspath(__file__), "runs")),
                                       PermissionError, "not writable"),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_input_fails_early_with_a_clear_message(case):
    action, error, message = _bad_inputs()[case]
    with pytest.raises(error, match=message):
        action()
