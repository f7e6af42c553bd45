"""Augmentation strategies that wrap keras-cv layers (the optional `keras-cv` extra).

Registered names: `gridmask`, `fouriermix`, `augmix`, `randaugment`. The
classes register with `import keras_calikd` whether or not keras-cv is
installed: keras-cv is imported only when a strategy is constructed, and
construction fails with a clear message when keras-cv is missing
(`pip install "keras-calikd[keras-cv]"`) or when the Keras backend is not
TensorFlow (keras-cv's layers are TensorFlow graphs).

keras-cv's layers do not compile with XLA (their kernels, e.g. image
transforms, gamma sampling and histograms, have no XLA implementation), so
every class here sets `xla_compatible = False`: `Distiller.compile` refuses
`jit_compile=True` and turns `"auto"` off.

Value ranges: the Distiller's images are normalised per channel,
`x = (pixels / 255 - mean) / std`. GridMask and FourierMix do not depend on
the range (they copy, mix or fill pixels), so they work on the normalised
images directly. AugMix and RandAugment do (colour ops such as posterize,
solarize, equalize): they take the normalisation constants `mean` and `std`,
map the images back to pixels in [0, 255], run the keras-cv layer there and
normalise its output again. See docs/keras_cv.md.
"""

from __future__ import annotations

import importlib.util
import math
from numbers import Integral, Real

import keras
from keras import ops

from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, AugmentedBatch, single_source

INSTALL_HINT = 'pip install "keras-calikd[keras-cv]"'

#: How far (on the [0, 1] pixel scale) de-normalised images may stray outside [0, 1] before
#: AugMix/RandAugment conclude that `mean`/`std` do not match the images' normalisation.
RANGE_TOLERANCE = 0.01


def _load_keras_cv(strategy: str):
    """Imports keras_cv for `strategy`, or fails with what to install or which backend to use."""
    try:
        found = importlib.util.find_spec("keras_cv") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ImportError(
            f"The {strategy} augmentation strategy wraps a keras-cv layer, but keras-cv is not installed. "
            f"Install the extra: {INSTALL_HINT} (keras-cv runs on the TensorFlow backend)."
        )
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"The {strategy} augmentation strategy wraps a keras-cv layer, and keras-cv's layers are TensorFlow "
            f"graphs that only train on the TensorFlow backend; the Keras backend is {backend!r}. Set "
            "KERAS_BACKEND=tensorflow before importing keras, or pick a built-in strategy (mixup, cutmix, "
            "cutout), which run on every backend."
        )
    try:
        import keras_cv
    except Exception as error:  # installed but unusable, e.g. an incompatible Keras/TensorFlow
        raise ImportError(
            f"The {strategy} augmentation strategy could not import keras-cv ({type(error).__name__}: {error}). "
            f"Reinstall a compatible version: {INSTALL_HINT}."
        ) from error
    return keras_cv


# ---------------------------------------------------------------- argument checks


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _float(strategy, name, value, low=None, high=None, low_open=False):
    """`value` as a float, checked against `[low, high]` (or `(low, high]` with `low_open`)."""
    if not _is_number(value):
        raise ValueError(f"{strategy}: `{name}` must be a finite number, got {value!r}.")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        bounds = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, " \
                 f"{high if high is not None else 'inf'}]"
        raise ValueError(f"{strategy}: `{name}` must be in {bounds}, got {value}.")
    return value


def _int(strategy, name, value, low=1):
    integral = isinstance(value, Integral) or (_is_number(value) and float(value).is_integer())
    if isinstance(value, bool) or not integral or int(value) < low:
        raise ValueError(f"{strategy}: `{name}` must be an integer >= {low}, got {value!r}.")
    return int(value)


def _factor(strategy, name, value, low, high):
    """A keras-cv factor given as plain values: a number `f` (sampled from `[low, f]`) or a pair `(lo, hi)`."""
    if _is_number(value):
        return _float(strategy, name, value, low, high)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value):
        pair = (float(value[0]), float(value[1]))
        if not low <= pair[0] <= pair[1] <= high:
            raise ValueError(
                f"{strategy}: `{name}` must be a number or a pair (lo, hi) with {low} <= lo <= hi <= {high}, "
                f"got {tuple(value)}."
            )
        return pair
    raise ValueError(f"{strategy}: `{name}` must be a number or a pair (lo, hi) of numbers, got {value!r}.")


def _channels(strategy, name, value, positive):
    if value is None:
        return None
    values = (value,) if _is_number(value) else value
    if not isinstance(values, (tuple, list)) or not values or not all(_is_number(v) for v in values):
        raise ValueError(f"{strategy}: `{name}` must be a number or a sequence of per-channel numbers, got {value!r}.")
    values = tuple(float(v) for v in values)
    if positive and min(values) <= 0:
        raise ValueError(f"{strategy}: `{name}` must be positive, got {value!r}.")
    return values


# ---------------------------------------------------------------- the shared base


class KerasCVAugmentation(Augmentation):
    """Base of the strategies that wrap a keras-cv layer: lazy import, backend check, no XLA.

    Subclasses build their keras-cv layer in `_make_layer(keras_cv)`, which
    runs at construction (keras-cv layers create TensorFlow random state, which
    must not be created inside a traced training step).
    """

    xla_compatible = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._layer = self._make_layer(_load_keras_cv(type(self).__name__))

    def _run_layer(self, inputs):
        """Calls the keras-cv layer inside its own `tf.function`.

        Keras traces its training step without AutoGraph, but some keras-cv
        layers (e.g. AugMix's equalize) branch in Python on tensors and only
        build graphs when AutoGraph converts them; the inner `tf.function`
        converts them wherever the strategy is called (eagerly or in a step).
        """
        if getattr(self, "_traced_layer", None) is None:
            import tensorflow as tf

            layer = self._layer
            self._traced_layer = tf.function(lambda x: layer(x), reduce_retracing=True)
        return self._traced_layer(inputs)

    def _make_layer(self, keras_cv):
        raise NotImplementedError

    def _check_images(self, images):
        if len(images.shape) != 4:
            raise ValueError(
                f"{type(self).__name__} augments batches of images (batch, height, width, channels), "
                f"got shape {tuple(images.shape)}."
            )


class _PixelRangeAugmentation(KerasCVAugmentation):
    """A keras-cv layer that needs pixel values: de-normalises to [0, 255] and normalises its output again."""

    def __init__(self, mean=None, std=None, **kwargs):
        name = type(self).__name__
        mean = _channels(name, "mean", mean, positive=False)
        std = _channels(name, "std", std, positive=True)
        if (mean is None) != (std is None):
            raise ValueError(f"{name}: give both `mean` and `std` (the images' normalisation), or neither.")
        self.mean, self.std = mean, std
        super().__init__(**kwargs)

    def _check_channels(self, channels):
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) not in (1, channels):
                raise ValueError(
                    f"{type(self).__name__}: `{name}` has {len(values)} values but the images have {channels} "
                    "channels; give one value per channel (or one for all)."
                )

    def build(self, input_shape=None, num_classes=None):
        if input_shape is not None and input_shape[-1] is not None:
            self._check_channels(int(input_shape[-1]))
        super().build(input_shape, num_classes)

    def _to_pixels(self, images):
        """Normalised images -> pixels in [0, 255], failing if `mean`/`std` cannot be their normalisation."""
        import tensorflow as tf

        unit = tf.cast(images, tf.float32)
        if self.mean is not None:
            unit = unit * tf.constant(self.std, tf.float32) + tf.constant(self.mean, tf.float32)
        outside = tf.reduce_max(tf.abs(unit - 0.5)) - 0.5
        check = tf.debugging.assert_less_equal(
            outside, tf.constant(RANGE_TOLERANCE, tf.float32),
            message=(
                f"{type(self).__name__}: the images, de-normalised with mean={self.mean} and std={self.std}, fall "
                "outside [0, 1]. Pass the per-channel `mean` and `std` the images were normalised with, "
                "x = (pixels / 255 - mean) / std (keras_calikd.data.info(name).mean and .std); leave both unset "
                "only for images already in [0, 1]."
            ),
        )
        with tf.control_dependencies([check]):
            return tf.clip_by_value(unit, 0.0, 1.0) * 255.0

    def _from_pixels(self, pixels, dtype):
        import tensorflow as tf

        unit = tf.cast(pixels, tf.float32) / 255.0
        if self.mean is not None:
            unit = (unit - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)
        return tf.cast(unit, dtype)

    def _augment_pixels(self, pixels):
        return self._run_layer(pixels)

    def augment(self, images, labels):
        self._check_images(images)
        self._check_channels(int(images.shape[-1]))
        pixels = self._augment_pixels(self._to_pixels(images))
        augmented = self._from_pixels(pixels, images.dtype)
        augmented.set_shape(images.shape)
        return single_source(augmented, labels)

    def get_config(self):
        config = super().get_config()
        config.update(mean=None if self.mean is None else list(self.mean),
                      std=None if self.std is None else list(self.std))
        return config


def _pair_or_number(value):
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------- the strategies


@AUGMENTATIONS.register("gridmask")
class GridMask(KerasCVAugmentation):
    """Masks a rotated grid of squares in every image (keras-cv's `GridMask`); one source, cross-entropy.

    keras-cv draws, per image, a grid of squares (unit size and offsets at
    random, square side `ratio * unit`, `ratio` from `ratio_factor`), rotates
    it by a random angle and fills the squares; every other pixel is left
    exactly as it was. The loss is cross-entropy with the image's own label.

    The mask does not depend on the value range, so the strategy works on the
    normalised images directly: `fill_value` is in the images' own
    (normalised) scale, like `Cutout`'s, and its default 0 fills with the data
    set's mean colour. `fill_mode="gaussian_noise"` fills with standard normal
    noise instead (unit variance in the normalised scale).

    Args:
        ratio_factor: Side of the masked squares relative to the grid unit,
            in [0, 1]: a number `r` draws the ratio uniformly from `[0, r]`
            per image, a pair `(lo, hi)` from `[lo, hi]`, and `(r, r)` fixes
            it (about `r**2` of the image is then masked).
        rotation_factor: Rotation of the grid, as a fraction of a full turn:
            a number `f` draws from `[-f, f]`, a pair `(lo, hi)` from `[lo, hi]`.
        fill_mode: `"constant"` (fill with `fill_value`) or `"gaussian_noise"`.
        fill_value: Value of the masked pixels with `fill_mode="constant"`, in
            the scale of the images the Distiller feeds (normalised).
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of keras-cv's random generator.

    Example:

    ```python
    ck.Distiller(teacher, student, augmentation=ck.augmentations.GridMask(ratio_factor=(0.4, 0.6)))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (the framework takes any augmentation with its own
        loss, here cross-entropy); Chen et al., "GridMask Data Augmentation",
        arXiv:2001.04086, 2020.
    """

    FILL_MODES = ("constant", "gaussian_noise")

    def __init__(self, ratio_factor=(0.0, 0.5), rotation_factor=0.15, fill_mode: str = "constant",
                 fill_value: float = 0.0, **kwargs):
        self.ratio_factor = _factor("GridMask", "ratio_factor", ratio_factor, 0.0, 1.0)
        if _is_number(rotation_factor):
            self.rotation_factor = _float("GridMask", "rotation_factor", rotation_factor, 0.0)
        else:
            self.rotation_factor = _factor("GridMask", "rotation_factor", rotation_factor, -1.0, 1.0)
        if fill_mode not in self.FILL_MODES:
            raise ValueError(f"GridMask: `fill_mode` must be one of {self.FILL_MODES}, got {fill_mode!r}.")
        self.fill_mode = fill_mode
        self.fill_value = _float("GridMask", "fill_value", fill_value)
        super().__init__(**kwargs)

    def _make_layer(self, keras_cv):
        # The layer masks an all-ones image with zeros and the mask is applied here: the fill can then be any
        # value of the normalised scale (keras-cv fills only with integers in [0, 255]), and the noise fill is
        # drawn here (keras-cv 0.9's own "gaussian_noise" mode calls a method tf.random.Generator lacks).
        return keras_cv.layers.GridMask(ratio_factor=self.ratio_factor, rotation_factor=self.rotation_factor,
                                        fill_mode="constant", fill_value=0, seed=self.seed, dtype="float32")

    def augment(self, images, labels):
        import tensorflow as tf

        self._check_images(images)
        ones = tf.ones_like(images[..., :1], dtype=tf.float32)
        holes = tf.equal(self._run_layer(ones), 0.0)  # (B, H, W, 1): True where the grid masks
        if self.fill_mode == "gaussian_noise":
            fill = keras.random.normal(tf.shape(images), dtype=images.dtype, seed=self.seed_generator)
        else:
            fill = tf.constant(self.fill_value, images.dtype)
        masked = tf.where(holes, fill, images)
        masked.set_shape(images.shape)
        return single_source(masked, labels)

    def get_config(self):
        config = super().get_config()
        config.update(ratio_factor=_pair_or_number(self.ratio_factor),
                      rotation_factor=_pair_or_number(self.rotation_factor),
                      fill_mode=self.fill_mode, fill_value=self.fill_value)
        return config


@AUGMENTATIONS.register("fouriermix")
class FourierMix(KerasCVAugmentation):
    """Mixes each image with a partner through a random low-frequency mask (keras-cv's `FourierMix`, FMix).

    keras-cv pairs each image with one from a random permutation of the
    batch, draws `lam ~ Beta(alpha, alpha)` per image and a binary mask from
    low-pass filtered Fourier noise keeping `round(lam * H * W)` of the
    image's own pixels; the rest come from the partner. The augmentation loss
    is cross-entropy with the mixed soft targets `lam * y + (1 - lam) * y_partner`
    (returned as `AugmentedBatch.targets`), and since each mixed image comes
    from two clean images the distillation term counts twice (Eq. 12), as
    for mixup. The pixels are copied, so the value range does not matter.

    With soft targets, `labels` of the `AugmentedBatch` are each image's own
    labels and `partner_labels`/`lam` are placeholders (`labels`, 1): keras-cv
    does not return the permutation.

    Args:
        alpha: Beta distribution parameter, > 0 (keras-cv's default 0.5).
        decay_power: Decay of the Fourier spectrum's high frequencies, > 0;
            larger values give smoother, blobbier masks (3 in the FMix paper).
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of keras-cv's random generator.

    Example:

    ```python
    ck.Distiller(teacher, student, augmentation=ck.augmentations.FourierMix(alpha=1.0, decay_power=3.0))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2-3.3 (any augmentation, Eq. 12 for two-source
        images); Harris et al., "FMix: Enhancing Mixed Sample Data
        Augmentation", arXiv:2002.12047, 2020.
    """

    def __init__(self, alpha: float = 0.5, decay_power: float = 3.0, **kwargs):
        self.alpha = _float("FourierMix", "alpha", alpha, 0.0, low_open=True)
        self.decay_power = _float("FourierMix", "decay_power", decay_power, 0.0, low_open=True)
        super().__init__(**kwargs)

    def _make_layer(self, keras_cv):
        return keras_cv.layers.FourierMix(alpha=self.alpha, decay_power=self.decay_power, seed=self.seed,
                                          dtype="float32")

    def augment(self, images, labels):
        import tensorflow as tf

        self._check_images(images)
        num_classes = getattr(self, "num_classes", None)
        if not num_classes:
            raise ValueError(
                "FourierMix makes soft targets over the classes: build it first with "
                "`build(input_shape, num_classes=...)` (the Distiller does)."
            )
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
        mixed = self._run_layer({"images": tf.cast(images, tf.float32), "labels": one_hot})
        mixed_images = tf.cast(mixed["images"], images.dtype)
        mixed_images.set_shape(images.shape)
        targets = tf.cast(mixed["labels"], tf.float32)
        targets.set_shape(one_hot.shape)
        return AugmentedBatch(
            images=mixed_images,
            labels=labels,
            partner_labels=labels,
            lam=ops.ones((), "float32"),
            sources=ops.full((), 2.0, "float32"),
            targets=targets,
        )

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, decay_power=self.decay_power)
        return config


@AUGMENTATIONS.register("augmix")
class AugMix(_PixelRangeAugmentation):
    """Mixes several chains of random image operations with the image (keras-cv's `AugMix`); one source.

    Each image goes through `num_chains` chains of 1-3 (`chain_depth`)
    operations drawn from translate, shear, rotate, posterize, equalize,
    solarize and auto-contrast; the chains are mixed with Dirichlet weights and
    the result with the original with a Beta weight (`alpha`). The loss is
    cross-entropy with the image's own label (the paper's Jensen-Shannon
    consistency term is not used).

    The operations need pixel values: the images are de-normalised with
    `mean` and `std` (`x * std + mean`, then times 255), augmented in
    [0, 255] and normalised again. A step whose de-normalised images fall
    outside [0, 1] fails, which catches constants that do not match the data.

    Args:
        severity: Strength of the operations in [0.01, 1]: a number `s` is
            drawn from `[0.01, s]`, a pair `(lo, hi)` from `[lo, hi]`.
        num_chains: Number of chains mixed, >= 1.
        chain_depth: Operations per chain: an integer or a pair `(lo, hi)` of
            integers >= 1 (the depth is drawn uniformly from it).
        alpha: Parameter of the Dirichlet and Beta mixing weights, > 0.
        mean, std: Per-channel constants the images were normalised with, on
            [0, 1] pixels (`keras_calikd.data.info(name).mean`/`.std`); a
            single number applies to every channel. Leave both unset for
            images already in [0, 1].
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of keras-cv's random generator.

    Example:

    ```python
    info = ck.data.info("cifar100")
    ck.Distiller(teacher, student, augmentation=ck.augmentations.AugMix(mean=info.mean, std=info.std))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (any augmentation with cross-entropy); Hendrycks et
        al., "AugMix: A Simple Data Processing Method to Improve Robustness and
        Uncertainty", ICLR 2020.
    """

    def __init__(self, severity=0.3, num_chains: int = 3, chain_depth=(1, 3), alpha: float = 1.0, mean=None,
                 std=None, **kwargs):
        self.severity = _factor("AugMix", "severity", severity, 0.01, 1.0)
        self.num_chains = _int("AugMix", "num_chains", num_chains)
        if isinstance(chain_depth, (tuple, list)):
            if len(chain_depth) != 2:
                raise ValueError(f"AugMix: `chain_depth` must be an integer or a pair (lo, hi), got {chain_depth!r}.")
            low, high = (_int("AugMix", "chain_depth", d) for d in chain_depth)
            if low > high:
                raise ValueError(f"AugMix: `chain_depth` must be a pair (lo, hi) with lo <= hi, got {chain_depth!r}.")
            self.chain_depth = (low, high)
        else:
            self.chain_depth = _int("AugMix", "chain_depth", chain_depth)
        self.alpha = _float("AugMix", "alpha", alpha, 0.0, low_open=True)
        super().__init__(mean=mean, std=std, **kwargs)

    def _make_layer(self, keras_cv):
        depth = list(self.chain_depth) if isinstance(self.chain_depth, tuple) else self.chain_depth
        return keras_cv.layers.AugMix(value_range=(0, 255), severity=self.severity, num_chains=self.num_chains,
                                      chain_depth=depth, alpha=self.alpha, seed=self.seed, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(severity=_pair_or_number(self.severity), num_chains=self.num_chains,
                      chain_depth=_pair_or_number(self.chain_depth), alpha=self.alpha)
        return config


@AUGMENTATIONS.register("randaugment")
class RandAugment(_PixelRangeAugmentation):
    """Applies a few random image operations of random magnitude (keras-cv's `RandAugment`); one source.

    Per image, keras-cv applies `augmentations_per_image` operations, each
    with probability `rate`, drawn from its standard policy (auto-contrast,
    equalize, solarize, colour, contrast, brightness, sharpness, and with
    `geometric=True` shear and translation), at magnitudes drawn from a
    normal distribution around `magnitude`. The loss is cross-entropy with
    the image's own label.

    The operations need pixel values: the images are de-normalised with
    `mean` and `std`, augmented in [0, 255] and normalised again (see
    `AugMix`). Single-channel images are augmented as grey RGB images.

    Args:
        augmentations_per_image: Operations applied to each image, >= 1.
        magnitude: Mean strength of the operations, in [0, 1].
        magnitude_stddev: Standard deviation of the strength, in [0, 1].
        rate: Probability of applying each operation, in [0, 1].
        geometric: Include the geometric operations (shear, translation).
        mean, std: Per-channel normalisation constants on [0, 1] pixels (see
            `AugMix`); leave both unset for images already in [0, 1].
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of keras-cv's random generator.

    Example:

    ```python
    info = ck.data.info("cifar100")
    ck.Distiller(teacher, student,
                 augmentation=ck.augmentations.RandAugment(magnitude=0.3, mean=info.mean, std=info.std))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (any augmentation with cross-entropy); Cubuk et
        al., "RandAugment: Practical Automated Data Augmentation with a Reduced
        Search Space", NeurIPS Workshops 2020.
    """

    def __init__(self, augmentations_per_image: int = 3, magnitude: float = 0.5, magnitude_stddev: float = 0.15,
                 rate: float = 10 / 11, geometric: bool = True, mean=None, std=None, **kwargs):
        self.augmentations_per_image = _int("RandAugment", "augmentations_per_image", augmentations_per_image)
        self.magnitude = _float("RandAugment", "magnitude", magnitude, 0.0, 1.0)
        self.magnitude_stddev = _float("RandAugment", "magnitude_stddev", magnitude_stddev, 0.0, 1.0)
        self.rate = _float("RandAugment", "rate", rate, 0.0, 1.0)
        if not isinstance(geometric, bool):
            raise ValueError(f"RandAugment: `geometric` must be True or False, got {geometric!r}.")
        self.geometric = geometric
        super().__init__(mean=mean, std=std, **kwargs)

    def _make_layer(self, keras_cv):
        return keras_cv.layers.RandAugment(
            value_range=(0, 255), augmentations_per_image=self.augmentations_per_image, magnitude=self.magnitude,
            magnitude_stddev=self.magnitude_stddev, rate=self.rate, geometric=self.geometric, seed=self.seed,
            dtype="float32")

    def _check_channels(self, channels):
        if channels not in (1, 3):
            raise ValueError(
                f"RandAugment's colour operations take RGB (3-channel) or grey (1-channel) images, got {channels} "
                "channels."
            )
        super()._check_channels(channels)

    def _augment_pixels(self, pixels):
        import tensorflow as tf

        if pixels.shape[-1] == 1:  # every operation keeps a grey image grey
            return tf.reduce_mean(self._run_layer(tf.tile(pixels, [1, 1, 1, 3])), axis=-1, keepdims=True)
        return self._run_layer(pixels)

    def get_config(self):
        config = super().get_config()
        config.update(augmentations_per_image=self.augmentations_per_image, magnitude=self.magnitude,
                      magnitude_stddev=self.magnitude_stddev, rate=self.rate, geometric=self.geometric)
        return config


__all__ = ["AugMix", "FourierMix", "GridMask", "KerasCVAugmentation", "RandAugment"]
