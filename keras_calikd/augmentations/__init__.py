"""Augmentation strategies: the student's augmented view of each batch and its loss.

Strategies are registered under short names (`none`, `mixup`, `cutmix`,
`cutout`, `gridmask`, `fouriermix`, the calibration baselines
`label_smoothing` and `focal`, and through core Keras layers `augmix`,
`randaugment` and `keras_layer`, which wraps any Keras preprocessing layer);
`get(name_or_instance)` returns an instance. Each strategy is one module of this package, which registers it
when imported; importing the package imports every module of it, so a new strategy's module needs no line here
(CONTRIBUTING.md).
"""

import importlib
import pkgutil

from keras_calikd.augmentations.augmix import AugMix
from keras_calikd.augmentations.base import (AUGMENTATIONS, Augmentation, AugmentedBatch, mixed_cross_entropy,
                                             soft_cross_entropy)
from keras_calikd.augmentations.cutmix import CutMix
from keras_calikd.augmentations.cutout import Cutout
from keras_calikd.augmentations.focal import FocalLoss
from keras_calikd.augmentations.fouriermix import FourierMix
from keras_calikd.augmentations.gridmask import GridMask
from keras_calikd.augmentations.identity import Identity
from keras_calikd.augmentations.keras_layer import KerasLayer
from keras_calikd.augmentations.label_smoothing import LabelSmoothing
from keras_calikd.augmentations.mixup import MixUp
from keras_calikd.augmentations.randaugment import RandAugment

for _module in pkgutil.iter_modules(__path__):  # each strategy's module registers it
    importlib.import_module(f"{__name__}.{_module.name}")


def get(spec) -> Augmentation:
    """An augmentation strategy from a registered name or an `Augmentation` instance."""
    return AUGMENTATIONS.resolve(spec)


__all__ = ["AUGMENTATIONS", "AugMix", "Augmentation", "AugmentedBatch", "CutMix", "Cutout", "FocalLoss", "FourierMix",
           "GridMask", "Identity", "KerasLayer", "LabelSmoothing", "MixUp", "RandAugment", "get",
           "mixed_cross_entropy", "soft_cross_entropy"]
