"""Nothing lost, every error clear, through the library: one table row per fault class, on both backends.

`tests/test_faults.py` drives the tools (once, in the TensorFlow pass); the rows here reach a Keras backend
(a Distiller's data checks, the calibration metrics in compiled steps, loading saved models), so both passes
run them, unless a row is marked `backend_neutral`.
"""

import keras
import numpy as np
import pytest

import keras_calikd as ck
from tiny import blobs, dense_model, tiny_cnn


# ---------------------------------------------------------------- a failed data check is the library's ValueError

def _pipeline(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _distiller():
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))
    distiller.compile(optimizer="sgd")
    return distiller


PIPELINE_LABELS = {
    "fit, labels out of range": (lambda x, y: _distiller().fit(_pipeline(x, y + 5), verbose=0),
                                 "training labels must be class ids in [0, 9] for models with 10 classes; "
                                 "a batch holds one outside."),
    "fit, fractional labels": (lambda x, y: _distiller().fit(_pipeline(x, (y + 0.7).astype("float32")), verbose=0),
                               "training labels must be whole class ids; a batch holds a fractional one "
                               "(labels are never truncated)."),
    "validation labels out of range": (
        lambda x, y: _distiller().fit(x, y, validation_data=_pipeline(x, y - 1), verbose=0),
        "validation labels must be class ids in [0, 9] for models with 10 classes; a batch holds one outside."),
}


@pytest.mark.parametrize("case", sorted(PIPELINE_LABELS))
def test_a_failed_pipeline_check_raises_the_librarys_value_error(case):
    action, sentence = PIPELINE_LABELS[case]
    x, y = blobs(32)
    with pytest.raises(ValueError) as error:
        action(x, y)
    assert type(error.value) is ValueError and str(error.value) == sentence  # the sentence, not a graph dump
    assert error.value.__suppress_context__  # `from None`: no framework traceback chained to it


# ---------------------------------------------------------------- loading saved models, and custom code

LAB_MODULE = '''
import keras
import keras_calikd as ck


@keras.saving.register_keras_serializable(package="lab_parts")
class Doubled(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


@keras.saving.register_keras_serializable(package="lab_parts")
class LabKD(ck.distillations.KD):
    pass
'''

FRESH_PROCESS = '''
import sys
import keras
import keras_calikd as ck

folder = sys.argv[1]
distiller = keras.models.load_model(folder + "/distiller.keras")  # the README's promise: nothing else imported
print("loaded", type(distiller).__name__, type(distiller.optimizer).__module__, distiller.optimizer.momentum)

from keras_calikd.cli.common import import_user_module
from keras_calikd.training.evaluation import load_model

for name in ("lab_distiller.keras", "lab_student.keras"):
    try:
        load_model(folder + "/" + name)
    except ValueError as error:
        print("refused", name, error)
import_user_module(folder + "/lab_parts.py")
print("then", type(load_model(folder + "/lab_distiller.keras").distillations[0]).__name__,
      load_model(folder + "/lab_student.keras").layers[1].__class__.__name__)
'''


def _saved_models(folder):
    from keras_calikd.cli.common import import_user_module

    (folder / "lab_parts.py").write_text(LAB_MODULE)
    lab = import_user_module(str(folder / "lab_parts.py"))
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))
    distiller.compile(optimizer=ck.training.SGD(0.1, momentum=0.9, l2_weight_decay=5e-4))
    distiller.save(str(folder / "distiller.keras"))
    ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=lab.LabKD()).save(
        str(folder / "lab_distiller.keras"))
    inputs = keras.Input((8, 8, 1))
    student = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(lab.Doubled()(inputs))))
    student.save(str(folder / "lab_student.keras"))


# Registration is Python import behaviour, the same on every backend (in-process round trips of saved Distillers:
# tests/test_keras_citizenship.py, both passes): this row starts its new process once, in the TensorFlow pass.
@pytest.mark.backend_neutral
def test_a_fresh_process_loads_a_saved_distiller_and_names_the_custom_classes_it_lacks(tmp_path):
    import os
    import subprocess
    import sys

    _saved_models(tmp_path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path)], capture_output=True, text=True,
                          cwd=str(tmp_path.parent), env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"),
                          timeout=300)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr[-3000:]
    assert lines[0] == "loaded Distiller keras_calikd.optimizers 0.9"
    for line, name in zip(lines[1:3], ("'LabKD' (registered as 'lab_parts>LabKD')",
                                       "'Doubled' (registered as 'lab_parts>Doubled')")):
        assert line.startswith("refused") and f"uses the class {name}, which this process does not know" in line
        assert "--import MODULE" in line and "damaged" not in line
    assert lines[3] == "then LabKD Doubled"


TOOLS = ("train", "evaluate", "export", "report", "benchmark", "benchmark_fit", "benchmark_data", "quickstart")


@pytest.mark.backend_neutral
def test_every_tool_imports_a_users_module_first_and_names_what_is_missing(tmp_path, capsys, monkeypatch):
    import importlib

    from keras_calikd.cli import common
    from keras_calikd.cli import export as export_tool

    _saved_models(tmp_path)
    (tmp_path / "lab_parts_copy.py").write_text(LAB_MODULE)
    (tmp_path / "buggy_parts.py").write_text("raise RuntimeError('a bug in my module')\n")
    (tmp_path / "needs_more.py").write_text("import a_package_nobody_installed\n")
    monkeypatch.chdir(tmp_path)  # modules given by name are found in the current folder
    registered = keras.saving.get_custom_objects()
    monkeypatch.delitem(registered, "lab_parts>Doubled")  # as in a new process that did not import lab_parts
    student = ["--checkpoint", "lab_student.keras", "--output", "out"]
    cases = [
        (student, "'lab_student.keras' uses the class 'Doubled' (registered as 'lab_parts>Doubled'), which this "
                  "process does not know: import the module that defines it before loading (the tools: --import "
                  "MODULE)"),
        (["--import", "no_such_parts", *student], "--import no_such_parts: no module named 'no_such_parts' in the "
                                                  "current folder or on the Python path"),
        (["--import", "no_such_parts.py", *student], "--import no_such_parts.py: no such file."),
        (["--import", "buggy_parts", *student], "--import buggy_parts: importing it failed (RuntimeError: a bug in "
                                                "my module)"),
        (["--import", "needs_more", *student], "--import needs_more: importing it failed: No module named "
                                               "'a_package_nobody_installed'"),
    ]
    for argv, message in cases:
        status = common.run(export_tool.main, argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "out").exists()
    # Every tool takes --import, and imports before anything else (here: before it finds the format unknown).
    for tool in TOOLS:
        main = importlib.import_module(f"keras_calikd.cli.{tool}").main
        assert common.run(main, ["--import", "no_such_parts.py"]) == 2
        assert capsys.readouterr().err.strip() == "error: --import no_such_parts.py: no such file.", tool
    assert common.run(export_tool.main, ["--import", "lab_parts_copy", *student, "--format", "svg"]) == 2
    assert "svg" in capsys.readouterr().err and "lab_parts>Doubled" in registered


# ---------------------------------------------------------------- calibration inputs are checked

def _calibration_metrics(from_logits):
    m = ck.metrics
    return [m.ExpectedCalibrationError(from_logits=from_logits), m.OverconfidenceError(from_logits=from_logits),
            m.MaximumCalibrationError(from_logits=from_logits),
            m.AdaptiveCalibrationError(capacity=64, from_logits=from_logits),
            m.ClasswiseCalibrationError(num_classes=3, from_logits=from_logits)]


PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]], "float32")
NAN_ROW = PROBABILITIES.copy()
NAN_ROW[2, 1] = np.nan

BAD_PREDICTIONS = {  # (from_logits, predictions, the message's words)
    "logits read as probabilities": (False, np.log(PROBABILITIES) * 3.0,
                                     r"reads probabilities \(from_logits=False\), but the predictions range over "
                                     r"\[-6\.908, -0\.6694\]: these are logits or scores\. Create the metric with "
                                     "from_logits=True"),
    "negative scores": (False, PROBABILITIES - 0.3, r"range over \[-0\.2, 0\.5\]: these are logits or scores"),
    "scores that are not normalised": (False, PROBABILITIES * 0.5, "a prediction row sums to 0.5, not 1"),
    "a NaN row (probabilities)": (False, NAN_ROW, "1 of 4 prediction rows hold NaN or infinite values"),
    "a NaN row (logits)": (True, NAN_ROW, "1 of 4 prediction rows hold NaN or infinite values"),
}


@pytest.mark.parametrize("case", sorted(BAD_PREDICTIONS))
def test_calibration_metrics_refuse_predictions_they_cannot_read(case):
    from_logits, predictions, message = BAD_PREDICTIONS[case]
    labels = np.array([0, 1, 2, 0])
    for metric in _calibration_metrics(from_logits):
        with pytest.raises(ValueError, match=message):
            metric.update_state(labels, predictions)
        metric.update_state(labels, PROBABILITIES)  # the metric still takes good rows
        assert np.isfinite(float(metric.result())), metric.name


def test_in_a_compiled_step_unreadable_rows_make_the_calibration_errors_nan():
    """A model that outputs logits, metrics reading probabilities: NaN, the rows counted; a NaN row likewise."""
    x, y = blobs(32, num_classes=3)
    x[5] = np.nan  # one image whose logits are NaN
    model = dense_model(3, (8, 8, 1), name="logits_out")  # linear: the NaN image's logits are NaN
    probabilities, logits = _calibration_metrics(False), ck.metrics.ExpectedCalibrationError(from_logits=True,
                                                                                            name="ece_logits")
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=probabilities + [logits])
    results = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    for metric in probabilities + [logits]:
        assert np.isnan(results[metric.name]), metric.name
    assert [float(m.invalid_count.value) for m in probabilities] == [32.0] * 5
    assert float(logits.invalid_count.value) == 1.0
    with pytest.raises(ValueError, match="was given 1 prediction rows it cannot read"):
        logits.bin_statistics()


def test_a_distiller_refuses_a_metric_that_reads_probabilities():
    with pytest.raises(ValueError, match="'oe' reads probabilities .* Distiller's outputs are the student's logits"):
        _distiller().compile(metrics=["accuracy", ck.metrics.OverconfidenceError(from_logits=False)])
    with pytest.raises(ValueError, match="'sparse_categorical_crossentropy' reads probabilities"):
        _distiller().compile(metrics={"x": [keras.metrics.SparseCategoricalCrossentropy()]})


@pytest.mark.parametrize("case", ["one image", "all predictions right"])
def test_temperature_scaling_of_a_degenerate_fit_keeps_the_model_as_it_is(case, rng):
    from keras_calikd.training.evaluation import posthoc_calibration

    labels = rng.integers(0, 3, 40)
    logits = 4.0 * np.eye(3)[labels] + rng.normal(size=(40, 3))
    fit_logits, fit_labels = (logits[:1], labels[:1]) if case == "one image" else (6.0 * np.eye(3)[labels], labels)
    result = posthoc_calibration(fit_logits, fit_labels, logits, labels, "temperature", bins=(15,))
    assert result["parameters"] == {"temperature": 1.0}
    assert result["calibrated"] == result["uncalibrated"]  # no better row from a search bound
    reason = "on one image" if case == "one image" else "all 40 fitting images are predicted right"
    assert reason in result["warnings"][0] and "a degenerate fit, so the map keeps T = 1" in result["warnings"][0]


@pytest.mark.backend_neutral
def test_bin_counts_are_bounded(capsys):
    from keras_calikd.cli import common
    from keras_calikd.cli import evaluate as evaluate_tool

    status = common.run(evaluate_tool.main, ["--model", "m.keras", "--dataset", "fashion_mnist", "--bins", "1000000"])
    assert status == 2 and capsys.readouterr().err == (
        "error: --bins must be comma-separated bin counts from 1 to 1000 (the paper reports 100 and 15), got "
        "'1000000'.\n")
    with pytest.raises(ValueError, match=r"Experiment: `eval_bins` must be an integer <= 1000, got 1000000"):
        ck.training.Experiment(name="x", dataset="fashion_mnist", model="resnet8", eval_bins=(100, 1_000_000))


# ---------------------------------------------------------------- smaller cases: seeds

SEEDS = {
    "a strategy's seed past 2**32 - 1": (lambda: ck.augmentations.MixUp(seed=2 ** 40),
                                         "MixUp: `seed` must be an integer <= 4294967295, got 1099511627776."),
    "a negative strategy seed": (lambda: ck.distillations.CRD(seed=-1), "CRD: `seed` must be an integer >= 0, got -1."),
    "a fractional strategy seed": (lambda: ck.augmentations.CutMix(seed=1.5), "CutMix: `seed` must be an integer"),
    "a run's seed past 2**32 - 1": (lambda: ck.training.Experiment(name="x", dataset="fashion_mnist", model="resnet8",
                                                                   seed=2 ** 32),
                                    "Experiment: `seed` must be an integer <= 4294967295, got 4294967296."),
}


@pytest.mark.parametrize("case", sorted(SEEDS))
def test_a_seed_out_of_range_fails_at_construction(case):
    make, message = SEEDS[case]
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value).startswith(message)


# ---------------------------------------------------------------- multi-worker start-up: bounded, one error line

def _free_port():
    from keras_calikd.training.distribution import free_local_ports

    return free_local_ports(1)[0]


def _jax_job(monkeypatch, process_id, coordinator):
    from keras_calikd.training import distribution

    def start(argv):
        monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", coordinator)
        monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
        monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", str(process_id))
        return distribution._jax_cluster("multi_worker", timeout=1.0, heartbeat_timeout=1.0)

    return start


def _start_up_faults(monkeypatch, held):
    import json

    from keras_calikd.training import distribution
    from keras_calikd.training.cluster import wait_for_processes

    workers = json.dumps({"cluster": {"worker": "127.0.0.1:2222,127.0.0.1:2223"}, "task": {"type": "worker",
                                                                                          "index": 0}})
    return {
        "a worker list given as a string": (
            lambda argv: distribution.tf_config_description({"TF_CONFIG": workers}),
            "distribution: TF_CONFIG's 'worker' job must be a list of 'host:port' strings, one per process, got "
            "'127.0.0.1:2222,127.0.0.1:2223'"),
        "a worker's port in use": (
            lambda argv: wait_for_processes(f"127.0.0.1:{held}", [f"127.0.0.1:{_free_port()}"], 60.0),
            f"distribution: port {held} of this process's address '127.0.0.1:{held}' is in use by another program"),
        "a peer that never starts": (
            lambda argv: wait_for_processes(f"127.0.0.1:{_free_port()}", ["127.0.0.1:1"], 1.0),
            "distribution: 127.0.0.1:1 did not answer within the 1 s the job waits for its processes to start "
            "(Experiment.worker_timeout). Start the same command on every process of the job"),
        "the JAX coordinator's port in use": (
            _jax_job(monkeypatch, 0, f"127.0.0.1:{held}"),
            f"distribution: port {held} of the coordinator's address (KERAS_DISTRIBUTION_JOB_ADDRESSES, served by "
            "process 0, this one)"),
        "an unreachable JAX coordinator": (
            _jax_job(monkeypatch, 1, "127.0.0.1:1"),
            "distribution: 127.0.0.1:1 did not answer within the 1 s"),
    }


START_UP_CASES = ["a worker list given as a string", "a worker's port in use", "a peer that never starts",
                  "the JAX coordinator's port in use", "an unreachable JAX coordinator"]


@pytest.mark.backend_neutral
@pytest.mark.parametrize("case", START_UP_CASES)
def test_multi_worker_start_up_fails_fast_with_one_error_line(case, monkeypatch, capsys):
    import socket
    import time

    from keras_calikd.cli import common

    with socket.socket() as other_program:  # holds a port, as another program would
        other_program.bind(("127.0.0.1", 0))
        other_program.listen(1)
        held = other_program.getsockname()[1]
        main, message = _start_up_faults(monkeypatch, held)[case]
        started = time.monotonic()
        status = common.run(main, [])
        took = time.monotonic() - started
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    assert took < 5.0  # the waits keep to their 1 s (a port in use fails at once)


@pytest.mark.heavy
@pytest.mark.backend_neutral
def test_a_tensorflow_worker_waiting_for_its_peer_ends_on_sigterm(tmp_path):
    """The wait for a peer that never starts is Python's: SIGTERM ends it (TensorFlow's own wait ignored it)."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    own, peer = _free_port(), _free_port()
    config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{own}", f"127.0.0.1:{peer}"]},
                         "task": {"type": "worker", "index": 0}})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    worker = subprocess.Popen(
        [sys.executable, "-c", "from keras_calikd.training import distribution; "
                               "distribution.setup('multi_worker', timeout=300)"],
        env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CONFIG=config, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and worker.poll() is None:  # until setup waits, listening on its port
            try:
                socket.create_connection(("127.0.0.1", own), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == -signal.SIGTERM
    finally:
        worker.kill()
        worker.wait()


# ---------------------------------------------------------------- gin files, run names and splits: one error line

@pytest.fixture(scope="module")
def fake_fashion(tmp_path_factory):
    import data_fakes

    data_dir = tmp_path_factory.mktemp("tfds")
    data_fakes.write_fashion_mnist(str(data_dir / "downloads" / "manual" / "fashion-mnist"), n_train=64, n_test=32)
    return str(data_dir)


def _configuration_faults(folder, data_dir):
    """Case -> (tool, argv, the start of its one error line), for the faults found by hand (no training)."""
    (folder / "unclosed.gin").write_text("Experiment.epochs = 3\n# a comment\nExperiment.name = (\n  'a',\n\n")
    (folder / "binary.gin").write_bytes(b"\xff\xfe\x00binary")
    (folder / "folder.gin").mkdir()
    (folder / "folder.gin" / "mine.gin").write_text("Experiment.epochs = 1\n")
    train = ["--gin", "quickstart/teacher.gin", "--gin_param", f"RUNS_DIR = {str(folder / 'runs')!r}",
             "--gin_param", f"DATA_DIR = {data_dir!r}", "--gin_param", "Experiment.validation_split = 'test'"]
    evaluate = ["--model", str(folder / "never_loaded.keras"), "--dataset", "fashion_mnist", "--data_dir", data_dir]
    return {
        "an undefined gin macro": (
            "train", train + ["--gin_param", "Experiment.epochs = %UNDEF"],
            "invalid gin configuration: the macro %UNDEF (used by Experiment.epochs = %UNDEF) is not defined; "
            "define it in a gin file or with --gin_param 'UNDEF = <value>', or correct its name."),
        "a gin file whose bracket is not closed": (
            "train", ["--gin", "unclosed.gin"],
            "gin file 'unclosed.gin', line 3: a bracket or quote opened in the statement that starts there is "
            "not closed before the end of the file; close it."),
        "a binary gin file": (
            "train", ["--gin", "binary.gin"],
            "gin file 'binary.gin' is not a text gin file: byte 0xff at offset 0 is not UTF-8 text"),
        "a folder given as a gin file": (
            "train", ["--gin", "folder.gin"], "gin file 'folder.gin' is a folder, not a gin file; give one of the "
                                              ".gin files in it (e.g. --gin folder.gin/mine.gin)"),
        "a run name holding a direction character": (
            "train", train + ["--gin_param", "Experiment.name = 'x/\u202egnp.exe'"],
            "Experiment: `name`'s folder name '\\u202egnp.exe' is blank or holds an unprintable character"),
        "a run name's folder name of 300 bytes": (
            "train", train + ["--gin_param", f"Experiment.name = 'mine/{'x' * 300}'"],
            "Experiment: `name`'s folder name 'xxxxxxxxxxxxxxxxxxxxxxxx...' is 300 bytes long (UTF-8); file "
            "systems take at most 255 bytes per folder name"),
        "a training slice beyond its split": (
            "train", train + ["--gin_param", "Experiment.train_split = 'train[:1000]'"],
            "Experiment: `train_split` = 'train[:1000]' asks for more images than the train split of fashion_mnist "
            "holds (64); give a slice within its 64 images, e.g. 'train[:64]' or a percentage such as "
            "'train[:50%]'."),
        "a temperature-scaling slice beyond its split": (
            "train", train + ["--gin_param", "Experiment.train_split = 'train'", "--gin_param",
                              "Experiment.temperature_scaling_split = 'test[-100:]'"],
            "Experiment: `temperature_scaling_split` = 'test[-100:]' asks for more images than the test split"),
        "an evaluated slice beyond its split": (
            "evaluate", evaluate + ["--split", "test[:1000]"],
            "`split` 'test[:1000]' (calikd-evaluate --split) asks for more images than the test split of "
            "fashion_mnist holds (32); give a slice within its 32 images, e.g. 'test[:32]'"),
        "temperature scaling on half of one image": (
            "evaluate", evaluate + ["--split", "test[:1]", "--temperature_scaling"],
            "post-hoc calibration without a calibration split fits on one half of the evaluated split and reports "
            "the other half, but 'test[:1]' holds 1 image: that needs at least 2 images (better: thousands). Give "
            "held-out images to fit on with --calibration_split (e.g. 'train[50000:]'), or evaluate a larger "
            "--split."),
    }


CONFIGURATION_FAULTS = ["an undefined gin macro", "a gin file whose bracket is not closed", "a binary gin file",
                        "a folder given as a gin file", "a run name holding a direction character",
                        "a run name's folder name of 300 bytes",
                        "a training slice beyond its split", "a temperature-scaling slice beyond its split",
                        "an evaluated slice beyond its split", "temperature scaling on half of one image"]


@pytest.mark.backend_neutral
@pytest.mark.parametrize("case", CONFIGURATION_FAULTS)
def test_configuration_faults_end_in_one_error_line_naming_the_setting(case, fake_fashion, tmp_path, capsys,
                                                                        monkeypatch):
    import importlib

    from keras_calikd.cli import common

    monkeypatch.chdir(tmp_path)
    tool, argv, message = _configuration_faults(tmp_path, fake_fashion)[case]
    status = common.run(importlib.import_module(f"keras_calikd.cli.{tool}").main, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    assert len(lines[0]) < 500 and not (tmp_path / "runs").exists()  # no configuration dump; nothing written
