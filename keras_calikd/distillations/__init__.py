"""Distillation strategies: losses between the frozen teacher and the student on the clean batch.

Strategies are registered under short names (`kd`, `rkd`, `crd`, `dkd`, `lskd`, and `keras_loss` for a
`keras.distillation` loss); `get(name_or_instance)` returns an instance. `AsDistillationLoss` turns a logit
strategy into a loss of `keras.distillation.Distiller`. Each strategy is one module of this package, which
registers it when imported; importing the package imports every module of it, so a new strategy's module needs
no line here (CONTRIBUTING.md).
"""

import importlib
import pkgutil

import keras

from keras_calikd.distillations.base import DISTILLATIONS, Batch, Distillation, ModelOutputs
from keras_calikd.distillations.crd import CRD
from keras_calikd.distillations.dkd import DKD
from keras_calikd.distillations.kd import KD
from keras_calikd.distillations.keras_interop import AsDistillationLoss, KerasLoss
from keras_calikd.distillations.lskd import LSKD
from keras_calikd.distillations.rkd import RKD

for _module in pkgutil.iter_modules(__path__):  # each strategy's module registers it
    importlib.import_module(f"{__name__}.{_module.name}")


def get(spec) -> Distillation:
    """A distillation strategy from a registered name, a `Distillation` or a `keras.distillation` loss."""
    if isinstance(spec, keras.distillation.DistillationLoss):
        return KerasLoss(spec)
    return DISTILLATIONS.resolve(spec)


__all__ = ["CRD", "DISTILLATIONS", "DKD", "KD", "LSKD", "RKD", "AsDistillationLoss", "Batch", "Distillation",
           "KerasLoss", "ModelOutputs", "get"]
