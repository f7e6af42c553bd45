"""Uncertainty of results: bootstrap intervals over test images and Student's t intervals over seeds.

References are written from the textbook definitions: a loop bootstrap with the same generator, ECE and OE bin by
bin, SciPy's t distribution and t-tests.
"""

import json

import numpy as np
import pytest
import scipy.special
import scipy.stats

import keras_calikd as ck
from keras_calikd.metrics import uncertainty

# NumPy code, run once (in the TensorFlow pass). The one test that also runs a Keras metric compares the NumPy
# values with it; the metric's two backends agree by test_metrics.py (on JAX this test would compile its
# operations for new shapes, about 2 s).
pytestmark = pytest.mark.backend_neutral


def reference_metrics(confidence, correct, nll, bins):
    """Accuracy, NLL, and ECE and OE (the paper's Eq. 14 and 15) bin by bin, of one set of images."""
    n = len(confidence)
    out = {"accuracy": correct.mean(), "nll": nll.mean()}
    for num_bins in bins:
        index = np.minimum(np.floor(confidence * num_bins), num_bins - 1)
        ece = oe = 0.0
        for b in range(num_bins):
            members = index == b
            if members.any():
                acc_b, conf_b = correct[members].mean(), confidence[members].mean()
                ece += members.sum() / n * abs(acc_b - conf_b)
                oe += members.sum() / n * conf_b * max(conf_b - acc_b, 0.0)
        out[f"ece_{num_bins}"], out[f"oe_{num_bins}"] = ece, oe
    return out


def reference_bootstrap(probs, labels, bins, resamples, seed, level):
    """Resample r draws `integers(0, n, size=n)` from one generator: the value, the draws' percentiles and mean."""
    confidence, correct = probs.max(axis=1).astype(np.float64), (probs.argmax(axis=1) == labels).astype(float)
    nll = -np.log(probs[np.arange(len(labels)), labels].astype(np.float64))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        i = rng.integers(0, len(labels), size=len(labels))
        draws.append(reference_metrics(confidence[i], correct[i], nll[i], bins))
    point = reference_metrics(confidence, correct, nll, bins)
    tails = [(1 - level) / 2, (1 + level) / 2]
    return {name: (value, *np.percentile([d[name] for d in draws], [100 * t for t in tails]),
                   np.mean([d[name] for d in draws])) for name, value in point.items()}


def calibrated_probabilities(n, bins, seed=0, classes=4):
    """float32 probabilities whose top class is right with that probability, no confidence near a bin edge."""
    rng = np.random.default_rng(seed)
    top = rng.uniform(1.0 / classes + 0.01, 1.0, size=n)
    for num_bins in bins:  # keep float32 rounding at the edges out of this comparison
        top = np.where(np.abs(top * num_bins - np.round(top * num_bins)) < 1e-3, top - 2e-3, top)
    probs = np.repeat(((1 - top) / (classes - 1))[:, None], classes, axis=1)
    predicted = rng.integers(0, classes, size=n)
    probs[np.arange(n), predicted] = top
    labels = np.where(rng.uniform(size=n) < top, predicted, (predicted + 1 + rng.integers(0, classes - 1, n)) % classes)
    return probs.astype(np.float32), labels


@pytest.mark.parametrize("chunk_elements, interval", [(None, "percentile"), (2 * 257 + 7, "basic")])
def test_bootstrap_equals_a_loop_bootstrap_with_the_same_draws(chunk_elements, interval, monkeypatch):
    if chunk_elements:  # chunks of two resamples and a last one of one: the draws must not depend on it
        monkeypatch.setattr(uncertainty, "_CHUNK_ELEMENTS", chunk_elements)
    probs, labels = calibrated_probabilities(257, bins=(10, 3))
    result = ck.metrics.bootstrap_intervals(probs, labels, bins=(10, 3), resamples=81, seed=5, level=0.9,
                                            interval=interval)
    expected = reference_bootstrap(probs, labels, (10, 3), resamples=81, seed=5, level=0.9)
    assert list(result) == ["accuracy", "nll", "ece_10", "oe_10", "ece_3", "oe_3"]
    for name, (value, low, high, mean) in expected.items():
        if interval == "basic":  # the percentile interval reflected about the value
            low, high = 2 * value - high, 2 * value - low
        ceiling = np.inf if name == "nll" else 1.0  # cut at what the metric can take: [0, 1], NLL [0, inf)
        low, high = np.clip(low, 0.0, ceiling), np.clip(high, 0.0, ceiling)
        estimate = result[name]
        np.testing.assert_allclose([estimate.value, *estimate.interval[:2], estimate.bias],
                                   [value, low, high, mean - value], rtol=1e-12, atol=1e-15, err_msg=name)
        assert estimate.interval.level == 0.9 and estimate.interval.method == f"{interval} bootstrap"
    assert (result.num_examples, result.resamples, result.seed, result.method) == (257, 81, 5, f"{interval} bootstrap")


def test_basic_intervals_stay_within_what_the_metric_can_take():
    # Calibrated predictions on 300 images: the resampled ECEs sit above the ECE (its upward bias), so the
    # reflected (basic) interval's lower end falls below 0 unless it is cut there; all-correct predictions make
    # the accuracy 1, whose reflection cannot pass 1 either.
    probs, labels = calibrated_probabilities(300, bins=(15,))
    result = ck.metrics.bootstrap_intervals(probs, labels, bins=15, resamples=400, seed=1)
    raw = reference_bootstrap(probs, labels, (15,), resamples=400, seed=1, level=0.95)
    value, q_low, q_high, _ = raw["ece_15"]
    assert 2 * value - q_high < 0.0  # the uncut basic interval would say an ECE below 0 is possible
    assert result["ece_15"].interval.low == 0.0 and result["ece_15"].interval.high == pytest.approx(2 * value - q_low)
    for name, estimate in result.items():
        assert 0.0 <= estimate.interval.low <= estimate.interval.high and (name == "nll" or estimate.interval.high <= 1)


def test_accuracy_interval_has_the_binomial_width():
    # Textbook: the 95% interval of a proportion p over n images is about p ± 1.96 sqrt(p (1 - p) / n).
    n, p = 2000, 0.8
    correct = np.arange(n) < p * n
    probs = np.where(correct[:, None], [[0.9, 0.1]], [[0.1, 0.9]]).astype(np.float32)
    result = ck.metrics.bootstrap_intervals(probs, np.zeros(n, int), bins=15, resamples=1000, seed=0)
    assert result["accuracy"].value == p
    np.testing.assert_allclose(result["accuracy"].interval.half_width, 1.96 * np.sqrt(p * (1 - p) / n), rtol=0.1)


# float32 confidences just below an edge k/100 whose float32 product with 100 rounds up to k: the metrics put them
# in bin k, float64 arithmetic in bin k - 1. Each sits beside images of the bin below with another accuracy.
EDGES = (0.29, 0.57, 0.83, 0.96)


def test_point_estimates_are_the_streaming_metrics_values():
    rng = np.random.default_rng(3)
    probs, labels = calibrated_probabilities(120, bins=(100, 15), seed=3, classes=3)
    edge_rows = []
    for edge in EDGES:
        for top, label in [(edge, 0)] * 4 + [(edge - 0.004, 1)] * 4:  # right at the edge, wrong just below
            edge_rows.append(([top, (1 - top) / 2, (1 - top) / 2], label))
    probs = np.concatenate([probs, np.array([r for r, _ in edge_rows], np.float32)])
    labels = np.concatenate([labels, [label for _, label in edge_rows]])
    logits = rng.normal(size=probs.shape) * 2.5  # the same shape: JAX compiles the metrics' operations once
    logit_labels = np.where(rng.uniform(size=len(logits)) < 0.6, logits.argmax(axis=1), rng.integers(0, 3, len(logits)))
    for predictions, y, from_logits in [(probs, labels, False), (logits, logit_labels, True)]:
        result = ck.metrics.bootstrap_intervals(predictions, y, bins=(100, 15), from_logits=from_logits,
                                                resamples=3)
        for name, metric_class in [("ece", ck.metrics.ExpectedCalibrationError),
                                   ("oe", ck.metrics.OverconfidenceError)]:
            for num_bins in (100, 15):
                metric = metric_class(num_bins=num_bins, from_logits=from_logits)
                metric.update_state(y, predictions.astype("float32"))
                np.testing.assert_allclose(result[f"{name}_{num_bins}"].value, float(metric.result()), rtol=1e-5,
                                           atol=1e-7, err_msg=f"{name}_{num_bins}, from_logits={from_logits}")
        log_probs = scipy.special.log_softmax(predictions, axis=1) if from_logits else np.log(predictions)
        np.testing.assert_allclose(result["nll"].value, -log_probs[np.arange(len(y)), y].mean(), rtol=1e-6)
        assert result["accuracy"].value == np.mean(predictions.argmax(axis=1) == y)


def test_bootstrap_records_are_json_and_one_hot_labels_read_as_classes():
    probs, labels = calibrated_probabilities(50, bins=(15,))
    result = ck.metrics.bootstrap_intervals(probs, labels, bins=15, resamples=20)
    one_hot = ck.metrics.bootstrap_intervals(probs, np.eye(4)[labels], bins=15, resamples=20)
    assert one_hot.to_dict() == result.to_dict()
    record = json.loads(json.dumps(result.to_dict()))
    assert record["method"] == "basic bootstrap" and record["resamples"] == 20 and record["level"] == 0.95
    ece = result["ece_15"]
    assert record["estimates"]["ece_15"] == {"value": ece.value, "low": ece.interval.low, "high": ece.interval.high,
                                             "bias": ece.bias}


@pytest.mark.parametrize("change, message", [
    (dict(predictions=np.zeros((0, 3))), "at least one image"),
    (dict(labels=np.zeros(5, int)), "5 labels for 6 images"),
    (dict(predictions=np.full((6, 3), np.nan)), "NaN"),
    (dict(predictions=np.full((6, 3), 2.0)), "from_logits=True"),
    (dict(labels=np.full(6, 3)), r"integer classes in \[0, 3\)"),
    (dict(labels=np.full(6, 0.5)), "integer classes"),
    (dict(level=1.0), "strictly between 0 and 1"),
    (dict(level=0), "strictly between 0 and 1"),
    (dict(resamples=0), "`resamples` must be an integer of at least 1"),
    (dict(bins=()), "no bin count"),
    (dict(bins=(15, 0)), "`bins` must be an integer of at least 1"),
    (dict(interval="bca"), "Unknown bootstrap interval 'bca'"),
])
def test_bootstrap_rejects_bad_input(change, message):
    arguments = dict(predictions=np.full((6, 3), 1 / 3), labels=np.zeros(6, int), resamples=2)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        ck.metrics.bootstrap_intervals(arguments.pop("predictions"), arguments.pop("labels"), **arguments)


def test_t_quantile_and_cdf_match_scipy():
    cases = [(df, level) for df in range(1, 201) for level in (0.95, 0.99)]
    cases += [(df, level) for df in (1, 2, 3, 5, 10, 30, 100, 200, 0.5, 2.5, 1000) for level in (0.5, 0.8, 0.9, 0.999)]
    for df, level in cases:
        p = (1 + level) / 2
        np.testing.assert_allclose(ck.metrics.student_t_quantile(p, df), scipy.stats.t.ppf(p, df), rtol=1e-10,
                                   err_msg=f"df={df}, p={p}")
    for p in (0.001, 0.2, 0.5, 0.7):
        np.testing.assert_allclose(ck.metrics.student_t_quantile(p, 3), scipy.stats.t.ppf(p, 3), rtol=1e-10,
                                   atol=1e-15)
    for t in (-40.0, -2.0, 0.0, 0.3, 3.0, 100.0):
        np.testing.assert_allclose(ck.metrics.student_t_cdf(t, 4), scipy.stats.t.cdf(t, 4), rtol=1e-12)
    for bad in (dict(probability=1.0, df=3), dict(probability=0.0, df=3), dict(probability=0.5, df=0)):
        with pytest.raises(ValueError, match="strictly between|Degrees of freedom"):
            ck.metrics.student_t_quantile(**bad)


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_seed_summary_is_the_t_interval_of_the_mean(level):
    values = {3: 0.021, 0: 0.018, 1: 0.025, 2: 0.0195}
    summary = ck.metrics.summarize_seeds(values, level=level)
    x = np.array([values[s] for s in sorted(values)])
    mean, s = x.sum() / 4, np.sqrt(((x - x.sum() / 4) ** 2).sum() / 3)
    half = scipy.stats.t.ppf((1 + level) / 2, 3) * s / np.sqrt(4)
    assert summary.seeds == (0, 1, 2, 3) and summary.n == 4
    np.testing.assert_allclose([summary.mean, summary.std, *summary.interval[:2]],
                               [mean, s, mean - half, mean + half], rtol=1e-12)
    np.testing.assert_allclose(summary.interval[:2], scipy.stats.ttest_1samp(x, 0).confidence_interval(level),
                               rtol=1e-12)
    assert summary.interval.method == "Student's t" and summary.interval.level == level
    assert json.loads(json.dumps(summary.to_dict()))["interval"]["high"] == summary.interval.high
    one = ck.metrics.summarize_seeds([0.02])
    assert (one.mean, one.std, one.interval) == (0.02, None, None)
    assert ck.metrics.verdict(one) == uncertainty.ONE_SEED


def test_paired_differences_subtract_seed_by_seed():
    a = {2: 0.030, 0: 0.021, 1: 0.026}
    b = {0: 0.018, 1: 0.020, 2: 0.031}  # another insertion order: pairing goes by seed
    difference = ck.metrics.paired_differences(a, b)
    assert difference.seeds == (0, 1, 2)
    np.testing.assert_allclose(difference.values, [0.003, 0.006, -0.001], rtol=1e-12)
    reference = scipy.stats.ttest_rel([0.021, 0.026, 0.030], [0.018, 0.020, 0.031]).confidence_interval(0.95)
    np.testing.assert_allclose(difference.interval[:2], reference, rtol=1e-12)
    with pytest.raises(ValueError, match=r"different seeds \(only in A: \[2\], only in B: \[3\]\)"):
        ck.metrics.paired_differences(a, {0: 0.1, 1: 0.1, 3: 0.1})
    with pytest.raises(ValueError, match="seed -> value mappings"):
        ck.metrics.paired_differences([0.1, 0.2], [0.1, 0.3])


def test_verdict_decides_only_when_the_interval_excludes_zero():
    noise = np.array([1.0, -1.0, 1.5, -1.2, 0.3])
    baseline = {seed: 0.03 + 0.002 * e for seed, e in enumerate(noise[::-1])}
    # A 0.010 below the baseline, seed by seed, with a spread well inside the gap, then one that covers it.
    tight = {seed: value - 0.010 + 0.001 * noise[seed] for seed, value in baseline.items()}
    wide = {seed: value - 0.010 + 0.02 * noise[seed] for seed, value in baseline.items()}
    assert ck.metrics.verdict(ck.metrics.paired_differences(tight, baseline)) == "lower"
    assert ck.metrics.verdict(ck.metrics.paired_differences(baseline, tight)) == "higher"
    covered = ck.metrics.paired_differences(wide, baseline)
    assert covered.mean < 0 and covered.interval.low < 0 < covered.interval.high
    assert ck.metrics.verdict(covered) == "no difference detected at 5 seeds"
    assert ck.metrics.verdict(ck.metrics.paired_differences({0: 0.02}, {0: 0.05})) == uncertainty.ONE_SEED


def test_resolvable_difference_is_the_paired_half_width():
    differences = {0: 0.004, 1: -0.002, 2: 0.007, 3: 0.001}
    x = np.array(list(differences.values()))
    low, high = scipy.stats.ttest_1samp(x, 0).confidence_interval(0.95)
    np.testing.assert_allclose(ck.metrics.resolvable_difference(differences, seeds=4), (high - low) / 2,
                               rtol=1e-12)
    np.testing.assert_allclose(ck.metrics.resolvable_difference(x, seeds=1, level=0.9),
                               scipy.stats.t.ppf(0.95, 3) * x.std(ddof=1), rtol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: ck.metrics.summarize_seeds([]), "non-empty"),
    (lambda: ck.metrics.summarize_seeds({0: 0.1, 7: float("nan")}), "NaN or infinite value at seed 7"),
    (lambda: ck.metrics.summarize_seeds(["a", "b"]), "must be numbers"),
    (lambda: ck.metrics.summarize_seeds([0.1, 0.2], level=95), "strictly between 0 and 1"),
    (lambda: ck.metrics.resolvable_difference([0.1]), "at least 2 seeds"),
    (lambda: ck.metrics.resolvable_difference([0.1, 0.2], seeds=0), "`seeds` must be an integer of at least 1"),
])
def test_seed_functions_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _tool():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dev",
                        "benchmark_uncertainty.py")
    spec = importlib.util.spec_from_file_location("benchmark_uncertainty", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_tool_population_and_runs(capsys):
    tool = _tool()
    # The population's top-class probability is 1 - 0.9 u with u ~ Beta(1, 5) (mean 1/6): E[c] = 0.85, and every
    # bin of an overconfident population has the gap (1 - slope) conf_b, so ECE = (1 - slope) E[c] at any bins.
    calibrated, over = tool.population(1.0, (100, 15), points=100_000), tool.population(0.9, (7,), points=100_000)
    np.testing.assert_allclose([calibrated["accuracy"], calibrated["ece_100"], calibrated["oe_15"]], [0.85, 0, 0],
                               atol=1e-9)
    np.testing.assert_allclose([over["accuracy"], over["ece_7"]], [0.9 * 0.85, 0.1 * 0.85], rtol=1e-8)
    probs, labels = tool.draw_test_set(20000, 0.9, np.random.default_rng(0))
    assert abs(np.mean(labels == 0) - over["accuracy"]) < 4 * np.sqrt(0.25 / 20000)
    assert tool.main(["coverage", "--trials", "2", "--images", "300", "--resamples", "10", "--bins", "15"]) == 0
    assert tool.main(["time", "--images", "300", "--resamples", "5", "--repeats", "1", "--bins", "15"]) == 0
    out = capsys.readouterr().out
    assert "| ece_15 | 0.0425 |" in out and "| 300 | 5 | 15 |" in out
