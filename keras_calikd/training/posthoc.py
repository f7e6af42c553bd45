"""Post-hoc calibration maps fitted on held-out logits: temperature, vector and matrix (Dirichlet) scaling.

Each map is fitted by minimising the negative log-likelihood (NLL) of the
held-out labels under the calibrated logits, and says when the fit should
not be trusted: a temperature on its search bound, an iterative fit that did
not converge, or a map that does not lower the NLL of the data it was fitted
on. These warnings are in `CalibrationFit.warnings` (and raised as
`CalibrationWarning`s by `keras_calikd.training.teacher_calibration.calibrate`);
the tools print and save them.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List

import numpy as np

from keras_calikd import checks

METHODS = ("temperature", "vector", "matrix")
LABELS = {"temperature": "TS", "vector": "VS", "matrix": "MS"}  # row labels of the tools' tables
TEMPERATURE_BOUNDS = (0.05, 20.0)


class CalibrationWarning(UserWarning):
    """A post-hoc calibration fit that should not be trusted as it is."""


def _log_softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits, labels) -> float:
    """The mean negative log-likelihood of integer `labels` under `softmax(logits)`."""
    return float(-_log_softmax(np.asarray(logits, np.float64))[np.arange(len(labels)), labels].mean())


def search_temperature(logits, labels, low: float = TEMPERATURE_BOUNDS[0], high: float = TEMPERATURE_BOUNDS[1],
                       iterations: int = 100) -> float:
    """The `T` in `[low, high]` that minimises the NLL of `logits / T`: a golden-section search on `log T`.

    The NLL of scaled logits is unimodal in `log T`, so the search finds the
    minimum to float precision, or the bound the minimum lies beyond.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).reshape(-1)
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits / np.exp(c), labels), nll(logits / np.exp(d), labels)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits / np.exp(c), labels)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits / np.exp(d), labels)
    return float(np.exp((a + b) / 2.0))


def temperature_bound_warning(temperature: float, low: float = TEMPERATURE_BOUNDS[0],
                              high: float = TEMPERATURE_BOUNDS[1]):
    """The warning for a temperature that ended on its search bound, or `None`."""
    found = _on_bound(temperature, low, high)
    if found is None:
        return None
    bound, side, reason = found
    return (f"temperature scaling: the temperature ended on the {side} bound of its search, {bound:g}; the "
            f"held-out NLL falls further beyond it ({reason}), so the fitted map is not the NLL's minimum.")


def _degenerate_temperature(logits, labels, temperature: float):
    """Why a fitted temperature means nothing (one image, all predictions right, a search bound), or `None`.

    With every prediction right the NLL falls as `T` falls toward 0 (to 0 in float64 well above the search's
    lower bound), so the search stops anywhere on that plateau: no minimum exists.
    """
    if len(labels) == 1:
        return "it was fitted on one image, which says nothing about the model's calibration"
    if np.all(logits.argmax(axis=1) == labels):
        return (f"all {len(labels)} fitting images are predicted right, so their NLL only falls as T falls "
                "toward 0; it has no minimum")
    bound = _on_bound(temperature, *TEMPERATURE_BOUNDS)
    if bound:
        return (f"the NLL of the {len(labels)} fitting images has no minimum inside the search "
                f"[{TEMPERATURE_BOUNDS[0]:g}, {TEMPERATURE_BOUNDS[1]:g}] but on its {bound[1]} bound, {bound[0]:g} "
                f"({bound[2]})")
    return None


def _on_bound(temperature: float, low: float, high: float):
    """`(bound, "lower" or "upper", why)` for a temperature on a bound of its search, else `None`."""
    for bound, side, reason in ((low, "lower", "the logits are almost always right, so sharper is better"),
                                (high, "upper", "the logits carry almost no information, so flatter is better")):
        if abs(np.log(temperature / bound)) < 1e-3:
            return bound, side, reason
    return None


def _minimize(objective, start, max_iterations: int, tolerance: float, memory: int = 10):
    """L-BFGS with a backtracking (Armijo) line search; returns `(x, converged)`.

    `objective(x)` returns `(value, gradient)`; convergence is a gradient
    whose largest entry is below `tolerance`.
    """
    x = np.array(start, np.float64)
    value, gradient = objective(x)
    steps, changes = [], []
    for _ in range(max_iterations):
        if np.max(np.abs(gradient)) < tolerance:
            return x, True
        direction = -gradient
        coefficients = []
        for s, y in reversed(list(zip(steps, changes))):  # the two-loop recursion
            rho = 1.0 / (y @ s)
            alpha = rho * (s @ direction)
            direction = direction - alpha * y
            coefficients.append((rho, alpha, s, y))
        if steps:
            direction = direction * (steps[-1] @ changes[-1]) / (changes[-1] @ changes[-1])
        for rho, alpha, s, y in reversed(coefficients):
            direction = direction + s * (alpha - rho * (y @ direction))
        slope = gradient @ direction
        if slope >= 0:  # not a descent direction: start afresh from the gradient
            steps, changes, direction, slope = [], [], -gradient, -(gradient @ gradient)
        step = 1.0
        while True:
            candidate = x + step * direction
            new_value, new_gradient = objective(candidate)
            if new_value <= value + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-12:
                return x, False
        s, y = candidate - x, new_gradient - gradient
        if y @ s > 1e-12:
            steps, changes = (steps + [s])[-memory:], (changes + [y])[-memory:]
        x, value, gradient = candidate, new_value, new_gradient
    return x, bool(np.max(np.abs(gradient)) < tolerance)


def _softmax_error(calibrated, labels):
    """d NLL / d calibrated logits: `(softmax - one_hot) / N`."""
    probabilities = np.exp(_log_softmax(calibrated))
    probabilities[np.arange(len(labels)), labels] -= 1.0
    return probabilities / len(labels)


@dataclasses.dataclass
class CalibrationFit:
    """A fitted post-hoc calibration map and how the fit went.

    Attributes:
        method: `"temperature"`, `"vector"` or `"matrix"`.
        parameters: `{"temperature": T}`; `{"scale": w, "bias": b}` (vector
            scaling, `w * z + b`); `{"weights": W, "bias": b}` (matrix scaling,
            `W @ log_softmax(z) + b` per row), NumPy arrays.
        nll_before: The NLL of the uncalibrated logits on the fitting data.
        nll_after: The NLL of the calibrated logits on the fitting data.
        warnings: Reasons not to trust the fit (empty when there are none).
    """

    method: str
    parameters: Dict[str, object]
    nll_before: float
    nll_after: float
    warnings: List[str]

    def apply(self, logits) -> np.ndarray:
        """The calibrated logits (float64) of `(batch, num_classes)` logits."""
        logits = np.asarray(logits, np.float64)
        if self.method == "temperature":
            return logits / self.parameters["temperature"]
        if self.method == "vector":
            return logits * self.parameters["scale"] + self.parameters["bias"]
        return _log_softmax(logits) @ np.asarray(self.parameters["weights"]).T + self.parameters["bias"]

    def summary(self) -> dict:
        """JSON-ready: the method, its parameters (lists), the two NLLs and the warnings."""
        parameters = {k: (float(v) if np.ndim(v) == 0 else np.asarray(v).tolist()) for k, v in self.parameters.items()}
        return {"method": self.method, "parameters": parameters, "nll_before": self.nll_before,
                "nll_after": self.nll_after, "warnings": list(self.warnings)}


def fit_calibration(logits, labels, method: str = "temperature", *, off_diagonal_penalty: float = 1e-2,
                    bias_penalty: float = 1e-2, max_iterations: int = 1000,
                    tolerance: float = 1e-6) -> CalibrationFit:
    """Fits a post-hoc calibration map to held-out `logits` and integer `labels`.

    - `"temperature"`: `z / T`, `T` from a golden-section search on
      `[0.05, 20]` (Guo et al., 2017). A degenerate fit (one image, every
      prediction right, a search that ends on a bound: no minimum to find)
      keeps `T = 1`, the model as it is, and its warnings say so.
    - `"vector"`: `w * z + b` per class (`2 K` parameters; Guo et al.'s vector
      scaling), unregularised.
    - `"matrix"`: `W @ log_softmax(z) + b` (`K**2 + K` parameters): Dirichlet
      calibration with off-diagonal and intercept regularisation (ODIR,
      Kull et al., 2019), minimising `NLL + off_diagonal_penalty *
      mean(W_ij**2, i != j) + bias_penalty * mean(b**2)`; it starts from the
      identity map (`W = I`, `b = 0`: the uncalibrated model).

    Vector and matrix scaling are convex problems solved by L-BFGS until the
    largest gradient entry is below `tolerance`. Kull et al. choose the two
    penalties by cross-validation; here they are the caller's (1e-2 each by
    default), and more held-out data or larger penalties guard against a
    map that fits the held-out noise (`K**2` parameters for `K` classes).

    Args:
        logits: `(N, K)` held-out logits.
        labels: `(N,)` integer class ids.
        method: One of `METHODS`.
        off_diagonal_penalty, bias_penalty: The ODIR penalties (matrix scaling only), >= 0.
        max_iterations: Iterations of L-BFGS before the fit is given up as not converged.
        tolerance: Convergence threshold on the gradient.

    Returns:
        A `CalibrationFit`, whose `warnings` say whether the temperature ended
        on its search bound, the iterations ran out, or the map does not lower
        the NLL of the fitting data.

    Reference:
        Guo et al., "On Calibration of Modern Neural Networks", ICML 2017;
        Kull et al., "Beyond temperature scaling: Obtaining well-calibrated
        multiclass probabilities with Dirichlet calibration", NeurIPS 2019.
    """
    method = checks.one_of("fit_calibration", "method", method, METHODS)
    off_diagonal_penalty = checks.number("fit_calibration", "off_diagonal_penalty", off_diagonal_penalty, low=0.0)
    bias_penalty = checks.number("fit_calibration", "bias_penalty", bias_penalty, low=0.0)
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        raise ValueError(f"fit_calibration: give (N, K) logits and N labels, N >= 1; got logits of shape "
                         f"{logits.shape} and {len(labels)} labels.")
    classes = logits.shape[1]
    warnings = []
    degenerate = False
    if method == "temperature":
        temperature = search_temperature(logits, labels)
        reason = _degenerate_temperature(logits, labels, temperature)
        if reason:
            degenerate = True
            warnings.append(f"temperature scaling: {reason}: a degenerate fit, so the map keeps T = 1, the model as "
                            "it is. Fit it on more held-out data, with right and wrong predictions.")
            temperature = 1.0
        parameters = {"temperature": temperature}
    elif method == "vector":
        def objective(x):
            scale, bias = x[:classes], x[classes:]
            error = _softmax_error(logits * scale + bias, labels)
            return nll(logits * scale + bias, labels), np.concatenate([(error * logits).sum(0), error.sum(0)])

        x, converged = _minimize(objective, np.concatenate([np.ones(classes), np.zeros(classes)]), max_iterations,
                                 tolerance)
        parameters = {"scale": x[:classes], "bias": x[classes:]}
    else:
        features = _log_softmax(logits)
        off_diagonal = 1.0 - np.eye(classes)
        pairs = max(classes * (classes - 1), 1)

        def objective(x):
            weights, bias = x[:classes * classes].reshape(classes, classes), x[classes * classes:]
            calibrated = features @ weights.T + bias
            error = _softmax_error(calibrated, labels)
            value = (nll(calibrated, labels) + off_diagonal_penalty * np.sum((weights * off_diagonal) ** 2) / pairs
                     + bias_penalty * np.sum(bias ** 2) / classes)
            weights_gradient = error.T @ features + 2.0 * off_diagonal_penalty * weights * off_diagonal / pairs
            bias_gradient = error.sum(0) + 2.0 * bias_penalty * bias / classes
            return value, np.concatenate([weights_gradient.ravel(), bias_gradient])

        x, converged = _minimize(objective, np.concatenate([np.eye(classes).ravel(), np.zeros(classes)]),
                                 max_iterations, tolerance)
        parameters = {"weights": x[:classes * classes].reshape(classes, classes), "bias": x[classes * classes:]}
    if method != "temperature" and not converged:
        warnings.append(f"{method} scaling: the fit did not converge in {max_iterations} iterations (largest "
                        f"gradient entry above {tolerance:g}); the map is not the minimum of its objective.")
    fit = CalibrationFit(method, parameters, nll(logits, labels), 0.0, warnings)
    fit.nll_after = nll(fit.apply(logits), labels)
    if not degenerate and not fit.nll_after < fit.nll_before:
        warnings.append(f"{method} scaling did not lower the NLL of the data it was fitted on ({fit.nll_before:.4f} "
                        f"before, {fit.nll_after:.4f} after): the model is already calibrated there, or the fit "
                        "failed; the calibrated model is no better than the model.")
    return fit


__all__ = ["CalibrationFit", "CalibrationWarning", "LABELS", "METHODS", "fit_calibration", "nll",
           "search_temperature", "temperature_bound_warning"]
