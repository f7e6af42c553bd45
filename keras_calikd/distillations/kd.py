"""Knowledge distillation on temperature-softened logits (Hinton et al.; the paper's scaled KD)."""

from __future__ import annotations

from keras import ops

from keras_calikd import checks
from keras_calikd.distillations.base import DISTILLATIONS, Distillation

REDUCTIONS = ("scaled", "batchmean")


@DISTILLATIONS.register("kd")
class KD(Distillation):
    """KL(teacher || student) between `softmax(z / T)` distributions.

    With `reduction="scaled"` (the default) the pointwise KL terms
    `p_t * (log p_t - log p_s)` are averaged over the batch *and* the classes,
    which is the paper's scaled KD: the batch-mean KL divided by the number of
    classes. `reduction="batchmean"` sums over classes and averages over the
    batch (Hinton's KD). Either is multiplied by `T**2` unless
    `scale_by_temperature_squared=False`.

    Args:
        temperature: Softmax temperature `T > 0`. The paper uses 50.
        reduction: `"scaled"` or `"batchmean"`.
        scale_by_temperature_squared: Multiply the loss by `T**2`.
        weight: Multiplier of this loss inside the distillation term (applied by the Distiller).

    Example:

    ```python
    distiller = ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=4.0,
                                                                                reduction="batchmean"))
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.1 and 4 (scaled KD, T = 50).
    """

    label = "KD"
    table_position = 0
    color = "#4c72b0"

    def __init__(self, temperature: float = 50.0, reduction: str = "scaled",
                 scale_by_temperature_squared: bool = True, weight: float = 1.0, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.temperature = checks.number("KD", "temperature", temperature, low=0.0, low_open=True)
        self.reduction = checks.one_of("KD", "reduction", reduction, REDUCTIONS)
        self.scale_by_temperature_squared = bool(scale_by_temperature_squared)

    def compute_loss(self, teacher, student, batch, training=True):
        t = self.temperature
        log_p_teacher = ops.log_softmax(teacher.logits / t, axis=-1)
        log_p_student = ops.log_softmax(student.logits / t, axis=-1)
        pointwise = ops.exp(log_p_teacher) * (log_p_teacher - log_p_student)
        if self.reduction == "scaled":
            loss = ops.mean(pointwise)
        else:
            loss = ops.mean(ops.sum(pointwise, axis=-1))
        if self.scale_by_temperature_squared:
            loss = loss * (t * t)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            temperature=self.temperature,
            reduction=self.reduction,
            scale_by_temperature_squared=self.scale_by_temperature_squared,
        )
        return config
