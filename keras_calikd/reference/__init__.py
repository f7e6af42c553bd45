"""The paper's published numbers as data: every cell of its Tables 1-6, with the run that reproduces it.

The cells ship with the package in `paper_tables.csv` (one row per printed
number; its header comment documents every column and each value that had to
be reconstructed from a garbled text extraction). `paper_cells()` reads them
as `PaperCell` records; `calikd-report --paper` puts them beside measured runs.

Units follow the paper: accuracy in percent, ECE and OE as fractions computed
with `PAPER_BINS` (100) equal-width bins. Table 6 cells are CIFAR-100 runs
evaluated on CIFAR-100-C (`dataset="cifar100_corrupted"`), one corruption per
cell, averaged over severities 1-5.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
from importlib import resources
from typing import List, Optional, Tuple

#: Bin count of the paper's ECE and OE.
PAPER_BINS = 100
#: The metrics of every cell, in the paper's row order.
METRICS = ("accuracy", "ece", "oe")
#: The data file, inside this package.
CSV_NAME = "paper_tables.csv"


@dataclasses.dataclass(frozen=True)
class PaperCell:
    """One published number.

    Attributes:
        table: The paper's table, 1-6.
        dataset: `keras_calikd.data` name of the evaluated data set (`"cifar100_corrupted"` for Table 6).
        corruption: Table 6's CIFAR-100-C corruption (e.g. `"frost"`), else None.
        teacher, student: Architectures (`keras_calikd.models` names) of the table's teacher/student pair.
        label: The paper's column (Tables 1-3) or row (Tables 4-6) label, e.g. `"KD + CutMix"`, `"RKD-DA"`.
        role: `"teacher"`, `"student"` (from scratch) or `"distilled"`, as `results.json` names it.
        method: The method as `results.json` names it (e.g. `"KD + mixup"`, `"RKD"`); None for teacher/student.
        alpha: The run's `Distiller.alpha`; None where there is none (teacher, student, and Table 1's RKD/CRD
            baselines, trained as 1 x CE + w x loss).
        metric: `"accuracy"`, `"ece"` or `"oe"`.
        value: The number: accuracy in percent, ECE/OE as fractions (100 bins).
        text: The number as printed (its precision: `"63.2"`, `"0.049"`).
        run: The experiment that reproduces it: its gin name, e.g. `"cifar100/wrn_40_2_shufflev1_kd_mixup"`.
        note: How a garbled value was reconstructed, else None.
    """

    table: int
    dataset: str
    corruption: Optional[str]
    teacher: str
    student: str
    label: str
    role: str
    method: Optional[str]
    alpha: Optional[float]
    metric: str
    value: float
    text: str
    run: str
    note: Optional[str]

    @property
    def decimals(self) -> int:
        """Digits after the decimal point as printed (`"63.2"` -> 1, `"96"` -> 0)."""
        return len(self.text.partition(".")[2])

    @property
    def model(self) -> str:
        """The architecture the cell measures: the teacher for a teacher cell, else the student."""
        return self.teacher if self.role == "teacher" else self.student


def _parse(row: dict) -> PaperCell:
    return PaperCell(table=int(row["table"]), dataset=row["dataset"], corruption=row["corruption"] or None,
                     teacher=row["teacher"], student=row["student"], label=row["label"], role=row["role"],
                     method=row["method"] or None, alpha=float(row["alpha"]) if row["alpha"] else None,
                     metric=row["metric"], value=float(row["value"]), text=row["value"], run=row["run"],
                     note=row["note"] or None)


@functools.lru_cache(maxsize=1)
def _all_cells() -> Tuple[PaperCell, ...]:
    text = resources.files(__name__).joinpath(CSV_NAME).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return tuple(_parse(row) for row in csv.DictReader(io.StringIO("\n".join(lines))))


def paper_cells(table: Optional[int] = None, dataset: Optional[str] = None, run: Optional[str] = None,
                metric: Optional[str] = None) -> List[PaperCell]:
    """The paper's published cells, optionally filtered.

    Args:
        table: Keep only this table (1-6).
        dataset: Keep only this data set (e.g. `"cifar10"`, `"cifar100_corrupted"`).
        run: Keep only the cells this run reproduces (its gin name).
        metric: Keep only `"accuracy"`, `"ece"` or `"oe"`.

    Returns:
        `PaperCell` records in the paper's order (table, pair, column, metric).

    Raises:
        ValueError: for a table outside 1-6 or an unknown metric.

    Example:

    ```python
    from keras_calikd.reference import paper_cells

    [cell.value for cell in paper_cells(table=4, metric="ece")]  # [0.14, 0.146, 0.103, 0.102, 0.074, 0.049]
    ```
    """
    if table is not None and table not in range(1, 7):
        raise ValueError(f"paper_cells: the paper has Tables 1-6, got table={table!r}.")
    if metric is not None and metric not in METRICS:
        raise ValueError(f"paper_cells: `metric` must be one of {', '.join(METRICS)}, got {metric!r}.")
    return [cell for cell in _all_cells()
            if (table is None or cell.table == table) and (dataset is None or cell.dataset == dataset)
            and (run is None or cell.run == run) and (metric is None or cell.metric == metric)]


def paper_runs() -> List[str]:
    """Every run (gin name) that some cell names, sorted.

    Example:

    ```python
    "cinic10_cutmix" in paper_runs()  # True: Table 3's VGG13 -> MobileNetV2, KD + CutMix
    ```
    """
    return sorted({cell.run for cell in _all_cells()})


__all__ = ["METRICS", "PAPER_BINS", "PaperCell", "paper_cells", "paper_runs"]
