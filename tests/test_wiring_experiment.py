"""Wiring tests of whole runs: what `calikd-train` builds and restores, and where temperatures are fitted.

Checked through the tools' `main` and the files a run writes, never through the runner's internals: the optimiser
and schedule read back from `checkpoints/last.keras` (a compiled model saves its optimizer's config) and from the
learning rates TensorBoard logged, against PyTorch's per-epoch rates; `results.json` against NumPy and SciPy on
the best checkpoint's logits; a run stopped after an epoch and continued, against the same run trained without a
stop. Each run is tiny (`tiny.zoo_tiny` on fake Fashion-MNIST) and shared by the tests of its fixture.

Once, in the TensorFlow pass: what a run builds, restores and reports is the runner's (backend-neutral) doing.
The per-backend joints are pinned on both backends by tests/test_wiring_distiller.py (the epoch of a fit started
at an initial epoch reaching `Batch.epoch`, CRD's memory written back by each step, the update of each step) and
JAX's resume of a killed run by tests/test_reliability.py; calikd-evaluate's `calibration_report` runs on JAX in
every run of the JAX pass.
"""

import bisect
import contextlib
import glob
import io
import itertools
import json
import math
import os
import zipfile

import gin
import keras
import numpy as np
import pytest
from scipy import optimize

import data_fakes
import keras_calikd as ck
from keras_calikd.cli import common
from keras_calikd.cli import evaluate as evaluate_tool
from keras_calikd.cli import train as train_tool
from tiny import zoo_tiny

pytestmark = pytest.mark.backend_neutral
JAX = keras.backend.backend() == "jax"
TRAIN, HELD_OUT = 80, 16  # training images (2 full batches of 32 and a dropped remainder), then held out
BATCH = 32
STEPS_PER_EPOCH = TRAIN // BATCH


# ---------------------------------------------------------------- helpers

def write_fashion(data_dir, train_images, train_labels, test_images, test_labels):
    """Raw Fashion-MNIST IDX files of the given uint8 images (N, 28, 28) and labels."""
    raw = os.path.join(str(data_dir), "downloads", "manual", "fashion-mnist")
    os.makedirs(raw)
    for prefix, images, labels in (("train", train_images, train_labels), ("t10k", test_images, test_labels)):
        data_fakes.write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte.gz"), images)
        data_fakes.write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte.gz"), labels)
    return str(data_dir)


@contextlib.contextmanager
def tiny_model_registered():
    """`tiny.zoo_tiny` under the model name "zoo_tiny" while the fixture's runs train (gin cleared after)."""
    from keras_calikd import gin_support
    from keras_calikd.models import MODELS

    gin_support.register_configurables()  # first, so that zoo_tiny does not become a gin configurable that stays
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODELS._entries, "zoo_tiny", zoo_tiny)
        try:
            yield
        finally:
            with gin.unlock_config():
                gin.clear_config()


def train(gin_file, runs_dir, data_dir, **bindings):
    values = {"RUNS_DIR": repr(str(runs_dir)), "DATA_DIR": repr(data_dir), "Experiment.model": "'zoo_tiny'",
              "Experiment.batch_size": BATCH, "Experiment.eval_batch_size": 40, "Experiment.export": False,
              "Experiment.verbose": 0, "Experiment.jit_compile": JAX, "Experiment.diagram_formats": "('png',)",
              "Experiment.train_split": f"'train[:{TRAIN}]'", "Experiment.validation_split": "'test'",
              "Experiment.eval_bins": "(15,)"}
    values.update(bindings)
    argv = ["--gin", gin_file] + [a for key, value in values.items() for a in ("--gin_param", f"{key} = {value}")]
    assert common.run(train_tool.main, argv) == 0
    with gin.unlock_config():
        gin.clear_config()


def saved_optimizer(checkpoint):
    """The optimizer and its learning-rate schedule as a `.keras` file saved them (its compile config)."""
    with zipfile.ZipFile(checkpoint) as archive:
        config = json.loads(archive.read("config.json"))["compile_config"]["optimizer"]
    schedule = keras.saving.deserialize_keras_object(config["config"]["learning_rate"])
    return keras.saving.deserialize_keras_object(config), schedule


def optimizer_iterations(state_path):
    """The optimiser's step count in a run's training state (its one integer scalar)."""
    with np.load(state_path) as arrays:
        counts = [arrays[k] for k in arrays.files if k.startswith("optimizer_") and arrays[k].ndim == 0]
    assert len(counts) == 1
    return int(counts[0])


def logits_of(model, data_dir, split):
    images, labels = zip(*ck.data.load("fashion_mnist", split, 500, training=False,
                                       data_dir=data_dir).as_numpy_iterator())
    images, labels = np.concatenate(images), np.concatenate(labels)
    return np.asarray(keras.ops.convert_to_numpy(model(images)), np.float64), labels


def nll(logits, labels):
    z = logits - logits.max(1, keepdims=True)
    return float(-(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(1))).mean())


def scipy_temperature(logits, labels):
    """Post-hoc temperature scaling (Guo et al., 2017): the T in [0.05, 20] minimising the NLL of logits / T."""
    found = optimize.minimize_scalar(lambda log_t: nll(logits / math.exp(log_t), labels),
                                     bounds=(math.log(0.05), math.log(20.0)), method="bounded",
                                     options={"xatol": 1e-10})
    return math.exp(found.x)


def fashion_training_images(rng, count, mistakes=()):
    """Learnable images: pixels around 10 * label + 60, with noise; at the `mistakes` rows the value says the next
    class instead."""
    labels = np.arange(count) % 10
    code = labels.copy()
    code[list(mistakes)] = (code[list(mistakes)] + 1) % 10
    noise = rng.integers(-40, 41, size=(count, 28, 28))
    return np.clip(10 * code[:, None, None] + 60 + noise, 0, 255).astype(np.uint8), labels


def mean_pixel_classifier(scale, offset=0.0, c=1.0):
    """Logits -c ((v - offset) / scale - k)^2, up to a term common to the classes, of the mean pixel v: class
    (v - offset) / scale is predicted, its neighbours next. The mean pixel is the "features" layer (for CRD)."""
    inputs = keras.Input((28, 28, 1), name="image")
    features = keras.layers.GlobalAveragePooling2D(name="features")(inputs)
    dense = keras.layers.Dense(10, name="logits")
    model = keras.Model(inputs, dense(features), name="mean_pixel_classifier")
    k = np.arange(10.0)
    dense.set_weights([(2 * c * k / scale)[None, :].astype("float32"),
                       (-c * k * k - 2 * c * k * offset / scale).astype("float32")])
    return model


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Fake Fashion-MNIST: learnable training images, on which the teacher (a `mean_pixel_classifier`) errs
    on a tenth of the first TRAIN and on five of the HELD_OUT others (so that temperatures fitted to it are neither
    bound of the search); test images all black, their labels spread over the ten classes, so that every model
    predicts one class for all of them: the validation accuracy is 0.1 at every epoch and the first epoch stays
    the best one."""
    rng = np.random.default_rng(1)
    mistakes = list(range(0, TRAIN, 10)) + [TRAIN + i for i in (1, 4, 7, 10, 13)]
    train_images, train_labels = fashion_training_images(rng, TRAIN + HELD_OUT, mistakes)
    return write_fashion(tmp_path_factory.mktemp("wiring_tfds"), train_images, train_labels,
                         np.zeros((40, 28, 28), np.uint8), np.arange(40) % 10)


# ---------------------------------------------------------------- a teacher run

# The schedule read back from the checkpoint gives the rate of any epoch; three epochs give the best epoch by
# validation NLL (`select_by`) a choice.
TEACHER = dict(epochs=3, learning_rate=0.2, momentum=0.8, weight_decay=3e-4, milestones=(1, 3), gamma=0.3)


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory, data_dir):
    """A multistep teacher run with a post-hoc temperature fitted on the held-out training images."""
    runs = tmp_path_factory.mktemp("wiring_runs")
    t = TEACHER
    with tiny_model_registered():
        train("quickstart/teacher.gin", runs, data_dir, **{
            "Experiment.epochs": t["epochs"], "Experiment.learning_rate": t["learning_rate"],
            "Experiment.momentum": t["momentum"], "Experiment.weight_decay": t["weight_decay"],
            "Experiment.schedule": "'multistep'", "Experiment.milestones": t["milestones"],
            "Experiment.gamma": t["gamma"], "Experiment.temperature_scaling_split": f"'train[{TRAIN}:]'",
            "Experiment.select_by": "'nll'", "Experiment.validation_split": f"'train[{TRAIN}:]'"})
    return runs / "quickstart" / "teacher"


def cosine_annealing(lr, t_max, epoch):
    """PyTorch's CosineAnnealingLR (eta_min 0), stepped once per epoch."""
    return lr * (1 + math.cos(math.pi * epoch / t_max)) / 2


def multistep(lr, milestones, gamma, epoch):
    """PyTorch's MultiStepLR: lr times gamma for each milestone reached (epoch >= milestone)."""
    return lr * gamma ** bisect.bisect_right(list(milestones), epoch)


def test_a_run_compiles_sgd_with_coupled_l2_and_the_per_epoch_rates_of_pytorch(teacher_run):
    """The optimiser saved with the run's model: SGD with coupled L2 at the configured decay, and PyTorch's
    MultiStepLR at the configured milestones and gamma, stepped per epoch of TRAIN // BATCH steps."""
    t = TEACHER
    optimizer, schedule = saved_optimizer(teacher_run / "checkpoints" / "last.keras")
    assert isinstance(optimizer, ck.training.SGD)
    assert (optimizer.momentum, optimizer.nesterov) == (t["momentum"], False)
    assert optimizer.l2_weight_decay == t["weight_decay"]  # coupled L2, at the configured value
    assert optimizer.weight_decay is None  # and no decoupled decay on top
    # Every step up to one epoch past the last milestone.
    steps = np.arange((t["milestones"][-1] + 2) * STEPS_PER_EPOCH)
    expected = [multistep(t["learning_rate"], t["milestones"], t["gamma"], step // STEPS_PER_EPOCH)
                for step in steps]
    got = np.array([float(keras.ops.convert_to_numpy(schedule(step))) for step in steps])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    # Every epoch ran its steps: the count a resumed run's schedule continues from.
    assert optimizer_iterations(teacher_run / "checkpoints" / "state.npz") == t["epochs"] * STEPS_PER_EPOCH


def test_results_are_the_best_checkpoint_on_the_test_split_and_its_temperature_is_fitted_on_the_held_out_images(
        teacher_run, data_dir):
    run = teacher_run
    results = json.loads((run / "results.json").read_text())
    best = keras.saving.load_model(run / "checkpoints" / "best.keras", compile=False)
    # The model normalises raw pixels with Fashion-MNIST's published statistics (docs/data.md, on [0, 1]).
    normalization = next(layer for layer in best.layers if isinstance(layer, ck.models.InputNormalization))
    pixels = np.full((1, 28, 28, 1), 255 * (0.2860406 + 0.3530242), "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(normalization(pixels)), 1.0, rtol=1e-5)

    test_logits, test_labels = logits_of(best, data_dir, "test")
    assert results["accuracy"] == pytest.approx((test_logits.argmax(1) == test_labels).mean())
    assert results["nll"] == pytest.approx(nll(test_logits, test_labels), rel=1e-5)
    held_logits, held_labels = logits_of(best, data_dir, f"train[{TRAIN}:]")
    temperature = scipy_temperature(held_logits, held_labels)
    scaled = results["temperature_scaled"]
    assert 0.1 < temperature < 10  # inside the search interval: a fitted value, not a bound
    assert scaled["temperature"] == pytest.approx(temperature, rel=1e-4)
    # Discriminating (by 100 times the tolerance): the test images would give another temperature.
    assert abs(scipy_temperature(test_logits, test_labels) - temperature) > 1e-2 * temperature
    # ... and the scaled model is reported on the test images.
    assert scaled["nll"] == pytest.approx(nll(test_logits / temperature, test_labels), rel=1e-4)
    assert scaled["num_examples"] == 40

    # The 95% intervals: the bootstrap over exactly the best checkpoint's test logits (and over them scaled by the
    # temperature), each centred on the metric results.json reports.
    for logits, reported in ((test_logits, results), (test_logits / temperature, scaled)):
        expected = ck.metrics.bootstrap_intervals(logits, test_labels, bins=(15,), from_logits=True).to_dict()
        intervals = reported["intervals"]
        assert {k: intervals[k] for k in ("method", "level", "resamples", "seed", "num_examples")} == \
            {"method": "basic bootstrap", "level": 0.95, "resamples": 2000, "seed": 0, "num_examples": 40}
        assert set(intervals["estimates"]) == {"accuracy", "nll", "ece_15", "oe_15"}
        for name, estimate in intervals["estimates"].items():
            assert estimate["value"] == pytest.approx(reported[name], rel=1e-5, abs=1e-7), name
            np.testing.assert_allclose([estimate["low"], estimate["high"]],
                                       [expected["estimates"][name]["low"], expected["estimates"][name]["high"]],
                                       rtol=1e-6, atol=1e-7, err_msg=name)
    # Discriminating (by 400 times the tolerance): the held-out images give other intervals.
    other = ck.metrics.bootstrap_intervals(held_logits, held_labels, bins=(15,), from_logits=True)
    assert abs(other["nll"].interval.high - results["intervals"]["estimates"]["nll"]["high"]) > 1e-3


def test_the_best_epoch_is_the_one_of_the_lowest_validation_nll_when_selected_by_nll(teacher_run, data_dir):
    """`Experiment.select_by = 'nll'`: best.keras and the results are the epoch of the lowest logged `val_loss`
    (the validation NLL), and results.json and run.json say so."""
    rows = np.genfromtxt(teacher_run / "logs" / "metrics.csv", delimiter=",", names=True)
    results = json.loads((teacher_run / "results.json").read_text())
    assert results["select_by"] == "nll" and len(rows) == TEACHER["epochs"]
    assert results["best_epoch"] == rows["epoch"][np.argmin(rows["val_loss"])]
    # Discriminating: validation accuracy ties at every epoch (selecting by it keeps the first) and the NLL falls.
    assert len(set(rows["val_accuracy"])) == 1 and results["best_epoch"] != rows["epoch"][0]
    best = keras.saving.load_model(teacher_run / "checkpoints" / "best.keras", compile=False)
    assert nll(*logits_of(best, data_dir, f"train[{TRAIN}:]")) == pytest.approx(rows["val_loss"].min(), rel=1e-5)
    assert json.loads((teacher_run / "run.json").read_text())["signature"]["select_by"] == "nll"


# ---------------------------------------------------------------- calikd-evaluate without a validation split

def test_evaluate_fits_the_temperature_on_one_half_and_reports_the_other(tmp_path, capsys):
    """Fashion-MNIST has no validation split: calikd-evaluate fits the temperature on one half of the test split
    and reports both rows (uncalibrated, + TS) on the other half."""
    predicted = np.arange(10)
    # Half of the labels are the class next to the predicted one: the second most likely.
    labels = np.where(np.isin(predicted, [0, 2, 3, 5, 8]), predicted, np.where(predicted < 9, predicted + 1, 8))
    # Each image off its class's centre by its own few pixels: every image has logits of its own.
    values = 20 * predicted + np.array([3, -7, 5, -3, 7, 1, -5, 4, -1, -6])
    images = np.repeat(values, 28 * 28).reshape(10, 28, 28).astype(np.uint8)
    data_dir = write_fashion(tmp_path / "tfds", images, labels, images, labels)
    model = mean_pixel_classifier(scale=20.0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    output, diagram = tmp_path / "eval.json", tmp_path / "diagram.png"
    arguments = ["--model", path, "--dataset", "fashion_mnist", "--data_dir", data_dir, "--bins", "15"]
    assert evaluate_tool.main(arguments + ["--temperature_scaling", "--diagram", str(diagram),
                                           "--output", str(output)]) == 0
    entry = json.loads(output.read_text())["models"][path]
    scaled = entry["temperature_scaling"]
    assert entry["report"]["num_examples"] == 10
    assert scaled["fitted_on"] == "half of test" and scaled["reported_on"].startswith("the other half of test")
    assert scaled["uncalibrated"]["num_examples"] == scaled["temperature_scaled"]["num_examples"] == 5
    assert scaled["uncalibrated"]["accuracy"] == scaled["temperature_scaled"]["accuracy"]  # T > 0 keeps the argmax
    printed = capsys.readouterr().out
    assert ", uncalibrated |" in printed and "+ TS (T=" in printed and "both report the other half" in printed
    assert diagram.read_bytes()[:4] == b"\x89PNG"

    logits = np.asarray(model.predict(images[..., None].astype("float32"), verbose=0), np.float64)

    # Which five images were reported: the only half whose NLL, accuracy and Brier score are the reported ones.
    def matches(rows):
        probs = np.exp(logits[rows] - logits[rows].max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        report = scaled["uncalibrated"]
        return (abs(nll(logits[rows], labels[rows]) - report["nll"]) < 1e-5
                and abs((probs.argmax(1) == labels[rows]).mean() - report["accuracy"]) < 1e-9
                and abs(((probs - np.eye(10)[labels[rows]]) ** 2).sum(1).mean() - report["brier"]) < 1e-5)

    [reported] = [list(rows) for rows in itertools.combinations(range(10), 5) if matches(list(rows))]
    fitted = sorted(set(range(10)) - set(reported))
    temperature = scipy_temperature(logits[fitted], labels[fitted])
    assert scaled["temperature"] == pytest.approx(temperature, rel=1e-4)
    # Discriminating (by 100 times the tolerance): the reported half, or all ten images, give other temperatures.
    for rows in (reported, list(range(10))):
        assert abs(scipy_temperature(logits[rows], labels[rows]) - temperature) > 1e-2 * temperature
    assert scaled["temperature_scaled"]["nll"] == pytest.approx(nll(logits[reported] / temperature,
                                                                    labels[reported]), rel=1e-5)
    # Every row's 95% intervals: the bootstrap over exactly the images and logits the row reports.
    for report, (row_logits, row_labels) in ((entry["report"], (logits, labels)),
                                             (scaled["uncalibrated"], (logits[reported], labels[reported])),
                                             (scaled["temperature_scaled"],
                                              (logits[reported] / scaled["temperature"], labels[reported]))):
        expected = ck.metrics.bootstrap_intervals(row_logits, row_labels, bins=(15,), from_logits=True).to_dict()
        assert report["intervals"]["estimates"].keys() == expected["estimates"].keys() == {"accuracy", "nll",
                                                                                         "ece_15", "oe_15"}
        for name, estimate in report["intervals"]["estimates"].items():
            assert estimate["value"] == pytest.approx(report[name], rel=1e-5, abs=1e-7)
            np.testing.assert_allclose([estimate["low"], estimate["high"]],
                                       [expected["estimates"][name]["low"], expected["estimates"][name]["high"]],
                                       rtol=1e-5, atol=1e-7, err_msg=name)
    interval_rows = printed.split("| 95% interval |")[1]
    low, high = (100 * entry["report"]["intervals"]["estimates"]["accuracy"][k] for k in ("low", "high"))
    assert f"| {path} | [{low:.2f}, {high:.2f}] |" in interval_rows and "basic bootstrap" in interval_rows

    # The output may not replace a file it did not just write, and never a folder.
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate_tool.main(arguments + ["--output", str(output)])
    with pytest.raises(FileExistsError, match="is a folder, where a file is written; nothing was changed"):
        evaluate_tool.main(arguments + ["--output", str(tmp_path)])


# ---------------------------------------------------------------- a distilled run, straight and resumed

def resumed(test):
    """Heavy (the fixture trains three starts: collected first), and in one xdist group: one test process trains
    the fixture's runs for all its tests."""
    return pytest.mark.heavy(pytest.mark.xdist_group("wiring_resumed_runs")(test))


DISTILLED = {"Distiller.distillation": "['crd', 'dkd']", "Distiller.augmentation": "'mixup'",
             "CRD.num_negatives": 8, "CRD.embedding_dim": 4, "CRD.negatives": "'other_classes'",
             "DKD.warmup": 4, "Experiment.epochs": 2, "Experiment.learning_rate": 0.05,
             "Experiment.temperature_scaling_split": None,
             "Experiment.teacher_calibration_split": f"'train[{TRAIN}:]'"}


@pytest.fixture(scope="session")
def resumed_runs(tmp_path_factory, data_dir):
    """The same distilled run (CRD + DKD with a warm-up + mixup, cosine schedule, from a temperature-scaled
    teacher), trained for two epochs straight, and stopped after one then continued."""
    root = tmp_path_factory.mktemp("wiring_resumed")
    runs = {name: root / name for name in ("straight", "resumed")}
    teacher = mean_pixel_classifier(scale=10.0, offset=60.0, c=2.0)  # reads `fashion_training_images`
    for folder in runs.values():  # a finished teacher run
        (folder / "quickstart" / "teacher" / "checkpoints").mkdir(parents=True)
        teacher.save(str(folder / "quickstart" / "teacher" / "checkpoints" / "best.keras"))
        (folder / "quickstart" / "teacher" / "run.json").write_text(json.dumps({"finished": True, "epochs": 1}))
    with tiny_model_registered():
        train("quickstart/kd.gin", runs["straight"], data_dir, **DISTILLED)
        train("quickstart/kd.gin", runs["resumed"], data_dir, **dict(DISTILLED, **{"Experiment.epochs": 1}))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # more epochs: resumes after epoch 1
            train("quickstart/kd.gin", runs["resumed"], data_dir, **DISTILLED)
    return {"teacher": runs["straight"] / "quickstart" / "teacher" / "checkpoints" / "best.keras",
            "printed": printed.getvalue(),
            **{name: folder / "quickstart" / "kd" for name, folder in runs.items()}}


def logged_learning_rates(run):
    """(epoch, learning rate) that Keras' TensorBoard callback logged at the end of each epoch of each start."""
    import tensorflow as tf

    logged = []
    for path in sorted(glob.glob(str(run / "logs" / "tensorboard" / "train" / "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            logged += [(event.step, float(tf.make_ndarray(value.tensor))) for value in event.summary.value
                       if value.tag == "epoch_learning_rate"]
    return logged


@resumed
def test_distilled_runs_follow_the_cosine_rates_of_pytorch(resumed_runs):
    """The Distiller's optimiser steps PyTorch's CosineAnnealingLR with t_max = epochs. At the end of epoch e
    (0-based) TensorBoard logs the rate of the next step, the first of epoch e + 1."""
    lr = DISTILLED["Experiment.learning_rate"]
    straight = logged_learning_rates(resumed_runs["straight"])
    np.testing.assert_allclose(straight, [(0, cosine_annealing(lr, 2, 1)), (1, cosine_annealing(lr, 2, 2))],
                               rtol=1e-6, atol=1e-9)
    # The resumed run's first start was a one-epoch run (t_max = 1); its continuation has t_max = 2.
    resumed = logged_learning_rates(resumed_runs["resumed"])
    np.testing.assert_allclose(resumed, [(0, cosine_annealing(lr, 1, 1)), (1, cosine_annealing(lr, 2, 2))],
                               rtol=1e-6, atol=1e-9)


@resumed
def test_a_continued_run_trains_like_an_uninterrupted_one(resumed_runs):
    """Epoch 2 of the continued run starts from the restored state: the optimiser's step count (the schedule) and
    momentum, CRD's memory banks and normalisers, every seed (mixup, CRD's negatives), and the epoch that DKD's
    warm-up reads. Any of them lost changes its logged losses or its weights."""
    straight, resumed = resumed_runs["straight"], resumed_runs["resumed"]
    assert "Resuming quickstart/kd after epoch 1" in resumed_runs["printed"]
    expected, got = (np.genfromtxt(run / "logs" / "metrics.csv", delimiter=",", names=True)
                     for run in (straight, resumed))
    assert got.dtype.names == expected.dtype.names and len(got) == 2
    for key in expected.dtype.names:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for name in ("last.keras", "best.keras"):
        expected_weights, got_weights = (keras.saving.load_model(run / "checkpoints" / name).get_weights()
                                         for run in (straight, resumed))
        for mine, theirs in zip(expected_weights, got_weights):
            np.testing.assert_allclose(theirs, mine, rtol=1e-5, atol=1e-6, err_msg=name)
    assert optimizer_iterations(resumed / "checkpoints" / "state.npz") == 2 * STEPS_PER_EPOCH


@resumed
def test_the_best_epoch_is_kept_across_the_resume(resumed_runs, data_dir):
    """The first of tying epochs stays the best after a resume, and the results are its checkpoint's."""
    straight, resumed = resumed_runs["straight"], resumed_runs["resumed"]
    rows = np.genfromtxt(straight / "logs" / "metrics.csv", delimiter=",", names=True)
    assert list(rows["val_accuracy"]) == [pytest.approx(0.1)] * 2  # the data makes every epoch tie
    for run in (straight, resumed):
        assert json.loads((run / "results.json").read_text())["best_epoch"] == 1
    # best.keras is epoch 1's model, not the last one, and results.json reports it on the test split.
    best, last = (keras.saving.load_model(resumed / "checkpoints" / name) for name in ("best.keras", "last.keras"))
    assert any(not np.allclose(a, b) for a, b in zip(best.get_weights(), last.get_weights()))
    results = json.loads((resumed / "results.json").read_text())
    best_nll, last_nll = (nll(*logits_of(model, data_dir, "test")) for model in (best, last))
    assert results["nll"] == pytest.approx(best_nll, rel=1e-5) and abs(best_nll - last_nll) > 1e-4


@resumed
def test_the_teacher_temperature_is_fitted_on_the_calibration_split(resumed_runs, data_dir):
    teacher = keras.saving.load_model(resumed_runs["teacher"], compile=False)
    expected = scipy_temperature(*logits_of(teacher, data_dir, f"train[{TRAIN}:]"))
    assert 0.1 < expected < 10  # a fitted value, not a bound of the search
    for run in ("straight", "resumed"):
        results = json.loads((resumed_runs[run] / "results.json").read_text())
        assert results["teacher_temperature"] == pytest.approx(expected, rel=1e-4)
    # Discriminating (by 100 times the tolerance): the training images would give another temperature.
    training = scipy_temperature(*logits_of(teacher, data_dir, f"train[:{TRAIN}]"))
    assert abs(training - expected) > 1e-2 * expected
