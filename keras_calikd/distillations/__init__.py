"""Distillation strategies: losses between the frozen teacher and the student on the clean batch.

Strategies are registered under short names (`kd`, `rkd`, `crd`, `dkd`, `lskd`); `get(name_or_instance)`
returns an instance.
"""

from keras_calikd.distillations.base import DISTILLATIONS, Batch, Distillation, ModelOutputs
from keras_calikd.distillations.crd import CRD
from keras_calikd.distillations.dkd import DKD
from keras_calikd.distillations.kd import KD
from keras_calikd.distillations.lskd import LSKD
from keras_calikd.distillations.rkd import RKD


def get(spec) -> Distillation:
    """A distillation strategy from a registered name or a `Distillation` instance."""
    return DISTILLATIONS.resolve(spec)


__all__ = ["CRD", "DISTILLATIONS", "DKD", "KD", "LSKD", "RKD", "Batch", "Distillation", "ModelOutputs", "get"]
