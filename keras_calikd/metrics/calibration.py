"""Streaming calibration metrics: expected calibration error and overconfidence error."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


class CalibrationMetric(keras.metrics.Metric):
    """Accumulates per-bin statistics of the top-class confidence; subclasses reduce them.

    Confidence is the maximum class probability; bin `b` of `num_bins`
    equal-width bins on `[0, 1]` is `min(floor(conf * num_bins), num_bins - 1)`.
    Three variables of shape `(num_bins,)` hold, per bin, the (weighted) number
    of predictions, the sum of their confidences and the number of correct
    ones. `update_state` only adds to them, so the result is the same however
    the data is split into batches.

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

    def _bin_variable(self, name):
        return self.add_variable(shape=(self.num_bins,), initializer="zeros", dtype="float32",
                                 aggregation="sum", name=name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, "float32")
        probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        confidence = ops.max(probs, axis=-1)
        predicted = ops.argmax(probs, axis=-1)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] != 1:
            y_true = ops.argmax(y_true, axis=-1)  # one-hot labels
        y_true = ops.reshape(y_true, ops.shape(predicted))
        correct = ops.cast(ops.equal(ops.cast(y_true, "int32"), ops.cast(predicted, "int32")), "float32")
        bins = ops.minimum(ops.cast(ops.floor(confidence * self.num_bins), "int32"), self.num_bins - 1)
        membership = ops.one_hot(bins, self.num_bins, dtype="float32")  # (N, B)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(confidence))
            membership = membership * weight[:, None]
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

    def bin_statistics(self) -> dict:
        """Per-bin statistics as NumPy arrays, for reliability diagrams.

        Returns:
            A dict with `edges` (`num_bins + 1` bin edges), `count` (weighted
            number of predictions per bin), `confidence` and `accuracy` (their
            means per bin, 0 where a bin is empty).
        """
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
        return ops.sum(ops.abs(self.bin_correct - self.bin_confidence)) / total


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
        return ops.sum(count * confidence * ops.maximum(confidence - accuracy, 0.0)) / total
