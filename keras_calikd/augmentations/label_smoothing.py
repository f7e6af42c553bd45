"""Label smoothing: cross-entropy with softened one-hot targets (Szegedy et al., 2016)."""

from __future__ import annotations

from keras import ops

from keras_calikd import checks
from keras_calikd.augmentations.base import AUGMENTATIONS, Augmentation, single_source


@AUGMENTATIONS.register("label_smoothing")
class LabelSmoothing(Augmentation):
    """The clean batch with smoothed targets `(1 - epsilon) * one_hot(y) + epsilon / K`.

    A calibration baseline in the augmentation slot: the images are left as
    they are (the Distiller reuses the student's clean forward pass) and the
    augmentation loss is the cross-entropy of the student's logits with the
    smoothed targets, given to the default loss through
    `AugmentedBatch.targets`. With `distillation="kd"` this is "KD + label
    smoothing": `alpha * KD + (1 - alpha) * CE(smoothed targets)`.

    Args:
        epsilon: Smoothing mass in `[0, 1)` spread uniformly over the `K`
            classes (so the true class keeps `1 - epsilon + epsilon / K`).
            0.1 is the usual setting (Szegedy et al.; Muller et al.).
        label_source: `"ground_truth"` or `"teacher"` (see `Augmentation`).
        seed: Unused (the strategy draws nothing); kept for the common signature.

    Example:

    ```python
    ck.Distiller(teacher, student, distillation="kd",
                 augmentation=ck.augmentations.LabelSmoothing(epsilon=0.1))
    ```

    Reference:
        Szegedy et al., "Rethinking the Inception Architecture for Computer
        Vision", CVPR 2016, Sec. 7; Muller, Kornblith and Hinton, "When does
        label smoothing help?", NeurIPS 2019 (cited by the paper, [19]).
    """

    transforms_images = False
    label = "label smoothing"
    table_position = 4
    marker = "v"

    def __init__(self, epsilon: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = checks.fraction("LabelSmoothing", "epsilon", epsilon, high_open=True)

    def build(self, input_shape=None, num_classes=None, input_normalization=None):
        if num_classes is not None:
            checks.integer("LabelSmoothing", "num_classes", num_classes, low=2)
        super().build(input_shape, num_classes=num_classes, input_normalization=input_normalization)

    def augment(self, images, labels):
        num_classes = getattr(self, "num_classes", None)
        if num_classes is None:
            raise ValueError("LabelSmoothing needs the number of classes: build it with "
                             "`build(input_shape, num_classes=K)` (the Distiller does) before augmenting.")
        one_hot = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype="float32")
        targets = (1.0 - self.epsilon) * one_hot + self.epsilon / num_classes
        return single_source(images, labels)._replace(targets=targets)

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config
