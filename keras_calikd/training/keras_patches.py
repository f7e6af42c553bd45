"""Fixes to Keras internals, each applied only on the Keras versions it was written for.

keras_calikd replaces Keras functions in one case, named here with what it
fixes upstream, and installs the fix only where it was written and checked:

- `MULTI_WORKER_TRAINER`: two functions of Keras' TensorFlow trainer
  (`keras.src.backend.tensorflow.trainer`), without which `fit` fails under
  `tf.distribute.MultiWorkerMirroredStrategy` (installed by
  `distribution.setup("multi_worker")` on TensorFlow only; every other strategy
  takes Keras' own paths).

A patch records, per Keras minor version it was written for, a fingerprint of
the source of every function it replaces (`inspect.getsource`, SHA-256). It is
installed only when the running Keras is one of those versions *and* the
functions' source is the recorded one: on any other Keras it refuses, before
anything is replaced, with a message saying what to do. tests/test_keras_patches.py
fails when the installed Keras's source differs from the recorded one, so a
Keras upgrade asks for the patch to be checked again (and its fingerprint
recorded) instead of patching code it was not written for.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from typing import Callable, Dict, NamedTuple, Tuple

import keras


class KerasPatchError(RuntimeError):
    """The running Keras is not one a patch was written for."""


class Patch(NamedTuple):
    """A replacement of Keras functions, with the upstream behaviour it fixes and the versions it fits.

    Attributes:
        name: What the patch is for, in messages.
        fixes: The upstream behaviour it fixes.
        module: The Keras module whose attributes it replaces.
        targets: The replaced attributes, dotted within `module` (e.g. `"TensorFlowTrainer._maybe_symbolic_build"`).
        written_for: `{"major.minor": {target: fingerprint}}`: the versions it was written and checked for.
        remedy: What a user on another version can do.
    """

    name: str
    fixes: str
    module: str
    targets: Tuple[str, ...]
    written_for: Dict[str, Dict[str, str]]
    remedy: str


def _attribute(module, target: str):
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def fingerprint(function: Callable) -> str:
    """The first 16 hex digits of the SHA-256 of `function`'s source (`inspect.getsource`)."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def fingerprints(patch: Patch) -> Dict[str, str]:
    """`{target: fingerprint}` of the functions `patch` replaces, in the running Keras (as Keras ships them)."""
    module = importlib.import_module(patch.module)
    originals = getattr(module, "_keras_calikd_originals", {})
    return {target: fingerprint(originals.get(target) or _attribute(module, target)) for target in patch.targets}


def minor_version(version: str = None) -> str:
    """`"major.minor"` of a Keras version (the running one by default)."""
    return ".".join((version or keras.__version__).split(".")[:2])


def check(patch: Patch) -> None:
    """Fails unless the running Keras is a version `patch` was written for, with the recorded source.

    Raises:
        KerasPatchError: with the version found, the ones the patch was written for, and what to do.
    """
    version = minor_version()
    if version not in patch.written_for:
        raise KerasPatchError(
            f"keras_calikd's fix of {patch.name} was written for Keras {', '.join(sorted(patch.written_for))}; "
            f"Keras {keras.__version__} is installed, whose code it was not checked against. {patch.remedy}")
    found, recorded = fingerprints(patch), patch.written_for[version]
    changed = sorted(target for target in patch.targets if found[target] != recorded.get(target))
    if changed:
        raise KerasPatchError(
            f"keras_calikd's fix of {patch.name} was written for Keras {version}'s {', '.join(changed)} as released, "
            f"but the installed Keras {keras.__version__} has other code there. {patch.remedy}")


def install(patch: Patch, replacements: Dict[str, Callable]) -> None:
    """Checks the running Keras (`check`), then replaces `patch.targets` by `replacements` (once per process)."""
    module = importlib.import_module(patch.module)
    if getattr(module, "_keras_calikd_originals", None):
        return
    check(patch)
    originals = {target: _attribute(module, target) for target in patch.targets}
    for target, replacement in replacements.items():
        owner, _, attribute = target.rpartition(".")
        setattr(_attribute(module, owner) if owner else module, attribute, replacement)
    module._keras_calikd_originals = originals


MULTI_WORKER_TRAINER = Patch(
    name="Keras' TensorFlow trainer under MultiWorkerMirroredStrategy",
    fixes=(
        "(i) `TensorFlowTrainer._maybe_symbolic_build` reduces the first input batch with "
        "`strategy.reduce('MEAN', batch, axis=None)` to build the model symbolically, which fails for an (x, y) "
        "batch of per-replica values under MultiWorkerMirroredStrategy; the fix takes the first local replica's "
        "batch (only its shapes are used). (ii) `reduce_per_replica` averages each replica's logs with "
        "`strategy.reduce('MEAN', value, axis=0)` under a multi-worker strategy, which fails for the scalar "
        "logs; the fix averages over replicas with `axis=None` (other reductions and strategies: Keras' own)."),
    module="keras.src.backend.tensorflow.trainer",
    targets=("reduce_per_replica", "TensorFlowTrainer._maybe_symbolic_build"),
    written_for={"3.15": {"reduce_per_replica": "2e7d54b1e6edc29a",
                          "TensorFlowTrainer._maybe_symbolic_build": "92a504f5eba9b29f"}},
    remedy="Install keras==3.15.* for multi-worker training on TensorFlow, or train on the JAX backend "
           "(KERAS_BACKEND=jax), which needs no fix.",
)


def install_multi_worker_trainer() -> None:
    """Installs `MULTI_WORKER_TRAINER` (TensorFlow backend; called by `distribution.setup("multi_worker")`)."""
    import tensorflow as tf
    from keras.src import tree

    trainer_module = importlib.import_module(MULTI_WORKER_TRAINER.module)
    original_reduce = trainer_module.reduce_per_replica
    original_build = trainer_module.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer_module._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not trainer_module._collective_all_reduce_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            batch = next(batches)
            break
        batch = tree.map_structure(
            lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues)
            else v, batch)
        with strategy.scope():
            self._symbolic_build(data_batch=batch)

    install(MULTI_WORKER_TRAINER, {"reduce_per_replica": reduce_per_replica,
                                   "TensorFlowTrainer._maybe_symbolic_build": maybe_symbolic_build})


__all__ = ["KerasPatchError", "MULTI_WORKER_TRAINER", "Patch", "check", "fingerprint", "fingerprints", "install",
           "install_multi_worker_trainer", "minor_version"]
