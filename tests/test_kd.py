"""KD against a NumPy reference written from the paper (Sec. 3.1, Eq. 1 and 12)."""

import re

import numpy as np
import pytest
from keras import ops

from keras_calikd.distillations import KD, Batch, ModelOutputs


def reference_kd(teacher_logits, student_logits, t, reduction, t_squared):
    def log_softmax(z):
        z = z / t
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    log_pt, log_ps = log_softmax(teacher_logits.astype(np.float64)), log_softmax(student_logits.astype(np.float64))
    kl_per_sample = (np.exp(log_pt) * (log_pt - log_ps)).sum(axis=1)  # KL(teacher || student)
    num_classes = teacher_logits.shape[1]
    loss = kl_per_sample.mean() / num_classes if reduction == "scaled" else kl_per_sample.mean()
    return loss * (t * t if t_squared else 1.0)


@pytest.mark.parametrize("reduction", ["scaled", "batchmean"])
@pytest.mark.parametrize("t_squared", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 4.0, 50.0])
def test_kd_matches_reference(rng, reduction, t_squared, temperature):
    teacher = rng.normal(scale=5.0, size=(16, 7)).astype("float32")
    student = rng.normal(scale=5.0, size=(16, 7)).astype("float32")
    kd = KD(temperature=temperature, reduction=reduction, scale_by_temperature_squared=t_squared)
    loss = kd.compute_loss(ModelOutputs(ops.convert_to_tensor(teacher)), ModelOutputs(ops.convert_to_tensor(student)),
                           Batch(labels=None))
    expected = reference_kd(teacher, student, temperature, reduction, t_squared)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4, atol=1e-9)


def test_kd_is_zero_for_identical_logits(rng):
    logits = ops.convert_to_tensor(rng.normal(size=(8, 5)).astype("float32"))
    assert abs(float(KD().compute_loss(ModelOutputs(logits), ModelOutputs(logits), Batch(None)))) < 1e-6


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, r"KD: `temperature` must be > 0, got 0\.0\."),
    ({"temperature": -1.0}, r"KD: `temperature` must be > 0, got -1\.0\."),
    ({"reduction": "sum"}, r"KD: `reduction` must be one of 'scaled', 'batchmean', got 'sum'\."),
    ({"weight": -1.0}, r"KD: `weight` must be >= 0, got -1\.0\."),
])
def test_kd_rejects_bad_arguments(kwargs, message):
    """The message names the class and the argument (it is what a user reads in a gin traceback)."""
    with pytest.raises(ValueError) as error:
        KD(**kwargs)
    assert re.fullmatch(message, str(error.value)), str(error.value)


def test_kd_defaults_are_the_papers(rng):
    """Scaled KD at T = 50, times T^2, weight 1 (the paper's Sec. 3.1 and 4)."""
    kd = KD()
    assert (kd.temperature, kd.reduction, kd.scale_by_temperature_squared, kd.weight) == (50.0, "scaled", True, 1.0)
    teacher, student = (rng.normal(scale=20.0, size=(8, 5)).astype("float32") for _ in range(2))
    loss = kd.compute_loss(ModelOutputs(ops.convert_to_tensor(teacher)), ModelOutputs(ops.convert_to_tensor(student)),
                           Batch(labels=None))
    np.testing.assert_allclose(float(loss), reference_kd(teacher, student, 50.0, "scaled", True), rtol=1e-4)
