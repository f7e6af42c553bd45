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

Value ranges: the strategies augment the images the Distiller feeds, which
are raw pixels (0-255) when the student normalises its input itself (the
zoo's models built with `normalization=`). GridMask and FourierMix do not
depend on the range (they copy or fill pixels); GridMask's default fill is
the student's input mean, as Cutout's. AugMix and RandAugment run colour
operations that do: they take `value_range`, the range of the images fed,
which defaults to pixels (0, 255) for a student with an input normalisation;
for a student without one the images may be normalised (no fixed range), so
`build` refuses unless `value_range` is given. See docs/keras_cv.md.
"""

from __future__ import annotations

import importlib.util
import numbers

import keras
import numpy as np
from keras import ops

from keras_calikd import checks
from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, AugmentedBatch, single_source

INSTALL_HINT = 'pip install "keras-calikd[keras-cv]"'

#: The range of raw 8-bit pixels, which the images the Distiller feeds are in when the student normalises them.
PIXEL_RANGE = (0.0, 255.0)

#: Students whose input normalisation leads to this error should be built as the zoo builds them.
NORMALIZATION_HINT = ("build the student with its input normalisation, e.g. "
                      "`ck.models.get(name, num_classes, normalization=ck.data.info(data).normalization)`, "
                      "and feed it raw pixels (as `ck.data.load` yields)")


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
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _factor(owner, name, value, low, high):
    """A keras-cv factor given as plain values: a number `f` (sampled from `[low, f]`) or a pair `(lo, hi)`."""
    if _is_number(value):
        return checks.number(owner, name, value, low=low, high=high)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value):
        pair = tuple(checks.number(owner, name, v) for v in value)
        if not low <= pair[0] <= pair[1] <= high:
            raise ValueError(f"{owner}: `{name}` must be a number or a pair (lo, hi) with {low:g} <= lo <= hi <= "
                             f"{high:g}, got {tuple(value)}.")
        return pair
    raise ValueError(f"{owner}: `{name}` must be a number or a pair (lo, hi) of numbers, got {value!r}.")


def _value_range(owner, value):
    """`None`, or `(low, high)` as floats with `low < high`."""
    if value is None:
        return None
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value)):
        raise ValueError(f"{owner}: `value_range` must be a pair (low, high) of numbers, the range of the images "
                         f"the Distiller feeds (e.g. (0, 255) for raw pixels), or None; got {value!r}.")
    low, high = (checks.number(owner, "value_range", v) for v in value)
    if low >= high:
        raise ValueError(f"{owner}: `value_range` must be a pair (low, high) with low < high, got {tuple(value)}.")
    return low, high


def _per_channel(values, channels):
    """`values` (one number, or one per channel) as a float32 array of shape `(channels,)`."""
    return np.broadcast_to(np.ravel(np.asarray(values, np.float32)), (channels,)).copy()


def _rounded(values):
    return tuple(round(float(v), 4) for v in values)


def _pair_or_number(value):
    return list(value) if isinstance(value, tuple) else value


def _check_value_range(owner, value_range, input_normalization):
    """Fails when the images' range is unknown (no normalisation, no `value_range`) or cannot fit the student's."""
    if input_normalization is None:
        if value_range is None:
            raise ValueError(
                f"{owner}'s colour operations need the value range of the images the Distiller feeds, but the "
                "student has no input normalisation layer, so they may be normalised images without a fixed "
                f"range. Either {NORMALIZATION_HINT}; or pass `value_range=(low, high)`, the range of the "
                f"images fed (e.g. {owner}(value_range=(0, 255)) for raw pixels)."
            )
        return
    mean, std = (np.ravel(np.asarray(v, np.float64)) for v in input_normalization)
    low, high = value_range or PIXEL_RANGE
    # Images within [low, high] have a mean within it and a std of at most half its width; a std under
    # 1/255 of the width (one grey level of 8-bit pixels) means the normalisation is in other units.
    if mean.min() < low or mean.max() > high or std.max() > (high - low) / 2 or std.min() < (high - low) / 255:
        raise ValueError(
            f"{owner}: the student normalises its input with mean {_rounded(mean)} and std {_rounded(std)}, "
            f"which cannot be the statistics of images in the value range {(low, high)}. Pass `value_range` in "
            "the units of the student's normalisation (the range of the images the Distiller feeds), e.g. "
            "(0, 255) for raw pixels or (0, 1) for pixels / 255."
        )


# ---------------------------------------------------------------- the shared bases


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


class _ValueRangeAugmentation(KerasCVAugmentation):
    """A keras-cv layer whose operations depend on the images' value range (`value_range`, checked at build)."""

    def __init__(self, value_range=None, **kwargs):
        self.value_range = _value_range(type(self).__name__, value_range)
        super().__init__(**kwargs)

    @property
    def _range(self):
        """The range the keras-cv layer is made for: `value_range`, or pixels by default."""
        return self.value_range or PIXEL_RANGE

    def _check_channels(self, channels):
        """Subclasses refuse channel counts their operations do not take."""

    def build(self, input_shape=None, num_classes=None, input_normalization=None):
        super().build(input_shape, num_classes, input_normalization)
        if input_shape is not None and input_shape[-1] is not None:
            self._check_channels(int(input_shape[-1]))
        _check_value_range(type(self).__name__, self.value_range, input_normalization)

    def _augment_images(self, images):
        return self._run_layer(images)

    def augment(self, images, labels):
        import tensorflow as tf

        self._check_images(images)
        self._check_channels(int(images.shape[-1]))
        augmented = tf.cast(self._augment_images(tf.cast(images, tf.float32)), images.dtype)
        augmented.set_shape(images.shape)
        return single_source(augmented, labels)

    def get_config(self):
        config = super().get_config()
        config.update(value_range=None if self.value_range is None else list(self.value_range))
        return config


# ---------------------------------------------------------------- the strategies


@AUGMENTATIONS.register("gridmask")
class GridMask(KerasCVAugmentation):
    """Masks a rotated grid of squares in every image (keras-cv's `GridMask`); one source, cross-entropy.

    keras-cv draws, per image, a grid of squares (unit size and offsets at
    random, square side `ratio * unit`, `ratio` from `ratio_factor`), rotates
    it by a random angle and fills the squares; every other pixel is left
    exactly as it was. The loss is cross-entropy with the image's own label.

    The default fill is the student's input mean, as for `Cutout`: the
    Distiller gives the strategy the student's input normalisation, so the
    squares hold the data set's mean colour in the units of the images it
    feeds (pixels for the zoo's models), and 0 when the student takes
    normalised images. `fill_mode="gaussian_noise"` fills with noise of the
    same mean and the normalisation's std per channel (standard normal noise
    when the student has no normalisation). Squares that could never be a
    pixel wide on the images fail at build.

    Args:
        ratio_factor: Side of the masked squares relative to the grid unit,
            in [0, 1]: a number `r` draws the ratio uniformly from `[0, r]`
            per image, a pair `(lo, hi)` from `[lo, hi]`, and `(r, r)` fixes
            it (about `r**2` of the image is then masked).
        rotation_factor: Rotation of the grid, as a fraction of a full turn:
            a number `f` draws from `[-f, f]`, a pair `(lo, hi)` from `[lo, hi]`.
        fill_mode: `"constant"` (fill with `fill_value`) or `"gaussian_noise"`.
        fill_value: With `fill_mode="constant"`: `"mean"` (the default, see
            above) or a number written into every channel of the squares, in
            the units of the images the Distiller feeds.
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
                 fill_value="mean", **kwargs):
        self.ratio_factor = _factor("GridMask", "ratio_factor", ratio_factor, 0.0, 1.0)
        if _is_number(rotation_factor):
            self.rotation_factor = checks.number("GridMask", "rotation_factor", rotation_factor, low=0.0)
        else:
            self.rotation_factor = _factor("GridMask", "rotation_factor", rotation_factor, -1.0, 1.0)
        self.fill_mode = checks.one_of("GridMask", "fill_mode", fill_mode, self.FILL_MODES)
        if isinstance(fill_value, str) and fill_value == "mean":
            self.fill_value = fill_value
        elif _is_number(fill_value):
            self.fill_value = checks.number("GridMask", "fill_value", fill_value)
        else:
            raise ValueError(f"GridMask: `fill_value` must be 'mean' or a finite number, got {fill_value!r}.")
        super().__init__(**kwargs)

    def _make_layer(self, keras_cv):
        # The layer masks an all-ones image with zeros and the mask is applied here: the fill can then be any
        # value, one per channel (keras-cv fills only with one integer in [0, 255]), and the noise fill is
        # drawn here (keras-cv 0.9's own "gaussian_noise" mode calls a method tf.random.Generator lacks).
        return keras_cv.layers.GridMask(ratio_factor=self.ratio_factor, rotation_factor=self.rotation_factor,
                                        fill_mode="constant", fill_value=0, seed=self.seed, dtype="float32")

    def build(self, input_shape=None, num_classes=None, input_normalization=None):
        super().build(input_shape, num_classes, input_normalization)
        height, width, channels = (int(d) for d in input_shape[1:])
        # keras-cv draws the grid unit from [min(H/2, 0.3 W), max(H/2, 0.3 W) + 1] pixels.
        largest_unit = max(0.5 * height, 0.3 * width) + 1.0
        largest_ratio = self.ratio_factor[1] if isinstance(self.ratio_factor, tuple) else self.ratio_factor
        if largest_ratio * largest_unit < 1.0:
            raise ValueError(
                f"GridMask: on {height}x{width} images the grid unit is at most {largest_unit:g} pixels, so with "
                f"`ratio_factor` at most {largest_ratio:g} every square is under one pixel wide and almost nothing "
                f"is masked. Raise `ratio_factor` to at least {1.0 / largest_unit:.3g} (keras-cv's default is "
                "(0, 0.5))."
            )
        mean, std = (0.0, 1.0) if input_normalization is None else input_normalization
        self._noise = _per_channel(mean, channels), _per_channel(std, channels)
        if self.fill_value == "mean":
            self._fill = _per_channel(mean, channels)
        else:
            self._fill = _per_channel(self.fill_value, channels)

    def _fill_for(self, images):
        """What the squares hold: a per-channel constant, or noise (as built; 0 / N(0, 1) used on its own)."""
        import tensorflow as tf

        if self.fill_mode == "gaussian_noise":
            mean, std = getattr(self, "_noise", (0.0, 1.0))
            noise = keras.random.normal(tf.shape(images), dtype="float32", seed=self.seed_generator)
            return tf.cast(noise * std + mean, images.dtype)
        fill = getattr(self, "_fill", None)
        if fill is None:  # used on its own, without the Distiller's build
            fill = 0.0 if self.fill_value == "mean" else self.fill_value
        return tf.cast(fill, images.dtype)

    def augment(self, images, labels):
        import tensorflow as tf

        self._check_images(images)
        ones = tf.ones_like(images[..., :1], dtype=tf.float32)
        holes = tf.equal(self._run_layer(ones), 0.0)  # (B, H, W, 1): True where the grid masks
        masked = tf.where(holes, self._fill_for(images), images)
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
    for mixup. The pixels are copied unchanged, so the value range of the
    images (raw pixels or normalised) does not matter.

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
        self.alpha = checks.number("FourierMix", "alpha", alpha, low=0.0, low_open=True)
        self.decay_power = checks.number("FourierMix", "decay_power", decay_power, low=0.0, low_open=True)
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
class AugMix(_ValueRangeAugmentation):
    """Mixes several chains of random image operations with the image (keras-cv's `AugMix`); one source.

    Each image goes through `num_chains` chains of 1-3 (`chain_depth`)
    operations drawn from translate, shear, rotate, posterize, equalize,
    solarize and auto-contrast; the chains are mixed with Dirichlet weights and
    the result with the original with a Beta weight (`alpha`). The loss is
    cross-entropy with the image's own label (the paper's Jensen-Shannon
    consistency term is not used).

    The colour operations need the images' value range. When the student
    normalises its input (the zoo's models built with `normalization=`), the
    Distiller feeds raw pixels and the range defaults to (0, 255). A student
    without an input normalisation may take normalised images, which have no
    fixed range: `build` then fails unless `value_range` is given. A
    `value_range` that cannot hold images with the student's normalisation
    constants fails at build too. Used on its own, without `build`, the
    strategy takes images in `value_range`, (0, 255) by default.

    Args:
        severity: Strength of the operations in [0.01, 1]: a number `s` is
            drawn from `[0.01, s]`, a pair `(lo, hi)` from `[lo, hi]`.
        num_chains: Number of chains mixed, >= 1.
        chain_depth: Operations per chain: an integer or a pair `(lo, hi)` of
            integers >= 1 (the depth is drawn uniformly from it).
        alpha: Parameter of the Dirichlet and Beta mixing weights, > 0.
        value_range: `(low, high)`, the range of the images the Distiller
            feeds, or `None` (the default): raw pixels (0, 255) when the
            student normalises its input, refused at build otherwise.
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of keras-cv's random generator.

    Example:

    ```python
    student = ck.models.get("resnet8", 100, normalization=ck.data.info("cifar100").normalization)
    ck.Distiller(teacher, student, augmentation=ck.augmentations.AugMix(severity=0.3))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (any augmentation with cross-entropy); Hendrycks et
        al., "AugMix: A Simple Data Processing Method to Improve Robustness and
        Uncertainty", ICLR 2020.
    """

    def __init__(self, severity=0.3, num_chains: int = 3, chain_depth=(1, 3), alpha: float = 1.0,
                 value_range=None, **kwargs):
        self.severity = _factor("AugMix", "severity", severity, 0.01, 1.0)
        self.num_chains = checks.integer("AugMix", "num_chains", num_chains)
        if isinstance(chain_depth, (tuple, list)):
            if len(chain_depth) != 2:
                raise ValueError(f"AugMix: `chain_depth` must be an integer or a pair (lo, hi), got {chain_depth!r}.")
            low, high = (checks.integer("AugMix", "chain_depth", d) for d in chain_depth)
            if low > high:
                raise ValueError(f"AugMix: `chain_depth` must be a pair (lo, hi) with lo <= hi, got {chain_depth!r}.")
            self.chain_depth = (low, high)
        else:
            self.chain_depth = checks.integer("AugMix", "chain_depth", chain_depth)
        self.alpha = checks.number("AugMix", "alpha", alpha, low=0.0, low_open=True)
        super().__init__(value_range=value_range, **kwargs)

    def _make_layer(self, keras_cv):
        depth = list(self.chain_depth) if isinstance(self.chain_depth, tuple) else self.chain_depth
        return keras_cv.layers.AugMix(value_range=self._range, severity=self.severity, num_chains=self.num_chains,
                                      chain_depth=depth, alpha=self.alpha, seed=self.seed, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(severity=_pair_or_number(self.severity), num_chains=self.num_chains,
                      chain_depth=_pair_or_number(self.chain_depth), alpha=self.alpha)
        return config


@AUGMENTATIONS.register("randaugment")
class RandAugment(_ValueRangeAugmentation):
    """Applies a few random image operations of random magnitude (keras-cv's `RandAugment`); one source.

    Per image, keras-cv applies `augmentations_per_image` operations, each
    with probability `rate`, drawn from its standard policy (auto-contrast,
    equalize, solarize, colour, contrast, brightness, sharpness, and with
    `geometric=True` shear and translation), at magnitudes drawn from a
    normal distribution around `magnitude`. The loss is cross-entropy with
    the image's own label.

    The operations need the images' value range: raw pixels (0, 255) by
    default when the student normalises its input, refused at build for a
    student without an input normalisation unless `value_range` is given
    (see `AugMix`). The policy takes RGB images; single-channel images are
    augmented as grey RGB images and turned back into one channel, and other
    channel counts fail at build.

    Args:
        augmentations_per_image: Operations applied to each image, >= 1.
        magnitude: Mean strength of the operations, in [0, 1].
        magnitude_stddev: Standard deviation of the strength, in [0, 1].
        rate: Probability of applying each operation, in [0, 1].
        geometric: Include the geometric operations (shear, translation).
        value_range: `(low, high)`, the range of the images the Distiller
            feeds, or `None` (the default; see `AugMix`).
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of keras-cv's random generator.

    Example:

    ```python
    student = ck.models.get("resnet8", 100, normalization=ck.data.info("cifar100").normalization)
    ck.Distiller(teacher, student, augmentation=ck.augmentations.RandAugment(magnitude=0.3))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (any augmentation with cross-entropy); Cubuk et
        al., "RandAugment: Practical Automated Data Augmentation with a Reduced
        Search Space", NeurIPS Workshops 2020.
    """

    def __init__(self, augmentations_per_image: int = 3, magnitude: float = 0.5, magnitude_stddev: float = 0.15,
                 rate: float = 10 / 11, geometric: bool = True, value_range=None, **kwargs):
        self.augmentations_per_image = checks.integer("RandAugment", "augmentations_per_image",
                                                      augmentations_per_image)
        self.magnitude = checks.fraction("RandAugment", "magnitude", magnitude)
        self.magnitude_stddev = checks.fraction("RandAugment", "magnitude_stddev", magnitude_stddev)
        self.rate = checks.fraction("RandAugment", "rate", rate)
        self.geometric = checks.one_of("RandAugment", "geometric", geometric, (True, False))
        super().__init__(value_range=value_range, **kwargs)

    def _make_layer(self, keras_cv):
        return keras_cv.layers.RandAugment(
            value_range=self._range, augmentations_per_image=self.augmentations_per_image, magnitude=self.magnitude,
            magnitude_stddev=self.magnitude_stddev, rate=self.rate, geometric=self.geometric, seed=self.seed,
            dtype="float32")

    def _check_channels(self, channels):
        if channels not in (1, 3):
            raise ValueError(
                f"RandAugment's colour operations take RGB (3-channel) or grey (1-channel) images, got {channels} "
                "channels."
            )

    def _augment_images(self, images):
        import tensorflow as tf

        if images.shape[-1] == 1:  # every operation keeps a grey image grey
            return tf.reduce_mean(self._run_layer(tf.tile(images, [1, 1, 1, 3])), axis=-1, keepdims=True)
        return self._run_layer(images)

    def get_config(self):
        config = super().get_config()
        config.update(augmentations_per_image=self.augmentations_per_image, magnitude=self.magnitude,
                      magnitude_stddev=self.magnitude_stddev, rate=self.rate, geometric=self.geometric)
        return config


__all__ = ["AugMix", "FourierMix", "GridMask", "KerasCVAugmentation", "RandAugment"]
