"""KD on z-scored logits: logit-standardised knowledge distillation (Sun et al., CVPR 2024)."""

from __future__ import annotations

from keras import ops

from keras_calikd import checks
from keras_calikd.distillations.base import DISTILLATIONS, ModelOutputs
from keras_calikd.distillations.kd import KD, REDUCTIONS

# Added to the standard deviation so that a row of equal logits standardises to zeros instead of NaN.
STD_EPSILON = 1e-7


def standardize(logits):
    """Each row's z-score: `(z - mean(z)) / (std(z) + 1e-7)`, with the population standard deviation."""
    logits = ops.cast(logits, "float32")
    centred = logits - ops.mean(logits, axis=-1, keepdims=True)
    std = ops.sqrt(ops.mean(ops.square(centred), axis=-1, keepdims=True))
    return centred / (std + STD_EPSILON)


@DISTILLATIONS.register("lskd")
class LSKD(KD):
    """KD between `softmax(Z(z) / T)` distributions, `Z` being each sample's z-score of its logits.

    Teacher and student logits are standardised separately, per sample:
    `Z(z) = (z - mean(z)) / std(z)` over the classes (population standard
    deviation, the paper's definition; the authors' code uses PyTorch's
    sample standard deviation, a factor `sqrt(K / (K - 1))` apart, 0.5% for
    100 classes). Then the KD loss follows with the base temperature `T`: KL
    summed over classes, averaged over the batch (`reduction="batchmean"`, as
    in the paper) and multiplied by `T**2`. The student is thus asked to match
    the teacher's logit *relations*, not their scale; each sample's effective
    temperature is `T * std(z)`.

    Args:
        temperature: The base temperature `T > 0`; 2 in the paper's CIFAR-100 runs.
        reduction: `"batchmean"` (the paper) or `"scaled"` (the calibration
            paper's KD normalisation, see `KD`).
        scale_by_temperature_squared: Multiply the loss by `T**2` (the paper does).
        weight: Multiplier of this loss inside the distillation term (applied
            by the Distiller); the paper weighs KD 9 against cross-entropy 1 on
            CIFAR-100 (`gin/strategies/lskd.gin`).

    Example:

    ```python
    ck.Distiller(teacher, student, distillation=ck.distillations.LSKD(temperature=2.0, weight=9.0))
    ```

    Reference:
        Sun et al., "Logit Standardization in Knowledge Distillation", CVPR
        2024, Algorithm 1 (the Z-score pre-process, the base temperature and
        the T^2 factor); CIFAR-100: base temperature 2, KD weight 9 against
        cross-entropy 1 (the authors' released training command).
    """

    label = "LSKD"
    table_position = 4
    color = "#937860"

    def __init__(self, temperature: float = 2.0, reduction: str = "batchmean",
                 scale_by_temperature_squared: bool = True, weight: float = 1.0, **kwargs):
        checks.number("LSKD", "temperature", temperature, low=0.0, low_open=True)
        checks.one_of("LSKD", "reduction", reduction, REDUCTIONS)
        super().__init__(temperature=temperature, reduction=reduction,
                         scale_by_temperature_squared=scale_by_temperature_squared, weight=weight, **kwargs)

    def compute_loss(self, teacher, student, batch, training=True):
        return super().compute_loss(ModelOutputs(standardize(teacher.logits)),
                                    ModelOutputs(standardize(student.logits)), batch, training=training)
