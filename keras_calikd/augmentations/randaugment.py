"""RandAugment through `keras.layers.RandAugment`: a few random image operations per batch (Cubuk et al., 2020)."""

from __future__ import annotations

import keras

from keras_calikd import checks
from keras_calikd.augmentations.base import AUGMENTATIONS
from keras_calikd.augmentations.keras_layer import LayerAugmentation


@AUGMENTATIONS.register("randaugment")
class RandAugment(LayerAugmentation):
    """Applies `num_ops` random image operations (`keras.layers.RandAugment`); one source, cross-entropy.

    Per batch, Keras' layer draws `num_ops` operations among shear,
    translation, rotation, brightness, colour, contrast, sharpness,
    posterize, solarize, auto-contrast and equalize, and applies them in turn
    with strengths drawn per image from `factor`. The loss is cross-entropy
    with the image's own label. The layer is Keras' own, with one change:
    equalization counts its histogram with a segment sum, which compiles in
    under a second on JAX where Keras' loop over the bins took 42 s for this
    layer (see `HistogramEqualization`); the images are the same. Keras
    equalizes each channel with the histogram of the whole batch.

    The operations need the images' value range: raw pixels (0, 255) by
    default when the student normalises its input, refused at build for a
    student without an input normalisation unless `value_range` is given
    (see `AugMix`). Grey images are augmented as grey RGB images would be;
    other channel counts than 1 and 3 fail at build. XLA: on JAX; not on
    TensorFlow, whose image transform (`ImageProjectiveTransformV3`) has no
    XLA kernel.

    Args:
        num_ops: Operations applied in turn, >= 1 (Keras' default 2).
        factor: Strength of the operations in [0, 1]: a number `f` draws
            from [0, f] per image, a pair `(lo, hi)` from [lo, hi] (0.5).
        interpolation: `"bilinear"` or `"nearest"`, of the geometric operations.
        value_range: `(low, high)`, the range of the images the Distiller
            feeds, or `None` (the default; see `AugMix`).
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of the strategy's random generator (the layer draws from it).

    Example:

    ```python
    student = ck.models.get("resnet8", 100, normalization=ck.data.info("cifar100").normalization)
    ck.Distiller(teacher, student, augmentation=ck.augmentations.RandAugment(num_ops=2, factor=0.5))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (any augmentation with cross-entropy); Cubuk et
        al., "RandAugment: Practical Automated Data Augmentation with a Reduced
        Search Space", NeurIPS Workshops 2020.
    """

    label = "RandAugment"
    rgb_only = True

    def __init__(self, num_ops: int = 2, factor=0.5, interpolation: str = "bilinear", value_range=None, **kwargs):
        super().__init__(**kwargs)
        self.num_ops = checks.integer("RandAugment", "num_ops", num_ops)
        self.interpolation = checks.one_of("RandAugment", "interpolation", interpolation, ("bilinear", "nearest"))
        self.use_image_layer(keras.layers.RandAugment, value_range, num_ops=self.num_ops, factor=factor,
                             interpolation=self.interpolation)

    def get_config(self):
        config = super().get_config()
        config.update(num_ops=self.num_ops, factor=self.factor_given, interpolation=self.interpolation,
                      value_range=list(self.value_range) if self.value_range_given else None)
        return config
