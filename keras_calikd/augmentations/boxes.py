"""Random boxes with uniformly drawn centres, clipped to the image (shared by CutMix and cutout)."""

from __future__ import annotations

import keras
from keras import ops


def random_box(extent, height: int, width: int, seed_generator, absolute: bool = False):
    """Draws boxes with uniform centres and clips them to a `height x width` image.

    Args:
        extent: Float tensor of any shape `S`: the box side as a fraction of the
            image side (`absolute=False`) or in pixels (`absolute=True`).
        height, width: Static image size.
        seed_generator: A `keras.random.SeedGenerator`.
        absolute: How `extent` is given.

    Returns:
        `(y1, y2, x1, x2)`, int32 tensors of shape `S`; the box covers rows
        `y1 <= r < y2` and columns `x1 <= c < x2`.
    """
    shape = ops.shape(extent)
    if absolute:
        cut_h = cut_w = ops.cast(extent, "int32")
    else:
        cut_h = ops.cast(ops.floor(extent * height), "int32")
        cut_w = ops.cast(ops.floor(extent * width), "int32")
    cy = keras.random.randint(shape, 0, height, dtype="int32", seed=seed_generator)
    cx = keras.random.randint(shape, 0, width, dtype="int32", seed=seed_generator)
    y1 = ops.clip(cy - cut_h // 2, 0, height)
    y2 = ops.clip(cy + cut_h // 2, 0, height)
    x1 = ops.clip(cx - cut_w // 2, 0, width)
    x2 = ops.clip(cx + cut_w // 2, 0, width)
    return y1, y2, x1, x2


def box_mask(y1, y2, x1, x2, height: int, width: int):
    """Boolean mask of shape `S + (height, width)` that is true inside each box of shape `S`."""
    rows = ops.arange(height, dtype="int32")[:, None]
    cols = ops.arange(width, dtype="int32")[None, :]
    inside_rows = ops.logical_and(rows >= y1[..., None, None], rows < y2[..., None, None])
    inside_cols = ops.logical_and(cols >= x1[..., None, None], cols < x2[..., None, None])
    return ops.logical_and(inside_rows, inside_cols)
