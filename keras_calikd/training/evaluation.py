"""Evaluation of a classifier's accuracy and calibration, and post-hoc temperature scaling."""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_calikd.metrics import ExpectedCalibrationError, OverconfidenceError


def collect_logits(model, dataset):
    """Runs `model` over a `(inputs, labels)` dataset; returns float64 logits and int labels as NumPy arrays."""
    logits, labels = [], []
    for x, y in dataset.as_numpy_iterator():
        if isinstance(x, dict):
            x = x["image"]
        logits.append(np.asarray(ops.convert_to_numpy(model(x, training=False)), np.float64))
        labels.append(np.asarray(y).reshape(-1))
    return np.concatenate(logits), np.concatenate(labels).astype(np.int64)


def _softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def calibration_report(logits, labels, bins=(100, 15)) -> dict:
    """Accuracy, ECE and OE at each number of `bins`, NLL and Brier score of `logits` against `labels`.

    The Brier score sums the squared error over classes and averages over
    samples. ECE and OE come from the library's streaming metrics, so they
    are the same numbers training logs.

    Returns:
        A dict: `accuracy`, `ece_<B>`, `oe_<B>` for each B in `bins`, `nll`,
        `brier`, `num_examples`.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).reshape(-1)
    probs = _softmax(logits)
    report = {
        "num_examples": int(len(labels)),
        "accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "nll": _nll(logits, labels),
        "brier": float(((probs - np.eye(logits.shape[1])[labels]) ** 2).sum(axis=1).mean()),
    }
    for num_bins in bins:
        for name, metric in (("ece", ExpectedCalibrationError), ("oe", OverconfidenceError)):
            m = metric(num_bins=num_bins, from_logits=True)
            m.update_state(labels.astype("int32"), logits.astype("float32"))
            report[f"{name}_{num_bins}"] = float(m.result())
    return report


def bin_statistics(logits, labels, num_bins: int = 15) -> dict:
    """Per-bin statistics for a reliability diagram (see `CalibrationMetric.bin_statistics`)."""
    metric = ExpectedCalibrationError(num_bins=num_bins, from_logits=True)
    metric.update_state(np.asarray(labels).astype("int32"), np.asarray(logits, np.float32))
    return metric.bin_statistics()


def fit_temperature(logits, labels, low: float = 0.05, high: float = 20.0, iterations: int = 100) -> float:
    """The temperature `T` that minimises the NLL of `logits / T` (post-hoc temperature scaling).

    The NLL of scaled logits is unimodal in `log T`, so a golden-section
    search on `[log low, log high]` finds the minimum to float precision.

    Reference:
        Guo et al., "On Calibration of Modern Neural Networks", ICML 2017
        (the baseline the paper's Sec. 1 cites).
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).reshape(-1)
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _nll(logits / np.exp(c), labels), _nll(logits / np.exp(d), labels)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _nll(logits / np.exp(c), labels)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _nll(logits / np.exp(d), labels)
    return float(np.exp((a + b) / 2.0))


def halves(num_examples: int, seed: int = 0):
    """A deterministic random split of `range(num_examples)` into two halves (fit / report)."""
    order = np.random.default_rng(seed).permutation(num_examples)
    middle = num_examples // 2
    return np.sort(order[:middle]), np.sort(order[middle:])


def temperature_scaling(fit_logits, fit_labels, logits, labels, bins=(100, 15)) -> dict:
    """Fits a temperature on `(fit_logits, fit_labels)` and reports `logits / T` against `labels`.

    Returns:
        `{"temperature": T, "uncalibrated": report, "temperature_scaled": report}`,
        both reports on the same `(logits, labels)`.
    """
    temperature = fit_temperature(fit_logits, fit_labels)
    return {
        "temperature": temperature,
        "uncalibrated": calibration_report(logits, labels, bins),
        "temperature_scaled": calibration_report(np.asarray(logits) / temperature, labels, bins),
    }


def average_reports(reports) -> dict:
    """The mean of each numeric entry over several reports (e.g. the five CIFAR-100-C severities)."""
    keys = [k for k in reports[0] if isinstance(reports[0][k], float)]
    averaged = {k: float(np.mean([r[k] for r in reports])) for k in keys}
    averaged["num_examples"] = int(sum(r["num_examples"] for r in reports))
    return averaged
