"""Tables of the paper's layout from finished runs' `results.json` files."""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Dict, List, Optional, Sequence

STANDARD_COLUMNS = ("Teacher", "Student", "KD", "RKD", "CRD", "KD + cutout", "KD + mixup", "KD + CutMix")
METRICS = (("accuracy", "Acc", max), ("ece", "ECE", min), ("oe", "OE", min))


def find_results(paths: Sequence[str]) -> List[dict]:
    """Loads every `results.json` under `paths` (folders are searched recursively)."""
    found = []
    for path in paths:
        if os.path.isfile(path):
            candidates = [path]
        else:
            candidates = [os.path.join(folder, "results.json") for folder, _, files in os.walk(path)
                          if "results.json" in files]
        for candidate in sorted(candidates):
            with open(candidate) as f:
                found.append(json.load(f))
    return found


def _metric(result: dict, key: str, bins: int) -> Optional[float]:
    value = result.get(key if key == "accuracy" else f"{key}_{bins}")
    if value is None:
        return None
    return 100.0 * value if key == "accuracy" else value


def pairs_table(results: Sequence[dict], dataset: str, bins: int = 100) -> dict:
    """The layout of the paper's Tables 1-4 for one data set.

    Rows are teacher/student pairs (from the distilled runs), each with an
    Acc, ECE and OE line; columns are the teacher, the student trained from
    scratch and every distillation method found. Teacher and student cells
    come from the runs with role `teacher`/`student` and the pair's
    architectures.

    Returns:
        `{"columns": [...], "rows": [{"pair": "t/s", "metric": "Acc", "values": {column: value}}, ...]}`.
    """
    runs = [r for r in results if r.get("dataset") == dataset]
    by_role = {role: {r["model"]: r for r in runs if r.get("role") == role} for role in ("teacher", "student")}
    pairs: Dict[tuple, Dict[str, dict]] = {}
    for r in runs:
        if r.get("role") == "distilled":
            pairs.setdefault((r.get("teacher_model"), r["model"]), {})[r["method"]] = r
    methods = sorted({m for cells in pairs.values() for m in cells}, key=_method_order)
    columns = ["Teacher", "Student"] + methods
    rows = []
    for (teacher, student), cells in sorted(pairs.items(), key=lambda item: str(item[0])):
        sources = {"Teacher": by_role["teacher"].get(teacher), "Student": by_role["student"].get(student), **cells}
        for key, label, _ in METRICS:
            values = {c: _metric(sources[c], key, bins) for c in columns if sources.get(c) is not None}
            rows.append({"pair": f"{teacher}/{student}", "metric": label, "values": values})
    return {"dataset": dataset, "bins": bins, "columns": columns, "rows": rows}


def _method_order(method: str):
    return (STANDARD_COLUMNS.index(method) if method in STANDARD_COLUMNS else len(STANDARD_COLUMNS), method)


def _best(row: dict, exclude=("Teacher",)) -> Optional[str]:
    """The best student-side column of a row: highest accuracy, lowest ECE/OE."""
    choose = {label: pick for _, label, pick in METRICS}[row["metric"]]
    candidates = {c: v for c, v in row["values"].items() if c not in exclude and v is not None}
    if not candidates:
        return None
    best_value = choose(candidates.values())
    return next(c for c, v in candidates.items() if v == best_value)


def _format(value: Optional[float], metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if metric == "Acc" else f"{value:.3f}"


def to_markdown(table: dict) -> str:
    """Markdown with the best student-side value of each row in bold."""
    columns = table["columns"]
    lines = [f"**{table['dataset']}** (ECE/OE with {table['bins']} bins; best of each row, teacher excluded, in bold)",
             "", "| Teacher/Student | Metric | " + " | ".join(columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for row in table["rows"]:
        best = _best(row)
        cells = []
        for c in columns:
            text = _format(row["values"].get(c), row["metric"])
            cells.append(f"**{text}**" if c == best else text)
        lines.append(f"| {row['pair']} | {row['metric']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reliability_panels(results: Sequence[dict]) -> list:
    """`(title, statistics)` panels of the runs that stored their reliability statistics, teacher first."""
    order = {"teacher": 0, "student": 1, "distilled": 2}
    runs = sorted((r for r in results if "reliability_15" in r),
                  key=lambda r: (r.get("dataset", ""), order.get(r.get("role"), 3), _method_order(r.get("method", ""))))
    panels = []
    for r in runs:
        label = r.get("method") or r.get("role", "").capitalize()
        panels.append((f"{label}: {r['model']} ({100 * r['accuracy']:.1f}%)", r["reliability_15"]))
    return panels


def to_csv(table: dict) -> str:
    """CSV of the same table; the best student-side value of each row carries a trailing `*`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataset", "pair", "metric"] + table["columns"])
    for row in table["rows"]:
        best = _best(row)
        writer.writerow([table["dataset"], row["pair"], row["metric"]] + [
            _format(row["values"].get(c), row["metric"]) + ("*" if c == best else "") for c in table["columns"]])
    return out.getvalue()
