#!/usr/bin/env python
"""Measures `keras_calikd.metrics.bootstrap_intervals`: its time and memory, and how often its intervals cover.

    python dev/benchmark_uncertainty.py time --images 10000 --resamples 1000,2000 --bins 100,15
    python dev/benchmark_uncertainty.py coverage --trials 200 --slope 0.95

`time` runs the bootstrap `--repeats` times on random logits and prints the wall and CPU seconds and the growth of
the process's peak resident memory. `coverage` draws `--trials` test sets from a known population and counts how
often the percentile and the basic intervals hold the population's value. The population: 10 classes; the top
class has probability `c = 1 - 0.9 u` with `u ~ Beta(1, 5)` (mean 0.85), the rest shared equally; the top class
is right with probability `slope * c` (`slope < 1`: overconfident, `1`: calibrated). Its values are integrals over
`c` (midpoint rule on 10^6 points): accuracy `E[slope c]`, ECE and OE from each bin's mass and mean confidence
(every bin has the gap `(1 - slope) conf_b`), NLL `E[-slope c log c - (1 - slope c) log((1 - c) / 9)]`.
Prints Markdown tables (docs/uncertainty.md).
"""

import argparse
import os
import platform
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # runs from a checkout

from keras_calikd.metrics.uncertainty import bootstrap_intervals  # noqa: E402

CLASSES, BETA = 10, 5.0


def _processor():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def _integers(text):
    return tuple(int(v) for v in text.split(","))


def measure_time(images, resamples, bins, repeats, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(images, CLASSES)) * 3.0
    labels = np.where(rng.uniform(size=images) < 0.8, logits.argmax(axis=1), rng.integers(0, CLASSES, images))
    rows = []
    for r in resamples:
        bootstrap_intervals(logits, labels, bins=bins, from_logits=True, resamples=2)  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            bootstrap_intervals(logits, labels, bins=bins, from_logits=True, resamples=r)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        rows.append((images, r, ",".join(map(str, bins)), min(walls), float(np.median(walls)), min(cpus), grown))
    print("| images | resamples | bins | wall s (min) | wall s (median) | CPU s (min) | peak RSS growth MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| {:,} | {:,} | {} | {:.3f} | {:.3f} | {:.3f} | {:.0f} |".format(*row))
    return rows


def draw_test_set(images, slope, rng):
    c = 1.0 - 0.9 * rng.beta(1.0, BETA, size=images)
    probs = np.repeat(((1.0 - c) / (CLASSES - 1))[:, None], CLASSES, axis=1)
    probs[:, 0] = c
    wrong = rng.integers(1, CLASSES, size=images)
    return probs, np.where(rng.uniform(size=images) < slope * c, 0, wrong)


def population(slope, bins, points=1_000_000):
    u = (np.arange(points) + 0.5) / points
    c, weight = 1.0 - 0.9 * u, BETA * (1.0 - u) ** (BETA - 1.0) / points  # Beta(1, 5) density times du
    values = {"accuracy": np.sum(weight * slope * c),
              "nll": np.sum(weight * (-slope * c * np.log(c) - (1 - slope * c) * np.log((1 - c) / (CLASSES - 1))))}
    for b in bins:
        index = np.minimum(np.floor(c * b), b - 1).astype(int)
        mass = np.bincount(index, weight, minlength=b)
        conf = np.divide(np.bincount(index, weight * c, minlength=b), mass, out=np.zeros(b), where=mass > 0)
        gap = (1.0 - slope) * conf  # conf_b - acc_b, the same sign in every bin
        values[f"ece_{b}"] = np.sum(mass * np.abs(gap))
        values[f"oe_{b}"] = np.sum(mass * conf * np.maximum(gap, 0.0))
    return {name: float(v) for name, v in values.items()}


def measure_coverage(trials, images, resamples, slope, bins, seed=0):
    truth = population(slope, bins)
    rng = np.random.default_rng(seed)
    counts = {name: {"percentile": 0, "basic": 0, "error": [], "half": [], "bias": []} for name in truth}
    started = time.perf_counter()
    for trial in range(trials):
        probs, labels = draw_test_set(images, slope, rng)
        result = bootstrap_intervals(probs, labels, bins=bins, resamples=resamples, seed=trial)
        for name, estimate in result.items():
            low, high = estimate.interval[:2]
            count = counts[name]
            count["percentile"] += low <= truth[name] <= high
            count["basic"] += 2 * estimate.value - high <= truth[name] <= 2 * estimate.value - low
            count["error"].append(estimate.value - truth[name])
            count["half"].append(estimate.interval.half_width)
            count["bias"].append(estimate.bias)
    print(f"{trials} test sets of {images:,} images, {resamples:,} resamples, slope {slope}: "
          f"{time.perf_counter() - started:.0f} s")
    print("| metric | population | mean error of the value | mean bootstrap bias | mean half-width "
          "| percentile covers | basic covers |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, count in counts.items():
        print(f"| {name} | {truth[name]:.4f} | {np.mean(count['error']):+.4f} | {np.mean(count['bias']):+.4f} "
              f"| {np.mean(count['half']):.4f} | {count['percentile'] / trials:.0%} | {count['basic'] / trials:.0%} |")
    return truth, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    timing = sub.add_parser("time", help="seconds and memory of one bootstrap")
    timing.add_argument("--images", type=int, default=10000)
    timing.add_argument("--resamples", type=_integers, default=(1000, 2000))
    timing.add_argument("--bins", type=_integers, default=(100, 15))
    timing.add_argument("--repeats", type=int, default=5)
    coverage = sub.add_parser("coverage", help="how often the intervals hold a known population's value")
    coverage.add_argument("--trials", type=int, default=200)
    coverage.add_argument("--images", type=int, default=10000)
    coverage.add_argument("--resamples", type=int, default=1000)
    coverage.add_argument("--slope", type=float, default=0.95)
    coverage.add_argument("--bins", type=_integers, default=(100, 15))
    args = parser.parse_args(argv)
    print(f"Machine: {os.cpu_count()} CPUs, {_processor()}, NumPy {np.__version__}")
    if args.command == "time":
        measure_time(args.images, args.resamples, args.bins, args.repeats)
    else:
        measure_coverage(args.trials, args.images, args.resamples, args.slope, args.bins)
    return 0


if __name__ == "__main__":
    sys.exit(main())
