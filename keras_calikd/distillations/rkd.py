"""Relational knowledge distillation: distance- and angle-wise losses (Park et al., 2019)."""

from __future__ import annotations

from keras import ops

from keras_calikd import checks
from keras_calikd.distillations.base import DISTILLATIONS, FEATURES, Distillation


def _huber(x, y):
    """Smooth-L1 (Huber with delta 1), averaged over all elements."""
    diff = ops.abs(x - y)
    return ops.mean(ops.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5))


def _normalized_distances(features):
    """Pairwise Euclidean distances divided by their mean over distinct pairs; zero diagonal."""
    squared = ops.sum(features * features, axis=1)
    gram = ops.matmul(features, ops.transpose(features))
    distances = ops.sqrt(ops.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, 1e-12))
    off_diagonal = 1.0 - ops.eye(ops.shape(features)[0], dtype=features.dtype)
    distances = distances * off_diagonal
    mean = ops.sum(distances) / ops.maximum(ops.sum(off_diagonal), 1.0)
    return distances / ops.maximum(mean, 1e-12)


def _angles(features):
    """Cosines of the angles at each anchor `j` between `e_i - e_j` and `e_k - e_j`, shape `(B, B, B)`."""
    differences = features[None, :, :] - features[:, None, :]  # [j, i] = e_i - e_j
    # Clamping before the square root keeps the gradient finite for the zero vectors e_j - e_j.
    norms = ops.sqrt(ops.maximum(ops.sum(differences * differences, axis=-1, keepdims=True), 1e-24))
    unit = differences / norms
    return ops.matmul(unit, ops.transpose(unit, (0, 2, 1)))


@DISTILLATIONS.register("rkd")
class RKD(Distillation):
    """Matches the relations between samples: pairwise distances and triplet angles of penultimate features.

    The distance term compares pairwise Euclidean distances, each matrix
    normalised by its mean over distinct pairs; the angle term compares the
    cosines of the angles formed by every triplet. Both use smooth-L1 (Huber,
    delta 1), and the teacher side carries no gradient. Unlike KD, RKD works on
    the penultimate pooled features, which the Distiller provides from the same
    forward pass as the logits.

    Args:
        distance_weight: Weight of the distance loss; 25 in the RKD paper.
        angle_weight: Weight of the angle loss; 50 in the RKD paper.
        weight: Multiplier of the whole strategy's loss.

    Example:

    ```python
    ck.Distiller(teacher, student, distillation="rkd", augmentation="cutmix", alpha=0.5)
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 4.5 and Table 5 (RKD-DA with augmentations); Park et
        al., "Relational Knowledge Distillation", CVPR 2019.
    """

    requires = frozenset({FEATURES})
    label = "RKD"
    table_position = 1
    color = "#dd8452"

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0, weight: float = 1.0, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.distance_weight = checks.number("RKD", "distance_weight", distance_weight, low=0.0)
        self.angle_weight = checks.number("RKD", "angle_weight", angle_weight, low=0.0)

    def compute_loss(self, teacher, student, batch, training=True):
        loss = 0.0
        if self.distance_weight:
            loss += self.distance_weight * _huber(_normalized_distances(student.features),
                                                  _normalized_distances(teacher.features))
        if self.angle_weight:
            loss += self.angle_weight * _huber(_angles(student.features), _angles(teacher.features))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(distance_weight=self.distance_weight, angle_weight=self.angle_weight)
        return config
