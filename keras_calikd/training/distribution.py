"""Training on several devices or machines: one `Cluster` per process, set up once, before anything computes.

`setup(kind)` prepares the process for one of three forms of training and
returns its `Cluster`:

- `None`: one device, one process (the default);
- `"mirrored"`: all devices of this machine, one process
  (`tf.distribute.MirroredStrategy` on TensorFlow, `keras.distribution.DataParallel`
  over the local devices on JAX);
- `"multi_worker"`: several processes, usually one per machine, each with its
  devices. TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy`, configured
  from the standard `TF_CONFIG` environment variable. JAX: the multi-process
  runtime (`jax.distributed.initialize`) with `keras.distribution.DataParallel`
  over the global device mesh; the processes are described by Keras'
  `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator, process 0, first),
  `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`, or
  detected by JAX on SLURM and Open MPI.

Every form trains the same model on the same global batch: with the same seed,
one process and several give the same losses and weights up to float
rounding. The `Cluster` says which process this is (`is_chief`,
`process_index`, `num_processes`), gives the scope to build models in
(`scope`), this process's part of each global batch (`shard`), a context that
computes on this process alone (`local`, for the chief's evaluation and
export), and broadcasts the chief's decisions and arrays to the others.
Module-level `is_chief()`, `process_count()` and `process_index()` read the
cluster set up in this process (one process, the chief, before `setup`).

Timeouts bound every wait: a process that dies is noticed by the others
through the runtime's heartbeats (`heartbeat_timeout`), and a process waits
at most `timeout` for the others to join at start and to finish at exit.
Before the runtime starts, each process waits in Python until every other
process (on JAX: the coordinator) answers on its address
(`cluster.wait_for_processes`): a peer that never starts, an unreachable coordinator
or a port another program holds fail there with a clear error, and SIGTERM
ends the wait; a TensorFlow set-up that still exceeds `timeout` ends the
process with its error line.

Example:

```python
from keras_calikd.training import distribution

cluster = distribution.setup("multi_worker")          # first: before TensorFlow or JAX computes anything
with cluster.scope():
    distiller = ck.Distiller(teacher, student, distillation="kd", augmentation="mixup")
    distiller.compile(optimizer=ck.training.SGD(0.05, momentum=0.9), metrics=["accuracy"])
train = cluster.shard(epoch_batches(split, 128, seed=0, first_epoch=0, num_epochs=240))   # global batch 128
distiller.fit(train, epochs=240, steps_per_epoch=split.num_examples // 128)
if cluster.is_chief:
    distiller.student.save("student.keras")
```
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from typing import Optional

import keras

from keras_calikd.quiet import find_devices
from keras_calikd.training import keras_patches
from keras_calikd.training.cluster import (KINDS, OWNER, Cluster, WorkerLostError, _check_kind, check_kind,
                                          wait_for_processes)

#: The environment variables that describe a JAX job (Keras' own, read by `keras.distribution.initialize`).
JAX_ENVIRONMENT = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                   "KERAS_DISTRIBUTION_PROCESS_ID")

_CURRENT = None


def end_process(status: int) -> None:
    """Ends this process now with `status`, without the runtimes' shutdown barrier.

    For a process whose job lost a member (`WorkerLostError`): at exit, JAX's
    distributed client and TensorFlow's coordination service wait for every
    process of the job to reach a shutdown barrier, which the lost one never
    reaches, so a normal exit would wait the full `timeout` of `setup` after
    the error was reported. The run folder is already consistent (every file is
    written atomically and the next start clears temporaries), so nothing is
    lost by skipping the interpreter's exit handlers; the standard streams are
    flushed first.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)



# ---------------------------------------------------------------------------- setting up


def current() -> Cluster:
    """The cluster this process set up (a one-process cluster before `setup`)."""
    return _CURRENT if _CURRENT is not None else Cluster()


def is_chief() -> bool:
    """Whether this process is the chief of its job (True for a one-process run)."""
    return current().is_chief


def process_count() -> int:
    """How many processes train together (1 for a one-process run)."""
    return current().num_processes


def process_index() -> int:
    """This process's index in its job, 0 being the chief."""
    return current().process_index


def setup(kind: Optional[str] = None, *, timeout: float = 600.0, heartbeat_timeout: float = 60.0) -> Cluster:
    """Prepares this process for training on one device, this machine's devices or several processes.

    Call it first, before TensorFlow or JAX computes anything: both runtimes
    fix their devices and collectives when they start. A second call with the
    same kind returns the same cluster; another kind fails.

    Args:
        kind: `None` (one device), `"mirrored"` (this machine's devices) or
            `"multi_worker"` (several processes: `TF_CONFIG` on TensorFlow;
            `KERAS_DISTRIBUTION_JOB_ADDRESSES`/`_NUM_PROCESSES`/`_PROCESS_ID`
            or JAX's detection of SLURM and Open MPI on JAX).
        timeout: Seconds a process waits for the others to join at start and
            to finish at exit (JAX's initialisation and shutdown timeouts; on
            TensorFlow the cluster's registration and shutdown barrier). It must
            cover the chief's work alone at the end of a run (evaluation, export).
        heartbeat_timeout: Seconds without a heartbeat after which a process
            is declared dead and the others stop (the JAX and TensorFlow
            coordination services).

    Returns:
        The `Cluster` of this process.

    Raises:
        ValueError: an unknown kind, a missing or malformed `TF_CONFIG` or JAX
            job description, this process's port in use, or a second setup of
            another kind.
        RuntimeError: the runtime had started computing before `setup`, or
            another process of the job did not answer within `timeout`.

    Example:

    ```python
    # every process, e.g. with TF_CONFIG='{"cluster": {"worker": ["a:2222", "b:2222"]},
    #                                      "task": {"type": "worker", "index": 0}}'
    cluster = setup("multi_worker")
    cluster.num_processes, cluster.process_index, cluster.is_chief    # (2, 0, True) on a:2222
    ```
    """
    global _CURRENT
    kind = _check_kind(kind)
    for name, value in (("timeout", timeout), ("heartbeat_timeout", heartbeat_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{OWNER}: `{name}` must be a positive number of seconds, got {value!r}.")
    if _CURRENT is not None:
        if _CURRENT.kind != kind:
            raise ValueError(f"{OWNER}: this process was set up for {_CURRENT.kind!r} training; it cannot switch to "
                             f"{kind!r} (the runtime is configured once per process). Start a new process.")
        return _CURRENT
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise ValueError(f"{OWNER}: training on several devices needs the TensorFlow or the JAX backend, not "
                         f"{backend!r}.")
    if kind is None:
        cluster = Cluster()
    elif backend == "tensorflow":
        cluster = _tensorflow_cluster(kind, timeout, heartbeat_timeout)
    else:
        cluster = _jax_cluster(kind, timeout, heartbeat_timeout)
    find_devices()  # once the runtime is set up: its device discovery lines filtered from the console
    _CURRENT = cluster
    return cluster

def tf_config_description(environ=None) -> dict:
    """The cluster `TF_CONFIG` describes: workers, this task, its index among the processes, and the chief.

    The chief is the `"chief"` task when the cluster has one, else worker 0;
    process indices count the chief first, then the workers in order.

    Args:
        environ: The environment to read (default `os.environ`).

    Returns:
        `{"cluster": {...}, "task_type", "task_index", "num_processes", "process_index"}`.

    Raises:
        ValueError: `TF_CONFIG` is missing, not JSON, or does not name this task in its cluster.

    Example:

    ```python
    tf_config_description({"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", '
                                         '"index": 1}}'})["process_index"]     # 1
    ```
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    example = ('{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}')
    if not text:
        raise ValueError(f"{OWNER}: 'multi_worker' training on TensorFlow reads the cluster from the TF_CONFIG "
                         f"environment variable, which is not set. Set it on every process, e.g. TF_CONFIG='{example}' "
                         "(index 1 on the second).")
    try:
        config = json.loads(text)
        cluster, task = dict(config["cluster"]), dict(config["task"])
        task_type, task_index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{OWNER}: TF_CONFIG is not a cluster description ({error}); expected e.g. "
                         f"'{example}'.") from None
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
            raise ValueError(f"{OWNER}: TF_CONFIG's {job!r} job must be a list of 'host:port' strings, one per "
                             f"process, got {addresses!r}; e.g. '{example}'.")
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise ValueError(f"{OWNER}: TF_CONFIG names {unknown} jobs; MultiWorkerMirroredStrategy trains with "
                         "'chief' and 'worker' tasks only.")
    if task_type not in cluster or not 0 <= task_index < len(cluster[task_type]):
        raise ValueError(f"{OWNER}: TF_CONFIG's task ({task_type} {task_index}) is not in its cluster {cluster}.")
    chiefs = len(cluster.get("chief", []))
    process = task_index if task_type == "chief" else chiefs + task_index
    return {"cluster": cluster, "task_type": task_type, "task_index": task_index,
            "num_processes": chiefs + len(cluster.get("worker", [])), "process_index": process}


def _tensorflow_cluster(kind, timeout, heartbeat_timeout) -> Cluster:
    import tensorflow as tf

    if kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        replicas = strategy.num_replicas_in_sync
        return Cluster(kind, 1, 0, replicas, strategy=strategy,
                       description=f"one process with {replicas} replica(s) (TensorFlow MirroredStrategy)")
    description = tf_config_description()
    # Keras' TensorFlow trainer cannot fit under MultiWorkerMirroredStrategy without two fixes, written for
    # given Keras versions (checked here, before anything is set up).
    keras_patches.install_multi_worker_trainer()
    cluster = description["cluster"]
    own = cluster[description["task_type"]][description["task_index"]]
    wait_for_processes(own, [a for job in ("chief", "worker") for a in cluster.get(job, []) if a != own], timeout,
                       own_name=f"this process's address in TF_CONFIG ({description['task_type']} "
                                f"{description['task_index']})")
    _configure_tensorflow_coordination(description, timeout, heartbeat_timeout)
    try:
        with _ended_after(timeout, f"{OWNER}: TensorFlow did not finish setting up the {description['num_processes']}"
                                   f"-process job within {timeout:g} s (Experiment.worker_timeout), although every "
                                   "process answered: one of them stopped meanwhile. Run the same command on "
                                   "every process again."):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        if "startup" in str(error):
            raise RuntimeError(f"{OWNER}: setup('multi_worker') must run before TensorFlow computes anything "
                               "(call it first in the program, before building models or reading data).") from None
        raise
    name = f"{description['task_type']} {description['task_index']}"
    return Cluster(kind, description["num_processes"], description["process_index"], strategy.num_replicas_in_sync,
                   strategy=strategy, description=f"process {description['process_index']} of "
                   f"{description['num_processes']} ({name}, TensorFlow MultiWorkerMirroredStrategy)")


@contextlib.contextmanager
def _ended_after(timeout: float, message: str):
    """Ends the process (status 2, `message` as its error line) if the block does not finish within `timeout`.

    For a wait in native code that neither keeps to its timeout nor returns on SIGTERM (TensorFlow's
    registration of a job's processes): nothing in Python can interrupt it, so a watchdog thread ends the process.
    """
    done = threading.Event()

    def watch():
        if not done.wait(timeout):
            print(f"error: {message}", file=sys.stderr)
            end_process(2)

    threading.Thread(target=watch, name="keras_calikd-setup-watchdog", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def _configure_tensorflow_coordination(description, timeout, heartbeat_timeout) -> None:
    """Sets the coordination service's heartbeat and barrier timeouts, as MultiWorkerMirroredStrategy would set it up.

    TensorFlow offers no public setting for them; without this, its defaults apply (a dead worker is
    noticed after about 10-30 s). The strategy keeps a configuration made before it.
    """
    try:
        from tensorflow.core.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context
    except ImportError:  # another TensorFlow layout: keep its defaults
        return
    cluster = description["cluster"]
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
            for job in ("chief", "worker") if job in cluster]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(cluster),
        heartbeat_timeout_in_ms=int(heartbeat_timeout * 1000), cluster_register_timeout_in_ms=int(timeout * 1000),
        shutdown_barrier_timeout_in_ms=int(timeout * 1000), coordinated_jobs=jobs)


def _jax_cluster(kind, timeout, heartbeat_timeout) -> Cluster:
    import jax

    if kind == "mirrored":
        devices = jax.local_devices()
        distribution = keras.distribution.DataParallel(devices=devices)
        keras.distribution.set_distribution(distribution)
        return Cluster(kind, 1, 0, len(devices), distribution=distribution, local_devices=len(devices),
                       description=f"one process with {len(devices)} device(s) (JAX DataParallel)")
    addresses = os.environ.get(JAX_ENVIRONMENT[0])
    count, index = os.environ.get(JAX_ENVIRONMENT[1]), os.environ.get(JAX_ENVIRONMENT[2])
    try:
        count = None if count is None else int(count)
        index = None if index is None else int(index)
    except ValueError:
        raise ValueError(f"{OWNER}: {JAX_ENVIRONMENT[1]} and {JAX_ENVIRONMENT[2]} must be integers, got "
                         f"{count!r} and {index!r}.") from None
    coordinator = addresses.split(",")[0].strip() if addresses else None
    if coordinator is not None and index is not None:
        if index == 0:  # process 0 serves the coordinator: its port must be free
            wait_for_processes(coordinator, [], timeout, own_name=f"the coordinator's address ({JAX_ENVIRONMENT[0]}, "
                                                                  "served by process 0, this one)")
        else:  # the others reach it first, in a wait that keeps to the timeout and ends on SIGTERM
            wait_for_processes(None, [coordinator], timeout)

    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=count, process_id=index,
                                   initialization_timeout=int(timeout),
                                   heartbeat_timeout_seconds=int(heartbeat_timeout),
                                   shutdown_timeout_seconds=int(timeout))
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{OWNER}: 'multi_worker' training on JAX needs the job's coordinator and processes ({error}). Set "
            f"{JAX_ENVIRONMENT[0]}=<host of process 0>:<port>, {JAX_ENVIRONMENT[1]}=<count> and "
            f"{JAX_ENVIRONMENT[2]}=<this process> on every process, or launch with srun (SLURM) or mpirun.") from None
    except RuntimeError as error:
        if "before any JAX calls" in str(error):
            raise RuntimeError(f"{OWNER}: setup('multi_worker') must run before JAX computes anything (call it "
                               f"first in the program): {error}") from None
        raise
    try:  # the seed Keras draws when none is set, the same on every process (as keras.distribution.initialize does)
        from keras.src.backend.jax.distribution_lib import initialize_rng
    except ImportError:
        initialize_rng = None
    if initialize_rng is not None:
        initialize_rng()
    devices = jax.devices()
    # The processes feed their own rows of each global batch (Cluster.shard), so Keras must not shard again.
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    processes, process = jax.process_count(), jax.process_index()
    return Cluster(kind, processes, process, len(devices), distribution=distribution,
                   local_devices=jax.local_device_count(),
                   description=f"process {process} of {processes} (JAX multi-process, {len(devices)} devices)")



# ---------------------------------------------------------------------------- synchronised batch statistics


def sync_batch_norm(model: keras.Model) -> int:
    """Makes `model`'s batch normalisation compute its statistics over the global batch while training.

    Without it, under `tf.distribute` each replica normalises with the
    statistics of its own rows, so a model's training depends on how many
    replicas share the batch; that matters when the per-replica batches are
    small (a few dozen images or fewer). On TensorFlow this sets
    `synchronized=True` on every `BatchNormalization` layer (one all-reduce of
    the sums per layer and step). The layers' saved configuration keeps
    `synchronized=False`, so the saved model still loads on every backend
    (inference never synchronises). On JAX nothing needs to change: under
    `keras.distribution.DataParallel` the step is one program over the global
    batch, whose statistics are global already.

    Args:
        model: A Keras model (its nested layers are visited).

    Returns:
        The number of batch-normalisation layers in the model.

    Example:

    ```python
    network = ck.models.get("resnet8", num_classes=10, input_shape=(28, 28, 1))
    sync_batch_norm(network)      # before compiling
    ```
    """
    layers = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization)]
    if keras.backend.backend() == "tensorflow":
        for layer in layers:
            layer.synchronized = True
            layer.get_config = _config_without_synchronization(layer.get_config)
    return len(layers)


def _config_without_synchronization(get_config):
    def config():
        return dict(get_config(), synchronized=False)

    return config



def free_local_ports(count: int) -> list:
    """`count` TCP ports free on the loopback interface now, for a job of several processes on one machine.

    Example: `ports = free_local_ports(2)`, then the coordinator (or `TF_CONFIG`'s workers) at
    `127.0.0.1:<port>`.
    """
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports




__all__ = ["Cluster", "JAX_ENVIRONMENT", "KINDS", "WorkerLostError", "check_kind", "current", "end_process",
           "free_local_ports", "is_chief", "process_count", "process_index", "setup", "sync_batch_norm",
           "tf_config_description"]
