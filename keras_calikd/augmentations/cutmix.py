"""CutMix: paste a box from a partner image (Yun et al., 2019)."""

from __future__ import annotations

import keras
from keras import ops

from keras_calikd import checks
from keras_calikd.augmentations import sampling
from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, AugmentedBatch, partners
from keras_calikd.augmentations.boxes import box_mask, random_box


@AUGMENTATIONS.register("cutmix")
class CutMix(Augmentation):
    """Pastes one box of a partner image (a random permutation of the batch) into each image.

    Per batch, with probability `probability`: `lam ~ Beta(alpha, alpha)`; a
    box of side `sqrt(1 - lam)` times height and width, with a uniformly random
    centre, clipped to the image, is copied from the partner; `lam` is then
    corrected to the fraction of the image that was kept. The loss is
    `lam * CE(y) + (1 - lam) * CE(y[perm])` and the distillation term counts
    both sources (Eq. 12). A batch that is not mixed is used as it is, with
    cross-entropy and a single source.

    Args:
        alpha: Beta distribution parameter; 1.0 (uniform) is the standard.
        probability: Chance that a batch is mixed; 0.5 is the standard.
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Seed of the strategy's random generator.

    Example:

    ```python
    ck.Distiller(teacher, student, augmentation=ck.augmentations.CutMix(probability=1.0))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.3 and 4.2 (CutMix, probability 0.5).
    """

    label = "CutMix"
    table_position = 3
    marker = "P"

    def __init__(self, alpha: float = 1.0, probability: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.alpha = checks.number("CutMix", "alpha", alpha, low=0.0, low_open=True)
        self.probability = checks.fraction("CutMix", "probability", probability)

    def augment(self, images, labels):
        height, width = images.shape[1], images.shape[2]
        applied = keras.random.uniform((), seed=self.seed_generator) < self.probability
        lam = sampling.beta((), self.alpha, self.alpha, self.seed_generator)
        cut = ops.sqrt(1.0 - lam)
        y1, y2, x1, x2 = random_box(ops.expand_dims(cut, 0), height, width, self.seed_generator)
        mask = ops.logical_and(box_mask(y1, y2, x1, x2, height, width)[0], applied)  # (H, W)
        partner_images, partner_labels = partners(images, labels, self.seed_generator)
        mixed = ops.where(mask[None, :, :, None], partner_images, images)
        pasted = ops.cast(ops.sum(ops.cast(mask, "int32")), "float32")
        return AugmentedBatch(
            images=mixed,
            labels=labels,
            partner_labels=partner_labels,
            lam=1.0 - pasted / float(height * width),
            sources=ops.cast(ops.where(applied, 2.0, 1.0), "float32"),  # Python floats would follow floatx on TF
        )

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, probability=self.probability)
        return config
