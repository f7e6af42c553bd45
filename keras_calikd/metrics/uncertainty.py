"""How sure a number is: bootstrap intervals over test images, and Student's t intervals over seeds.

Two sources of noise make a calibration number uncertain, and each has its
own interval here:

- **The test set** (one run): `bootstrap_intervals` resamples the test images
  with replacement and gives basic (or percentile) bootstrap intervals for
  accuracy, NLL and the ECE and OE at each bin count.
- **Training** (several runs that differ only in their seed):
  `summarize_seeds` gives the mean, the sample standard deviation and a
  Student's t interval of the mean; `paired_differences` subtracts two methods
  seed by seed, and `verdict` calls the difference "lower" or "higher" only
  when its interval excludes zero. `resolvable_difference` says how large a
  difference a number of seeds can tell from zero.

Pure NumPy (the t quantile is `student_t.student_t_quantile`); the results are
small records with `to_dict()` for JSON.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from keras_calikd.metrics.student_t import student_t_quantile

#: Resamples of `bootstrap_intervals`. The Monte-Carlo error of a quantile of R resamples is about
#: sqrt(p (1 - p) / R) / density at the bound: for the 2.5% and 97.5% bounds of a near-normal bootstrap
#: distribution, 2.7 / sqrt(R) of its standard deviation, that is 3% of the interval's half-width at R = 2000
#: (4.3% at 1000). 2000 resamples of 10,000 images at two bin counts take 0.64 s of CPU (docs/uncertainty.md).
DEFAULT_RESAMPLES = 2000
#: Confidence level of every interval unless asked otherwise.
DEFAULT_LEVEL = 0.95
#: Smallest probability of the true class in the NLL of probabilities (Keras' epsilon): a zero gives 16.1, not inf.
PROBABILITY_FLOOR = 1e-7
#: Bootstrap intervals from the resampled values' quantiles `(q_low, q_high)` and the value `v`: the percentile
#: interval is `[q_low, q_high]`; the basic interval `[2 v - q_high, 2 v - q_low]` reflects it about the value,
#: which takes off the bias the bootstrap sees (the resampled values' mean minus `v`) instead of adding it again.
BOOTSTRAP_INTERVALS = {"percentile": lambda value, low, high: (low, high),
                       "basic": lambda value, low, high: (2.0 * value - high, 2.0 * value - low)}
#: `Interval.method` of the intervals over seeds.
STUDENT_T = "Student's t"
#: Verdicts of `verdict`.
LOWER, HIGHER = "lower", "higher"
ONE_SEED = "one seed cannot decide (no interval from one seed: run at least 2)"
_CHUNK_ELEMENTS = 1 << 21  # resample-by-image weights per chunk: about 100 MB of working arrays at most


class Interval(NamedTuple):
    """A confidence interval `[low, high]` at `level` (e.g. 0.95), computed by `method`."""

    low: float
    high: float
    level: float
    method: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def excludes(self, value: float = 0.0) -> bool:
        """Whether `value` lies outside the interval (a difference's interval that excludes 0 decides)."""
        return not self.low <= value <= self.high

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "level": self.level, "method": self.method}


class Estimate(NamedTuple):
    """A number measured on the whole test set, its bootstrap interval, and the bootstrap's estimate of its bias.

    `bias` is the mean of the resampled values minus `value`. Where it is not small against the interval's
    half-width (ECE with many sparse bins), the binned estimator's bias, not the test set's noise, dominates.
    """

    value: float
    interval: Interval
    bias: float

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.interval.low, "high": self.interval.high, "bias": self.bias}


@dataclasses.dataclass(frozen=True)
class BootstrapResult(Mapping):
    """Estimates by name (`accuracy`, `nll`, `ece_<B>`, `oe_<B>`) and how their intervals were drawn."""

    estimates: Dict[str, Estimate]
    num_examples: int
    resamples: int
    seed: int
    level: float
    method: str

    def __getitem__(self, name: str) -> Estimate:
        return self.estimates[name]

    def __iter__(self):
        return iter(self.estimates)

    def __len__(self) -> int:
        return len(self.estimates)

    def to_dict(self) -> dict:
        return {"method": self.method, "level": self.level, "resamples": self.resamples, "seed": self.seed,
                "num_examples": self.num_examples,
                "estimates": {name: estimate.to_dict() for name, estimate in self.estimates.items()}}


@dataclasses.dataclass(frozen=True)
class SeedSummary:
    """Values of one number over seeds: their mean, sample standard deviation and t interval of the mean.

    `std` and `interval` are None for one seed. `seeds` is None when the values came without seeds.
    """

    values: Tuple[float, ...]
    seeds: Optional[tuple]
    mean: float
    std: Optional[float]
    interval: Optional[Interval]
    level: float

    @property
    def n(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "level": self.level,
                "interval": None if self.interval is None else self.interval.to_dict(),
                "seeds": None if self.seeds is None else list(self.seeds), "values": list(self.values)}


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < level < 1.0:
        raise ValueError(f"The confidence level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}.")
    return float(level)


def _count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer of at least {minimum}, got {value!r}.")
    return int(value)


# ---------------------------------------------------------------------------------------------------------------
# One run: the bootstrap over test images.


def _per_image(predictions, labels, from_logits: bool):
    """Each image's top-class confidence (float32, as the streaming metrics see it), correctness and NLL."""
    predictions = np.asarray(predictions, dtype=np.float64)
    what = "logits" if from_logits else "probabilities"
    if predictions.ndim != 2 or predictions.shape[0] == 0 or predictions.shape[1] == 0:
        raise ValueError(f"The {what} must be an (images, classes) array with at least one image, got shape "
                         f"{predictions.shape}.")
    bad = np.flatnonzero(~np.isfinite(predictions).all(axis=1))
    if bad.size:
        raise ValueError(f"The {what} hold NaN or infinite values (row {bad[0]} and {bad.size - 1} more).")
    if not from_logits and (predictions.min() < 0.0 or predictions.max() > 1.0):
        raise ValueError("The probabilities lie outside [0, 1]; pass from_logits=True for logits.")
    labels = np.asarray(labels)
    if labels.ndim == predictions.ndim and labels.shape[-1] != 1:
        labels = labels.argmax(axis=-1)  # one-hot labels, as the streaming metrics read them
    labels = labels.reshape(-1)
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels for {len(predictions)} images: give one label per image.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= predictions.shape[1]:
        raise ValueError(f"The labels must be integer classes in [0, {predictions.shape[1]}) (or one-hot), got "
                         f"{labels.dtype} values from {labels.min()} to {labels.max()}.")
    rows = np.arange(len(labels))
    if from_logits:
        shifted = predictions - predictions.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        probs, nll = np.exp(log_probs), -log_probs[rows, labels]
    else:
        probs, nll = predictions, -np.log(np.maximum(predictions[rows, labels], PROBABILITY_FLOOR))
    confidence = probs.max(axis=1).astype(np.float32)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    return confidence, correct, nll


class _Binned:
    """Per-image numbers sorted by confidence, so that every equal-width bin is a contiguous run of columns."""

    def __init__(self, confidence, correct, nll, bins: Sequence[int]):
        order = np.argsort(confidence, kind="stable")
        self.rank = np.empty_like(order)  # image i is column rank[i]
        self.rank[order] = np.arange(len(order))
        sorted_confidence = confidence[order]
        self.confidence = sorted_confidence.astype(np.float64)
        self.correct, self.nll = correct[order], nll[order]
        self.starts = {}
        for num_bins in bins:  # float32 arithmetic, as in the metrics: an image on a bin edge falls alike
            index = np.minimum(np.floor(sorted_confidence * np.float32(num_bins)), num_bins - 1)
            self.starts[num_bins] = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])

    def statistics(self, weights) -> Dict[str, np.ndarray]:
        """The metrics of each row of `weights` (resample by image: how often each image was drawn)."""
        total = float(len(self.correct))
        calibration = {}
        weighted_confidence, weighted_correct = weights * self.confidence, weights * self.correct
        for num_bins, starts in self.starts.items():
            count = np.add.reduceat(weights, starts, axis=1)
            confidence = np.add.reduceat(weighted_confidence, starts, axis=1)
            correct = np.add.reduceat(weighted_correct, starts, axis=1)
            accuracy = correct.sum(axis=1) / total  # sums of whole numbers: the same from every bin count
            mean_confidence = np.divide(confidence, count, out=np.zeros_like(confidence), where=count > 0)
            calibration[f"ece_{num_bins}"] = np.abs(correct - confidence).sum(axis=1) / total
            calibration[f"oe_{num_bins}"] = (mean_confidence * np.maximum(confidence - correct, 0.0)).sum(axis=1) \
                / total
        return {"accuracy": accuracy, "nll": np.dot(weights, self.nll) / total, **calibration}


def metric_range(name: str) -> Tuple[float, float]:
    """The values metric `name` can take: accuracy, ECE and OE in [0, 1], NLL in [0, inf)."""
    return (0.0, math.inf) if name == "nll" else (0.0, 1.0)


def bootstrap_intervals(predictions, labels, *, bins: Union[int, Sequence[int]] = (100, 15),
                        from_logits: bool = False, level: float = DEFAULT_LEVEL,
                        resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                        interval: str = "basic") -> BootstrapResult:
    """Bootstrap intervals over test images for accuracy, NLL, and ECE and OE at each bin count.

    Resample `r` draws N image indices with replacement,
    `np.random.default_rng(seed).integers(0, N, size=N)` in turn for r = 0, 1, ...
    (one generator, so the draws do not depend on how they are batched). With
    `q_low`, `q_high` the `(1 - level) / 2` and `(1 + level) / 2` quantiles of
    the resampled values (`np.quantile`, linear interpolation), the percentile
    interval is `[q_low, q_high]` and the basic interval (the default)
    `[2 v - q_high, 2 v - q_low]`, cut at the metric's range (`metric_range`:
    reflected about a small ECE, its lower end can fall below 0, which no ECE
    reaches; the cut changes no interval's coverage, since the metric's true
    value lies in its range). The values `v` are the metrics' on the whole
    test set: ECE and OE as `ExpectedCalibrationError` and
    `OverconfidenceError` define them (equal-width bins on the top-class
    confidence, rounded to float32 as those metrics see it), accuracy of the
    argmax, NLL as the mean of `-log p(label)`.

    Why basic: binned ECE is biased upwards (noise in `acc_b - conf_b` becomes
    error under `|.|`, the more the fewer images a bin holds), and resampling
    adds the same noise again, so the resampled values sit above the value
    (`Estimate.bias`). The percentile interval adds that bias a second time;
    the basic interval takes it off once. On 10,000 simulated test images
    (docs/uncertainty.md, which says how to repeat the study) the 95%
    intervals of ECE with 100 bins held the population's ECE in 88% (basic)
    and 8% (percentile) of 200 test sets for an overconfident population (ECE
    0.0425), and in 40% and 0% for a nearly calibrated one (ECE 0.0085), whose
    test-set ECE is 0.014 too high on average. With 15 bins: 90-91% against
    37-88%. Accuracy and NLL: 92-96% with either. So an interval of ECE with
    100 bins on 10,000 images is no 95% interval of the population's ECE near
    calibration: the estimator's bias exceeds the interval's half-width there.

    Vectorised: resamples are drawn in chunks of at most 2**21 image draws, turned
    into a (resamples, images) count matrix with one `bincount`, and reduced over
    the confidence-sorted images, in which every bin is a contiguous run
    (`np.add.reduceat`). 10,000 images, 2000 resamples and two bin counts take
    0.64 s of CPU on this project's 2-core machine (about 80 MiB of working
    memory; docs/uncertainty.md).

    Args:
        predictions: (images, classes) probabilities, or logits with `from_logits=True`.
        labels: Integer classes (images,) or one-hot labels (images, classes).
        bins: Bin counts of ECE and OE.
        from_logits: Whether `predictions` are logits.
        level: Confidence level of the intervals, in (0, 1).
        resamples: Number of bootstrap resamples (see `DEFAULT_RESAMPLES` for the Monte-Carlo error).
        seed: Seed of the resampling generator.
        interval: `"basic"` or `"percentile"` (see above and `BOOTSTRAP_INTERVALS`).

    Returns:
        A `BootstrapResult`: `result["ece_100"].value`, `result["ece_100"].interval.low`, ...;
        `result.to_dict()` for JSON.

    Example:

    ```python
    result = ck.metrics.bootstrap_intervals(logits, labels, bins=(100, 15), from_logits=True)
    low, high = result["ece_100"].interval[:2]
    ```
    """
    level = _check_level(level)
    resamples = _count("resamples", resamples)
    seed = _count("seed", seed, minimum=0)
    if interval not in BOOTSTRAP_INTERVALS:
        raise ValueError(f"Unknown bootstrap interval {interval!r}; choose one of {sorted(BOOTSTRAP_INTERVALS)}.")
    bins = (bins,) if isinstance(bins, numbers.Integral) else tuple(bins)
    if not bins:
        raise ValueError("`bins` names no bin count; give at least one, e.g. bins=(100, 15).")
    bins = tuple(_count("bins", b) for b in bins)
    binned = _Binned(*_per_image(predictions, labels, from_logits), bins)
    num_images = len(binned.correct)
    values = {name: float(v[0]) for name, v in binned.statistics(np.ones((1, num_images))).items()}
    draws = {name: np.empty(resamples) for name in values}
    generator = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // num_images)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        cells = binned.rank[generator.integers(0, num_images, size=(rows, num_images))]
        cells += np.arange(rows)[:, None] * num_images
        weights = np.bincount(cells.ravel(), minlength=rows * num_images).reshape(rows, num_images)
        for name, column in binned.statistics(weights.astype(np.float64)).items():
            draws[name][start:start + rows] = column
    tail, method = (1.0 - level) / 2.0, f"{interval} bootstrap"
    estimates = {}
    for name, value in values.items():
        low, high = BOOTSTRAP_INTERVALS[interval](value, *np.quantile(draws[name], [tail, 1.0 - tail]).tolist())
        floor, ceiling = metric_range(name)
        low, high = min(max(low, floor), ceiling), min(max(high, floor), ceiling)
        estimates[name] = Estimate(value, Interval(low, high, level, method), float(draws[name].mean()) - value)
    return BootstrapResult(estimates, num_images, resamples, seed, level, method)


# ---------------------------------------------------------------------------------------------------------------
# Several runs: Student's t over seeds.

SeedValues = Union[Mapping, Sequence[float], SeedSummary]


def _seed_values(values: SeedValues, what: str = "values"):
    """`(seeds or None, float array)` of a seed -> value mapping, a sequence of values or a `SeedSummary`."""
    if isinstance(values, SeedSummary):
        return values.seeds, np.asarray(values.values, dtype=np.float64)
    if isinstance(values, Mapping):
        seeds = tuple(sorted(values))
        array = [values[seed] for seed in seeds]
    else:
        seeds, array = None, values
    try:
        array = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"The {what} must be numbers (one per seed), got {values!r}.") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"The {what} must be a non-empty list of numbers (one per seed), or a seed -> value "
                         f"mapping, got {values!r}.")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        where = f"seed {seeds[bad[0]]!r}" if seeds is not None else f"position {bad[0]}"
        raise ValueError(f"The {what} hold a NaN or infinite value at {where}; leave out the failed run.")
    return seeds, array


def _t_half_width(std: float, n: int, level: float, df: int) -> float:
    return student_t_quantile(1.0 - (1.0 - level) / 2.0, df) * std / math.sqrt(n)


def summarize_seeds(values: SeedValues, level: float = DEFAULT_LEVEL) -> SeedSummary:
    """Mean, sample standard deviation and Student's t interval of the mean over seeds.

    The interval is `mean ± t_{(1 + level) / 2, n - 1} * s / sqrt(n)` with the
    sample standard deviation `s` (divisor n - 1). One seed has neither `s` nor
    an interval (both None).

    Args:
        values: A seed -> value mapping (e.g. `{0: 0.021, 1: 0.018, 2: 0.025}`), or the values alone.
        level: Confidence level of the interval, in (0, 1).

    Example:

    ```python
    summary = ck.metrics.summarize_seeds({0: 0.021, 1: 0.018, 2: 0.025})
    summary.mean, summary.std, summary.interval
    ```
    """
    level = _check_level(level)
    seeds, array = _seed_values(values)
    mean, n = float(array.mean()), len(array)
    if n == 1:
        return SeedSummary(tuple(array.tolist()), seeds, mean, None, None, level)
    std = float(array.std(ddof=1))
    half = _t_half_width(std, n, level, n - 1)
    return SeedSummary(tuple(array.tolist()), seeds, mean, std,
                       Interval(mean - half, mean + half, level, STUDENT_T), level)


def paired_differences(a: Mapping, b: Mapping, level: float = DEFAULT_LEVEL) -> SeedSummary:
    """Method A minus method B, seed by seed, summarised with its t interval (see `summarize_seeds`).

    Pairing removes what the two runs of one seed share (the same teacher,
    data order and initialisation), so the interval of the paired difference
    is narrower than the two intervals of the methods suggest.

    Args:
        a, b: seed -> value mappings of the two methods, over the same seeds.
        level: Confidence level of the interval.

    Raises:
        ValueError: the two methods were not run with the same seeds.

    Example:

    ```python
    difference = ck.metrics.paired_differences(ece_kd_mixup, ece_kd)  # KD + mixup minus KD
    ck.metrics.verdict(difference)  # "lower", "higher" or "no difference detected at 3 seeds"
    ```
    """
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise ValueError("paired_differences needs seed -> value mappings for both methods, so that the runs "
                         f"are paired by seed; got {type(a).__name__} and {type(b).__name__}.")
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(f"The two methods were run with different seeds (only in A: {only_a}, only in B: "
                         f"{only_b}); pair runs of the same seeds: run the missing ones, or leave those out.")
    seeds_a, values_a = _seed_values(a, "values of method A")
    _, values_b = _seed_values(b, "values of method B")
    return summarize_seeds(dict(zip(seeds_a, (values_a - values_b).tolist())), level)


def verdict(difference: SeedSummary) -> str:
    """"lower" or "higher" when the interval of a difference (A minus B) excludes zero, else why not.

    Returns:
        `LOWER` (A is lower than B), `HIGHER`, `"no difference detected at n seeds"`, or `ONE_SEED`
        when there is no interval. Identical nonzero differences at every seed have a zero-width interval
        and decide.
    """
    if difference.interval is None:
        return ONE_SEED
    if not difference.interval.excludes(0.0):
        return f"no difference detected at {difference.n} seeds"
    return LOWER if difference.interval.high < 0.0 else HIGHER


def resolvable_difference(differences: SeedValues, seeds: int = 1, level: float = DEFAULT_LEVEL) -> float:
    """The smallest difference that `seeds` paired seeds tell from zero, given measured paired differences.

    With `s` the sample standard deviation of the m measured differences, the
    interval of a mean over `seeds` new differences has the half-width
    `t_{(1 + level) / 2, m - 1} * s / sqrt(seeds)` (the spread is the one
    measured, hence m - 1 degrees of freedom). With `seeds = m` it is the
    half-width of `paired_differences`' own interval. A smaller difference lies
    inside the noise.

    Args:
        differences: Paired differences (A minus B) of at least two seeds.
        seeds: The number of seeds the statement is about (1: "one seed cannot resolve less than X").
        level: Confidence level.

    Example:

    ```python
    width = ck.metrics.resolvable_difference(paired_differences(ece_kd_mixup, ece_kd), seeds=1)
    ```
    """
    level = _check_level(level)
    seeds = _count("seeds", seeds)
    _, array = _seed_values(differences, "differences")
    if len(array) < 2:
        raise ValueError("resolvable_difference needs differences of at least 2 seeds to measure their spread.")
    return _t_half_width(float(array.std(ddof=1)), seeds, level, len(array) - 1)
