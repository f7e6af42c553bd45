"""Temperature, vector and matrix (Dirichlet) scaling: the fits are SciPy's minimisers of the same objectives.

The references are written from the papers with SciPy (`log_softmax`,
`minimize`), not from the implementation: Guo et al.'s vector scaling
`softmax(w * z + b)` minimising the NLL, and Kull et al.'s Dirichlet
calibration with ODIR, `softmax(W log softmax(z) + b)` minimising the NLL plus
`lambda * mean of the squared off-diagonal W` plus `mu * mean of b**2`.
"""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import optimize, special

import keras_calikd as ck
from keras_calikd.training.posthoc import CalibrationWarning, fit_calibration
from tiny import tiny_cnn

neutral = pytest.mark.backend_neutral  # NumPy only: once, in the TensorFlow pass


def miscalibrated(rng, n=400, classes=4):
    """Labels drawn from softmax(z), and logits distorted per class: overconfident, biased, with crossed terms."""
    true = rng.normal(scale=1.5, size=(n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in special.softmax(true, axis=1)])
    mixing = np.eye(classes) * 2.5 + rng.normal(scale=0.3, size=(classes, classes))
    return true @ mixing.T + np.linspace(-1.0, 1.0, classes), labels


def reference_nll(calibrated, labels):
    return -special.log_softmax(calibrated, axis=1)[np.arange(len(labels)), labels].mean()


@neutral
def test_vector_scaling_is_the_minimiser_of_the_nll(rng):
    logits, labels = miscalibrated(rng)
    k = logits.shape[1]
    fit = fit_calibration(logits, labels, "vector")
    result = optimize.minimize(lambda x: reference_nll(logits * x[:k] + x[k:], labels),
                               np.r_[np.ones(k), np.zeros(k)], method="BFGS", options={"gtol": 1e-9})
    expected = special.softmax(logits * result.x[:k] + result.x[k:], axis=1)  # the bias is defined up to a shift
    np.testing.assert_allclose(special.softmax(fit.apply(logits), axis=1), expected, atol=2e-5)
    assert fit.nll_after == pytest.approx(result.fun, rel=1e-7) and fit.nll_after < fit.nll_before - 0.05
    assert fit.warnings == []


@neutral
@pytest.mark.parametrize("penalties", [(1e-2, 1e-2), (1.0, 0.1)])
def test_matrix_scaling_is_the_minimiser_of_the_odir_objective(rng, penalties):
    logits, labels = miscalibrated(rng)
    k = logits.shape[1]
    off_diagonal, bias = penalties
    features = special.log_softmax(logits, axis=1)

    def objective(x):
        weights, intercept = x[:k * k].reshape(k, k), x[k * k:]
        return (reference_nll(features @ weights.T + intercept, labels)
                + off_diagonal * np.sum(weights[~np.eye(k, dtype=bool)] ** 2) / (k * (k - 1))
                + bias * np.mean(intercept ** 2))

    result = optimize.minimize(objective, np.r_[np.eye(k).ravel(), np.zeros(k)], method="BFGS",
                               options={"gtol": 1e-10})
    fit = fit_calibration(logits, labels, "matrix", off_diagonal_penalty=off_diagonal, bias_penalty=bias)
    np.testing.assert_allclose(fit.parameters["weights"], result.x[:k * k].reshape(k, k), atol=2e-4)
    np.testing.assert_allclose(fit.parameters["bias"], result.x[k * k:], atol=2e-4)
    assert fit.nll_after < fit.nll_before and fit.warnings == []


@neutral
def test_a_fit_that_should_not_be_trusted_says_so(rng):
    labels = rng.integers(0, 3, 50)
    sure = np.eye(3)[labels]  # always right: the NLL falls as the temperature does, to its lower bound
    with pytest.warns(CalibrationWarning, match="lower bound of its search, 0.05"):
        assert ck.training.fit_temperature(sure, labels) == pytest.approx(0.05, rel=1e-3)
    fit = fit_calibration(sure, labels, "temperature")  # a degenerate fit: the map keeps T = 1
    assert fit.parameters == {"temperature": 1.0} and fit.nll_after == fit.nll_before
    assert fit.warnings == ["temperature scaling: all 50 fitting images are predicted right, so their NLL only "
                            "falls as T falls toward 0; it has no minimum: a degenerate fit, so the map keeps T = 1, "
                            "the model as it is. Fit it on more held-out data, with right and wrong predictions."]
    flat = fit_calibration(np.zeros((50, 3)), labels, "temperature")  # no information: flatter is better
    assert flat.parameters == {"temperature": 1.0} and "on its upper bound, 20" in flat.warnings[0]
    unmoved = fit_calibration(np.zeros((50, 3)), labels, "matrix", max_iterations=0)  # the identity map
    assert any("did not lower the NLL" in w for w in unmoved.warnings)
    logits, labels = miscalibrated(rng)
    short = fit_calibration(logits, labels, "matrix", max_iterations=2)
    assert "did not converge in 2 iterations" in short.warnings[0]
    with pytest.raises(ValueError, match="`method` must be one of 'temperature', 'vector', 'matrix'"):
        fit_calibration(logits, labels, "platt")


@pytest.mark.parametrize("method", ["vector", "matrix"])
def test_calibrated_models_apply_the_fit_and_save(rng, tmp_path, method):
    keras.utils.set_random_seed(0)
    model = tiny_cnn(4, (6, 6, 1), name="teacher")
    images = rng.normal(size=(64, 6, 6, 1)).astype("float32")
    labels = rng.integers(0, 4, 64)
    calibrated, fit = ck.training.calibrate(model, images, labels, method=method)
    logits = ops.convert_to_numpy(model(images))
    np.testing.assert_allclose(ops.convert_to_numpy(calibrated(images)), fit.apply(logits), rtol=1e-4, atol=1e-4)
    assert fit.nll_after < fit.nll_before and calibrated.get_layer("features") is model.get_layer("features")
    calibrated.save(str(tmp_path / "calibrated.keras"))
    reloaded = keras.models.load_model(str(tmp_path / "calibrated.keras"))
    np.testing.assert_allclose(ops.convert_to_numpy(reloaded(images)), fit.apply(logits), rtol=1e-4, atol=1e-4)
