"""Cutout: blank square holes (DeVries and Taylor, 2017)."""

from __future__ import annotations

import keras
from keras import ops

from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, single_source
from keras_calikd.augmentations.boxes import box_mask, random_box
from keras_calikd.steps import per_sample


@keras.saving.register_keras_serializable(package="keras_calikd")
@AUGMENTATIONS.register("cutout")
class Cutout(Augmentation):
    """Fills `num_holes` squares of side `size`, independently placed per image, with `fill_value`.

    Each hole has a uniformly random centre and is clipped to the image, so a
    hole near the border covers less than `size x size` pixels. The loss is
    cross-entropy with the image's own label.

    Args:
        size: Side of each hole in pixels; the paper uses 16.
        num_holes: Holes per image; the paper uses 1.
        fill_value: Value written into the holes (0 is the data set mean after
            per-channel normalisation).
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

    def __init__(self, size: int = 16, num_holes: int = 1, fill_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if int(size) != size or size < 1:
            raise ValueError(f"Cutout: `size` must be a positive integer, got {size!r}.")
        if int(num_holes) != num_holes or num_holes < 1:
            raise ValueError(f"Cutout: `num_holes` must be a positive integer, got {num_holes!r}.")
        self.size = int(size)
        self.num_holes = int(num_holes)
        self.fill_value = float(fill_value)

    def augment(self, images, labels):
        batch_size, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]

        def draw(global_size):
            side = ops.full((global_size, self.num_holes), float(self.size), "float32")
            return ops.stack(random_box(side, height, width, self.seed_generator, absolute=True), axis=1)

        boxes = per_sample(draw, batch_size)  # (B, 4, num_holes)
        y1, y2, x1, x2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
        holes = ops.any(box_mask(y1, y2, x1, x2, height, width), axis=1)  # (B, H, W)
        filled = ops.where(holes[..., None], ops.cast(self.fill_value, images.dtype), images)
        return single_source(filled, labels)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, num_holes=self.num_holes, fill_value=self.fill_value)
        return config
