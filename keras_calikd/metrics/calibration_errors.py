"""More streaming calibration metrics: maximum, adaptive (equal-mass) and classwise calibration errors.

Like `ExpectedCalibrationError`, each metric owns its variables; `update_state`
only accumulates into them and `result` only reads them, so the result does
not depend on how the data is split into batches (nor, for these three, on the
order of the samples). All run inside compiled (XLA) steps on TensorFlow and JAX.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_calikd import checks
from keras_calikd.metrics.calibration import CalibrationMetric, eager_value, check_predictions, valid_rows


def _probabilities(y_pred, from_logits):
    y_pred = ops.cast(y_pred, "float32")
    return ops.softmax(y_pred, axis=-1) if from_logits else y_pred


def _class_ids(y_true, probs):
    """`(batch,)` int32 labels from ids `(batch,)`/`(batch, 1)` or one-hot rows `(batch, K)`."""
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(probs.shape) and y_true.shape[-1] != 1:
        y_true = ops.argmax(y_true, axis=-1)
    return ops.reshape(ops.cast(y_true, "int32"), (-1,))


def _sample_weight(sample_weight, like):
    """float32 weights shaped like the `(batch,)` tensor `like` (ones without `sample_weight`)."""
    if sample_weight is None:
        return ops.ones(ops.shape(like), "float32")
    return ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(like))


def _compiled_on_jax(*static_argnames):
    """Jits a pure `keras.ops` function on the JAX backend (as is, elsewhere).

    Eager JAX compiles every operation for every new input shape; this
    compiles one function per shape instead (eager updates and
    `calibration_report` on JAX). Inside a traced step it is inlined.
    """
    def decorate(function):
        if keras.backend.backend() != "jax":
            return function
        import jax

        return jax.jit(function, static_argnames=static_argnames)

    return decorate


def _readable(metric, y_pred, sample_weight):
    """`(y_pred, sample_weight, refused)`: rows that cannot be read zeroed and weighted 0, and how many there were.

    Eager `y_pred` is checked first (`check_predictions` raises); in a compiled step the refused rows are counted.
    """
    check_predictions(metric, y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    valid = valid_rows(y_pred, metric.from_logits)
    y_pred = ops.where(valid[:, None] > 0, ops.cast(y_pred, "float32"), 0.0)
    weight = valid if sample_weight is None else valid * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    return y_pred, weight, ops.sum(1.0 - valid)


def _invalid_count(metric):
    return metric.add_variable(shape=(), initializer="zeros", dtype="float32", aggregation="sum",
                               name="invalid_count")


@_compiled_on_jax("capacity", "from_logits")
def _buffers_with(confidence, correct, weight, seen, y_true, y_pred, sample_weight, capacity, from_logits):
    """The adaptive ECE's buffers and count after appending a batch (writes past `capacity` go to the last slot)."""
    probs = _probabilities(y_pred, from_logits)
    batch_confidence = ops.max(probs, axis=-1)
    labels = _class_ids(y_true, probs)
    batch_correct = ops.cast(ops.equal(labels, ops.cast(ops.argmax(probs, axis=-1), "int32")), "float32")
    batch_weight = _sample_weight(sample_weight, batch_confidence)
    size = ops.shape(batch_confidence)[0]
    positions = ops.minimum(seen + ops.arange(size, dtype="int32"), capacity)[:, None]
    return (ops.scatter_update(confidence, positions, batch_confidence),
            ops.scatter_update(correct, positions, batch_correct),
            ops.scatter_update(weight, positions, batch_weight),
            seen + ops.cast(size, "int32"))


@_compiled_on_jax("num_bins", "capacity")
def _equal_mass_ece(confidence, correct, weight, seen, num_bins, capacity):
    """Adaptive ECE of the first `min(seen, capacity)` buffered samples; NaN once more than `capacity` were seen."""
    valid = ops.arange(capacity, dtype="int32") < ops.minimum(seen, capacity)
    weight = ops.where(valid, weight[:capacity], 0.0)
    confidence, correct = confidence[:capacity], correct[:capacity]
    key = ops.where(valid, confidence, 2.0)  # empty slots sort after every confidence, with no weight
    order = ops.argsort(key)
    sorted_key = ops.take(key, order)
    cumulative = ops.cumsum(ops.take(weight, order))
    total = cumulative[-1]
    # Edge k: the first sorted confidence whose cumulative weight reaches k / B of the total
    # (compared as cumulative * B >= k * total, exact for integer weights).
    thresholds = ops.arange(1, num_bins, dtype="float32") * total
    first = ops.minimum(ops.searchsorted(cumulative * num_bins, thresholds, side="left"), capacity - 1)
    edges = ops.take(sorted_key, first)
    bins = ops.cast(ops.searchsorted(edges, confidence, side="left"), "int32")  # number of edges below
    gap = ops.segment_sum(weight * (correct - confidence), bins, num_segments=num_bins)
    ece = ops.sum(ops.abs(gap)) / ops.maximum(total, 1e-12)
    return ops.where(seen > capacity, float("nan"), ece)


@_compiled_on_jax("num_classes", "num_bins", "from_logits")
def _classwise_sums(y_true, y_pred, sample_weight, num_classes, num_bins, from_logits):
    """A batch's `(K, B)` weighted counts, sums of `p_c` and of `1[y = c]` in the classwise bins."""
    probs = _probabilities(y_pred, from_logits)
    labels = _class_ids(y_true, probs)
    weight = _sample_weight(sample_weight, labels)[:, None]
    bins = ops.minimum(ops.cast(ops.floor(probs * num_bins), "int32"), num_bins - 1)
    segments = ops.reshape(bins + ops.arange(num_classes, dtype="int32")[None, :] * num_bins, (-1,))
    hits = ops.one_hot(labels, num_classes, dtype="float32")
    sums = []
    for values in (ops.broadcast_to(weight, ops.shape(probs)), weight * probs, weight * hits):
        total = ops.segment_sum(ops.reshape(values, (-1,)), segments, num_segments=num_classes * num_bins)
        sums.append(ops.reshape(total, (num_classes, num_bins)))
    return tuple(sums)


@keras.saving.register_keras_serializable(package="keras_calikd")
class MaximumCalibrationError(CalibrationMetric):
    """Maximum calibration error: the largest `|acc_b - conf_b|` over the non-empty bins.

    The bins are `ExpectedCalibrationError`'s: `num_bins` equal-width bins of
    the top-class confidence on `[0, 1]`. It is 0 before any (weighted) sample.

    Args:
        num_bins: Number of equal-width confidence bins.
        from_logits: Whether `y_pred` holds logits.
        name: Metric name, `"mce"` by default.
        dtype: Dtype of the result.

    Example:

    ```python
    mce = ck.metrics.MaximumCalibrationError(num_bins=15, from_logits=True)
    mce.update_state(labels, logits)
    mce.result()
    ```

    Reference:
        Naeini, Cooper and Hauskrecht, "Obtaining Well Calibrated Probabilities
        Using Bayesian Binning", AAAI 2015 (MCE); Guo et al., "On Calibration
        of Modern Neural Networks", ICML 2017, Sec. 2.
    """

    def __init__(self, num_bins: int = 15, from_logits: bool = False, name="mce", dtype=None):
        super().__init__(num_bins=num_bins, from_logits=from_logits, name=name, dtype=dtype)

    def result(self):
        count, confidence, accuracy, _ = self._bin_means()
        gaps = ops.where(count > 0, ops.abs(accuracy - confidence), 0.0)
        return self._unless_invalid(ops.max(gaps))


@keras.saving.register_keras_serializable(package="keras_calikd")
class AdaptiveCalibrationError(keras.metrics.Metric):
    """Adaptive (equal-mass) ECE: ECE over bins that each hold `1 / num_bins` of the samples.

    The bin edges are quantiles of the top-class confidences seen so far: edge
    `k` (for `k = 1 .. num_bins - 1`) is the smallest confidence `c` such that
    the samples with confidence `<= c` carry at least `k / num_bins` of the
    total weight, and a sample belongs to bin `b` = the number of edges below
    its confidence (bins `(e_b, e_{b+1}]`, the lowest confidence in bin 0).
    With `N` distinct confidences and `num_bins` dividing `N`, each bin holds
    exactly `N / num_bins` samples; equal confidences always share a bin, so
    the result does not depend on the order of the samples. Then
    `result = sum_b W_b / W * |acc_b - conf_b|`, weights `W` as in
    `ExpectedCalibrationError`.

    Equal-mass edges need every confidence, so the metric keeps them in a
    fixed-capacity buffer (three float32 variables of `capacity` entries:
    confidence, correctness, weight); `result` sorts it. **Overflow**: when
    more than `capacity` samples have been seen, `update_state` raises a
    `ValueError` in eager code (naming the capacity to set); inside a compiled
    step it cannot raise, so the extra samples are dropped and `result`
    returns NaN, never a number computed from part of the data. Size
    `capacity` to the evaluated split (`calibration_report` does). Inputs are
    checked as `ExpectedCalibrationError` checks them (rows that are not
    probabilities with `from_logits=False`, or not finite: a `ValueError` in
    eager code, a NaN result in a compiled step, counted in `invalid_count`;
    such rows take a buffer slot with weight 0). Bin
    assignment is exact in float32 for integer sample weights while
    `capacity * num_bins < 2**24`.

    Sorting the buffer costs `O(capacity log capacity)` per `result()` call:
    prefer this metric in evaluation (`evaluate`, `calibration_report`) over
    per-step training logs. Under a multi-replica `tf.distribute` strategy each
    replica fills its own buffer; evaluate on one device or with
    `calibration_report` on gathered logits.

    Args:
        num_bins: Number of equal-mass bins (positive integer).
        capacity: Most samples the metric can hold (positive integer).
        from_logits: Whether `y_pred` holds logits.
        name: Metric name, `"adaptive_ece"` by default.
        dtype: Dtype of the result.

    Example:

    ```python
    ada = ck.metrics.AdaptiveCalibrationError(num_bins=15, capacity=10_000, from_logits=True)
    model.compile(metrics=[ada])
    model.evaluate(test_images, test_labels)
    ```

    Reference:
        Nguyen and O'Connor, "Posterior Calibration and Exploratory Analysis
        for Natural Language Processing Models", EMNLP 2015 (equal-mass bins);
        Nixon et al., "Measuring Calibration in Deep Learning", CVPR Workshops
        2019 (adaptive calibration error); Mukhoti et al., "Calibrating Deep
        Neural Networks using Focal Loss", NeurIPS 2020 (AdaECE).
    """

    def __init__(self, num_bins: int = 15, capacity: int = 100_000, from_logits: bool = False,
                 name="adaptive_ece", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_bins = checks.integer(type(self).__name__, "num_bins", num_bins)
        self.capacity = checks.integer(type(self).__name__, "capacity", capacity)
        self.from_logits = bool(from_logits)
        # One extra slot at the end takes the writes past the capacity (it is never read).
        self.confidence = self._buffer("confidence")
        self.correct = self._buffer("correct")
        self.weight = self._buffer("weight")
        self.seen = self.add_variable(shape=(), initializer="zeros", dtype="int32", aggregation="sum", name="seen")
        self.invalid_count = _invalid_count(self)

    def _buffer(self, name):
        return self.add_variable(shape=(self.capacity + 1,), initializer="zeros", dtype="float32",
                                 aggregation="sum", name=name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        seen = eager_value(self.seen.value)
        size = ops.shape(y_pred)[0]
        if seen is not None and int(seen) + int(size) > self.capacity:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} holds at most capacity={self.capacity} samples and would "
                f"receive {int(seen) + int(size)}. Create it with a larger `capacity` (at least the number of "
                "evaluated samples), or reset_state() between evaluations."
            )
        y_true = ops.convert_to_tensor(y_true)
        y_pred, sample_weight, refused = _readable(self, y_pred, sample_weight)
        self.invalid_count.assign_add(refused)
        updated = _buffers_with(self.confidence.value, self.correct.value, self.weight.value, self.seen.value,
                                y_true, y_pred, sample_weight, capacity=self.capacity, from_logits=self.from_logits)
        for variable, value in zip((self.confidence, self.correct, self.weight, self.seen), updated):
            variable.assign(value)

    def result(self):
        ece = _equal_mass_ece(self.confidence.value, self.correct.value, self.weight.value, self.seen.value,
                              num_bins=self.num_bins, capacity=self.capacity)
        return ops.where(self.invalid_count > 0, float("nan"), ece)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_bins": self.num_bins, "capacity": self.capacity,
                "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="keras_calikd")
class ClasswiseCalibrationError(keras.metrics.Metric):
    """Classwise ECE: for each class `c`, the ECE of `p_c` against `1[y = c]`, averaged over the classes.

    For each class `c`, every sample falls in one of `num_bins` equal-width
    bins of its probability `p_c` on `[0, 1]` (bin
    `min(floor(p_c * num_bins), num_bins - 1)`), and
    `classwise_ece = 1/K * sum_c sum_b W_cb / W * |freq_cb - conf_cb|`, where
    `conf_cb` is the mean `p_c` and `freq_cb` the fraction of samples of class
    `c` in bin `b` (weighted by `sample_weight`). Three `(K, num_bins)`
    variables hold the weighted counts, sums of `p_c` and of `1[y = c]`.
    Inputs are checked as `ExpectedCalibrationError` checks them (a
    `ValueError` in eager code; in a compiled step a NaN result, the rows
    counted in `invalid_count`).

    Args:
        num_classes: Number of classes `K` (the width of `y_pred`).
        num_bins: Number of equal-width bins per class.
        from_logits: Whether `y_pred` holds logits.
        name: Metric name, `"classwise_ece"` by default.
        dtype: Dtype of the result.

    Example:

    ```python
    cw = ck.metrics.ClasswiseCalibrationError(num_classes=100, num_bins=15, from_logits=True)
    cw.update_state(labels, logits)
    cw.result()
    ```

    Reference:
        Kull et al., "Beyond temperature scaling: Obtaining well-calibrated
        multiclass probabilities with Dirichlet calibration", NeurIPS 2019,
        Sec. 2 (classwise-ECE).
    """

    def __init__(self, num_classes: int, num_bins: int = 15, from_logits: bool = False, name="classwise_ece",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = checks.integer(type(self).__name__, "num_classes", num_classes)
        self.num_bins = checks.integer(type(self).__name__, "num_bins", num_bins)
        self.from_logits = bool(from_logits)
        shape = (self.num_classes, self.num_bins)
        self.bin_count, self.bin_probability, self.bin_frequency = (
            self.add_variable(shape=shape, initializer="zeros", dtype="float32", aggregation="sum", name=variable)
            for variable in ("bin_count", "bin_probability", "bin_frequency"))
        self.invalid_count = _invalid_count(self)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes:
            raise ValueError(f"{type(self).__name__} {self.name!r} was created for num_classes={self.num_classes} "
                             f"but receives predictions of {y_pred.shape[-1]} classes.")
        y_pred, sample_weight, refused = _readable(self, y_pred, sample_weight)
        self.invalid_count.assign_add(refused)
        sums = _classwise_sums(ops.convert_to_tensor(y_true), y_pred, sample_weight, num_classes=self.num_classes,
                               num_bins=self.num_bins, from_logits=self.from_logits)
        for variable, value in zip((self.bin_count, self.bin_probability, self.bin_frequency), sums):
            variable.assign_add(value)

    def result(self):
        total = ops.maximum(ops.sum(self.bin_count.value[0]), 1e-12)  # every sample is in one bin per class
        per_class = ops.sum(ops.abs(self.bin_frequency.value - self.bin_probability.value), axis=-1) / total
        return ops.where(self.invalid_count > 0, float("nan"), ops.mean(per_class))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_classes": self.num_classes, "num_bins": self.num_bins,
                "from_logits": self.from_logits}
