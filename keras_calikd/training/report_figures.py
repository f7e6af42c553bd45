"""The report's figure: ECE against accuracy per teacher/student pair, one colour and marker per method.

Each method's colour and marker come from its strategies (`Distillation.color`,
`Augmentation.marker`), so a method keeps them in every panel and a new
strategy is drawn in its own without an edit here.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

from keras_calikd.metrics.reliability import _STYLE, MIN_FONT_SIZE, save_figure
from keras_calikd.training.methods import Method, style
from keras_calikd.training.report import STUDENT, TEACHER, dataset_text


_FIXED_STYLES = {TEACHER: ("#222222", "*"), STUDENT: ("#8c8c8c", "X")}
_SPARE_COLORS = ("#c44e52", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
_SPARE_MARKERS = ("v", "^", "<", ">", "h", "p", "d", "H", "8")


def method_styles(columns: Sequence[str], methods: Optional[Mapping[str, Method]] = None) -> Dict[str, tuple]:
    """A distinct `(colour, marker)` per column: the colour of its distillation, the marker of its augmentation.

    The strategies declare both (`Distillation.color`, `Augmentation.marker`;
    `methods.style`); Teacher and Student have fixed styles; a strategy that
    declares none gets a spare colour (one per distillation) or marker, and a
    combination already taken (e.g. the two balances of one method, or a
    run and its temperature-scaled scores) moves to the next spare marker.

    Args:
        columns: Column labels, in the tables' order.
        methods: The `Method` of each distilled column (a table's `"methods"`).

    Example:

    ```python
    method_styles(table["columns"], table["methods"])   # {"Teacher": ("#222222", "*"), "KD": ("#4c72b0", "o"), ...}
    ```
    """
    methods = methods or {}
    styles: Dict[str, tuple] = {}
    spare_colors: Dict[tuple, str] = {}
    taken = set()
    for column in columns:
        if column in _FIXED_STYLES:
            styles[column] = _FIXED_STYLES[column]
            taken.add(styles[column])
            continue
        method = methods.get(column)
        color, marker = style(method) if method is not None else (None, None)
        if color is None:
            family = method.distillations[:1] if method is not None and method.distillations else (column,)
            color = spare_colors.setdefault(family, _SPARE_COLORS[len(spare_colors) % len(_SPARE_COLORS)])
        candidate = (color, marker or _SPARE_MARKERS[0])
        spare = iter(_SPARE_MARKERS)
        while candidate in taken:
            following = next(spare, None)
            if following is None:
                break
            candidate = (color, following)
        styles[column] = candidate
        taken.add(candidate)
    return styles


def _interval(row: dict, column: str) -> Optional[tuple]:
    """`(low, high)` of a cell's Student's t interval over seeds, or None (one seed)."""
    summary = row.get("summaries", {}).get(column)
    return None if summary is None or summary.interval is None else summary.interval[:2]


def _error(value: float, interval: Optional[tuple]):
    """matplotlib's `[[below], [above]]` error of a point from its interval; None without one."""
    return None if interval is None else [[value - interval[0]], [interval[1] - value]]


def accuracy_calibration_figure(tables: Sequence[dict]):
    """ECE against accuracy: one panel per teacher/student pair (and data set), one marker per method.

    Each method keeps one colour and marker (`method_styles`) in every panel.
    With paper values in the tables, the paper's point of each measured cell
    is drawn hollow and joined to the measured (filled) point by a thin line.
    A cell of several seeds is drawn at its mean with error bars: the 95%
    Student's t intervals of its accuracy and ECE over the seeds.

    Args:
        tables: Tables of `pairs_table`.

    Returns:
        A matplotlib `Figure`.

    Raises:
        ValueError: without a table row.

    Example:

    ```python
    save_figure(accuracy_calibration_figure(tables), "report_ece_accuracy.png")
    ```
    """
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    panels = []  # (title, bins, {column: (acc, ece, paper_acc, paper_ece)})
    all_columns: List[str] = []
    all_methods: Dict[str, Method] = {}
    for table in tables:
        all_columns += [c for c in table["columns"] if c not in all_columns]
        all_methods.update(table.get("methods", {}))
        by_pair: Dict[str, Dict[str, dict]] = {}
        for row in table["rows"]:
            by_pair.setdefault(row["pair"], {})[row["metric"]] = row
        for pair, rows in by_pair.items():
            acc, ece = rows.get("Acc"), rows.get("ECE")
            if acc is None or ece is None:
                continue
            points = {c: (acc["values"][c], ece["values"][c], acc["paper"].get(c), ece["paper"].get(c),
                          _interval(acc, c), _interval(ece, c))
                      for c in table["columns"] if c in acc["values"] and c in ece["values"]}
            if points:
                teacher, student = pair.split("/", 1)
                title = f"{dataset_text(table['dataset'], table.get('corruption'))}: {teacher} → {student}"
                panels.append((title, table["bins"], points))
    if not panels:
        raise ValueError("The ECE-accuracy figure needs at least one table with measured Acc and ECE rows.")
    styles = method_styles(all_columns, all_methods)
    used = [c for c in all_columns if any(c in points for _, _, points in panels)]
    with_paper = any(p[2] is not None and p[3] is not None for _, _, points in panels for p in points.values())
    with_intervals = any(p[4] is not None or p[5] is not None for _, _, points in panels for p in points.values())
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    with rc_context(_STYLE):
        figure = Figure(figsize=(4.4 * columns + 3.0, 3.8 * rows + 0.3), layout="constrained")
        FigureCanvasAgg(figure)
        axes_list = figure.subplots(rows, columns, squeeze=False).ravel()
        for axes, (title, bins, points) in zip(axes_list, panels):
            for column, (x, y, paper_x, paper_y, x_interval, y_interval) in points.items():
                color, marker = styles[column]
                if x_interval is not None or y_interval is not None:  # 95% Student's t intervals over seeds
                    axes.errorbar([x], [y], xerr=_error(x, x_interval), yerr=_error(y, y_interval), fmt="none",
                                  ecolor=color, elinewidth=1.0, capsize=3, zorder=2)
                if paper_x is not None and paper_y is not None:
                    axes.plot([paper_x, x], [paper_y, y], color=color, linewidth=0.8, alpha=0.6, zorder=1)
                    axes.scatter([paper_x], [paper_y], marker=marker, s=60, facecolors="none", edgecolors=color,
                                 linewidths=1.2, zorder=2)
                axes.scatter([x], [y], marker=marker, s=60, color=color, edgecolors="black", linewidths=0.5,
                             zorder=3)
            axes.set_title(title)
            axes.set_xlabel("Accuracy (%)")
            axes.set_ylabel(f"ECE ({bins} bins)")
            axes.grid(True, linewidth=0.5, alpha=0.4)
            axes.tick_params(labelsize=MIN_FONT_SIZE)
        for axes in axes_list[len(panels):]:
            axes.set_visible(False)
        handles = [Line2D([], [], linestyle="none", marker=styles[c][1], markersize=8, color=styles[c][0],
                          markeredgecolor="black", markeredgewidth=0.5, label=c) for c in used]
        if with_intervals:
            handles.append(Line2D([], [], color="0.45", marker="|", markersize=8,
                                  label="95% t interval\nover seeds"))
        if with_paper:
            handles += [Line2D([], [], linestyle="none", marker="o", markersize=8, color="0.45",
                               markeredgecolor="black", markeredgewidth=0.5, label="measured (filled)"),
                        Line2D([], [], linestyle="none", marker="o", markersize=8, markerfacecolor="none",
                               markeredgecolor="0.45", markeredgewidth=1.2, label="paper (hollow)")]
        figure.legend(handles=handles, loc="outside right upper", ncols=1 + len(handles) // 22, frameon=False,
                      title="Method")
    return figure


def plot_accuracy_calibration(tables: Sequence[dict], path: str, formats: Optional[Sequence[str]] = None) -> list:
    """Writes `accuracy_calibration_figure(tables)` at `path` (`.png`, `.pdf` or `.svg`) and in the other formats.

    Returns:
        The written paths, `path` first.

    Example:

    ```python
    plot_accuracy_calibration(tables, "reports/table1_ece_accuracy.png")
    ```
    """
    return save_figure(accuracy_calibration_figure(tables), path, formats)
