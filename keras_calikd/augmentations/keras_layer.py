"""Keras preprocessing layers as augmentation strategies: `keras_layer` wraps any of them (core Keras or keras-cv).

The student sees the layer's output and is trained on it with cross-entropy
against the image's own label (one source per image). `AugMix` and
`RandAugment` (their own modules) are this strategy with a core Keras layer
built from their arguments.

XLA: every computation of the JAX backend is an XLA program, and Keras'
image layers compile there. On TensorFlow several of their kernels have no
XLA version (measured with TensorFlow 2.21 on CPU: `ImageProjectiveTransformV3`,
behind the shear, translation and rotation operations, and
`StatelessRandomGammaV3`, behind AugMix's Dirichlet and Beta weights), so
these strategies declare `xla_compatible` per backend: `True` on JAX, `False`
on TensorFlow (`Distiller.compile` then turns `jit_compile="auto"` off and
refuses `True`).

Value ranges: the Distiller feeds the images as they come, raw pixels
(0-255) for the zoo's models, which normalise their input themselves. A
layer whose operations depend on the range (colour operations) declares it
as `value_range`; at build it is checked against the student's input
normalisation, so that a layer made for (0, 1) images does not silently
augment pixels.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
from keras import ops

from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, config_value, single_source

#: The range of raw 8-bit pixels, which the Distiller feeds when the student normalises its input itself.
PIXEL_RANGE = (0.0, 255.0)

NORMALIZATION_HINT = ("build the student with its input normalisation, e.g. "
                      "`ck.models.get(name, num_classes, normalization=ck.data.info(data).normalization)`, "
                      "and feed it raw pixels (as `ck.data.load` yields)")


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def parse_value_range(owner: str, value):
    """`None`, or `(low, high)` as floats with `low < high`."""
    if value is None:
        return None
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value)
            and all(np.isfinite(v) for v in value)):
        raise ValueError(f"{owner}: `value_range` must be a pair (low, high) of numbers, the range of the images "
                         f"the Distiller feeds (e.g. (0, 255) for raw pixels), or None; got {value!r}.")
    low, high = (float(v) for v in value)
    if low >= high:
        raise ValueError(f"{owner}: `value_range` must be a pair (low, high) with low < high, got {tuple(value)}.")
    return low, high


def check_value_range(owner: str, value_range, input_normalization, given: bool) -> None:
    """Fails when the images' range is unknown (no normalisation, no range given) or cannot fit the student's.

    Args:
        owner: The strategy's name, for the message.
        value_range: `(low, high)`, the range the layer's operations take.
        input_normalization: The student's `(mean, std)` per channel, or `None`.
        given: Whether `value_range` was chosen by the user (rather than the pixel default).
    """
    if input_normalization is None:
        if not given:
            raise ValueError(
                f"{owner}'s colour operations need the value range of the images the Distiller feeds, but the "
                "student has no input normalisation layer, so they may be normalised images without a fixed "
                f"range. Either {NORMALIZATION_HINT}; or pass `value_range=(low, high)`, the range of the "
                f"images fed (e.g. {owner}(value_range=(0, 255)) for raw pixels)."
            )
        return
    mean, std = (np.ravel(np.asarray(v, np.float64)) for v in input_normalization)
    low, high = value_range
    # Images within [low, high] have a mean within it and a std of at most half its width; a std under
    # 1/255 of the width (one grey level of 8-bit pixels) means the normalisation is in other units.
    if mean.min() < low or mean.max() > high or std.max() > (high - low) / 2 or std.min() < (high - low) / 255:
        rounded = lambda values: tuple(round(float(v), 4) for v in values)  # noqa: E731
        raise ValueError(
            f"{owner}: the student normalises its input with mean {rounded(mean)} and std {rounded(std)}, which "
            f"cannot be the statistics of images in the value range {(low, high)}. Give the layer the value range "
            "in the units of the student's normalisation (the range of the images the Distiller feeds), e.g. "
            "(0, 255) for raw pixels or (0, 1) for pixels / 255."
        )


class HistogramEqualization(keras.layers.Equalization):
    """`keras.layers.Equalization` whose histogram is one segment sum.

    Keras 3.15 counts the histogram on the JAX backend with a Python loop
    over the 256 bins (`bincount` needs a static length there); that loop
    took 28 s to compile for one 32x32 RGB batch (JAX 0.10 on CPU), and
    RandAugment, which applies every operation `num_ops` times, 42 s. A
    segment sum over the bins gives the same counts (the tests compare the
    two layers) and compiles in under a second. Only the histogram differs:
    the rest is Keras' layer.
    """

    def _custom_histogram_fixed_width(self, values, value_range, nbins):
        low, high = (float(v) for v in value_range)
        bins = self.backend.cast((self.backend.cast(values, "float32") - low) * (nbins - 1) / (high - low), "int32")
        bins = self.backend.numpy.reshape(self.backend.numpy.clip(bins, 0, nbins - 1), [-1])
        counts = self.backend.math.segment_sum(self.backend.numpy.ones_like(bins), bins, num_segments=nbins)
        return self.backend.cast(counts, "int32")


def with_histogram_equalization(layer):
    """`layer` (Keras' AugMix or RandAugment) with its `equalization` operation replaced by `HistogramEqualization`."""
    layer.equalization = HistogramEqualization(value_range=layer.value_range, data_format=layer.data_format,
                                               dtype=layer.dtype_policy)
    return layer


class LayerAugmentation(Augmentation):
    """Base of the strategies whose augmented view is a Keras preprocessing layer's output.

    Subclasses give their layer to `use_layer` (it is called as
    `layer(images, training=True)`), and for a layer whose operations depend
    on the images' range set `self.value_range` and `self.value_range_given`,
    checked against the student's normalisation at build. `rgb_only`
    strategies take RGB or grey images (Keras' colour operations treat a
    1-channel image as a grey RGB one: tested); other channel counts fail at
    build.
    """

    label = ""
    rgb_only = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.value_range = None
        self.value_range_given = True

    @property
    def xla_compatible(self):
        """`True` on JAX, `False` on TensorFlow (see the module's docstring for the kernels that lack XLA)."""
        return keras.backend.backend() != "tensorflow"

    def use_layer(self, layer):
        """Sets `self.layer`; where the strategy is XLA-compatible, so are the layer and its sublayers for Keras.

        Keras marks its shear, translation and rotation layers `supports_jit =
        False` on every backend (for TensorFlow's kernels), and a model with
        such a layer then trains without XLA, even `jit_compile=True`; on JAX
        that means eagerly, one operation at a time (measured on a 2-core CPU:
        the first two AugMix steps of a one-convolution student took 21 s
        eagerly, 11 s compiled, most of it compilation).
        """
        self.layer = layer
        if self.xla_compatible:
            for sublayer in layer._flatten_layers():
                sublayer.supports_jit = True

    def use_image_layer(self, layer_class, value_range, **options):
        """Uses Keras' `layer_class` (AugMix, RandAugment) made for `value_range`, pixels when it is `None`.

        The layer draws from the strategy's seed generator, which the strategy
        saves (`SavedSeedState`), and equalizes with `HistogramEqualization`.
        """
        self.value_range_given = value_range is not None
        self.value_range = parse_value_range(type(self).__name__, value_range) or PIXEL_RANGE
        layer = with_histogram_equalization(layer_class(value_range=self.value_range, seed=self.seed, **options))
        layer.generator = self.seed_generator
        self.use_layer(layer)
        self.factor = layer.factor
        self.factor_given = config_value(options.get("factor"))

    def build(self, input_shape=None, num_classes=None, input_normalization=None):
        super().build(input_shape, num_classes, input_normalization)
        channels = None if input_shape is None else input_shape[-1]
        if self.rgb_only and channels not in (None, 1, 3):
            raise ValueError(f"{type(self).__name__}'s colour operations take RGB (3-channel) or grey (1-channel) "
                             f"images, got {channels} channels.")
        if self.value_range is not None:
            check_value_range(type(self).__name__, self.value_range, input_normalization, self.value_range_given)

    def augment(self, images, labels):
        if len(images.shape) != 4:
            raise ValueError(f"{type(self).__name__} augments batches of images (batch, height, width, channels), "
                             f"got shape {tuple(images.shape)}.")
        augmented = self.layer(ops.cast(images, "float32"), training=True)
        return single_source(ops.cast(augmented, images.dtype), labels)


@AUGMENTATIONS.register("keras_layer")
class KerasLayer(LayerAugmentation):
    """Any Keras preprocessing layer as the student's augmented view; one source, cross-entropy.

    The layer is called as `layer(images, training=True)` on the batch the
    Distiller feeds (raw pixels for the zoo's models) and must return images
    of the same shape. A layer with a `value_range` attribute (Keras' colour
    layers have one) is checked against the student's input normalisation at
    build. Randomness is the layer's own: its seed generators travel with the
    Distiller's state, through checkpoints and through `.keras` files (the
    strategy saves their states, which Keras does not).

    Args:
        layer: A Keras layer (core Keras, e.g. `keras.layers.RandomContrast`,
            or a keras-cv layer on the TensorFlow backend), or its serialized
            form (`keras.saving.serialize_keras_object(layer)`).
        xla_compatible: Whether the layer compiles with XLA. `None` (the
            default): `True` on JAX, where every computation is XLA, `False`
            on TensorFlow, where many image kernels have no XLA version.
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of the strategy's own generator (the layer has its own).

    Example:

    ```python
    contrast = keras.layers.RandomContrast(0.4, value_range=(0, 255), seed=1)
    ck.Distiller(teacher, student, augmentation=ck.augmentations.KerasLayer(contrast))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (any augmentation, with its own loss; here
        cross-entropy).
    """

    def __init__(self, layer, xla_compatible=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"KerasLayer: `layer` must be a Keras layer (e.g. keras.layers.RandomContrast(0.3, "
                             f"value_range=(0, 255))), got {type(layer).__name__}.")
        if xla_compatible not in (None, True, False):
            raise ValueError(f"KerasLayer: `xla_compatible` must be None, True or False, got {xla_compatible!r}.")
        self._xla_compatible = xla_compatible
        self.use_layer(layer)
        self.label = type(layer).__name__
        value_range = getattr(layer, "value_range", None)
        self.value_range = None if value_range is None else parse_value_range("KerasLayer", tuple(value_range))

    @property
    def xla_compatible(self):
        return super().xla_compatible if self._xla_compatible is None else self._xla_compatible

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer), xla_compatible=self._xla_compatible)
        return config


__all__ = ["HistogramEqualization", "KerasLayer", "LayerAugmentation", "PIXEL_RANGE", "check_value_range",
           "parse_value_range", "with_histogram_equalization"]
