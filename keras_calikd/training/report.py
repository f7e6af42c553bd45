"""Tables of the paper's layout from finished runs' `results.json` files, optionally beside the paper's numbers.

One table per evaluated data set (and CIFAR-100-C corruption): rows are
teacher/student pairs, each with an Acc, ECE and OE row; columns are the
teacher, the student trained from scratch and every distillation method found,
in the order and with the names its strategies declare
(`keras_calikd.training.methods`: the paper's KD, RKD, CRD, then KD + cutout,
KD + mixup, KD + CutMix, and any other method in its place). Each row marks its best value(s) among the student-side columns (the teacher is
not a candidate): highest accuracy, lowest ECE/OE, compared at the printed
precision (Acc 2 decimals, ECE/OE 3), so tied values are all best.

Two runs of one pair with the same method but a different `alpha` become two
columns, labelled by their balance: `"RKD (alpha=0.5)"` and `"RKD (1 x CE + w x
loss)"` for a run without alpha (Table 1's RKD/CRD baselines).

With `paper=True`, each measured cell whose run is one of the paper's cells
(`keras_calikd.reference`, matched by run name, data set and corruption) gets
the paper's value and the difference measured - paper. The paper's ECE/OE use
100 bins; tables at another bin count say so.
"""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Dict, List, Optional, Sequence

from keras_calikd.training import seed_groups
from keras_calikd.training.methods import Method, method_of, table_key, temperature_scaled
from keras_calikd.training.results_files import find_results  # noqa: F401  (the report's entry point)

TEACHER, STUDENT = "Teacher", "Student"
METRICS = (("accuracy", "Acc", max), ("ece", "ECE", min), ("oe", "OE", min))
#: Rows a table may add beyond the paper's (`metrics=`): the calibration errors every run also reports.
EXTRA_METRICS = (("mce", "MCE", min), ("adaptive_ece", "adaptive ECE", min), ("classwise_ece", "classwise ECE", min))
#: Printed decimals per metric row (the paper's).
DECIMALS = {"Acc": 2, "ECE": 3, "OE": 3, "MCE": 3, "adaptive ECE": 3, "classwise ECE": 3}
#: The student-side columns compete for "best"; the teacher does not.
NOT_CANDIDATES = (TEACHER,)
NO_ALPHA = "1 x CE + w x loss"
PAPER_SUFFIX = " (paper)"
DIFFERENCE_SUFFIX = " (measured - paper)"
#: With several seeds per cell, the CSV's columns beside each method's mean: seeds, standard deviation, t interval.
SEED_SUFFIXES = (" n", " sd", " low", " high")


def _metric(result: dict, key: str, bins: int) -> Optional[float]:
    value = result.get(key if key == "accuracy" else f"{key}_{bins}")
    if value is None:
        return None
    return 100.0 * value if key == "accuracy" else float(value)


def _group(result: dict) -> tuple:
    """A table's identity: the data set and, for CIFAR-100-C evaluations, the corruption."""
    return result.get("dataset"), result.get("corruption")


def dataset_text(dataset: str, corruption: Optional[str]) -> str:
    return f"{dataset}/{corruption}" if corruption else str(dataset)


def with_temperature_scaled(results: Sequence[dict]) -> List[dict]:
    """`results` plus, for each distilled run that reports post-hoc temperature scaling, its scaled version.

    A run trained with `Experiment.temperature_scaling_split` stores the scaled
    model's metrics under `temperature_scaled`; here they become a result of
    their own whose method is `"<method> + TS"` (`methods.temperature_scaled`),
    a column of the tables beside the run's own.

    Example:

    ```python
    tables = tables_for(with_temperature_scaled(find_results(["runs/quickstart"])), bins=15)
    ```
    """
    expanded = []
    for result in results:
        expanded.append(result)
        if result.get("temperature_scaled") and result.get("role") == "distilled":
            expanded.append(temperature_scaled(result))
    return expanded


def run_title(result: dict) -> str:
    """A figure title from a run's metadata (role, models, method, data set), not from its path.

    Args:
        result: A `results.json` dict (`role`, `model`, `dataset`, and for distilled runs `teacher_model`,
            `method`, `alpha`).

    Returns:
        Two lines, e.g. `"resnet32x4 → ShuffleV1\\nKD + mixup, cifar100"`,
        `"resnet32x4 (teacher)\\ncifar100"`, `"ShuffleV1 (from scratch)\\ncifar100"`.

    Example:

    ```python
    plot_reliability_diagram(stats, "reliability.png", title=run_title(results))
    ```
    """
    dataset = dataset_text(result.get("dataset", "?"), result.get("corruption"))
    model, role = result.get("model", "?"), result.get("role")
    if role == "teacher":
        return f"{model} (teacher)\n{dataset}"
    if role == "distilled":
        method = result.get("method") or "distilled"
        if "alpha" in result and result["alpha"] is None:
            method += f" ({NO_ALPHA})"
        return f"{result.get('teacher_model', '?')} → {model}\n{method}, {dataset}"
    return f"{model} (from scratch)\n{dataset}"


def _alpha_text(alpha) -> str:
    return NO_ALPHA if alpha is None else f"alpha={alpha:g}"


def _columns(distilled: Sequence[dict]) -> Dict[tuple, str]:
    """`(method, alpha) -> column label`, in the columns' order: the method, with its balance where it has several."""
    alphas: Dict[Method, set] = {}
    for r in distilled:
        alphas.setdefault(method_of(r), set()).add(r.get("alpha"))
    keys = sorted(((method, alpha) for method, values in alphas.items() for alpha in values),
                  key=lambda key: (table_key(key[0]), key[1] is not None, key[1] or 0.0))
    return {(method, alpha): method.label if len(alphas[method]) == 1 else f"{method.label} ({_alpha_text(alpha)})"
            for method, alpha in keys}


def _round(value: float, label: str) -> float:
    return round(value, DECIMALS[label])


def best_columns(row: dict) -> List[str]:
    """The best student-side column(s) of a row, compared at the printed precision (ties: all of them).

    Args:
        row: A table row: `{"metric": "Acc" | "ECE" | "OE", "values": {column: value}}`.

    Returns:
        The columns holding the best value, in the row's order; empty when no candidate has a value.

    Example:

    ```python
    best_columns({"metric": "OE", "values": {"KD": 0.0002, "KD + mixup": 0.0004, "KD + CutMix": 0.01}})
    # ["KD", "KD + mixup"]: both print as 0.000
    ```
    """
    choose = {label: pick for _, label, pick in METRICS + EXTRA_METRICS}[row["metric"]]
    candidates = {c: _round(v, row["metric"]) for c, v in row["values"].items()
                  if c not in NOT_CANDIDATES and v is not None and math.isfinite(v)}
    if not candidates:
        return []
    best = choose(candidates.values())
    return [c for c, v in candidates.items() if v == best]


def pairs_table(results: Sequence[dict], dataset: str, bins: int = 100, corruption: Optional[str] = None,
                paper: bool = False, extra_metrics: Sequence[str] = ()) -> dict:
    """The layout of the paper's Tables 1-4 for one data set.

    Rows are teacher/student pairs (from the distilled runs), each with an
    Acc, ECE and OE row; columns are the teacher, the student trained from
    scratch and every distillation method found. A pair's teacher cell is the
    teacher run the distilled runs name (else the teacher run of that
    architecture); its student cell is the from-scratch run of the student's
    architecture. A cell holds one run or the seeds of one configuration
    (`seed_groups.cell_runs`): its value is their mean, its `summaries` entry
    their standard deviation and Student's t interval.

    Args:
        results: `results.json` dicts (see `find_results`).
        dataset: The data set of the table.
        bins: Bin count of the ECE/OE rows (the runs store `ece_<bins>`).
        corruption: For CIFAR-100-C evaluations (`dataset="cifar100_corrupted"`), the corruption.
        paper: Also give, per cell, the paper's value where the cell's run is one of the paper's.
        extra_metrics: Rows beyond Acc/ECE/OE, from `mce`, `adaptive_ece`, `classwise_ece` (the runs store
            `<key>_<bins>`).

    Returns:
        `{"dataset", "corruption", "bins", "paper", "columns": [...], "selection": text, "methods": {column:
        Method}, "rows": [row, ...]}` (`methods` for the distilled columns; `selection`: which validation metric
        picked the checkpoints), each row `{"pair", "teacher", "student", "metric", "values": {column: mean},
        "summaries": {column: SeedSummary}, "runs": {column: run name (the first seed's)}, "best": [columns],
        "paper": {column: value}, "paper_notes": {column: note}}`. Accuracy is in percent.

    Raises:
        ValueError: when two runs that are not seeds of one configuration would fill one cell.

    Example:

    ```python
    table = pairs_table(find_results(["runs"]), "cifar100", paper=True)
    print(to_markdown(table))
    ```
    """
    runs = [r for r in results if _group(r) == (dataset, corruption)]
    where = f"on {dataset_text(dataset, corruption)}"
    distilled = [r for r in runs if r.get("role") == "distilled"]
    labels = _columns(distilled)
    pairs: Dict[tuple, Dict[str, List[dict]]] = {}  # (teacher, student) -> {column: the runs of its cell}
    for r in distilled:
        label = labels[(method_of(r), r.get("alpha"))]
        pairs.setdefault((r.get("teacher_model"), r.get("model")), {}).setdefault(label, []).append(r)
    columns = [TEACHER, STUDENT] + list(labels.values())
    lookup = _paper_lookup() if paper else {}
    rows = []
    for (teacher, student), cells in sorted(pairs.items(), key=lambda item: str(item[0])):
        named = {r.get("teacher") for runs_of in cells.values() for r in runs_of} - {None}
        cells[TEACHER] = [r for r in runs if r.get("role") == "teacher" and r.get("name") in named] or \
            [r for r in runs if r.get("role") == "teacher" and r.get("model") == teacher]
        cells[STUDENT] = [r for r in runs if r.get("role") == "student" and r.get("model") == student]
        what = {TEACHER: f"teachers {teacher} {where}", STUDENT: f"from-scratch students {student} {where}"}
        grouped = {c: seed_groups.cell_runs(cells[c], what.get(c, f"{c} for {teacher}/{student} {where}"))
                   for c in columns if cells.get(c)}
        sources = {c: runs_of[0] for c, runs_of in grouped.items()}
        rows_of = METRICS + tuple(m for m in EXTRA_METRICS if m[0] in extra_metrics)
        for key, label, _ in rows_of:
            summaries = {c: seed_groups.cell_summary(grouped[c], lambda r: _metric(r, key, bins)) for c in grouped}
            summaries = {c: s for c, s in summaries.items() if s is not None}
            values = {c: s.mean for c, s in summaries.items()}
            row = {"pair": f"{teacher}/{student}", "teacher": teacher, "student": student, "metric": label,
                   "values": values, "runs": {c: sources[c].get("name") for c in values}, "paper": {},
                   "paper_notes": {}, "summaries": summaries}
            row["best"] = best_columns(row)
            if paper:
                for c, name in row["runs"].items():
                    cell = _paper_cell(lookup, name, dataset, corruption, key, teacher, student)
                    if cell is not None:
                        row["paper"][c] = cell.value
                        if cell.note:
                            row["paper_notes"][c] = cell.note
            rows.append(row)
    return {"dataset": dataset, "corruption": corruption, "bins": bins, "paper": paper, "columns": columns,
            "selection": seed_groups.selection_text(runs),
            "methods": {label: method for (method, _), label in labels.items()}, "rows": rows}


def tables_for(results: Sequence[dict], bins: int = 100, paper: bool = False,
               extra_metrics: Sequence[str] = ()) -> List[dict]:
    """One `pairs_table` per data set (and corruption) that has distilled runs, sorted by data set.

    Example:

    ```python
    tables = tables_for(find_results(["runs"]), bins=100, paper=True)
    ```
    """
    groups = sorted({_group(r) for r in results}, key=lambda g: (str(g[0]), str(g[1] or "")))
    tables = [pairs_table(results, dataset, bins, corruption, paper, extra_metrics) for dataset, corruption in groups]
    return [t for t in tables if t["rows"]]


def _paper_lookup() -> Dict[tuple, list]:
    from keras_calikd.reference import paper_cells

    lookup: Dict[tuple, list] = {}
    for cell in paper_cells():
        lookup.setdefault((cell.run, cell.dataset, cell.corruption, cell.metric), []).append(cell)
    return lookup


def _paper_cell(lookup, run, dataset, corruption, metric, teacher, student):
    """The paper's cell of a run; where a run fills several (a teacher shared by two pairs), the pair's own."""
    cells = lookup.get((run, dataset, corruption, metric), [])
    for cell in cells:
        if (cell.teacher, cell.student) == (teacher, student):
            return cell
    return cells[0] if cells else None


def _format(value: Optional[float], metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.{DECIMALS[metric]}f}"


def _difference(row: dict, column: str) -> Optional[float]:
    """measured - paper, of the measured value as printed (so the printed numbers subtract exactly)."""
    if column not in row["paper"] or column not in row["values"]:
        return None
    digits = DECIMALS[row["metric"]]
    difference = round(round(row["values"][column], digits) - row["paper"][column], digits)
    return difference + 0.0 if difference != 0 else 0.0  # no "-0.000"


def _caption(table: dict) -> List[str]:
    lines = [f"ECE/OE with {table['bins']} bins; accuracy in percent. The best value of each row (highest Acc, "
             "lowest ECE/OE; teacher excluded; ties at the printed precision all marked) is in bold."]
    if any(NO_ALPHA in c for c in table["columns"]):
        lines.append(f"A method run with two balances has two columns: alpha=a is a x distillation + (1 - a) x "
                     f"augmentation loss; '{NO_ALPHA}' is cross-entropy plus the strategy's own weighted loss "
                     "(the paper's Table 1 RKD/CRD baselines).")
    counts = seed_groups.seed_counts(table)
    if counts and counts[-1] > 1:
        lines.append(f"Seeds per cell: {', '.join(map(str, counts))}. {seed_groups.INTERVALS_TEXT}")
    if table.get("selection"):
        lines.append(table["selection"])
    if table.get("paper"):
        lines.append("Each measured cell reads: measured (paper; measured - paper); cells without a paper value "
                     "are runs the paper does not report.")
        if table["bins"] != 100:
            lines.append(f"Note: these ECE/OE use {table['bins']} bins but the paper's use 100, so their "
                         "differences mix bin counts; run with --bins 100 to compare them.")
    return lines


def to_markdown(table: dict) -> str:
    """The table as Markdown: best value(s) of each row in bold; with paper values, `measured (paper; diff)`.

    Example:

    ```python
    print(to_markdown(pairs_table(results, "cifar100")))
    ```
    """
    columns = table["columns"]
    title = dataset_text(table["dataset"], table.get("corruption"))
    lines = [f"**{title}**", ""] + _caption(table) + [
        "", "| Teacher/Student | Metric | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for row in table["rows"]:
        cells = []
        for c in columns:
            text = _format(row["values"].get(c), row["metric"])
            if c in row["best"]:
                text = f"**{text}**"
            if c in row.get("summaries", {}):
                text += seed_groups.spread_text(row["summaries"][c], DECIMALS[row["metric"]])
            difference = _difference(row, c)
            if difference is not None:
                digits = DECIMALS[row["metric"]]
                text += f" ({_format(row['paper'][c], row['metric'])}; {difference:+.{digits}f})"
            cells.append(text)
        lines.append(f"| {row['pair']} | {row['metric']} | " + " | ".join(cells) + " |")
    notes = [f"{row['pair']}, {c}, {row['metric']}: {note.replace('reconstructed: ', '', 1)}"
             for row in table["rows"] for c, note in row.get("paper_notes", {}).items()]
    differences = seed_groups.comparisons_markdown(seed_groups.comparisons(table), DECIMALS)
    if differences:
        lines += ["", differences.rstrip("\n")]
    if notes:
        lines += ["", "Paper values reconstructed from the garbled text extraction (keras_calikd/reference/"
                      "paper_tables.csv):"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def to_csv(tables) -> str:
    """The tables as one CSV of numbers: one row per pair and metric, a `best` column naming the best column(s).

    Columns: `dataset` (then `corruption` when a table has one), `pair`, `metric`, one numeric column per
    method (empty where no run fills the cell; rounded to the printed precision; the mean over seeds), with
    several seeds in a cell each method's `<method> n`, `<method> sd`, `<method> low` and `<method> high` (seeds,
    standard deviation and 95% Student's t interval, one digit more), with paper values each
    method's `<method> (paper)` and `<method> (measured - paper)` beside it, and `best`: the best column
    label(s) of the row, `;`-separated (ties: all of them).

    Args:
        tables: One table of `pairs_table`, or a list of them (their columns are united).

    Returns:
        The CSV text.

    Example:

    ```python
    rows = list(csv.DictReader(io.StringIO(to_csv(tables))))
    ```
    """
    tables = [tables] if isinstance(tables, dict) else list(tables)
    columns: List[str] = []
    for table in tables:
        columns += [c for c in table["columns"] if c not in columns]
    with_paper = any(t.get("paper") for t in tables)
    with_corruption = any(t.get("corruption") for t in tables)
    header = ["dataset"] + (["corruption"] if with_corruption else []) + ["pair", "metric"]
    with_seeds = any(n > 1 for t in tables for n in seed_groups.seed_counts(t))
    for c in columns:
        header += [c] + ([f"{c}{suffix}" for suffix in SEED_SUFFIXES] if with_seeds else [])
        header += [c + PAPER_SUFFIX, c + DIFFERENCE_SUFFIX] if with_paper else []
    header.append("best")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for table in tables:
        for row in table["rows"]:
            digits = DECIMALS[row["metric"]]
            record = [table["dataset"]] + ([table.get("corruption") or ""] if with_corruption else [])
            record += [row["pair"], row["metric"]]
            for c in columns:
                value = row["values"].get(c)
                record.append("" if value is None else f"{value:.{digits}f}")
                if with_seeds:
                    record += _seed_fields(row.get("summaries", {}).get(c), digits)
                if with_paper:
                    paper_value, difference = row["paper"].get(c), _difference(row, c)
                    record.append("" if paper_value is None else f"{paper_value:.{digits}f}")
                    record.append("" if difference is None else f"{difference:.{digits}f}")
            record.append(";".join(row["best"]))
            writer.writerow(record)
    return out.getvalue()


def _seed_fields(summary, digits: int) -> List[str]:
    """`n`, `sd`, `low` and `high` of a cell over seeds (empty where there is no cell or no interval)."""
    if summary is None:
        return [""] * len(SEED_SUFFIXES)
    spread = [summary.std, *summary.interval[:2]] if summary.interval is not None else [None] * 3
    return [str(summary.n)] + ["" if v is None else f"{v:.{digits + 1}f}" for v in spread]


def reliability_statistics(result: dict, bins: Optional[int] = None) -> Optional[dict]:
    """The reliability statistics a run stored (`reliability_<bins>`, at its `Experiment.diagram_bins`), or `None`.

    Args:
        result: A `results.json` dict.
        bins: The bin count wanted; `None`: the run's own (the fewest bins it stored).
    """
    stored = sorted(int(k.split("_", 1)[1]) for k in result if re.fullmatch(r"reliability_\d+", k))
    if bins is None:
        bins = stored[0] if stored else None
    return result.get(f"reliability_{bins}")


def reliability_panels(results: Sequence[dict], bins: Optional[int] = None) -> list:
    """`(title, statistics)` panels of the runs that stored their reliability statistics.

    Per data set: teachers, then students from scratch, then distilled runs by pair and method.

    Titles come from the runs' metadata (`run_title`): teacher -> student and method, not paths.

    Args:
        results: `results.json` dicts.
        bins: The bin count of the panels; `None`: each run's own (`Experiment.diagram_bins`, 15 by default).

    Example:

    ```python
    plot_reliability_grid(reliability_panels(results), "diagrams.png")
    ```
    """
    order = {"teacher": 0, "student": 1, "distilled": 2}
    runs = sorted((r for r in results if reliability_statistics(r, bins) is not None),
                  key=lambda r: (str(r.get("dataset", "")), str(r.get("corruption") or ""),
                                 order.get(r.get("role"), 3), str(r.get("teacher_model") or r.get("model", "")),
                                 str(r.get("model", "")),
                                 table_key(method_of(r)) if r.get("role") == "distilled" else (),
                                 r.get("alpha") is not None))
    return [(run_title(r), reliability_statistics(r, bins)) for r in runs]
