"""Augmentation strategies: the student's augmented view of each batch and its loss.

Strategies are registered under short names (`none`, `mixup`, `cutmix`,
`cutout`); `get(name_or_instance)` returns an instance.
"""

from keras_calikd.augmentations.base import (AUGMENTATIONS, Augmentation, AugmentedBatch, mixed_cross_entropy,
                                             soft_cross_entropy)
from keras_calikd.augmentations.cutmix import CutMix
from keras_calikd.augmentations.cutout import Cutout
from keras_calikd.augmentations.identity import Identity
from keras_calikd.augmentations.mixup import MixUp


def get(spec) -> Augmentation:
    """An augmentation strategy from a registered name or an `Augmentation` instance."""
    return AUGMENTATIONS.resolve(spec, Augmentation)


__all__ = ["AUGMENTATIONS", "Augmentation", "AugmentedBatch", "CutMix", "Cutout", "Identity", "MixUp", "get",
           "mixed_cross_entropy", "soft_cross_entropy"]
