"""Runs that differ only in their seed, as one table cell: mean, spread and Student's t interval over the seeds.

Shared by `calikd-report` and `calikd-quickstart`. A run's `results.json`
holds its `seed` and a `configuration` id that runs differing only in their
seed share (`Experiment.configuration`); the runs of one cell must be seeds
of one configuration. Per cell: the mean, the sample standard deviation and
the 95% Student's t interval of the mean (`keras_calikd.metrics.summarize_seeds`).
Between two columns of a teacher/student pair (e.g. KD + mixup and KD, from
the same teacher): their difference seed by seed over the seeds both ran,
with its t interval (`paired_differences`), and a verdict that says "lower"
or "higher" only when that interval excludes zero (`verdict`).
"""

from __future__ import annotations

import csv
import io
import statistics
from typing import Callable, Dict, List, Optional, Sequence

from keras_calikd.metrics.uncertainty import ONE_SEED, SeedSummary, paired_differences, summarize_seeds, verdict

#: How the intervals over seeds are computed: the report's `--help`, its captions and the quickstart summary say it.
INTERVALS_TEXT = (
    "Runs whose results.json share a `configuration` (they differ only in their seed) fill one cell: "
    "mean ± sample standard deviation (divisor n - 1) [95% Student's t interval of the mean: "
    "mean ± t(0.975, n - 1) · sd / sqrt(n)] over their n seeds. Paired differences (A - B) subtract two "
    "methods of one teacher/student pair seed by seed, over the seeds both ran, with the t interval of the "
    "mean difference; the verdict is 'lower' or 'higher' only when that interval excludes zero, otherwise "
    "'no difference detected at n seeds'.")
#: Words for `Experiment.select_by` (`results.json`'s `select_by`) in reports.
SELECT_BY_TEXT = {"accuracy": "validation accuracy", "nll": "validation NLL", "ece": "validation ECE"}
#: The columns each method is compared with, when the pair has them: plain KD and the student from scratch.
REFERENCES = ("KD", "Student")


def seed_key(result: dict):
    """The seed that pairs runs (`results.json`'s `seed`; None for runs from before it was stored)."""
    return result.get("seed")


def cell_runs(runs: Sequence[dict], what: str) -> List[dict]:
    """The runs of one cell, by seed; they must be seeds of one configuration.

    Args:
        runs: The `results.json` dicts that fall in the cell.
        what: The cell in words, for the error.

    Raises:
        ValueError: two runs of the cell differ in more than their seed, share a seed, or lack the `seed` and
            `configuration` that tell it (runs from before they were stored).
    """
    if len(runs) <= 1:
        return list(runs)
    configurations = {r.get("configuration") for r in runs}
    seeds = [seed_key(r) for r in runs]
    if None in configurations or None in seeds or len(configurations) > 1 or len(set(seeds)) < len(seeds):
        names = ", ".join(sorted(str(r.get("name")) for r in runs))
        reason = ("a run lacks its seed and configuration id (rerun it to store them)"
                  if None in configurations or None in seeds else
                  "they differ in more than their seed" if len(configurations) > 1 else "two of them share a seed")
        raise ValueError(f"Several runs are {what}: {names}; {reason}. Report them separately (pass only one of "
                         "their folders) so that each cell holds the seeds of one configuration.")
    return sorted(runs, key=seed_key)


def cell_summary(runs: Sequence[dict], value_of: Callable[[dict], Optional[float]]) -> Optional[SeedSummary]:
    """`summarize_seeds` of `value_of(run)` over a cell's runs (those that have the value), or None."""
    values = {seed_key(r): value_of(r) for r in runs}
    values = {seed: value for seed, value in values.items() if value is not None}
    if not values:
        return None
    if None in values:  # one run from before seeds were stored
        return summarize_seeds(list(values.values()))
    return summarize_seeds(values)


def spread_text(summary: SeedSummary, digits: int) -> str:
    """`" ± sd [low, high]"` of a cell over several seeds; empty for one seed."""
    if summary.interval is None:
        return ""
    return f" ± {summary.std:.{digits}f} [{summary.interval.low:.{digits}f}, {summary.interval.high:.{digits}f}]"


def cell_text(summary: SeedSummary, digits: int) -> str:
    """`"mean"` for one seed, `"mean ± sd [low, high]"` for several."""
    return f"{summary.mean:.{digits}f}" + spread_text(summary, digits)


def seed_counts(table: dict) -> List[int]:
    """The distinct numbers of seeds of a table's cells, ascending."""
    return sorted({s.n for row in table["rows"] for s in row.get("summaries", {}).values()})


def selection_text(runs: Sequence[dict]) -> str:
    """Which validation metric picked the runs' checkpoints (`results.json`'s `select_by`).

    Runs from before `select_by` was stored picked by validation accuracy, the only choice then.
    """
    counts: Dict[str, int] = {}
    for r in runs:
        key = r.get("select_by", "accuracy")
        counts[key] = counts.get(key, 0) + 1
    if len(counts) == 1:
        (key,) = counts
        return f"Each run's checkpoint is its best epoch by {SELECT_BY_TEXT.get(key, key)} (select_by)."
    parts = ", ".join(f"{SELECT_BY_TEXT.get(k, k)} ({n} runs)" for k, n in sorted(counts.items()))
    return f"Checkpoints are the best epochs by: {parts} (select_by)."


def comparisons(table: dict, references: Sequence[str] = REFERENCES, exclude: Sequence[str] = ("Teacher",)
                ) -> List[dict]:
    """Paired differences of every student-side column against each reference column of the same pair.

    Each pair of columns is compared once: a reference is compared with the references after it, not
    with those before it (with the defaults: KD - Student, not Student - KD).

    Args:
        table: A `report.pairs_table` (its rows carry `summaries`: column -> `SeedSummary` with seeds).
        references: The columns to compare with, when a pair has them.
        exclude: Columns compared with nothing (the teacher: one run, not trained per seed).

    Returns:
        One dict per (pair, metric, column, reference): `{"pair", "metric", "column", "reference", "seeds":
        [the seeds both ran], "difference": SeedSummary of column - reference, "verdict"}`.
    """
    found = []
    for row in table["rows"]:
        summaries = row.get("summaries", {})
        for reference in references:
            if reference not in summaries or summaries[reference].seeds is None:
                continue
            base = dict(zip(summaries[reference].seeds, summaries[reference].values))
            skip = {reference, *exclude, *references[references.index(reference) + 1:]}
            for column, summary in summaries.items():
                if column in skip or summary.seeds is None:
                    continue
                mine = dict(zip(summary.seeds, summary.values))
                seeds = sorted(set(mine) & set(base))
                if not seeds:
                    continue
                difference = paired_differences({s: mine[s] for s in seeds}, {s: base[s] for s in seeds})
                found.append({"pair": row["pair"], "metric": row["metric"], "column": column, "reference": reference,
                              "seeds": seeds, "difference": difference, "verdict": verdict(difference)})
    return found


def comparisons_markdown(found: Sequence[dict], decimals: Dict[str, int]) -> str:
    """The paired differences as a Markdown table (empty text when there are none)."""
    if not found:
        return ""
    lines = ["Paired differences, seed by seed (A - B; mean [95% Student's t interval]):", "",
             "| Teacher/Student | Metric | A | B | A - B | seeds | verdict |", "|---|---|---|---|---|---|---|"]
    for c in found:
        digits = decimals[c["metric"]]
        d = c["difference"]
        text = f"{d.mean:+.{digits}f}"
        if d.interval is not None:
            text += f" [{d.interval.low:+.{digits}f}, {d.interval.high:+.{digits}f}]"
        said = "undecided (one seed)" if c["verdict"] == ONE_SEED else c["verdict"]
        lines.append(f"| {c['pair']} | {c['metric']} | {c['column']} | {c['reference']} | {text} | {d.n} | "
                     f"{said} |")
    return "\n".join(lines) + "\n"


def comparisons_csv(found: Sequence[dict]) -> str:
    """The paired differences as CSV: pair, metric, a, b, n, mean, sd, low, high, verdict, seeds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["pair", "metric", "a", "b", "n", "mean", "sd", "low", "high", "verdict", "seeds"])
    for c in found:
        d = c["difference"]
        interval = d.interval
        writer.writerow([c["pair"], c["metric"], c["column"], c["reference"], d.n, repr(d.mean),
                         "" if d.std is None else repr(d.std), "" if interval is None else repr(interval.low),
                         "" if interval is None else repr(interval.high), c["verdict"],
                         ";".join(map(str, c["seeds"]))])
    return out.getvalue()


def bootstrap_half_widths(runs: Sequence[dict], key: str) -> List[float]:
    """The half-widths of the runs' 95% bootstrap intervals of `key` over the test images (`results.json`'s
    `intervals`), for the runs that stored one."""
    widths = []
    for r in runs:
        estimate = (r.get("intervals") or {}).get("estimates", {}).get(key)
        if estimate is not None:
            widths.append((estimate["high"] - estimate["low"]) / 2.0)
    return widths


def one_seed_resolution(runs: Sequence[dict], keys: Dict[str, tuple]) -> Optional[str]:
    """A sentence on how large a difference one seed cannot resolve, from the runs' bootstrap intervals.

    Args:
        runs: `results.json` dicts of one seed.
        keys: `{key: (name, scale, digits)}`, e.g. `{"ece_15": ("ECE", 1.0, 3)}`.

    Returns:
        The sentence, or None when no run stored intervals.
    """
    parts = []
    for key, (name, scale, digits) in keys.items():
        widths = bootstrap_half_widths(runs, key)
        if widths:
            parts.append(f"{name} ±{scale * statistics.median(widths):.{digits}f} "
                         f"[{scale * min(widths):.{digits}f}, {scale * max(widths):.{digits}f}]")
    if not parts:
        return None
    return ("One seed decides no difference. The test images alone make each number uncertain by about "
            + ", ".join(parts) + ": the median half-width of these runs' 95% bootstrap intervals over the test "
            "images (their range in brackets), so one seed cannot resolve a difference of that size; the spread "
            "over training seeds comes on top (--seeds 0,1,2 measures it and gives paired verdicts).")
