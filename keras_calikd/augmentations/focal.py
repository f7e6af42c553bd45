"""Focal loss on the clean batch, a calibration baseline (Mukhoti et al., 2020)."""

from __future__ import annotations

from keras import ops

from keras_calikd import checks
from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, single_source


@AUGMENTATIONS.register("focal")
class FocalLoss(Augmentation):
    """The clean batch with the focal loss `-(1 - p_y)^gamma * log p_y`, averaged over the batch.

    A calibration baseline in the augmentation slot: the images are left as
    they are (the Distiller reuses the student's clean forward pass) and the
    augmentation loss is the focal loss of the student's logits instead of
    cross-entropy. `p_y` is the softmax probability of the label. With
    `gamma=0` it is cross-entropy. With `distillation="kd"` this is
    "KD + focal": `alpha * KD + (1 - alpha) * FL`.

    Args:
        gamma: Focusing parameter `>= 0`; Mukhoti et al. calibrate with a fixed
            `gamma = 3` (their "FL-3").
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Unused (the strategy draws nothing); kept for the common signature.

    Example:

    ```python
    ck.Distiller(teacher, student, distillation="kd", augmentation=ck.augmentations.FocalLoss(gamma=3.0))
    ```

    Reference:
        Mukhoti et al., "Calibrating Deep Neural Networks using Focal Loss",
        NeurIPS 2020, Eq. 1 and Sec. 5 (gamma = 3); Lin et al., "Focal Loss for
        Dense Object Detection", ICCV 2017.
    """

    transforms_images = False
    label = "focal"
    table_position = 5
    marker = "^"

    def __init__(self, gamma: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        self.gamma = checks.number("FocalLoss", "gamma", gamma, low=0.0)

    def augment(self, images, labels):
        return single_source(images, labels)

    def loss(self, augmented, logits):
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        labels = ops.expand_dims(ops.cast(augmented.labels, "int32"), -1)
        log_p = ops.take_along_axis(log_probs, labels, axis=-1)[:, 0]
        # (1 - p)^gamma with 1 - p = -expm1(log p), accurate for p near 1. The floor keeps the gradient of
        # x^gamma finite for gamma < 1 when p rounds to 1 (where log p is ~0, so the loss barely moves).
        focus = ops.power(ops.maximum(-ops.expm1(log_p), 1e-12), self.gamma)
        return ops.mean(-focus * log_p)

    def get_config(self):
        config = super().get_config()
        config["gamma"] = self.gamma
        return config
