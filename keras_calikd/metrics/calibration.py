"""Streaming calibration metrics: expected calibration error and overconfidence error."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


#: The most bins the tools and runs accept (`calikd-evaluate --bins`, `Experiment.eval_bins`): the paper reports
#: 15 and 100; beyond a thousand, bins of a test set hold a handful of images each, and the classwise error's
#: `(classes, bins)` variables grow with no use.
MAX_BINS = 1000

#: How far a probability may lie outside [0, 1], and a row's sum from 1, before the row is not probabilities
#: (room for float16/bfloat16 softmax outputs).
PROBABILITY_TOLERANCE = 1e-2


def eager_value(x):
    """`x` as a NumPy array when its values are known (eager code), `None` inside a traced (compiled) function."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return None
    elif backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    return ops.convert_to_numpy(x)


def check_predictions(metric, y_pred) -> None:
    """Raises a `ValueError` saying what is wrong when eager `y_pred` holds rows a calibration metric cannot read.

    Rows with a NaN or infinite value, and, with `from_logits=False`, rows
    that are not probabilities (a value outside `[0, 1]`, a sum other than 1:
    logits, negative scores, unnormalised scores), within
    `PROBABILITY_TOLERANCE`. Inside a compiled step the values are unknown
    here: the metric counts such rows instead (`valid_rows`).
    """
    values = eager_value(y_pred)
    if values is None:
        return
    values = np.asarray(values, np.float64).reshape(-1, values.shape[-1] if values.ndim else 1)
    where = f"{type(metric).__name__} {metric.name!r}"
    finite = np.isfinite(values).all(axis=-1)
    if not finite.all():
        raise ValueError(f"{where}: {int((~finite).sum())} of {len(values)} prediction rows hold NaN or infinite "
                         "values (the model diverged or its inputs did); no calibration error is defined for them. "
                         "Fix the model or its inputs, or drop those rows before updating the metric.")
    if metric.from_logits:
        return
    low, high = values.min(), values.max()
    sums = values.sum(axis=-1)
    if low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE:
        raise ValueError(f"{where} reads probabilities (from_logits=False), but the predictions range over "
                         f"[{low:.4g}, {high:.4g}]: these are logits or scores. Create the metric with "
                         "from_logits=True for logits (a Distiller's outputs are logits), or give softmax "
                         "probabilities.")
    if np.abs(sums - 1.0).max() > PROBABILITY_TOLERANCE:
        worst = sums[np.argmax(np.abs(sums - 1.0))]
        raise ValueError(f"{where} reads probabilities (from_logits=False), but a prediction row sums to "
                         f"{worst:.4g}, not 1: give softmax probabilities over the classes, or logits with "
                         "from_logits=True.")


def valid_rows(y_pred, from_logits: bool):
    """`(batch,)` float32, 1 where a row of `y_pred` can be read (finite; probabilities unless `from_logits`)."""
    y_pred = ops.cast(y_pred, "float32")
    valid = ops.all(ops.isfinite(y_pred), axis=-1)
    if not from_logits:
        in_range = ops.all((y_pred >= -PROBABILITY_TOLERANCE) & (y_pred <= 1.0 + PROBABILITY_TOLERANCE), axis=-1)
        normalised = ops.abs(ops.sum(y_pred, axis=-1) - 1.0) <= PROBABILITY_TOLERANCE
        valid = valid & in_range & normalised
    return ops.cast(valid, "float32")


class CalibrationMetric(keras.metrics.Metric):
    """Accumulates per-bin statistics of the top-class confidence; subclasses reduce them.

    Confidence is the maximum class probability; bin `b` of `num_bins`
    equal-width bins on `[0, 1]` is `min(floor(conf * num_bins), num_bins - 1)`.
    Three variables of shape `(num_bins,)` hold, per bin, the (weighted) number
    of predictions, the sum of their confidences and the number of correct
    ones. `update_state` only adds to them, so the result is the same however
    the data is split into batches.

    Inputs are checked. With `from_logits=False`, `y_pred` must hold
    probabilities: values in `[0, 1]` and rows summing to 1 (within
    `PROBABILITY_TOLERANCE`); logits, negative or unnormalised scores are
    refused, as are rows with a NaN or infinite value. In eager code
    `update_state` raises a `ValueError` saying what is wrong. Inside a
    compiled step (`fit`, `evaluate`) it cannot raise: such rows are counted
    in the variable `invalid_count`, left out of the bins, and `result()` is
    NaN from then on, never a number computed from part of the data (and
    `bin_statistics()` raises). A Distiller refuses, at `compile`, a metric
    with `from_logits=False`: its outputs are logits.

    Args:
        num_bins: Number of equal-width confidence bins.
        from_logits: Whether `y_pred` holds logits (softmax is applied) or probabilities.
        name: Metric name.
        dtype: Dtype of the result.
    """

    def __init__(self, num_bins: int = 15, from_logits: bool = False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if int(num_bins) != num_bins or num_bins < 1:
            raise ValueError(f"{type(self).__name__}: `num_bins` must be a positive integer, got {num_bins!r}.")
        self.num_bins = int(num_bins)
        self.from_logits = bool(from_logits)
        self.bin_count = self._bin_variable("bin_count")
        self.bin_confidence = self._bin_variable("bin_confidence")
        self.bin_correct = self._bin_variable("bin_correct")
        self.invalid_count = self.add_variable(shape=(), initializer="zeros", dtype="float32", aggregation="sum",
                                               name="invalid_count")

    def _bin_variable(self, name):
        return self.add_variable(shape=(self.num_bins,), initializer="zeros", dtype="float32",
                                 aggregation="sum", name=name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        check_predictions(self, y_pred)
        y_pred = ops.cast(y_pred, "float32")
        valid = valid_rows(y_pred, self.from_logits)
        y_pred = ops.where(valid[:, None] > 0, y_pred, 0.0)  # a refused row lands in a bin with weight 0
        probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        confidence = ops.max(probs, axis=-1)
        predicted = ops.argmax(probs, axis=-1)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] != 1:
            y_true = ops.argmax(y_true, axis=-1)  # one-hot labels
        y_true = ops.reshape(y_true, ops.shape(predicted))
        correct = ops.cast(ops.equal(ops.cast(y_true, "int32"), ops.cast(predicted, "int32")), "float32")
        bins = ops.minimum(ops.cast(ops.floor(confidence * self.num_bins), "int32"), self.num_bins - 1)
        membership = ops.one_hot(bins, self.num_bins, dtype="float32") * valid[:, None]  # (N, B)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(confidence))
            membership = membership * weight[:, None]
        self.invalid_count.assign_add(ops.sum(1.0 - valid))
        self.bin_count.assign_add(ops.sum(membership, axis=0))
        self.bin_confidence.assign_add(ops.matmul(confidence[None, :], membership)[0])
        self.bin_correct.assign_add(ops.matmul(correct[None, :], membership)[0])

    def _bin_means(self):
        """Per-bin mean confidence and accuracy (0 for empty bins) and the total count."""
        count = ops.convert_to_tensor(self.bin_count)
        nonzero = ops.maximum(count, 1e-12)
        confidence = ops.where(count > 0, self.bin_confidence / nonzero, 0.0)
        accuracy = ops.where(count > 0, self.bin_correct / nonzero, 0.0)
        return count, confidence, accuracy, ops.maximum(ops.sum(count), 1e-12)

    def _unless_invalid(self, value):
        """`value`, or NaN once a row that cannot be read was given (see the class docstring)."""
        return ops.where(self.invalid_count > 0, float("nan"), value)

    def bin_statistics(self) -> dict:
        """Per-bin statistics as NumPy arrays, for reliability diagrams.

        Returns:
            A dict with `edges` (`num_bins + 1` bin edges), `count` (weighted
            number of predictions per bin), `confidence` and `accuracy` (their
            means per bin, 0 where a bin is empty).
        """
        invalid = float(ops.convert_to_numpy(self.invalid_count))
        if invalid:
            raise ValueError(f"{type(self).__name__} {self.name!r} was given {invalid:g} prediction rows it cannot "
                             "read (NaN or infinite, or not probabilities with from_logits=False); its bins leave "
                             "them out. Check the model's outputs and `from_logits`, then reset_state().")
        count, confidence, accuracy, _ = self._bin_means()
        return {
            "edges": np.linspace(0.0, 1.0, self.num_bins + 1),
            "count": np.asarray(ops.convert_to_numpy(count), dtype=np.float64),
            "confidence": np.asarray(ops.convert_to_numpy(confidence), dtype=np.float64),
            "accuracy": np.asarray(ops.convert_to_numpy(accuracy), dtype=np.float64),
        }

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_bins": self.num_bins, "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="keras_calikd")
class ExpectedCalibrationError(CalibrationMetric):
    """Expected calibration error: `sum_b n_b / N * |acc_b - conf_b|`.

    Args:
        num_bins: Number of equal-width confidence bins (the paper reports 100).
        from_logits: Whether `y_pred` holds logits.
        name: Metric name, `"ece"` by default.
        dtype: Dtype of the result.

    Example:

    ```python
    ece = ck.metrics.ExpectedCalibrationError(num_bins=100, from_logits=True)
    ece.update_state(labels, logits)
    ece.result()
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Eq. 14.
    """

    def __init__(self, num_bins: int = 15, from_logits: bool = False, name="ece", dtype=None):
        super().__init__(num_bins=num_bins, from_logits=from_logits, name=name, dtype=dtype)

    def result(self):
        _, _, _, total = self._bin_means()
        return self._unless_invalid(ops.sum(ops.abs(self.bin_correct - self.bin_confidence)) / total)


@keras.saving.register_keras_serializable(package="keras_calikd")
class OverconfidenceError(CalibrationMetric):
    """Overconfidence error: `sum_b n_b / N * conf_b * max(conf_b - acc_b, 0)`.

    Args:
        num_bins: Number of equal-width confidence bins (the paper reports 100).
        from_logits: Whether `y_pred` holds logits.
        name: Metric name, `"oe"` by default.
        dtype: Dtype of the result.

    Example:

    ```python
    model.compile(metrics=[ck.metrics.OverconfidenceError(from_logits=True)])
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Eq. 15.
    """

    def __init__(self, num_bins: int = 15, from_logits: bool = False, name="oe", dtype=None):
        super().__init__(num_bins=num_bins, from_logits=from_logits, name=name, dtype=dtype)

    def result(self):
        count, confidence, accuracy, total = self._bin_means()
        return self._unless_invalid(ops.sum(count * confidence * ops.maximum(confidence - accuracy, 0.0)) / total)
