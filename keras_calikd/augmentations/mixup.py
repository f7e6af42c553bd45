"""Mixup: convex combinations of image pairs (Zhang et al., 2018)."""

from __future__ import annotations

from keras import ops

from keras_calikd import checks
from keras_calikd.augmentations import sampling
from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, AugmentedBatch, partners


@AUGMENTATIONS.register("mixup")
class MixUp(Augmentation):
    """Mixes each image with a partner from a random permutation of the batch.

    One `lam ~ Beta(alpha, alpha)` is drawn per batch;
    `x_mix = lam * x + (1 - lam) * x[perm]` and the loss is
    `lam * CE(y) + (1 - lam) * CE(y[perm])` (the paper's Eq. 7 and 11).
    Each mixed image has two sources, so the distillation term is doubled
    (Eq. 12).

    Args:
        alpha: Beta distribution parameter `a > 0`; the paper uses 0.4.
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of the strategy's random generator.

    Example:

    ```python
    ck.Distiller(teacher, student, augmentation=ck.augmentations.MixUp(alpha=0.4))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.3, Eq. 7-13.
    """

    label = "mixup"
    table_position = 2
    marker = "D"

    def __init__(self, alpha: float = 0.4, **kwargs):
        super().__init__(**kwargs)
        self.alpha = checks.number("MixUp", "alpha", alpha, low=0.0, low_open=True)

    def augment(self, images, labels):
        lam = sampling.beta((), self.alpha, self.alpha, self.seed_generator)
        partner_images, partner_labels = partners(images, labels, self.seed_generator)
        lam_x = ops.cast(lam, images.dtype)
        mixed = lam_x * images + (1 - lam_x) * partner_images
        return AugmentedBatch(
            images=mixed,
            labels=labels,
            partner_labels=partner_labels,
            lam=ops.cast(lam, "float32"),
            sources=ops.full((), 2.0, "float32"),
        )

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config
