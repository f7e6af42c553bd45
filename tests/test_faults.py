"""Nothing lost, every error clear: one table row per fault class, several cases each.

In-process rows call the tools' `main` through `keras_calikd.cli.common.run` (what the console scripts do)
and check the single `error:` line and exit status 2; the crash rows kill real training processes inside
each file write and check that the next start resumes to the result of an uninterrupted run.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import data_fakes
import keras_calikd as ck
from keras_calikd.cli import common
from keras_calikd.cli import evaluate as evaluate_tool
from keras_calikd.cli import export as export_tool
from keras_calikd.cli import train as train_tool
from tiny import blobs, tiny_cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAX = keras.backend.backend() == "jax"
# The files, locks and tools under test are backend-neutral: tools/run_tests.sh runs this module once, in its
# TensorFlow pass. Its kill chain is also the TensorFlow pass's test of resuming after a kill; the JAX pass's is
# tests/test_reliability.py's killed run (marked jax_pass).
pytestmark = pytest.mark.backend_neutral


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    data_fakes.write_fashion_mnist(str(data_dir / "downloads" / "manual" / "fashion-mnist"), n_train=64, n_test=32)
    return str(data_dir)


def bindings(runs_dir, data_dir, **extra):
    values = {"RUNS_DIR": repr(str(runs_dir)), "DATA_DIR": repr(str(data_dir)), "Experiment.epochs": 2,
              "Experiment.batch_size": 32, "Experiment.eval_batch_size": 32, "Experiment.model": "'resnet8'",
              "Experiment.export": False, "Experiment.verbose": 0, "Experiment.train_split": "'train'",
              "Experiment.diagram_formats": "('png',)",
              "Experiment.jit_compile": JAX,
              # The quickstart holds out train[59500:], beyond the fake data set's training images.
              "Experiment.validation_split": "'test'"}
    values.update(extra)
    return [arg for key, value in values.items() for arg in ("--gin_param", f"{key} = {value}")]


def tool_error(capsys, main, argv):
    """Runs a tool as its console script does; returns its single error line (and checks status 2)."""
    status = common.run(main, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def saved_model(tmp_path, num_classes=10, shape=(28, 28, 1)):
    path = str(tmp_path / "model.keras")
    tiny_cnn(num_classes, shape, name="m").save(path)
    return path


# ---------------------------------------------------------------- never destroy what the user has

def test_outputs_never_replace_what_the_tool_did_not_create(tmp_path, capsys):
    checkpoint = saved_model(tmp_path)
    run = tmp_path / "runs" / "x"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "checkpoints" / "best.keras").write_bytes(open(checkpoint, "rb").read())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own file")
    cases = [
        (export_tool.main, ["--checkpoint", str(run / "checkpoints" / "best.keras"), "--output", str(run)], "run folder"),
        (export_tool.main, ["--checkpoint", checkpoint, "--output", str(run), "--overwrite"], "run folder"),
        (export_tool.main, ["--checkpoint", checkpoint, "--output", str(mine), "--overwrite"], "not written by this tool"),
        (evaluate_tool.main, ["--model", checkpoint, "--dataset", "fashion_mnist", "--output", str(run)],
         "run folder"),
        (evaluate_tool.main, ["--model", checkpoint, "--dataset", "fashion_mnist", "--output", str(mine)],
         "not written by this tool"),
    ]
    for main, argv, message in cases:
        assert message in tool_error(capsys, main, argv)
    assert sorted(os.listdir(run)) == ["checkpoints", "run.json"] and (mine / "notes.txt").read_text() == "my own file"


# ---------------------------------------------------------------- crash consistency

# Each start of the chain below resumes what the previous kill left and dies inside the next write, so that
# every file and folder a run writes is killed once mid-write: (name, which write in that process, where).
KILL_POINTS = [
    ("run.json", 1, "before_rename"),        # the run's record, at its first start
    ("config.gin", 1, "before_rename"),
    ("best.keras", 1, "before_rename"),      # epoch 1's checkpoints and state
    ("last.keras", 1, "before_rename"),
    ("state.npz", 2, "before_rename"),       # epoch 2's state: the start resumes after epoch 1
    ("metrics.csv", 1, "before_rename"),     # the state says epoch 2, the log still ends at epoch 1
    ("reliability.png", 1, "before_rename"),
    ("results.json", 1, "before_rename"),
    ("operative_config.gin", 1, "before_rename"),
    ("saved_model", 1, "before_rename"),     # a folder: complete under its temporary name
    ("run.json", 1, "before_rename"),        # marking the run finished
    ("saved_model", 1, "after_aside"),       # the earlier export moved aside, the new one not yet in place
]


def _chain(runs_dir, data_dir, points, **extra):
    """Runs the starts of `points` one after the other (tests/kill_inside_write.py); returns how each ended."""
    command = [sys.executable, os.path.join(ROOT, "tests", "kill_inside_write.py"), json.dumps(points),
               "--", "--gin", "quickstart/teacher.gin", *bindings(runs_dir, data_dir, **extra)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    ended = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"point"')]
    return [(tuple(end["point"]), end["status"]) for end in ended], done.stderr[-3000:]


@pytest.mark.heavy
def test_a_run_killed_inside_every_file_write_resumes_to_the_same_result(tmp_path, fashion_dir):
    assert common.run(train_tool.main, ["--gin", "quickstart/teacher.gin",
                                        *bindings(tmp_path / "whole", fashion_dir, **{"Experiment.export": True})]) == 0
    runs = tmp_path / "killed"
    run = runs / "quickstart" / "teacher"
    # One chain: each start resumes what the previous kill left and dies at the next point; the last one finishes.
    points = [list(kill) for kill in KILL_POINTS] + [["-", 0, "-"]]
    ended, errors = _chain(runs, fashion_dir, points, **{"Experiment.export": True})
    assert ended == [(tuple(p), -signal.SIGKILL) for p in KILL_POINTS] + [(("-", 0, "-"), 0)], errors
    expected = json.loads((tmp_path / "whole" / "quickstart" / "teacher" / "results.json").read_text())
    got = json.loads((run / "results.json").read_text())
    for key in ("accuracy", "ece_100", "oe_100", "ece_15", "nll", "brier", "best_epoch", "num_examples"):
        assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
    rows = (run / "logs" / "metrics.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]  # complete logs, rebuilt from the state
    leftovers = [os.path.join(folder, name) for folder, names, files in os.walk(run) for name in names + files
                 if name.startswith((".tmp-", ".old-"))]
    assert leftovers == [] and json.loads((run / "run.json").read_text())["finished"]
    assert (run / "saved_model" / "saved_model.pb").exists() and (run / "saved_model" / "export.json").exists()


def test_a_folder_moved_aside_when_killed_is_put_back(tmp_path):
    from keras_calikd.files import atomic_path, remove_temporaries

    target = tmp_path / "saved_model"
    target.mkdir()
    (target / "old.txt").write_text("the last complete export")
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):  # the old folder goes aside, then the process "dies"
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            raise KeyboardInterrupt

    os.replace = replace_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            with atomic_path(str(target)) as temporary:
                os.makedirs(temporary)
                open(os.path.join(temporary, "new.txt"), "w").close()
    finally:
        os.replace = real_replace
    assert not target.exists()
    remove_temporaries(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["saved_model"] and (target / "old.txt").exists()


@pytest.mark.heavy
def test_two_processes_never_train_into_one_run(tmp_path, fashion_dir, capsys):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), TF_CPP_MIN_LOG_LEVEL="3")
    args = ["--gin", "quickstart/teacher.gin", *bindings(tmp_path, fashion_dir, **{"Experiment.epochs": 50})]
    first = subprocess.Popen([sys.executable, "-m", "keras_calikd.cli.train", *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tmp_path / "quickstart" / "teacher" / ".lock"
    try:
        deadline = time.time() + 300
        while (not lock.exists() or not lock.read_text().strip()) and time.time() < deadline:
            time.sleep(0.1)
        # the second process is this one (the console script's entry point, in-process)
        message = tool_error(capsys, train_tool.main, args)
    finally:
        first.kill()
        first.wait()
    assert f"is in use by process {first.pid}" in message


# ---------------------------------------------------------------- provenance

@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory, fashion_dir):
    """A finished one-epoch teacher run; tests copy it (`copy_of`) before changing it."""
    runs = tmp_path_factory.mktemp("finished")
    args = ["--gin", "quickstart/teacher.gin", *bindings(runs, fashion_dir, **{"Experiment.epochs": 1})]
    assert common.run(train_tool.main, args) == 0
    return runs


def copy_of(runs, tmp_path):
    shutil.copytree(runs, tmp_path, dirs_exist_ok=True)
    return tmp_path / "quickstart" / "teacher"


@pytest.mark.heavy
@pytest.mark.xdist_group("teacher_run")  # one worker trains the shared run
def test_provenance_is_checked(tmp_path, fashion_dir, teacher_run, capsys):
    run = copy_of(teacher_run, tmp_path)
    args = ["--gin", "quickstart/teacher.gin", *bindings(tmp_path, fashion_dir, **{"Experiment.epochs": 1})]
    record = json.loads((run / "run.json").read_text())
    for key, value in (("backend", "tensorflow" if JAX else "jax"), ("keras", "3.0.0"),
                       ("precision", "mixed_bfloat16")):
        changed = dict(record, finished=False, provenance=dict(record["provenance"], **{key: value}))
        (run / "run.json").write_text(json.dumps(changed))
        line = tool_error(capsys, train_tool.main, args)
        assert "another environment" in line and f"{key}: {value!r} in the run" in line
    (run / "run.json").write_text(json.dumps(dict(record, finished=False)))
    kd = ["--gin", "quickstart/kd.gin", *bindings(tmp_path, fashion_dir, **{
        "Experiment.epochs": 1, "Experiment.temperature_scaling_split": "'train[48:]'",
        "Experiment.teacher_calibration_split": "'train[48:]'", "Experiment.teacher_calibration_method": "'matrix'"})]
    assert "has not finished" in tool_error(capsys, train_tool.main, kd)
    assert common.run(train_tool.main, kd + ["--gin_param", "Experiment.allow_unfinished_teacher = True"]) == 0
    # The run distilled from the teacher's matrix scaling and says how both post-hoc fits went.
    results = json.loads((tmp_path / "quickstart" / "kd" / "results.json").read_text())
    fit = results["teacher_calibration"]
    assert fit["method"] == "matrix" and np.shape(fit["parameters"]["weights"]) == (10, 10)
    assert "teacher_temperature" not in results and isinstance(fit["warnings"], list)
    assert isinstance(results["temperature_scaled"]["warnings"], list)
    assert "The teacher's matrix scaling, fitted on train[48:]" in capsys.readouterr().out


@pytest.mark.heavy
@pytest.mark.xdist_group("teacher_run")  # one worker trains the shared run
def test_evaluation_settings_are_not_part_of_the_run(tmp_path, fashion_dir, teacher_run, capsys):
    args = ["--gin", "quickstart/teacher.gin", *bindings(tmp_path / "new", fashion_dir)]
    assert "`eval_bins` must be a positive integer" in tool_error(
        capsys, train_tool.main, args + ["--gin_param", "Experiment.eval_bins = [0]"])
    assert not (tmp_path / "new").exists()  # refused before anything was written
    run = copy_of(teacher_run, tmp_path)  # finished with the quickstart's bins, (15, 100)
    assert json.loads((run / "results.json").read_text())["epochs"] == 1
    args = ["--gin", "quickstart/teacher.gin", *bindings(tmp_path, fashion_dir)]
    assert common.run(train_tool.main, args + ["--gin_param", "Experiment.eval_bins = [10]",
                                               "--gin_param", "Experiment.epochs = 2"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert "ece_10" in results and "ece_15" not in results and results["epochs"] == 2


# ---------------------------------------------------------------- inputs, on every path

def _pipeline(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _distiller(augmentation="none"):
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation=augmentation)
    distiller.compile(optimizer="sgd")
    return distiller


def _bad_inputs():
    """(The labels of a tf.data pipeline: tests/test_faults_library.py, on both backends, as the ValueError.)"""
    x, y = blobs(32)
    nan_x = x.copy()
    nan_x[3, 2, 2, 0] = np.nan
    return {
        "labels out of range (NumPy)": (lambda: _distiller().fit(x, y + 5, verbose=0), r"class ids in \[0, 9\]"),
        "fractional labels (NumPy)": (lambda: _distiller().fit(x, y + 0.7, verbose=0), "whole class ids"),
        "NaN images (NumPy)": (lambda: _distiller().fit(nan_x, y, verbose=0), "NaN or infinite"),
        "NaN images (tf.data)": (lambda: _distiller().fit(_pipeline(nan_x, y), verbose=0), "NaN or infinite"),
        "empty data (NumPy)": (lambda: _distiller().fit(x[:0], y[:0], verbose=0), "holds no images"),
        "empty data (tf.data)": (lambda: _distiller().fit(_pipeline(x, y).take(0), verbose=0), "empty"),
        "cutout larger than the images": (lambda: _distiller(ck.augmentations.Cutout(size=100)),
                                          r"`size` \(100\) is larger than the 8x8 images"),
        "one-hot rows of another width": (lambda: _distiller().fit(x, np.eye(7)[y % 7], verbose=0),
                                          "neither class ids nor one-hot rows"),
        "evaluation labels out of range": (lambda: _distiller().evaluate(x, y + 5, verbose=0),
                                           r"class ids in \[0, 9\]"),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_inputs_fail_with_a_message_not_a_deep_traceback(case):
    action, message = _bad_inputs()[case]
    with pytest.raises(Exception) as error:
        action()
    text = common._one_line(error.value)
    assert re.search(message, text), text
    assert len(text) < 400


# ---------------------------------------------------------------- tool errors: one line, status 2

def test_anticipated_tool_failures_print_one_error_line(tmp_path, fashion_dir, capsys):
    model = saved_model(tmp_path)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(open(model, "rb").read()[:200])
    text_file = tmp_path / "notes.keras"
    text_file.write_text("not a model")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    (tmp_path / "broken.gin").write_text("Experiment.epochs = = 3\n")
    train_args = ["--gin", "quickstart/teacher.gin", *bindings(tmp_path / "runs", fashion_dir)]
    cases = [
        (train_tool.main, train_args + ["--gin_param", "Experiment.dataset = 'cifar1000'"], "Known names"),
        (train_tool.main, train_args + ["--gin_param", "Experiment.train_split = 'trian'"], "Splits: train, test"),
        (train_tool.main, train_args + ["--gin_param", "Experiment.batch_size = 500"], "larger than the training"),
        (train_tool.main, train_args + ["--gin_param", "Experiment.train_split = 'train[:0]'"], "no example|empty"),
        (train_tool.main, ["--gin", str(tmp_path / "broken.gin")], "invalid gin configuration"),
        (train_tool.main, ["--gin", "quickstart/teacher.gin", *bindings(tmp_path / "runs", blocker / "data")],
         "a_file"),
        (evaluate_tool.main, ["--model", str(truncated), "--dataset", "fashion_mnist", "--data_dir", fashion_dir],
         "not a .keras model file|cannot be loaded"),
        (evaluate_tool.main, ["--model", str(text_file), "--dataset", "fashion_mnist", "--data_dir", fashion_dir],
         "not a .keras model file"),
        (evaluate_tool.main, ["--model", str(tmp_path / "missing.keras"), "--dataset", "fashion_mnist"],
         "does not exist"),
        (export_tool.main, ["--checkpoint", str(truncated), "--output", str(tmp_path / "out")],
         "not a .keras model file|cannot be loaded"),
    ]
    for main, argv, message in cases:
        line = tool_error(capsys, main, argv)
        assert re.search(message, line), (argv, line)


def test_a_resumed_run_keeps_the_first_epoch_that_reached_the_best_value():
    from keras_calikd.training.callbacks import ExperimentCheckpoint

    history = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.75}, {"epoch": 3, "val_accuracy": 0.75}]
    saver = ExperimentCheckpoint("state.npz", "best.keras", "last.keras", "metrics.csv", export_model=None,
                                 history=history, best=0.75, write=False)
    assert saver.best_epoch == 2  # as in the uninterrupted run, where epoch 3 did not improve on epoch 2
