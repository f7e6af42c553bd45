"""One process of a multi-worker job, as `tests/test_multi_worker.py` starts it (two per job, on the loopback).

    python tests/multi_worker_run.py OUT_DIR [--cases] [--kill-after-epoch N] [-- <calikd-train arguments>]
    python tests/multi_worker_run.py --launcher      # forks such processes for the jobs it reads on stdin

The process sets up `"multi_worker"` training from its environment (`TF_CONFIG`
on TensorFlow, `KERAS_DISTRIBUTION_*` on JAX), then:

- with `--cases`, trains the small Distillers of `train_cases` (KD + mixup and
  CRD + CutMix, batch statistics synchronised; KD + CutMix is the experiment
  below) and writes what they learnt to `OUT_DIR/process<index>.json`;
- with calikd-train arguments, runs the experiment they describe, as
  `calikd-train` does (same console, same exit status), with `tiny.zoo_tiny`
  registered as the model `"zoo_tiny"` (the test's runs name it); with
  `--kill-after-epoch N`, process 1 kills itself with SIGKILL right after the
  end of epoch N (the chief has written that epoch's checkpoint or is writing it).

`train_cases` also runs in the test process itself, on one device, as the reference.

`--launcher` is how the test starts its worker processes: one process imports
what a worker imports (TensorFlow, Keras, keras_calikd: about 8 CPU-s, which
each of the test's four workers would pay again), then, for each job it reads
on stdin, forks one new process per worker, which runs
`main` with that worker's arguments, environment and output files, as a fresh
`python tests/multi_worker_run.py ...` would (see `launcher`).
"""

import json
import os
import signal
import sys

GLOBAL_BATCH, STEPS, EPOCHS = 16, 4, 2
CASES = ("kd_mixup", "crd_cutmix")  # KD + CutMix: the test's experiment, compared with one process as a whole run
TINY_MODEL = "zoo_tiny"  # the experiment's teacher and student: `tiny.zoo_tiny`, registered under this name


def _build(case):
    import keras

    import keras_calikd as ck
    from keras_calikd.training import distribution
    from tiny import tiny_cnn

    keras.utils.set_random_seed(0)
    teacher, student = tiny_cnn(name="teacher", width=6), tiny_cnn(name="student", width=6)
    distribution.sync_batch_norm(student)  # per-replica statistics would differ from one device's by design
    if case.startswith("crd"):
        distillation = ck.distillations.CRD(num_samples=64, embedding_dim=8, num_negatives=16, seed=2)
    else:
        distillation = ck.distillations.KD(temperature=4.0)
    augmentation = ck.augmentations.MixUp(seed=1) if "mixup" in case else ck.augmentations.CutMix(probability=1.0,
                                                                                                   seed=1)
    distiller = ck.Distiller(teacher, student, distillation=distillation, augmentation=augmentation)
    distiller.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      metrics=["accuracy", ck.metrics.ExpectedCalibrationError(from_logits=True)])
    return distiller


def _datasets(cluster, with_index):
    import numpy as np
    import tensorflow as tf

    from tiny import blobs

    x, y = blobs(64)
    val_x, val_y = blobs(40, seed=3)  # validation batches of 16, 16 and 8 rows: the last one smaller
    images = {"image": x, "index": np.arange(64, dtype="int32")} if with_index else x
    train = tf.data.Dataset.from_tensor_slices((images, y)).batch(GLOBAL_BATCH, drop_remainder=True).repeat()
    validation = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(16)
    return cluster.shard(train), cluster.shard(validation)


def train_cases(cluster) -> dict:
    """Trains each case on `cluster` (global batch 16, 2 epochs of 4 steps, validation); returns what it learnt.

    Returns:
        `{case: {"history", "weights", "memory" (CRD)}}` plus the cluster's `num_processes`, `process_index`.
    """
    import keras

    results = {"num_processes": cluster.num_processes, "process_index": cluster.process_index}
    for case in CASES:
        with cluster.scope():
            distiller = _build(case)
        train, validation = _datasets(cluster, case.startswith("crd"))
        history = distiller.fit(train, validation_data=validation, epochs=EPOCHS, steps_per_epoch=STEPS,
                                verbose=0).history
        entry = {"history": history,
                 "weights": [keras.ops.convert_to_numpy(w).ravel().tolist() for w in distiller.student.weights]}
        if case.startswith("crd"):
            crd = distiller.distillations[0]
            entry["memory"] = [keras.ops.convert_to_numpy(bank).ravel().tolist()
                               for bank in (crd.student_memory, crd.teacher_memory)]
        results[case] = entry
    return results


def _kill_after(epoch: int) -> None:
    """Process 1 kills itself with SIGKILL at the end of `epoch` (1-based)."""
    from keras_calikd.training import callbacks, distribution

    original = callbacks.ExperimentCheckpoint.on_epoch_end

    def on_epoch_end(self, index, logs=None):
        original(self, index, logs)
        if distribution.process_index() == 1 and index + 1 == epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    callbacks.ExperimentCheckpoint.on_epoch_end = on_epoch_end


def launcher():
    """Serves jobs read on stdin, one JSON line each; in a forked worker process, returns its `argv`.

    A job is `{"processes": [{"argv", "env", "stdout", "stderr"}, ...]}`: one
    process is forked per entry, with `env` added to the environment and its
    output written to the two files. When all of them have ended, the launcher
    writes `{"statuses", "ended"}` on stdout: each exit status (as
    `subprocess` gives it: minus the signal for a killed process) and the time
    it ended. It returns `None` when stdin closes.

    Forking is safe here because the imports start no computation: the
    TensorFlow and JAX runtimes start in the worker processes, which also read
    their job description (`TF_CONFIG`, `KERAS_DISTRIBUTION_*`) only then.
    Settings read at import (`KERAS_BACKEND`, `JAX_COMPILATION_CACHE_DIR`) must
    be in the launcher's own environment.
    """
    import importlib
    import time

    for module in ("tensorflow", "tiny", "keras_calikd.cli.common", "keras_calikd.cli.train",
                   "keras_calikd.training.callbacks", "keras_calikd.training.distribution"):
        importlib.import_module(module)  # what a worker process imports, once

    for line in sys.stdin:
        pids = []
        for spec in json.loads(line)["processes"]:
            sys.stdout.flush(), sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # a worker process: its own stdin, output and environment, then main(argv) and exit
                for fd, (path, mode) in enumerate([(os.devnull, os.O_RDONLY), (spec["stdout"], os.O_WRONLY),
                                                   (spec["stderr"], os.O_WRONLY)]):
                    target = os.open(path, mode | (os.O_CREAT | os.O_TRUNC if fd else 0), 0o644)
                    os.dup2(target, fd)
                    os.close(target)
                os.environ.update(spec["env"])
                return spec["argv"]
            pids.append(pid)
        statuses, ended = [None] * len(pids), [None] * len(pids)
        while None in statuses:
            pid, status = os.wait()
            if pid in pids:
                statuses[pids.index(pid)] = os.waitstatus_to_exitcode(status)
                ended[pids.index(pid)] = time.time()
        print(json.dumps({"statuses": statuses, "ended": ended}), flush=True)
    return None


def main(argv) -> int:
    out_dir, options = argv[0], argv[1:]
    train_args = options[options.index("--") + 1:] if "--" in options else []
    options = options[:options.index("--")] if "--" in options else options
    from keras_calikd.training import distribution

    cluster = distribution.setup("multi_worker", timeout=120, heartbeat_timeout=10)  # first, before any computation
    if "--cases" in options:
        results = train_cases(cluster)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"process{cluster.process_index}.json"), "w") as f:
            json.dump(results, f)
    if "--kill-after-epoch" in options:
        _kill_after(int(options[options.index("--kill-after-epoch") + 1]))
    if not train_args:
        return 0
    from keras_calikd.cli import common, train
    from keras_calikd.models import MODELS
    from tiny import zoo_tiny

    MODELS.register(TINY_MODEL)(zoo_tiny)
    return common.run(train.main, train_args)


if __name__ == "__main__":
    if sys.argv[1:] == ["--launcher"]:
        argv = launcher()  # returns in each forked worker process (and None when the launcher is done)
        if argv is None:
            sys.exit(0)
    else:
        argv = sys.argv[1:]
    sys.exit(main(argv))
