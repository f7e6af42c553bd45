"""No augmentation: the augmentation loss is cross-entropy on the clean batch."""

from __future__ import annotations

from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, single_source


@AUGMENTATIONS.register("none")
class Identity(Augmentation):
    """The clean batch itself, with cross-entropy: plain KD's task loss.

    The Distiller reuses the student's clean forward pass for this loss, so a
    step with `"none"` runs the student once.

    Args:
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).

    Example:

    ```python
    ck.Distiller(teacher, student, distillation="kd", augmentation="none")
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Eq. 3 (the task loss of conventional KD).
    """

    transforms_images = False
    table_position = 0
    marker = "o"

    def augment(self, images, labels):
        return single_source(images, labels)
