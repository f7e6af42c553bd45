"""Distillation strategies: losses between the frozen teacher and the student on the clean batch.

Strategies are registered under short names (`kd`, ...); `get(name_or_instance)`
returns an instance.
"""

from keras_calikd.distillations.base import DISTILLATIONS, Batch, Distillation, ModelOutputs
from keras_calikd.distillations.kd import KD


def get(spec) -> Distillation:
    """A distillation strategy from a registered name or a `Distillation` instance."""
    return DISTILLATIONS.resolve(spec, Distillation)


__all__ = ["DISTILLATIONS", "KD", "Batch", "Distillation", "ModelOutputs", "get"]
