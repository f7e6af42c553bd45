"""Calibration metrics on data that exposes their binning, alone and (the adaptive ECE, whose buffer the report
sizes) as `calibration_report`, the runs' and calikd-evaluate's numbers, computes them.

Random predictions with independent labels are overconfident in every bin, so that any binning and any way of
adding the bins' gaps give the same sum; and a random softmax never reaches exactly 1.0, the value that falls on
the last bin's closed edge. Here the adaptive ECE gets bins under- and overconfident, and the classwise ECE gets
saturated probabilities, against NumPy references written from the definitions.
"""

import numpy as np

import keras_calikd as ck
from keras_calikd.metrics import AdaptiveCalibrationError, ClasswiseCalibrationError

NUM_BINS = 6


def mixed_sign_predictions(rng, per_bin=10, classes=3):
    """Probabilities whose top-class confidences are distinct and spaced, in NUM_BINS runs of `per_bin` samples
    (in sorted order); the runs' accuracies make some of them under- and others overconfident."""
    accuracies = [0.9, 0.2, 1.0, 0.3, 0.9, 0.4]  # per run of confidences, from the lowest
    confidence = np.linspace(0.40, 0.97, NUM_BINS * per_bin)
    probs, labels = [], []
    for i, c in enumerate(confidence):
        predicted = i % classes
        row = np.full(classes, (1.0 - c) / (classes - 1))
        row[predicted] = c
        correct = (i % per_bin) < round(accuracies[i // per_bin] * per_bin)
        probs.append(row)
        labels.append(predicted if correct else (predicted + 1) % classes)
    order = rng.permutation(len(labels))  # the metric may not rely on the order of the samples
    return np.array(probs)[order], np.array(labels)[order]


def reference_adaptive_ece(probs, labels, num_bins):
    """Adaptive (equal-mass) ECE (Nixon et al., 2019, on the top-class confidence): the samples sorted by
    confidence, cut into `num_bins` runs of equal size; the size-weighted mean of |accuracy - confidence|."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    order = np.argsort(confidence)
    runs = zip(np.array_split(confidence[order], num_bins), np.array_split(correct[order], num_bins))
    return sum(len(c) / len(labels) * abs(hit.mean() - c.mean()) for c, hit in runs)


def test_adaptive_ece_adds_the_gaps_of_under_and_overconfident_bins(rng):
    probs, labels = mixed_sign_predictions(rng)
    expected = reference_adaptive_ece(probs, labels, NUM_BINS)
    # The data exposes how the gaps are added: bins of both signs, so |sum of gaps| is not the sum of |gaps|.
    order = np.argsort(probs.max(1))
    gaps = [hit.mean() - c.mean() for c, hit in zip(np.split(probs.max(1)[order], NUM_BINS),
                                                    np.split((probs.argmax(1) == labels)[order], NUM_BINS))]
    assert min(gaps) < -0.1 and max(gaps) > 0.1
    assert abs(abs(np.mean(gaps)) - expected) > 0.1
    metric = AdaptiveCalibrationError(NUM_BINS, capacity=len(labels))
    metric.update_state(labels, probs.astype("float32"))
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)
    report = ck.training.calibration_report(np.log(probs), labels, bins=(NUM_BINS,))
    np.testing.assert_allclose(report[f"adaptive_ece_{NUM_BINS}"], expected, rtol=1e-5)


def reference_classwise_ece(probs, labels, num_bins):
    """Classwise ECE (Kull et al., 2019): for each class c, equal-width bins of p_c on [0, 1] (the last bin closed,
    so that p_c = 1 belongs to it), sum_b |B_cb| / N * |frequency of c in B_cb - mean p_c in B_cb|; the mean over
    the classes."""
    n, classes = probs.shape
    total = 0.0
    for c in range(classes):
        edges = np.linspace(0.0, 1.0, num_bins + 1)
        for b in range(num_bins):
            last = b == num_bins - 1
            members = (probs[:, c] >= edges[b]) & ((probs[:, c] <= edges[b + 1]) if last else
                                                    (probs[:, c] < edges[b + 1]))
            if members.any():
                total += members.sum() / n * abs((labels[members] == c).mean() - probs[members, c].mean())
    return total / classes


def test_classwise_ece_counts_saturated_probabilities_in_each_class_s_last_bin(rng):
    classes = 3
    # Logits 200 apart: softmax gives exactly 1.0 and 0.0 in float32. Saturated rows of every class, half of them
    # wrong, among unsaturated ones kept off the bin edges.
    n = 40
    logits = rng.normal(scale=1.0, size=(n, classes))
    saturated = np.arange(n) < 24
    logits[saturated] = 0.0
    logits[saturated, np.arange(24) % classes] = 200.0
    labels = rng.integers(0, classes, n)
    labels[saturated] = np.where(np.arange(24) % 2 == 0, np.arange(24) % classes, (np.arange(24) + 1) % classes)
    probs32 = np.exp(logits - logits.max(1, keepdims=True)).astype("float32")
    probs32 /= probs32.sum(1, keepdims=True)
    assert (probs32 == 1.0).sum() == 24 and all((probs32[:, c] == 1.0).any() for c in range(classes))
    frac = probs32[~saturated] * NUM_BINS % 1.0
    assert np.all(np.minimum(frac, 1 - frac) > 1e-3), "unsaturated probabilities off the bin edges"
    probs = probs32.astype(np.float64)
    expected = reference_classwise_ece(probs, labels, NUM_BINS)

    for metric, predictions in ((ClasswiseCalibrationError(classes, NUM_BINS), probs32),
                                (ClasswiseCalibrationError(classes, NUM_BINS, from_logits=True), logits)):
        metric.update_state(labels, predictions.astype("float32"))  # the softmax saturates inside the metric too
        np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)
