"""Two processes train as one: same results as one process, only the chief writes, a killed worker is survived.

The test starts two worker processes on the loopback interface (`tests/multi_worker_run.py`), each with one
CPU device, described the standard way for the backend: `TF_CONFIG` (TensorFlow's
MultiWorkerMirroredStrategy) or `KERAS_DISTRIBUTION_*` (JAX's multi-process runtime). Each job's processes
are new ones, forked by a launcher process that has imported what a worker imports (TensorFlow, Keras,
keras_calikd) once, instead of each of the four workers importing them; each computes with one thread.
Nothing is shared between the processes but the files they write. The job

1. trains KD + mixup and CRD + CutMix Distillers (batch statistics synchronised) on a global batch of 16:
   the histories, final weights and CRD memory banks must match one process on one device, and the two
   processes must hold the same weights and banks;
2. runs a distillation experiment (`calikd-train`, KD + CutMix on fake Fashion-MNIST; teacher and student
   a one-convolution network with the zoo's conventions, whose programs compile in a fraction of a
   ResNet's time), in which process 1
   kills itself with SIGKILL at the end of epoch 1: the chief must stop with a message naming the lost
   process and where the run resumes, within the timeouts;
3. is launched again with the same command: it resumes after epoch 1 and must end with the epoch logs (the
   loss trajectory), final student weights and results of an uninterrupted one-process run, while
   process 1, which has its own runs folder, writes nothing. This is the KD + CutMix case of "the same
   training on any number of processes", through a kill and a resume.
"""

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import data_fakes
import multi_worker_run
from tiny import zoo_tiny
from keras_calikd.cli import common
from keras_calikd.cli import train as train_tool
from keras_calikd.training import distribution
from keras_calikd.training.experiment import Experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAX = keras.backend.backend() == "jax"
WAIT = 600  # seconds: a safety net; the processes stop by themselves (heartbeats of 10 s, waits of 120 s)
RUN = os.path.join("quickstart", "kd_cutmix")


# Each worker stands for a machine of its own, here with one of the two cores: one compute thread each, so that
# the two do not spin thread pools against each other (read when each runtime starts, in the worker).
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS"), "--xla_cpu_multi_thread_eigen=false"]))}


def worker_env(index, ports):
    """What tells worker `index` of a two-process job about the job: the standard way for the backend."""
    if JAX:
        return dict(ONE_THREAD, KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{ports[0]}",
                    KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(index))
    return dict(ONE_THREAD, TF_CONFIG=json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                                  "task": {"type": "worker", "index": index}}))


@contextlib.contextmanager
def worker_launcher(tmp_path):
    """`multi_worker_run.py --launcher`, which forks the worker processes of each job (see `run_job`)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), TF_CPP_MIN_LOG_LEVEL="3")
    if JAX:  # the relaunch reuses the first job's compiled steps (XLA compilation is most of a short job)
        env.update(JAX_COMPILATION_CACHE_DIR=os.environ.get("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache")),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    with open(tmp_path / "launcher_err.txt", "w") as err:
        launcher = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "multi_worker_run.py"), "--launcher"],
                                    env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                    start_new_session=True)  # its own process group, with the workers it forks
    try:
        yield launcher
    finally:
        launcher.stdin.close()
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever is left of the group: the launcher, workers of a job that ran past WAIT
            os.killpg(launcher.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        launcher.wait()


def run_job(launcher, tmp_path, job, options, train_args_of):
    """Runs a job of two worker processes (new ones, forked by `launcher`) and waits for both, WAIT s at most.

    Returns:
        `[(status, stdout, stderr)]` per process, and the time at which each ended.
    """
    ports = distribution.free_local_ports(2)
    files = [(tmp_path / f"{job}_out{i}.txt", tmp_path / f"{job}_err{i}.txt") for i in range(2)]
    processes = [{"argv": [str(tmp_path / "cases"), *options, "--", *train_args_of(i)], "env": worker_env(i, ports),
                  "stdout": str(out), "stderr": str(err)} for i, (out, err) in enumerate(files)]
    launcher.stdin.write(json.dumps({"processes": processes}) + "\n")
    launcher.stdin.flush()
    ready, _, _ = select.select([launcher.stdout], [], [], WAIT)
    reply = launcher.stdout.readline() if ready else ""
    if not reply:
        os.killpg(launcher.pid, signal.SIGKILL)
        texts = [(out.read_text()[-2000:], err.read_text()[-2000:]) for out, err in files]
        pytest.fail(f"the {job} job did not end within {WAIT} s (or its launcher stopped): {texts}")
    reply = json.loads(reply)
    return [(status, out.read_text(), err.read_text())
            for status, (out, err) in zip(reply["statuses"], files)], reply["ended"]


def train_args(runs_dir, data_dir, **extra):
    values = {"RUNS_DIR": repr(str(runs_dir)), "DATA_DIR": repr(str(data_dir)), "Experiment.epochs": 2,
              "Experiment.batch_size": 16, "Experiment.eval_batch_size": 16, "Experiment.train_split": "'train'",
              "Experiment.validation_split": "'test'",
              "Experiment.model": repr(multi_worker_run.TINY_MODEL), "Experiment.verbose": 0,
              "Experiment.sync_batch_norm": True, "Experiment.jit_compile": JAX,
              "Experiment.diagram_formats": "('png',)",
              "Experiment.heartbeat_timeout": 10, "Experiment.worker_timeout": 120}
    values.update(extra)
    return ["--gin", "quickstart/kd_cutmix.gin"] + [a for k, v in values.items() for a in ("--gin_param", f"{k} = {v}")]


def fake_teacher(runs_dir, data_dir):
    """A finished teacher run (an untrained `zoo_tiny` is teacher enough) in `runs_dir`."""
    import keras_calikd.data as data

    info = data.info("fashion_mnist", data_dir)
    folder = runs_dir / "quickstart" / "teacher"
    (folder / "checkpoints").mkdir(parents=True)
    keras.utils.set_random_seed(7)
    teacher = zoo_tiny(info.num_classes, input_shape=info.image_shape, normalization=info.normalization)
    teacher.save(str(folder / "checkpoints" / "best.keras"))
    (folder / "run.json").write_text(json.dumps({"finished": True, "epochs": 1}))


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def check_same_training(reference, processes):
    for case in multi_worker_run.CASES:
        one, first, second = reference[case], processes[0][case], processes[1][case]
        assert set(first["history"]) == set(one["history"]) and "val_loss" in one["history"], case
        for key, values in one["history"].items():
            np.testing.assert_allclose(first["history"][key], values, rtol=2e-4, atol=2e-5, err_msg=f"{case} {key}")
        for mine, theirs, other in zip(one["weights"], first["weights"], second["weights"]):
            np.testing.assert_allclose(theirs, mine, rtol=1e-4, atol=1e-5, err_msg=f"{case} weights")
            assert theirs == other, f"{case}: the two processes hold different weights"
        if "memory" in one:
            for mine, theirs, other in zip(one["memory"], first["memory"], second["memory"]):
                np.testing.assert_allclose(theirs, mine, rtol=1e-4, atol=1e-5, err_msg=f"{case} memory banks")
                assert theirs == other, f"{case}: the two processes hold different memory banks"


@pytest.fixture
def tiny_model_registered(monkeypatch):
    """`zoo_tiny` registered in this process (as the worker processes do) for the test's one-process run only."""
    from keras_calikd import gin_support
    from keras_calikd.models import MODELS

    gin_support.register_configurables()  # first, so that zoo_tiny does not become a gin configurable that stays
    monkeypatch.setitem(MODELS._entries, multi_worker_run.TINY_MODEL, zoo_tiny)


@pytest.mark.heavy
@pytest.mark.usefixtures("tiny_model_registered")
def test_two_workers_train_like_one_write_from_the_chief_and_survive_a_killed_worker(tmp_path):
    with worker_launcher(tmp_path) as launcher:
        check_two_worker_jobs(launcher, tmp_path)


def check_two_worker_jobs(launcher, tmp_path):
    data_dir = tmp_path / "tfds"
    data_fakes.write_fashion_mnist(str(data_dir / "downloads" / "manual" / "fashion-mnist"), n_train=64, n_test=32)
    runs = [tmp_path / "chief_runs", tmp_path / "worker_runs", tmp_path / "one_process_runs"]
    fake_teacher(runs[0], data_dir)
    for runs_dir in runs[1:]:
        shutil.copytree(runs[0], runs_dir)
    teacher_files = files_under(runs[1])
    job_args = lambda i: train_args(runs[i], data_dir, **{"Experiment.distribution": "'multi_worker'"})  # noqa: E731

    # 1 and 2: the cases, then the experiment, in which process 1 is killed at the end of epoch 1.
    ((chief, chief_out, chief_err), (worker, _, worker_err)), ended = run_job(
        launcher, tmp_path, "killed", ["--cases", "--kill-after-epoch", "1"], job_args)
    assert worker == -signal.SIGKILL, worker_err[-3000:]
    assert chief == 2, chief_out[-2000:]
    # Noticed through the heartbeats (10 s), then ended at once: not after the shutdown barrier's 120 s.
    assert ended[0] - ended[1] < 100, f"the chief ended {ended[0] - ended[1]:.0f} s after the lost process"
    assert "another process of this 2-process job stopped or cannot be reached" in chief_err, chief_err[-3000:]
    assert "Run the same command on every process again to resume after epoch 1" in chief_err, chief_err[-3000:]
    processes = [json.loads((tmp_path / "cases" / f"process{i}.json").read_text()) for i in range(2)]
    assert [(p["num_processes"], p["process_index"]) for p in processes] == [(2, 0), (2, 1)]
    check_same_training(multi_worker_run.train_cases(distribution.Cluster()), processes)
    chief_run = runs[0] / RUN
    rows = (chief_run / "logs" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "1"]

    # 3: the same command again resumes after epoch 1 and finishes; process 1 wrote nothing, ever.
    ((chief, chief_out, chief_err), (worker, worker_out, worker_err)), _ = run_job(launcher, tmp_path,
                                                                                   "relaunched", [], job_args)
    assert (chief, worker) == (0, 0), (chief_err[-3000:], worker_err[-3000:])
    assert f"Resuming {RUN} after epoch 1" in chief_out, chief_out
    assert "trained as process 1 of 2" in worker_out, worker_out
    assert files_under(runs[1]) == teacher_files, "process 1 wrote into its runs folder"
    written = files_under(chief_run)
    for name in ("run.json", "config.gin", "operative_config.gin", "results.json", "reliability.png",
                 "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/state.npz", "logs/metrics.csv",
                 "saved_model/saved_model.pb"):
        assert name in written, name
    assert not [name for name in written if "/.calikd-tmp-" in "/" + name or "/.calikd-old-" in "/" + name], written
    assert any(name.startswith("logs/tensorboard/train/events") for name in written), written

    # uninterrupted, one process (no SavedModel: the training and the results are what is compared)
    assert common.run(train_tool.main, train_args(runs[2], data_dir, **{"Experiment.export": False})) == 0
    one_process_run = runs[2] / RUN
    expected_log, got_log = (np.genfromtxt(run / "logs" / "metrics.csv", delimiter=",", names=True)
                             for run in (one_process_run, chief_run))
    assert got_log.dtype.names == expected_log.dtype.names and "loss" in got_log.dtype.names
    for key in expected_log.dtype.names:  # the epoch logs: loss, metrics, validation, epoch by epoch
        np.testing.assert_allclose(got_log[key], expected_log[key], rtol=2e-4, atol=2e-5, err_msg=key)
    expected_weights, got_weights = (keras.saving.load_model(run / "checkpoints" / "last.keras").get_weights()
                                     for run in (one_process_run, chief_run))
    assert len(got_weights) == len(expected_weights)
    for mine, theirs in zip(expected_weights, got_weights):
        np.testing.assert_allclose(theirs, mine, rtol=1e-4, atol=1e-5, err_msg="the student's final weights")
    expected = json.loads((one_process_run / "results.json").read_text())
    got = json.loads((chief_run / "results.json").read_text())
    assert got["best_epoch"] == expected["best_epoch"] and got["accuracy"] == expected["accuracy"]
    for key in ("ece_100", "oe_100", "ece_15", "nll", "brier"):
        assert got[key] == pytest.approx(expected[key], rel=1e-3, abs=1e-5), key  # float rounding of all-reduces
    assert json.loads((chief_run / "run.json").read_text())["finished"]


def test_a_bad_distribution_fails_at_configuration_naming_the_kinds():
    with pytest.raises(ValueError, match="'mirrored', 'multi_worker'"):
        Experiment(name="x", dataset="fashion_mnist", model="resnet8", distribution="multiworker")
    with pytest.raises(ValueError, match="True or False"):
        Experiment(name="x", dataset="fashion_mnist", model="resnet8", sync_batch_norm="yes")
    assert Experiment(name="x", dataset="fashion_mnist", model="resnet8", distribution="multi_worker").distribution \
        == "multi_worker"


def test_tf_config_names_the_processes_the_chief_first_and_bad_ones_fail_early():
    two = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}}
    described = distribution.tf_config_description({"TF_CONFIG": json.dumps(two)})
    assert (described["num_processes"], described["process_index"]) == (3, 2)
    with pytest.raises(ValueError, match="TF_CONFIG environment variable, which is not set"):
        distribution.tf_config_description({})
    with pytest.raises(ValueError, match="not in its cluster"):
        distribution.tf_config_description({"TF_CONFIG": json.dumps(dict(two, task={"type": "worker", "index": 5}))})
    with pytest.raises(ValueError, match="the kind must be None, 'mirrored', 'multi_worker'"):
        distribution.setup("multiworker")


def test_shards_are_consecutive_rows_of_each_global_batch_and_uneven_batches_fail():
    import tensorflow as tf

    from keras_calikd.training.input import shard_batches

    batches = tf.data.Dataset.range(12).batch(4)
    shards = [[b.tolist() for b in shard_batches(batches, 2, i).as_numpy_iterator()] for i in range(2)]
    assert shards == [[[0, 1], [4, 5], [8, 9]], [[2, 3], [6, 7], [10, 11]]]
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not split into 2 equal shards"):
        list(shard_batches(tf.data.Dataset.range(3).batch(3), 2, 0))
    with pytest.raises(ValueError, match="a multiple of the number of replicas"):
        distribution.Cluster(num_replicas=2).check_batch_size(15, "Experiment.batch_size")
