"""MCE, adaptive (equal-mass) ECE and classwise ECE against NumPy references written from their definitions."""

import keras
import numpy as np
import pytest

import keras_calikd as ck
from keras_calikd.metrics import AdaptiveCalibrationError, ClasswiseCalibrationError, MaximumCalibrationError


CAPACITY = 1024  # one buffer size for most tests: JAX compiles the metric once per shape

# ---------------------------------------------------------------- NumPy references

def reference_mce(probs, labels, num_bins, weights=None):
    """Largest |acc_b - conf_b| over the non-empty equal-width bins of the top-class confidence."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    conf = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum(np.floor(conf * num_bins).astype(int), num_bins - 1)
    gaps = [abs(np.average(correct[bins == b], weights=weights[bins == b])
                - np.average(conf[bins == b], weights=weights[bins == b]))
            for b in range(num_bins) if weights[bins == b].sum() > 0]
    return max(gaps, default=0.0)


def reference_adaptive_ece(probs, labels, num_bins, weights=None):
    """Equal-mass bins: edge k is the smallest confidence c with W(conf <= c) >= k/B of the total weight;
    a sample's bin is the number of edges strictly below its confidence."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    conf = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    total = weights.sum()
    values = np.unique(conf)
    mass_up_to = np.array([weights[conf <= v].sum() for v in values])
    edges = [values[np.nonzero(mass_up_to * num_bins >= k * total)[0][0]] for k in range(1, num_bins)]
    bins = np.array([sum(e < c for e in edges) for c in conf])
    return sum(abs((weights * (correct - conf))[bins == b].sum()) for b in range(num_bins)) / total


def reference_classwise_ece(probs, labels, num_bins, weights=None):
    """Kull et al. 2019: mean over classes c of sum_b W_cb / W |freq_cb - conf_cb| on equal-width bins of p_c."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    probs = probs.astype(np.float64)
    total, errors = weights.sum(), []
    for c in range(probs.shape[1]):
        p, hit = probs[:, c], (labels == c).astype(np.float64)
        bins = np.minimum(np.floor(p * num_bins).astype(int), num_bins - 1)
        errors.append(sum(abs((weights * (hit - p))[bins == b].sum()) for b in range(num_bins)) / total)
    return float(np.mean(errors))


def predictions(rng, n=400, classes=6, sharpness=3.0):
    logits = rng.normal(scale=sharpness, size=(n, classes)).astype("float32")
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).astype("float32")
    return logits, probs, rng.integers(0, classes, n)


def off_edges(values, num_bins, margin=1e-4):
    """Keeps probabilities off equal-width bin edges, where float32 and float64 may disagree on the bin."""
    frac = values * num_bins - np.floor(values * num_bins)
    return (np.minimum(frac, 1 - frac) > margin) | (values == 1.0)


def result(metric, labels, probs, weights=None):
    metric.update_state(labels, probs, sample_weight=weights)
    return float(metric.result())


# ---------------------------------------------------------------- against the references

def test_match_references(rng):
    _, all_probs, all_labels = predictions(rng)
    for num_bins in (1, 7, 15):
        keep = off_edges(all_probs.max(1), num_bins) & np.all(off_edges(all_probs, num_bins) | (all_probs < 1e-3), 1)
        probs, labels = all_probs[keep], all_labels[keep]
        np.testing.assert_allclose(result(MaximumCalibrationError(num_bins), labels, probs),
                                   reference_mce(probs, labels, num_bins), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result(AdaptiveCalibrationError(num_bins, CAPACITY), labels, probs),
                                   reference_adaptive_ece(probs, labels, num_bins), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result(ClasswiseCalibrationError(6, num_bins), labels, probs),
                                   reference_classwise_ece(probs, labels, num_bins), rtol=1e-5, atol=1e-7)


def test_adaptive_bins_hold_equal_counts(rng):
    """With distinct confidences and B dividing N, the bins are the sorted samples cut into B equal runs."""
    _, probs, labels = predictions(rng, n=120)
    conf = probs.max(1).astype(np.float64)
    assert len(np.unique(conf)) == 120
    order = np.argsort(conf)
    correct = (probs.argmax(1) == labels)[order]
    runs = zip(np.split(conf[order], 6), np.split(correct, 6))
    expected = sum(len(c) / 120 * abs(hit.mean() - c.mean()) for c, hit in runs)
    np.testing.assert_allclose(result(AdaptiveCalibrationError(6, CAPACITY), labels, probs), expected, rtol=1e-5)


def test_adaptive_ties_share_a_bin_and_order_does_not_matter(rng):
    # 30 saturated predictions at confidence exactly 1 (half wrong) among 30 others.
    _, probs, labels = predictions(rng, n=60, classes=3)
    probs[:30] = np.array([1.0, 0.0, 0.0], "float32")
    labels[:30] = np.arange(30) % 2
    expected = reference_adaptive_ece(probs, labels, 6)
    permutation = rng.permutation(60)
    np.testing.assert_allclose(result(AdaptiveCalibrationError(6, CAPACITY), labels, probs), expected, rtol=1e-5)
    np.testing.assert_allclose(result(AdaptiveCalibrationError(6, CAPACITY), labels[permutation],
                                      probs[permutation]), expected, rtol=1e-5)


def test_results_do_not_depend_on_the_batch_split(rng):
    logits, _, labels = predictions(rng, n=300)
    for make in (lambda: MaximumCalibrationError(15, from_logits=True),
                 lambda: AdaptiveCalibrationError(15, CAPACITY, from_logits=True),
                 lambda: ClasswiseCalibrationError(6, 15, from_logits=True)):
        whole, split = make(), make()
        whole.update_state(labels, logits)
        for start, stop in [(0, 100), (100, 200), (200, 300)]:  # uneven batches: the compiled evaluation test
            split.update_state(labels[start:stop], logits[start:stop])
        np.testing.assert_allclose(float(split.result()), float(whole.result()), rtol=1e-6)
        assert float(whole.result()) > 0


def test_sample_weights_one_hot_labels_and_logits(rng):
    logits, probs, labels = predictions(rng, n=200, classes=4)
    keep = off_edges(probs.max(1), 15) & np.all(off_edges(probs, 15) | (probs < 1e-3), axis=1)
    logits, probs, labels = logits[keep], probs[keep], labels[keep]
    weights = rng.integers(0, 4, len(labels)).astype("float32")  # integer weights, zeros included
    one_hot = np.eye(4, dtype="float32")[labels]
    np.testing.assert_allclose(result(MaximumCalibrationError(15, from_logits=True), one_hot, logits, weights),
                               reference_mce(probs, labels, 15, weights), rtol=1e-4)

    def adaptive():
        return AdaptiveCalibrationError(15, CAPACITY, from_logits=True)

    np.testing.assert_allclose(result(adaptive(), one_hot, logits, weights),
                               reference_adaptive_ece(probs, labels, 15, weights), rtol=1e-4)
    np.testing.assert_allclose(result(ClasswiseCalibrationError(4, 15, from_logits=True), labels[:, None], logits,
                                      weights), reference_classwise_ece(probs, labels, 15, weights), rtol=1e-4)
    # For the adaptive ECE a weight of 2 is a repeated sample and a weight of 0 a dropped one.
    repeated = np.repeat(np.arange(len(labels)), weights.astype(int))
    np.testing.assert_allclose(result(adaptive(), labels, logits, weights),
                               result(adaptive(), labels[repeated], logits[repeated]), rtol=1e-5)


def test_mce_picks_the_worst_bin_and_empty_state_is_zero():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.65, 0.35]], "float32")
    labels = np.array([0, 1, 0, 0])  # bin 9: conf 0.95, acc 0.5 (gap 0.45); bin 6: conf 0.65, acc 1 (gap 0.35)
    metric = MaximumCalibrationError(10)
    assert float(metric.result()) == 0.0
    np.testing.assert_allclose(result(metric, labels, probs), 0.45, rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


# ---------------------------------------------------------------- capacity of the adaptive ECE

def test_adaptive_overflow_raises_eagerly_and_is_nan_in_a_compiled_step(rng):
    logits, _, labels = predictions(rng, n=64, classes=4)
    metric = AdaptiveCalibrationError(5, capacity=50, from_logits=True)
    metric.update_state(labels[:40], logits[:40])
    with pytest.raises(ValueError, match=r"capacity=50 .* would receive 64"):
        metric.update_state(labels[40:], logits[40:])
    assert float(metric.result()) > 0  # the failed update left the state as it was
    inputs = keras.Input((4,))
    model = keras.Model(inputs, inputs)
    model.compile(jit_compile=True, metrics=[AdaptiveCalibrationError(5, capacity=50, from_logits=True)],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logs = model.evaluate(logits, labels, batch_size=16, verbose=0, return_dict=True)
    assert np.isnan(logs["adaptive_ece"])
    metric.reset_state()
    assert float(metric.result()) == 0.0


# ---------------------------------------------------------------- compiled, configured, reported

def test_metrics_in_a_compiled_evaluation(rng):
    logits, probs, labels = predictions(rng, n=250, classes=5)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, inputs)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True,
                  metrics=[MaximumCalibrationError(15, from_logits=True),
                           AdaptiveCalibrationError(15, capacity=256, from_logits=True),
                           ClasswiseCalibrationError(5, 15, from_logits=True)])
    logs = model.evaluate(logits, labels, batch_size=37, verbose=0, return_dict=True)  # uneven last batch
    probs64 = np.exp(logits - logits.max(1, keepdims=True)).astype(np.float64)
    probs64 /= probs64.sum(1, keepdims=True)
    np.testing.assert_allclose(logs["mce"], reference_mce(probs64, labels, 15), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(logs["adaptive_ece"], reference_adaptive_ece(probs64, labels, 15), rtol=1e-3)
    np.testing.assert_allclose(logs["classwise_ece"], reference_classwise_ece(probs64, labels, 15), rtol=1e-3)


def test_calibration_report_has_the_new_errors(rng):
    logits, probs, labels = predictions(rng, n=200, classes=5)
    report = ck.training.calibration_report(logits, labels, bins=(10, 4))
    for b in (10, 4):
        np.testing.assert_allclose(report[f"adaptive_ece_{b}"], reference_adaptive_ece(probs, labels, b), rtol=1e-4)
        np.testing.assert_allclose(report[f"classwise_ece_{b}"], reference_classwise_ece(probs, labels, b),
                                   rtol=1e-3)
        np.testing.assert_allclose(report[f"mce_{b}"], reference_mce(probs, labels, b), rtol=1e-3)
        assert report[f"ece_{b}"] <= report[f"mce_{b}"]


def test_bad_arguments(rng):
    for make, message in [
        (lambda: MaximumCalibrationError(0), "num_bins"),
        (lambda: AdaptiveCalibrationError(capacity=0), "AdaptiveCalibrationError: `capacity` must be a positive"),
        (lambda: AdaptiveCalibrationError(num_bins=2.5), "AdaptiveCalibrationError: `num_bins`"),
        (lambda: ClasswiseCalibrationError(num_classes=0), "ClasswiseCalibrationError: `num_classes`"),
    ]:
        with pytest.raises(ValueError, match=message):
            make()
    _, probs, labels = predictions(rng, n=10, classes=4)
    with pytest.raises(ValueError, match="num_classes=5 but receives predictions of 4 classes"):
        ClasswiseCalibrationError(5).update_state(labels, probs)
