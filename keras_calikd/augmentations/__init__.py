"""Augmentation strategies: the student's augmented view of each batch and its loss.

Strategies are registered under short names (`none`, `mixup`, `cutmix`,
`cutout`, the calibration baselines `label_smoothing` and `focal`; with the
keras-cv extra, `gridmask`, `fouriermix`, `augmix`, `randaugment`);
`get(name_or_instance)` returns an instance.
"""

from keras_calikd.augmentations.base import (AUGMENTATIONS, Augmentation, AugmentedBatch, mixed_cross_entropy,
                                             soft_cross_entropy)
from keras_calikd.augmentations.cutmix import CutMix
from keras_calikd.augmentations.cutout import Cutout
from keras_calikd.augmentations.focal import FocalLoss
from keras_calikd.augmentations.identity import Identity
from keras_calikd.augmentations.keras_cv import AugMix, FourierMix, GridMask, RandAugment
from keras_calikd.augmentations.label_smoothing import LabelSmoothing
from keras_calikd.augmentations.mixup import MixUp


def get(spec) -> Augmentation:
    """An augmentation strategy from a registered name or an `Augmentation` instance."""
    return AUGMENTATIONS.resolve(spec)


__all__ = ["AUGMENTATIONS", "AugMix", "Augmentation", "AugmentedBatch", "CutMix", "Cutout", "FocalLoss", "FourierMix",
           "GridMask", "Identity", "LabelSmoothing", "MixUp", "RandAugment", "get",
           "mixed_cross_entropy", "soft_cross_entropy"]
