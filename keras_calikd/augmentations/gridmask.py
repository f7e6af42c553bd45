"""GridMask: blank a rotated regular grid of squares in each image (Chen et al., 2020), in `keras.ops`."""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_calikd import checks
from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, config_value, single_source
from keras_calikd.steps import per_sample


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _interval(owner, name, value, low, high, symmetric=False):
    """A number `f` as `[0, f]` (`[-f, f]` when `symmetric`), or a pair `(lo, hi)`, within `[low, high]`."""
    if _is_number(value):
        f = checks.number(owner, name, value, low=0.0 if symmetric else low, high=high)
        return (-f, f) if symmetric else (0.0, f)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value):
        pair = tuple(checks.number(owner, name, v) for v in value)
        if not low <= pair[0] <= pair[1] <= high:
            raise ValueError(f"{owner}: `{name}` must be a number or a pair (lo, hi) with {low:g} <= lo <= hi <= "
                             f"{high:g}, got {tuple(value)}.")
        return pair
    raise ValueError(f"{owner}: `{name}` must be a number or a pair (lo, hi) of numbers, got {value!r}.")


def unit_range(height: int, width: int):
    """The interval the grid unit (in pixels) is drawn from: `[min(H/2, 0.3 W), max(H/2, 0.3 W) + 1]`."""
    return min(0.5 * height, 0.3 * width), max(0.5 * height, 0.3 * width) + 1.0


def grid_mask(ratio, unit, offset_y, offset_x, angle, height: int, width: int):
    """Where each image's grid masks it: `(batch, height, width)` booleans.

    The grid is the regular tiling of the plane by squares of side `unit`,
    shifted by the offsets and rotated by `angle` (radians) about the image
    centre; in each tile the square of side `ratio * unit` at its far corner
    is masked. A pixel is masked when its centre lies in a masked square.

    Args:
        ratio, unit, offset_y, offset_x, angle: `(batch,)` float32, per image.
        height, width: The image size.
    """
    ys = ops.arange(height, dtype="float32") + 0.5 - height / 2.0
    xs = ops.arange(width, dtype="float32") + 0.5 - width / 2.0
    y, x = ys[None, :, None], xs[None, None, :]
    cos, sin = (ops.reshape(f(angle), (-1, 1, 1)) for f in (ops.cos, ops.sin))
    # the pixel centres in the frame of the grid: rotated back by the grid's angle
    across = cos * x + sin * y
    down = cos * y - sin * x
    ratio, unit, offset_y, offset_x = (ops.reshape(v, (-1, 1, 1)) for v in (ratio, unit, offset_y, offset_x))

    def in_square(position, offset):
        phase = (position + offset) / unit
        return phase - ops.floor(phase) >= 1.0 - ratio

    return ops.logical_and(in_square(across, offset_x), in_square(down, offset_y))


@AUGMENTATIONS.register("gridmask")
class GridMask(Augmentation):
    """Masks a rotated grid of squares in every image; one source, cross-entropy with the image's label.

    Per image, a grid unit `d` is drawn from `[min(H/2, 0.3 W), max(H/2, 0.3 W) + 1]`
    pixels, offsets from `[0, d)`, a ratio `r` from `ratio_factor` and an
    angle from `rotation_factor`; the squares of side `r * d` of the rotated
    grid are filled and every other pixel is left exactly as it was (about
    `r**2` of the image is masked). These are the distributions and defaults
    of keras-cv's `GridMask`, which this strategy replaces, written in
    `keras.ops`: it runs on every backend and inside compiled (XLA) steps.
    Pixels are masked where their centre lies in a square (keras-cv rotated
    a rasterised mask with bilinear interpolation, which widened the squares
    by up to a pixel).

    The default fill is the student's input mean, as for `Cutout`: the
    Distiller gives the strategy the student's input normalisation, so the
    squares hold the data set's mean colour in the units of the images it
    feeds (pixels for the zoo's models), and 0 when the student takes
    normalised images. `fill_mode="gaussian_noise"` fills with noise of the
    same mean and the normalisation's std per channel (standard normal noise
    without a normalisation). Squares that could never be a pixel wide on the
    images fail at build.

    Args:
        ratio_factor: Side of the masked squares relative to the grid unit,
            in [0, 1]: a number `r` draws the ratio from `[0, r]` per image,
            a pair `(lo, hi)` from `[lo, hi]`; `(r, r)` fixes it.
        rotation_factor: Rotation of the grid, as a fraction of a full turn:
            a number `f` draws from `[-f, f]`, a pair `(lo, hi)` from `[lo, hi]`.
        fill_mode: `"constant"` (fill with `fill_value`) or `"gaussian_noise"`.
        fill_value: With `fill_mode="constant"`: `"mean"` (the default, see
            above) or a number written into every channel of the squares, in
            the units of the images the Distiller feeds.
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of the strategy's random generator.

    Example:

    ```python
    ck.Distiller(teacher, student, augmentation=ck.augmentations.GridMask(ratio_factor=(0.4, 0.6)))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2 (any augmentation with its own loss, here
        cross-entropy); Chen et al., "GridMask Data Augmentation",
        arXiv:2001.04086, 2020.
    """

    label = "GridMask"
    FILL_MODES = ("constant", "gaussian_noise")

    def __init__(self, ratio_factor=(0.0, 0.5), rotation_factor=0.15, fill_mode: str = "constant",
                 fill_value="mean", **kwargs):
        super().__init__(**kwargs)
        self._given = dict(ratio_factor=config_value(ratio_factor), rotation_factor=config_value(rotation_factor))
        self.ratio_factor = _interval("GridMask", "ratio_factor", ratio_factor, 0.0, 1.0)
        self.rotation_factor = _interval("GridMask", "rotation_factor", rotation_factor, -1.0, 1.0, symmetric=True)
        self.fill_mode = checks.one_of("GridMask", "fill_mode", fill_mode, self.FILL_MODES)
        if isinstance(fill_value, str) and fill_value == "mean":
            self.fill_value = fill_value
        elif _is_number(fill_value):
            self.fill_value = checks.number("GridMask", "fill_value", fill_value)
        else:
            raise ValueError(f"GridMask: `fill_value` must be 'mean' or a finite number, got {fill_value!r}.")
        # used on its own, without the Distiller's build: "mean" fills with 0, noise is standard normal
        self._fill = 0.0 if self.fill_value == "mean" else self.fill_value
        self._noise = (0.0, 1.0)

    def build(self, input_shape=None, num_classes=None, input_normalization=None):
        super().build(input_shape, num_classes, input_normalization)
        height, width, channels = (int(d) for d in input_shape[1:])
        largest_unit = unit_range(height, width)[1]
        if self.ratio_factor[1] * largest_unit < 1.0:
            raise ValueError(
                f"GridMask: on {height}x{width} images the grid unit is at most {largest_unit:g} pixels, so with "
                f"`ratio_factor` at most {self.ratio_factor[1]:g} every square is under one pixel wide and almost "
                f"nothing is masked. Raise `ratio_factor` to at least {1.0 / largest_unit:.3g} (the default is "
                "(0, 0.5))."
            )
        mean, std = (0.0, 1.0) if input_normalization is None else input_normalization
        per_channel = lambda v: np.broadcast_to(np.ravel(np.asarray(v, np.float32)), (channels,)).copy()  # noqa: E731
        self._noise = per_channel(mean), per_channel(std)
        self._fill = per_channel(mean if self.fill_value == "mean" else self.fill_value)

    def draw(self, batch_size: int, height: int, width: int):
        """Each image's `(ratio, unit, offset_y, offset_x, angle)`, `(batch,)` float32 each (see `grid_mask`)."""
        low, high = unit_range(height, width)

        def uniform(n, interval):
            return keras.random.uniform((n,), interval[0], interval[1], dtype="float32", seed=self.seed_generator)

        def draws(n):
            unit = uniform(n, (low, high))
            offsets = [uniform(n, (0.0, 1.0)) * unit for _ in range(2)]
            angle = uniform(n, self.rotation_factor) * (2.0 * math.pi)
            return ops.stack([uniform(n, self.ratio_factor), unit, *offsets, angle], axis=1)

        return ops.unstack(per_sample(draws, batch_size), axis=1)

    def augment(self, images, labels):
        height, width = int(images.shape[1]), int(images.shape[2])
        holes = grid_mask(*self.draw(ops.shape(images)[0], height, width), height, width)[..., None]
        if self.fill_mode == "gaussian_noise":
            mean, std = self._noise
            fill = keras.random.normal(ops.shape(images), dtype="float32", seed=self.seed_generator) * std + mean
        else:
            fill = self._fill
        return single_source(ops.where(holes, ops.cast(fill, images.dtype), images), labels)

    def get_config(self):
        config = super().get_config()
        config.update(self._given, fill_mode=self.fill_mode, fill_value=self.fill_value)
        return config
