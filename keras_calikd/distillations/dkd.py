"""Decoupled knowledge distillation: target-class and non-target-class KL terms (Zhao et al., CVPR 2022)."""

from __future__ import annotations

from keras import ops

from keras_calikd import checks
from keras_calikd.distillations.base import DISTILLATIONS, LABELS, Distillation


def _kl(log_p_teacher, log_p_student):
    """KL(teacher || student) summed over the last axis and averaged over the batch."""
    return ops.mean(ops.sum(ops.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1))


def _non_target(logits, labels):
    """`(batch, K - 1)`: each row's logits without its label's entry, the other classes in order."""
    num_classes = logits.shape[-1]
    others = ops.arange(num_classes - 1, dtype="int32")[None, :]
    indices = others + ops.cast(others >= labels[:, None], "int32")  # skip the label's column
    return ops.take_along_axis(logits, indices, axis=-1)


@DISTILLATIONS.register("dkd")
class DKD(Distillation):
    """`warmup_factor * (alpha * TCKD + beta * NCKD)` on temperature-softened logits.

    With `p = softmax(z / T)` and `t` the sample's ground-truth class:

    - TCKD is KL(teacher || student) between the binary distributions
      `(p_t, 1 - p_t)`: how confident each model is in the target class;
    - NCKD is KL(teacher || student) between the distributions over the
      `K - 1` non-target classes, `softmax` of the logits without class `t`
      (equal to `p_k / (1 - p_t)` for `k != t`).

    Each KL is summed over its classes and averaged over the batch, then
    multiplied by `T**2` (as in the authors' code). The sum is multiplied by
    the warm-up factor `min(epoch / warmup, 1)` of the reference code, whose
    epochs count from 1; `Batch.epoch` counts from 0, so the factor here is
    `min((batch.epoch + 1) / warmup, 1)`: `1 / warmup` in the first epoch of
    `fit` and 1 from epoch `warmup` (1-based) on, exactly as there. Outside
    `fit` (epoch 0) the factor is `1 / warmup`. `warmup=0` disables it.
    The log-probabilities are computed from log-sum-exps of the logits, so the
    terms stay finite when a model is certain.

    Args:
        alpha: Weight of TCKD `>= 0` (1 in the paper).
        beta: Weight of NCKD `>= 0`; 8 for CIFAR-100 in the paper (the
            authors' setting for ResNet32x4 -> ShuffleV1 among others).
        temperature: Softmax temperature `T > 0`; 4 on CIFAR-100.
        warmup: Number of epochs over which the loss ramps up linearly, an
            integer `>= 0`; 20 in the paper's CIFAR-100 setting.
        weight: Multiplier of this loss inside the distillation term (applied by the Distiller).

    Example:

    ```python
    distiller = ck.Distiller(teacher, student, distillation=ck.distillations.DKD(beta=8.0), augmentation="mixup")
    ```

    Reference:
        Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022: the
        decomposition KD = TCKD + (1 - p_t) NCKD and the loss
        `alpha * TCKD + beta * NCKD`; CIFAR-100 settings T = 4, alpha = 1,
        beta = 8, 20 warm-up epochs (the authors' released configuration).
    """

    label = "DKD"
    table_position = 3
    color = "#8172b3"
    requires = frozenset({LABELS})  # the target class, and the epoch for the warm-up

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup: int = 20,
                 weight: float = 1.0, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.alpha = checks.number("DKD", "alpha", alpha, low=0.0)
        self.beta = checks.number("DKD", "beta", beta, low=0.0)
        self.temperature = checks.number("DKD", "temperature", temperature, low=0.0, low_open=True)
        self.warmup = checks.integer("DKD", "warmup", warmup, low=0)

    def build(self, num_classes=None, teacher_feature_dim=None, student_feature_dim=None):
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"DKD splits the target class from the others: it needs at least 2 classes, "
                             f"got models with {num_classes}.")
        super().build(num_classes, teacher_feature_dim, student_feature_dim)

    def warmup_factor(self, epoch):
        """`min((epoch + 1) / warmup, 1)` for the 0-based `epoch` (1 when `warmup` is 0)."""
        if self.warmup == 0:
            return ops.ones((), "float32")
        return ops.minimum((ops.cast(epoch, "float32") + 1.0) / float(self.warmup), 1.0)

    def compute_loss(self, teacher, student, batch, training=True):
        if batch.labels is None:
            raise ValueError("DKD needs the batch's ground-truth labels (`Batch.labels`).")
        if teacher.logits.shape[-1] is not None and teacher.logits.shape[-1] < 2:
            raise ValueError("DKD needs at least 2 classes.")
        labels = ops.reshape(ops.cast(batch.labels, "int32"), (-1,))
        t = self.temperature
        terms = []
        for logits in (teacher.logits, student.logits):
            scaled = ops.cast(logits, "float32") / t
            log_total = ops.logsumexp(scaled, axis=-1)
            target = ops.take_along_axis(scaled, labels[:, None], axis=-1)[:, 0]
            others = _non_target(scaled, labels)
            log_others = ops.logsumexp(others, axis=-1)
            binary = ops.stack([target - log_total, log_others - log_total], axis=-1)  # log (p_t, 1 - p_t)
            terms.append((binary, others - log_others[:, None]))  # and log softmax over the non-targets
        (teacher_binary, teacher_others), (student_binary, student_others) = terms
        tckd = _kl(teacher_binary, student_binary) * (t * t)
        nckd = _kl(teacher_others, student_others) * (t * t)
        return self.warmup_factor(batch.epoch) * (self.alpha * tckd + self.beta * nckd)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, beta=self.beta, temperature=self.temperature, warmup=self.warmup)
        return config
