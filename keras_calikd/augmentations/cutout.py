"""Cutout: blank square holes (DeVries and Taylor, 2017)."""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_calikd import checks
from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, single_source
from keras_calikd.augmentations.boxes import box_mask, random_box
from keras_calikd.steps import per_sample


@AUGMENTATIONS.register("cutout")
class Cutout(Augmentation):
    """Fills `num_holes` squares of side `size`, independently placed per image, with `fill_value`.

    Each hole has a uniformly random centre and is clipped to the image, so a
    hole near the border covers less than `size x size` pixels. The loss is
    cross-entropy with the image's own label.

    The default fill is the reference implementation's: zero after the
    per-channel normalisation, i.e. the data set's mean colour. The Distiller
    gives the strategy the student's input normalisation, so the holes hold
    the mean in the units of the images it feeds (pixels for the zoo's
    models), and zero when the student takes normalised images.

    Args:
        size: Side of each hole in pixels; the paper uses 16 on 32x32 images.
            It may not exceed the image's side.
        num_holes: Holes per image; the paper uses 1.
        fill_value: `"mean"` (the default: the data set's mean colour, see
            above) or a number written into every channel of the holes, in
            the units of the images the Distiller feeds.
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of the strategy's random generator.

    Example:

    ```python
    ck.Distiller(teacher, student, augmentation=ck.augmentations.Cutout(size=8, num_holes=2))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 4.2 (one 16x16 hole).
    """

    label = "cutout"
    table_position = 1
    marker = "s"

    def __init__(self, size: int = 16, num_holes: int = 1, fill_value="mean", **kwargs):
        super().__init__(**kwargs)
        self.size = checks.integer("Cutout", "size", size)
        self.num_holes = checks.integer("Cutout", "num_holes", num_holes)
        self.fill_value = fill_value if fill_value == "mean" else checks.number("Cutout", "fill_value", fill_value)
        # used on its own, without the Distiller's build, "mean" has no normalisation to read the mean from: 0
        self._unbuilt_fill = 0.0 if self.fill_value == "mean" else self.fill_value
        self._fill = self._unbuilt_fill

    def build(self, input_shape=None, num_classes=None, input_normalization=None):
        super().build(input_shape, num_classes, input_normalization)
        height, width, channels = input_shape[1:]
        if self.size > min(height, width):
            raise ValueError(
                f"Cutout: `size` ({self.size}) is larger than the {height}x{width} images, so every hole would "
                f"erase most of the image. Scale it to the image: the paper's 16 on 32x32 images is "
                f"{max(1, round(16 * min(height, width) / 32))} on these."
            )
        if self.fill_value == "mean" and input_normalization is not None:
            # (channels,): a mean of another length fails here instead of broadcasting into the channel axis
            self._fill = np.broadcast_to(np.asarray(input_normalization[0]), (channels,))
        else:
            self._fill = self._unbuilt_fill

    def augment(self, images, labels):
        batch_size, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]

        def draw(global_size):
            side = ops.full((global_size, self.num_holes), float(self.size), "float32")
            return ops.stack(random_box(side, height, width, self.seed_generator, absolute=True), axis=1)

        boxes = per_sample(draw, batch_size)  # (B, 4, num_holes)
        y1, y2, x1, x2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
        holes = ops.any(box_mask(y1, y2, x1, x2, height, width), axis=1)  # (B, H, W)
        filled = ops.where(holes[..., None], ops.cast(self._fill, images.dtype), images)  # cast once
        return single_source(filled, labels)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, num_holes=self.num_holes, fill_value=self.fill_value)
        return config
