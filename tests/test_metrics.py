"""ECE and OE against a NumPy reference written from the paper's Eq. 14-15."""

import os

import keras
import numpy as np
import pytest

import keras_calikd as ck


def reference(probs, labels, num_bins, weights=None):
    """ECE and OE with equal-width bins on the top-class confidence (Eq. 14, 15)."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    conf = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum(np.floor(conf * num_bins).astype(int), num_bins - 1)
    total = weights.sum()
    ece = oe = 0.0
    for b in range(num_bins):
        in_bin = bins == b
        n_b = weights[in_bin].sum()
        if n_b == 0:
            continue
        acc_b = (weights * correct)[in_bin].sum() / n_b
        conf_b = (weights * conf)[in_bin].sum() / n_b
        ece += n_b / total * abs(acc_b - conf_b)
        oe += n_b / total * conf_b * max(conf_b - acc_b, 0.0)
    return ece, oe


def away_from_bin_edges(probs, num_bins, margin=1e-4):
    """Nudges top confidences off bin edges so float32 and float64 agree on the bin."""
    conf = probs.max(axis=1)
    frac = conf * num_bins - np.floor(conf * num_bins)
    return (np.minimum(frac, 1 - frac) > margin) | (conf == 1.0)


def random_predictions(rng, n=500, classes=10, sharpness=3.0):
    logits = rng.normal(scale=sharpness, size=(n, classes)).astype("float32")
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).astype("float32")
    labels = rng.integers(0, classes, n)
    return logits, probs, labels


@pytest.mark.parametrize("num_bins", [1, 15, 100])
def test_matches_reference_on_probabilities(rng, num_bins):
    _, probs, labels = random_predictions(rng)
    keep = away_from_bin_edges(probs, num_bins)
    probs, labels = probs[keep], labels[keep]
    ece, oe = ck.metrics.ExpectedCalibrationError(num_bins), ck.metrics.OverconfidenceError(num_bins)
    ece.update_state(labels, probs)
    oe.update_state(labels, probs)
    expected_ece, expected_oe = reference(probs, labels, num_bins)
    np.testing.assert_allclose(float(ece.result()), expected_ece, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(oe.result()), expected_oe, rtol=1e-5, atol=1e-7)


def test_from_logits_one_hot_labels_and_sample_weight(rng):
    logits, probs, labels = random_predictions(rng, n=300, classes=5)
    keep = away_from_bin_edges(probs, 15)
    logits, probs, labels = logits[keep], probs[keep], labels[keep]
    weights = rng.uniform(0, 2, len(labels))
    ece = ck.metrics.ExpectedCalibrationError(15, from_logits=True)
    oe = ck.metrics.OverconfidenceError(15, from_logits=True)
    one_hot = np.eye(5, dtype="float32")[labels]
    ece.update_state(one_hot, logits, sample_weight=weights)
    oe.update_state(labels[:, None], logits, sample_weight=weights)
    expected_ece, expected_oe = reference(probs, labels, 15, weights)
    np.testing.assert_allclose(float(ece.result()), expected_ece, rtol=1e-4)
    np.testing.assert_allclose(float(oe.result()), expected_oe, rtol=1e-4)


def test_confidence_of_exactly_one_goes_to_the_last_bin():
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], "float32")
    labels = np.array([0, 1, 1, 0])
    ece, oe = ck.metrics.ExpectedCalibrationError(10), ck.metrics.OverconfidenceError(10)
    ece.update_state(labels, probs)
    oe.update_state(labels, probs)
    stats = ece.bin_statistics()
    assert stats["count"][-1] == 3 and stats["count"][5] == 1  # conf 0.5 -> bin floor(5.0) = 5
    # Bin 9: conf 1, acc 2/3; bin 5: conf 0.5, acc 1.
    np.testing.assert_allclose(float(ece.result()), 3 / 4 * (1 / 3) + 1 / 4 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(oe.result()), 3 / 4 * 1.0 * (1 / 3), rtol=1e-6)
    np.testing.assert_allclose((float(ece.result()), float(oe.result())), reference(probs, labels, 10), rtol=1e-6)


def test_bin_statistics_match_reference(rng):
    _, probs, labels = random_predictions(rng, n=300)
    keep = away_from_bin_edges(probs, 10)
    probs, labels = probs[keep], labels[keep]
    ece = ck.metrics.ExpectedCalibrationError(10)
    ece.update_state(labels, probs)
    stats = ece.bin_statistics()
    conf = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum(np.floor(conf * 10).astype(int), 9)
    count = np.bincount(bins, minlength=10).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean_conf = np.where(count > 0, np.bincount(bins, conf, minlength=10) / count, 0.0)
        mean_acc = np.where(count > 0, np.bincount(bins, correct, minlength=10) / count, 0.0)
    assert (count == 0).any() and (count > 0).sum() >= 5  # empty bins report 0
    np.testing.assert_allclose(stats["edges"], np.arange(11) / 10, atol=1e-15)
    np.testing.assert_array_equal(stats["count"], count)
    np.testing.assert_allclose(stats["confidence"], mean_conf, rtol=1e-5)
    np.testing.assert_allclose(stats["accuracy"], mean_acc, rtol=1e-5)
    assert all(stats[key].dtype == np.float64 for key in ("edges", "count", "confidence", "accuracy"))


def test_defaults_and_dtype_argument():
    for metric_class, name in ((ck.metrics.ExpectedCalibrationError, "ece"), (ck.metrics.OverconfidenceError, "oe")):
        metric = metric_class()
        assert (metric.num_bins, metric.from_logits, metric.name) == (15, False, name)
        assert metric_class(dtype="float64").dtype == "float64"


def test_base_class_defaults():
    """A subclass that passes nothing on gets 15 bins on probabilities, as ECE and OE do."""
    metric = ck.metrics.CalibrationMetric()
    assert (metric.num_bins, metric.from_logits) == (15, False)


def test_bin_variables_are_named_float32_sums():
    """Named for checkpoints and summed across replicas under a distribution strategy."""
    metric = ck.metrics.ExpectedCalibrationError(4)
    assert [v.name for v in metric.variables] == ["bin_count", "bin_confidence", "bin_correct", "invalid_count"]
    for variable in metric.variables:
        shape = () if variable.name == "invalid_count" else (4,)
        assert (tuple(variable.shape), variable.dtype, variable.aggregation) == (shape, "float32", "sum")


def test_metric_counts_in_float32_whatever_floatx(rng):
    """With floatx float16 the bins still count 2049 predictions exactly, and weigh them with float32 weights."""
    keras.config.set_floatx("float16")
    c = 0.75 + 2 ** -12  # not a float16 number; 2049 of them add up exactly in float32
    probs = np.tile(np.array([[c, 0.15 - 2 ** -12, 0.1]], "float32"), (2049, 1))
    labels = rng.integers(0, 3, 2049)
    ece = ck.metrics.ExpectedCalibrationError(10, dtype="float32")
    assert all(v.dtype == "float32" for v in ece.variables)
    ece.update_state(labels, probs)
    stats = ece.bin_statistics()
    assert stats["count"][7] == 2049 and stats["confidence"][7] == c
    np.testing.assert_allclose(float(ece.result()), reference(probs, labels, 10)[0], rtol=1e-6)
    oe = ck.metrics.OverconfidenceError(10, dtype="float32")
    oe.update_state(labels[:8], probs[:8], sample_weight=np.full(8, 0.1))  # 0.1 in float16: 0.09998
    np.testing.assert_allclose(oe.bin_statistics()["count"][7], 0.8, rtol=1e-6)


def test_labels_and_bins_above_2048_are_exact_whatever_floatx():
    """2050 classes and 4096 bins with floatx float16, which has neither 2049 nor an odd number above 2048.

    Both predictions fall in bin floor(0.5003 * 4096) = 2049; the one of class 2049 is right, the one of class
    2048 is wrong (label 2049 for both).
    """
    keras.config.set_floatx("float16")
    probs = np.full((2, 2050), 0.4997 / 2049, "float32")
    probs[0, 2049] = probs[1, 2048] = 0.5003
    ece = ck.metrics.ExpectedCalibrationError(4096, dtype="float32")
    ece.update_state(np.array([2049, 2049]), probs)
    stats = ece.bin_statistics()
    assert np.flatnonzero(stats["count"]).tolist() == [2049] and stats["accuracy"][2049] == 0.5


def test_weights_summing_below_one(rng):
    """Bin means divide by the bin's weight and the errors by the total weight, also when these are below 1."""
    _, probs, labels = random_predictions(rng, n=40)
    keep = away_from_bin_edges(probs, 5)
    probs, labels = probs[keep], labels[keep]
    weights = rng.uniform(0.001, 0.01, len(labels))
    ece, oe = ck.metrics.ExpectedCalibrationError(5), ck.metrics.OverconfidenceError(5)
    ece.update_state(labels, probs, sample_weight=weights)
    oe.update_state(labels, probs, sample_weight=weights)
    np.testing.assert_allclose((float(ece.result()), float(oe.result())), reference(probs, labels, 5, weights),
                               rtol=1e-5)
    conf = probs.max(axis=1)
    bins = np.minimum(np.floor(conf * 5).astype(int), 4)
    stats = ece.bin_statistics()
    for b in np.unique(bins):
        in_bin = bins == b
        assert stats["count"][b] < 1
        np.testing.assert_allclose(stats["confidence"][b], np.average(conf[in_bin], weights=weights[in_bin]),
                                   rtol=1e-5)


def test_result_does_not_depend_on_batch_split(rng):
    logits, _, labels = random_predictions(rng, n=400)
    whole, split = ck.metrics.ExpectedCalibrationError(20, True), ck.metrics.ExpectedCalibrationError(20, True)
    whole.update_state(labels, logits)
    for start, stop in [(0, 7), (7, 150), (150, 151), (151, 400)]:
        split.update_state(labels[start:stop], logits[start:stop])
    np.testing.assert_allclose(float(split.result()), float(whole.result()), rtol=1e-6)
    np.testing.assert_allclose(split.bin_statistics()["count"], whole.bin_statistics()["count"])


def test_reset_and_empty_state(rng):
    logits, _, labels = random_predictions(rng, n=50)
    oe = ck.metrics.OverconfidenceError(from_logits=True)
    assert float(oe.result()) == 0.0
    oe.update_state(labels, logits)
    assert float(oe.result()) > 0
    oe.reset_state()
    assert float(oe.result()) == 0.0 and oe.bin_statistics()["count"].sum() == 0


def test_perfectly_calibrated_bins_give_zero_ece():
    # Confidence 0.75 in every sample, 3 of 4 correct.
    probs = np.tile(np.array([[0.75, 0.25]], "float32"), (4, 1))
    ece, oe = ck.metrics.ExpectedCalibrationError(), ck.metrics.OverconfidenceError()
    ece.update_state(np.array([0, 0, 0, 1]), probs)
    oe.update_state(np.array([0, 0, 0, 1]), probs)
    assert float(ece.result()) < 1e-7 and float(oe.result()) < 1e-7


def test_metrics_in_compiled_model_under_jit(rng):
    logits, _, labels = random_predictions(rng, n=256, classes=4)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, inputs)  # passes the logits through
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True,
                  metrics=[ck.metrics.ExpectedCalibrationError(100, from_logits=True),
                           ck.metrics.OverconfidenceError(100, from_logits=True)])
    result = model.evaluate(logits, labels, batch_size=37, verbose=0, return_dict=True)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    expected_ece, expected_oe = reference(probs, labels, 100)
    np.testing.assert_allclose(result["ece"], expected_ece, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(result["oe"], expected_oe, rtol=1e-3, atol=1e-6)


def test_a_bin_count_below_one_fails_at_construction():  # configurations: tests/test_conformance.py
    with pytest.raises(ValueError, match="num_bins"):
        ck.metrics.ExpectedCalibrationError(num_bins=0)


def test_reliability_diagram_png(tmp_path, rng):
    logits, _, labels = random_predictions(rng, n=200)
    ece = ck.metrics.ExpectedCalibrationError(15, from_logits=True)
    ece.update_state(labels, logits)
    path = ck.metrics.plot_reliability_diagram(ece.bin_statistics(), str(tmp_path / "diagram.png"), title="test")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["diagram.pdf", "diagram.png", "diagram.svg"]  # no temporary left
