"""The processes and devices one training runs on, as one process sees them: `Cluster`.

`keras_calikd.training.distribution.setup` makes the cluster of a process;
this module holds what a cluster does once made: which process this is, the
scope to build models in, this process's part of each global batch, the
chief's decisions and arrays broadcast to the others, and the clear error for
a process of the job that is gone.
"""

from __future__ import annotations

import contextlib
import json
from typing import Optional, Sequence

import numpy as np

KINDS = ("mirrored", "multi_worker")
OWNER = "distribution"
# Words of what a process sees in an error when another process of its job is gone (JAX reports lost peers
# through the collectives' transport and the coordination service, as text).
_LOST_PEER_WORDS = ("gloo", "connection reset", "connection closed", "socket closed", "heartbeat",
                    "coordination service", "unavailable", "deadline_exceeded", "failed to connect", "nccl")


class WorkerLostError(RuntimeError):
    """Another process of a multi-process job stopped or cannot be reached; this one stopped too."""



def _check_kind(kind):
    if kind is not None and kind not in KINDS:
        raise ValueError(f"{OWNER}: the kind must be None, {', '.join(repr(k) for k in KINDS)}; got {kind!r}.")
    return kind


def check_kind(kind) -> Optional[str]:
    """`kind` itself if it names a form of training (`None`, `"mirrored"`, `"multi_worker"`), else a ValueError.

    Args:
        kind: The value to check, e.g. `Experiment.distribution`.

    Returns:
        `kind`.

    Example:

    ```python
    check_kind("multi_worker")   # "multi_worker"
    check_kind("multiworker")    # ValueError naming the three kinds
    ```
    """
    return _check_kind(kind)



class Cluster:
    """The processes and devices one training runs on, as this process sees them (made by `setup`).

    Args:
        kind: `None`, `"mirrored"` or `"multi_worker"`.
        num_processes: How many processes train together.
        process_index: This process's index, 0 being the chief.
        num_replicas: How many model replicas share each global batch (devices over all processes).
        strategy: The `tf.distribute` strategy (TensorFlow), else `None`.
        distribution: The `keras.distribution.Distribution` (JAX), else `None`.
        description: How this process is named in messages.
        local_devices: Devices per process (JAX; the rows of a batch each process feeds split over them).

    Example:

    ```python
    cluster = distribution.setup("mirrored")
    cluster.num_replicas, cluster.is_chief            # e.g. (4, True) on a machine with 4 GPUs
    ```
    """

    def __init__(self, kind=None, num_processes=1, process_index=0, num_replicas=1, strategy=None,
                 distribution=None, description="one process", local_devices=1):
        self.kind = _check_kind(kind)
        self.num_processes, self.process_index = int(num_processes), int(process_index)
        self.num_replicas = int(num_replicas)
        self.strategy, self.distribution = strategy, distribution
        self.description = description
        self.local_devices = int(local_devices)

    def __repr__(self):
        return (f"Cluster(kind={self.kind!r}, process {self.process_index} of {self.num_processes}, "
                f"{self.num_replicas} replica(s))")

    @property
    def is_chief(self) -> bool:
        """Whether this process is the chief (index 0): the one that writes checkpoints, logs and results."""
        return self.process_index == 0

    @property
    def multi_process(self) -> bool:
        return self.num_processes > 1

    # ------------------------------------------------------------------ where models and computations live

    def scope(self):
        """The context to build and compile models in (the strategy's scope on TensorFlow).

        Example:

        ```python
        with cluster.scope():
            distiller = ck.Distiller(teacher, student)
            distiller.compile(optimizer="sgd")
        ```
        """
        if self.strategy is not None:
            return self.strategy.scope()
        if self.distribution is not None:
            return self.distribution.scope()
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def local(self):
        """A context in which models are built and run on this process alone, outside the cluster.

        For work only the chief does after training (evaluation, export): a
        model loaded here is not shared with the other processes, so nothing
        in it waits for them. On TensorFlow, code outside `scope()` already
        runs locally; on JAX the global distribution is lifted for the block.

        Example:

        ```python
        if cluster.is_chief:
            with cluster.local():
                best = keras.models.load_model("best.keras")
                logits = best.predict(test)
        ```
        """
        if self.distribution is None:
            yield
            return
        from keras.src.distribution import distribution_lib

        previous = distribution_lib.distribution()
        distribution_lib.set_distribution(None)
        try:
            yield
        finally:
            distribution_lib.set_distribution(previous)

    # ------------------------------------------------------------------ input

    def check_batch_size(self, batch_size: int, what: str = "batch_size") -> None:
        """Fails unless `batch_size` splits evenly over the replicas (each gets the same number of rows).

        Args:
            batch_size: A global batch size.
            what: How the value is named in the message.

        Example:

        ```python
        cluster.check_batch_size(128)    # fine on 1, 2, 4 or 8 replicas; ValueError on 3
        ```
        """
        if batch_size % self.num_replicas:
            raise ValueError(
                f"`{what}` ({batch_size}) must be a multiple of the number of replicas ({self.num_replicas}: "
                f"{self.description}), so that every replica gets the same share of each global batch.")

    def shard(self, dataset):
        """This process's part of a dataset of global batches, as `fit`/`evaluate` must be given it.

        Every process builds the same global batches (the same seed and
        epoch give the same batches everywhere). On TensorFlow the dataset
        is returned for `tf.distribute` to split by data: each replica gets
        its consecutive rows of every batch (`auto_shard_policy = DATA`; the
        default would shard by input file). On JAX with several processes,
        each process keeps its rows of every batch
        (`keras_calikd.training.input.shard_batches`), which Keras assembles
        into global arrays over the device mesh. Elsewhere the dataset is
        returned as it is. Every batch, the last included, must split evenly
        over the replicas.

        Args:
            dataset: A `tf.data.Dataset` of global batches.

        Returns:
            The `tf.data.Dataset` to pass to `fit`, `evaluate` or as `validation_data`.

        Example:

        ```python
        train = cluster.shard(epoch_batches(split, 128, seed=0, first_epoch=e, num_epochs=240 - e))
        ```
        """
        if self.strategy is not None and self.num_replicas > 1:
            import tensorflow as tf

            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            return dataset.with_options(options)
        if self.distribution is not None and self.multi_process:
            from keras_calikd.training.input import shard_batches

            return shard_batches(dataset, self.num_processes, self.process_index)
        return dataset

    # ------------------------------------------------------------------ the chief's decisions, for everyone

    def broadcast_arrays(self, arrays: Sequence[np.ndarray]) -> list:
        """The chief's arrays, on every process (the others pass arrays of the same shapes and dtypes).

        A collective step: every process calls it at the same point. The
        arrays travel bit for bit (as 32-bit words), whatever their dtype.

        Args:
            arrays: NumPy arrays; on processes other than the chief only their shapes and dtypes matter.

        Returns:
            The chief's arrays, as NumPy arrays.

        Example:

        ```python
        weights = cluster.broadcast_arrays([np.load("w.npy") if cluster.is_chief else np.zeros((3, 3), "float32")])
        ```
        """
        arrays = [np.asarray(a, order="C") for a in arrays]
        if not self.multi_process or not arrays:
            return [a.copy() for a in arrays]
        words = [_to_words(a) for a in arrays]
        shared = self._broadcast_words(words)
        return [_from_words(w, a.shape, a.dtype) for w, a in zip(shared, arrays)]

    def broadcast_json(self, value=None):
        """The chief's JSON-serialisable `value`, on every process (the others pass anything, e.g. `None`).

        Example:

        ```python
        plan = cluster.broadcast_json({"initial_epoch": 3} if cluster.is_chief else None)
        ```
        """
        if not self.multi_process:
            return json.loads(json.dumps(value))
        text = json.dumps(value).encode() if self.is_chief else b""
        (length,) = self.broadcast_arrays([np.array([len(text)], np.int64)])
        data = np.frombuffer(text, np.uint8) if self.is_chief else np.zeros(int(length[0]), np.uint8)
        (data,) = self.broadcast_arrays([data])
        return json.loads(data.tobytes().decode())

    def barrier(self) -> None:
        """Returns when every process has reached it (a collective step)."""
        self.broadcast_arrays([np.zeros(1, np.int32)])

    def _broadcast_words(self, words):
        if self.strategy is not None:
            return _tensorflow_broadcast(self.strategy, words)
        from jax.experimental import multihost_utils

        return [np.asarray(w) for w in multihost_utils.broadcast_one_to_all(words)]

    # ------------------------------------------------------------------ failures

    def worker_lost(self, error: BaseException, resume: str = "") -> Optional[WorkerLostError]:
        """The clear error for `error` if it means that another process of the job is gone, else `None`.

        Args:
            error: An exception raised while the processes computed together.
            resume: What relaunching continues from, e.g. `"after epoch 3"`.

        Example:

        ```python
        try:
            model.fit(train, epochs=240)
        except Exception as error:
            lost = cluster.worker_lost(error, resume="after epoch 3")
            if lost is None:
                raise
            raise lost from error
        ```
        """
        if not self.multi_process:
            return None
        text = " ".join(str(error).split())
        names = {type(c).__name__ for c in type(error).__mro__}
        tensorflow_lost = names & {"UnavailableError", "AbortedError", "DeadlineExceededError", "CancelledError"}
        if not tensorflow_lost and not any(word in text.lower() for word in _LOST_PEER_WORDS):
            return None
        return WorkerLostError(
            f"{self.description}: another process of this {self.num_processes}-process job stopped or cannot be "
            f"reached ({type(error).__name__}: {text[:240]}). This process stopped too. Run the same command on "
            f"every process again to resume{' ' + resume if resume else ''}.")

    def shutdown(self) -> None:
        """Nothing to do on the way out: the runtimes end with the process (kept for symmetry in user code)."""



# ---------------------------------------------------------------------------- start-up: every wait bounded


def _host_port(address: str, what: str):
    host, _, port = str(address).strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{OWNER}: {what} must be 'host:port', got {address!r}.")
    return host.strip("[]"), int(port)


def _listen(address: str, what: str):
    """A socket listening on `address`'s port, or the clear error for a port that another program holds."""
    import socket

    host, port = _host_port(address, what)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; a listener not
    try:
        listener.bind(("", port))
    except OSError as error:
        listener.close()
        raise ValueError(f"{OWNER}: port {port} of {what} {address!r} is in use by another program ({error.strerror});"
                         " stop it, or give this process a free port.") from None
    listener.listen(16)
    listener.setblocking(False)
    return listener


def _reachable(address: str) -> bool:
    import socket

    try:
        socket.create_connection(_host_port(address, "an address"), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_for_processes(own: Optional[str], peers: Sequence[str], timeout: float,
                       own_name: str = "this process's address") -> None:
    """Returns once every address in `peers` accepts a connection; fails after `timeout` seconds.

    The runtimes' own start-up waits in native code, where it cannot be
    interrupted and (TensorFlow) does not keep to its timeouts: a job whose
    peer never starts would hang there. This wait comes first and is Python:
    bounded, and ended by SIGTERM or Ctrl-C like any other. With `own` (this
    process's `host:port`), the process listens there meanwhile, so that the
    others find it (a port that another program holds fails at once).

    Raises:
        ValueError: `own` is in use, or an address is not `host:port`.
        RuntimeError: a peer did not answer within `timeout`, naming it and what to do.
    """
    import time

    for address in peers:
        _host_port(address, "every address of the job")
    listener = None if own is None else _listen(own, own_name)
    waiting, deadline = list(peers), time.monotonic() + timeout
    try:
        while waiting:
            waiting = [address for address in waiting if not _reachable(address)]
            if listener is not None:  # let the peers' probes complete
                try:
                    while True:
                        listener.accept()[0].close()
                except OSError:
                    pass
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(
                    f"{OWNER}: {', '.join(waiting)} did not answer within the {timeout:g} s the job waits for its "
                    "processes to start (Experiment.worker_timeout). Start the same command on every process of the "
                    "job, check the addresses and that no firewall blocks them, or allow a longer wait.")
            if waiting:
                time.sleep(0.2)
    finally:
        if listener is not None:
            listener.close()


def _to_words(array: np.ndarray) -> np.ndarray:
    """`array`'s bytes as int32 words (zero-padded to a whole word)."""
    data = array.tobytes()
    data += b"\0" * (-len(data) % 4)
    return np.frombuffer(data, np.int32).copy() if data else np.zeros(0, np.int32)


def _from_words(words: np.ndarray, shape, dtype) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return np.frombuffer(np.asarray(words, np.int32).tobytes()[:size], dtype).reshape(shape).copy()


def _tensorflow_broadcast(strategy, words):
    """Replica 0's (the chief's) int32 arrays on every replica: a sum in which the others add zeros."""
    import tensorflow as tf

    sizes = [int(w.size) for w in words]
    flat = np.concatenate([w.reshape(-1) for w in words]) if sum(sizes) else np.zeros(1, np.int32)

    @tf.function
    def share(values):
        def replica(local):
            context = tf.distribute.get_replica_context()
            keep = tf.cast(tf.equal(context.replica_id_in_sync_group, 0), tf.int32)
            return context.all_reduce(tf.distribute.ReduceOp.SUM, local * keep)

        return strategy.run(replica, args=(values,))

    total = strategy.experimental_local_results(share(tf.constant(flat)))[0].numpy()
    parts, start = [], 0
    for size in sizes:
        parts.append(total[start:start + size])
        start += size
    return parts



__all__ = ["Cluster", "KINDS", "WorkerLostError", "check_kind", "wait_for_processes"]
