"""Reliability diagrams from the per-bin statistics of a calibration metric.

A diagram has two panels sharing the confidence axis: per-bin accuracy bars
with the gap to the bin's mean confidence (over-confidence and
under-confidence in their own colours) and the perfect-calibration diagonal,
above a histogram of the share of predictions per bin. A box gives the ECE
and OE of the same bins, placed where it covers no bar. The legend sits below
the panels. Fonts are at least `MIN_FONT_SIZE` points at the saved size.

Figures are saved as PNG (`PNG_DPI`, print resolution), PDF and SVG side by
side, each written atomically; `reliability_image` renders one as an RGBA
array instead (e.g. for TensorBoard).
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from keras_calikd.files import atomic_path

#: Smallest font size, in points at the saved size, of any text of a diagram.
MIN_FONT_SIZE = 10
#: Resolution of saved PNG files.
PNG_DPI = 300
#: Formats written by default: the path's own format first, then the others.
FORMATS = ("png", "pdf", "svg")
#: Colours of the diagram's elements (opaque, so each shows exactly as in the legend).
COLORS = {"accuracy": "#4c72b0", "over": "#eb9a9c", "over_edge": "#b8383d", "under": "#9ad6a8",
          "under_edge": "#2f8043", "diagonal": "#222222", "histogram": "#8c8c8c"}
LEGEND_LABELS = ("Accuracy", "Over-confidence gap", "Under-confidence gap", "Perfect calibration")
REQUIRED_KEYS = ("edges", "count", "confidence", "accuracy")
_STYLE = {"font.size": MIN_FONT_SIZE, "axes.titlesize": MIN_FONT_SIZE + 1, "axes.labelsize": MIN_FONT_SIZE,
          "xtick.labelsize": MIN_FONT_SIZE, "ytick.labelsize": MIN_FONT_SIZE, "legend.fontsize": MIN_FONT_SIZE,
          "figure.titlesize": MIN_FONT_SIZE + 2, "pdf.fonttype": 42, "svg.hashsalt": "keras_calikd"}
_BOX_GAP = 0.02  # axes fraction between the box and the axes' edges or the bars


def _arrays(statistics: dict) -> Dict[str, np.ndarray]:
    """The statistics as float arrays, checked for the keys and lengths `bin_statistics()` gives."""
    if not isinstance(statistics, dict):
        raise ValueError(f"Reliability statistics must be a dict (metric.bin_statistics()), got "
                         f"{type(statistics).__name__}.")
    missing = [key for key in REQUIRED_KEYS if key not in statistics]
    if missing:
        raise ValueError(f"Reliability statistics lack {', '.join(missing)}; pass metric.bin_statistics() of an "
                         "ExpectedCalibrationError or OverconfidenceError (keys: edges, count, confidence, "
                         "accuracy).")
    arrays = {key: np.asarray(statistics[key], dtype=np.float64).reshape(-1) for key in REQUIRED_KEYS}
    bins = len(arrays["count"])
    if bins < 1 or len(arrays["edges"]) != bins + 1 or len(arrays["confidence"]) != bins \
            or len(arrays["accuracy"]) != bins:
        raise ValueError(f"Reliability statistics are inconsistent: {len(arrays['edges'])} edges for "
                         f"{bins} counts, {len(arrays['confidence'])} confidences and {len(arrays['accuracy'])} "
                         "accuracies (expected num_bins + 1 edges and num_bins of each).")
    return arrays


def calibration_errors(statistics: dict) -> Tuple[float, float]:
    """ECE and OE of per-bin statistics (the paper's Eq. 14 and 15 over the same bins).

    Args:
        statistics: `metric.bin_statistics()` of an `ExpectedCalibrationError` or `OverconfidenceError`.

    Returns:
        `(ece, oe)`; `(0.0, 0.0)` when no bin holds a prediction.

    Example:

    ```python
    ece, oe = calibration_errors(metric.bin_statistics())
    ```
    """
    s = _arrays(statistics)
    total = s["count"].sum()
    if total <= 0:
        return 0.0, 0.0
    share = s["count"] / total
    ece = float(np.sum(share * np.abs(s["accuracy"] - s["confidence"])))
    oe = float(np.sum(share * s["confidence"] * np.maximum(s["confidence"] - s["accuracy"], 0.0)))
    return ece, oe


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _draw(top, bottom, statistics: dict, title: Optional[str]) -> dict:
    """Draws one diagram on its two axes; returns its bars and its ECE/OE box."""
    s = _arrays(statistics)
    left, widths = s["edges"][:-1], np.diff(s["edges"])
    occupied = s["count"] > 0
    accuracy, confidence = s["accuracy"], s["confidence"]
    over = occupied & (confidence > accuracy)
    under = occupied & (accuracy > confidence)
    # The accuracy bars, then the gaps between accuracy and confidence: above the bar where the bin is
    # over-confident, over the bar's top where it is under-confident. An unfilled outline of each accuracy bar
    # is drawn last, so the bar's height (the accuracy) stays visible under an under-confidence gap.
    top.bar(left[occupied], accuracy[occupied], width=widths[occupied], align="edge", color=COLORS["accuracy"],
            linewidth=0, zorder=2)
    top.bar(left[over], (confidence - accuracy)[over], bottom=accuracy[over], width=widths[over], align="edge",
            color=COLORS["over"], edgecolor=COLORS["over_edge"], linewidth=0.8, zorder=3)
    top.bar(left[under], (accuracy - confidence)[under], bottom=confidence[under], width=widths[under],
            align="edge", color=COLORS["under"], edgecolor=COLORS["under_edge"], linewidth=0.8, zorder=3)
    top.bar(left[occupied], accuracy[occupied], width=widths[occupied], align="edge", fill=False,
            edgecolor="black", linewidth=0.6, zorder=4)
    top.plot([0, 1], [0, 1], linestyle="--", color=COLORS["diagonal"], linewidth=1.2, zorder=5)
    for axes in (top, bottom):  # ticks are made lazily, when drawn: their size is set here, not by the style
        axes.tick_params(labelsize=MIN_FONT_SIZE)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("Accuracy")
    top.tick_params(labelbottom=False)
    if title:
        top.set_title(title)
    total = s["count"].sum()
    share = s["count"] / total if total > 0 else s["count"]
    bottom.bar(left, share, width=widths, align="edge", color=COLORS["histogram"], edgecolor="black",
               linewidth=0.5)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("Confidence")
    bottom.set_ylabel("Share")
    ece, oe = calibration_errors(statistics)
    text = f"ECE = {ece:.3f}\nOE = {oe:.3f}\n{len(left)} bins" if total > 0 else "no predictions"
    box = top.text(_BOX_GAP, 1 - _BOX_GAP, text, transform=top.transAxes, ha="left", va="top", zorder=5,
                   bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "0.4", "alpha": 1.0})
    return {"box": box, "tops": np.where(occupied, np.maximum(accuracy, confidence), 0.0),
            "left": left, "widths": widths}


def _box_extent(top, box, renderer) -> np.ndarray:
    """The box's corners (its text padded by the frame) in data coordinates: `[[x0, y0], [x1, y1]]`."""
    pad = (0.3 * box.get_fontsize() + 1.5) * top.figure.dpi / 72  # the frame's pad (0.3 em) and its line
    return top.transData.inverted().transform(box.get_window_extent(renderer).padded(pad).get_points())


def _covers_bar(extent: np.ndarray, drawn: dict) -> bool:
    (x0, y0), (x1, _) = extent
    right = drawn["left"] + drawn["widths"]
    beneath = (drawn["left"] < x1) & (right > x0)
    return bool(np.any(drawn["tops"][beneath] > y0))


def _place_boxes(figure, pairs: Sequence[Tuple[object, dict]]) -> None:
    """Moves each ECE/OE box off the bars: top-left, top-centre or top-right of its axes where that is free,
    else above the bars in head-room added to the accuracy axis (shared by all panels of a figure)."""
    figure.canvas.draw()  # fixes the layout, so extents are final
    renderer = figure.canvas.get_renderer()
    needed_top = 1.0
    unplaced = []
    for top, drawn in pairs:
        box = drawn["box"]
        for x, ha in ((_BOX_GAP, "left"), (0.5, "center"), (1 - _BOX_GAP, "right")):
            box.set_position((x, 1 - _BOX_GAP))
            box.set_horizontalalignment(ha)
            if not _covers_bar(_box_extent(top, box, renderer), drawn):
                break
        else:
            box.set_position((_BOX_GAP, 1 - _BOX_GAP))
            box.set_horizontalalignment("left")
            (_, y0), (_, y1) = _box_extent(top, box, renderer)
            height = (y1 - y0) / (top.get_ylim()[1] - top.get_ylim()[0])  # axes fraction
            needed_top = max(needed_top, 1.0 / (1.0 - 2 * _BOX_GAP - height))
            unplaced.append(top)
    if unplaced:
        for top, _ in pairs:
            top.set_ylim(0, needed_top)
            top.set_yticks(np.linspace(0, 1, 6))
            top.axhline(1.0, color="0.75", linewidth=0.8, zorder=0)
    figure.align_ylabels()
    figure.set_layout_engine("none")  # the layout is final: saving in several formats need not redo it


def legend_handles() -> list:
    """The legend's artists, one per element of a diagram, in the colours the diagram uses."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [Patch(facecolor=COLORS["accuracy"], edgecolor="black", linewidth=0.6, label=LEGEND_LABELS[0]),
            Patch(facecolor=COLORS["over"], edgecolor=COLORS["over_edge"], linewidth=0.8, label=LEGEND_LABELS[1]),
            Patch(facecolor=COLORS["under"], edgecolor=COLORS["under_edge"], linewidth=0.8,
                  label=LEGEND_LABELS[2]),
            Line2D([0, 1], [0, 1], linestyle="--", color=COLORS["diagonal"], linewidth=1.2,
                   label=LEGEND_LABELS[3])]


def _legend(figure, columns: int) -> None:
    figure.legend(handles=legend_handles(), loc="outside lower center", ncols=columns, frameon=False)


def reliability_figure(statistics: dict, title: Optional[str] = None, figsize=(4.6, 5.6)):
    """The reliability diagram of one set of per-bin statistics, as a matplotlib `Figure` (not saved).

    Args:
        statistics: `metric.bin_statistics()` of an `ExpectedCalibrationError` or `OverconfidenceError`.
        title: Title, e.g. `"resnet32x4 → ShuffleV1\\nKD + mixup"` (see `keras_calikd.training.report.run_title`).
        figsize: Size in inches; fonts are `MIN_FONT_SIZE` points or more at this size.

    Returns:
        A `matplotlib.figure.Figure` (no pyplot state is involved).

    Example:

    ```python
    figure = reliability_figure(ece.bin_statistics(), title="KD + mixup")
    figure.savefig("diagram.png", dpi=300)
    ```
    """
    from matplotlib import rc_context

    with rc_context(_STYLE):
        figure = _figure(figsize)
        top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        drawn = _draw(top, bottom, statistics, title)
        _legend(figure, columns=2)
        _place_boxes(figure, [(top, drawn)])
    return figure


def reliability_grid_figure(panels: Sequence[Tuple[str, dict]], columns: int = 3, title: Optional[str] = None):
    """Several reliability diagrams in one `Figure`, with aligned axes and one shared legend.

    All accuracy panels share their axes, and all histogram panels share theirs
    (the same limits), so bars compare across panels.

    Args:
        panels: `(title, statistics)` pairs, one per diagram.
        columns: Diagrams per row.
        title: Title of the whole figure.

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        ValueError: with no panel, or `columns` below 1.

    Example:

    ```python
    figure = reliability_grid_figure([("KD", kd.bin_statistics()), ("KD + mixup", mixup.bin_statistics())])
    ```
    """
    from matplotlib import rc_context

    if not panels:
        raise ValueError("A reliability grid needs at least one (title, statistics) panel.")
    if int(columns) != columns or columns < 1:
        raise ValueError(f"`columns` must be a positive integer, got {columns!r}.")
    columns = min(int(columns), len(panels))
    rows = -(-len(panels) // columns)
    with rc_context(_STYLE):
        figure = _figure((4.0 * columns, 4.6 * rows + 0.6 + (0.3 if title else 0.0)))
        figure.get_layout_engine().set(wspace=0.05)  # room between neighbouring panels' tick labels
        grid = figure.add_gridspec(2 * rows, columns, height_ratios=[3, 1] * rows)
        tops, bottoms, drawn = [], [], []
        for index, (panel_title, statistics) in enumerate(panels):
            row, column = divmod(index, columns)
            top = figure.add_subplot(grid[2 * row, column], sharex=tops[0] if tops else None,
                                     sharey=tops[0] if tops else None)
            bottom = figure.add_subplot(grid[2 * row + 1, column], sharex=top,
                                        sharey=bottoms[0] if bottoms else None)
            drawn.append(_draw(top, bottom, statistics, panel_title))
            if column:
                top.tick_params(labelleft=False)
                bottom.tick_params(labelleft=False)
                top.set_ylabel("")
                bottom.set_ylabel("")
            if index + columns < len(panels):  # another diagram below: its x label would collide
                bottom.set_xlabel("")
            tops.append(top)
            bottoms.append(bottom)
        highest = max(max((p.get_height() for p in b.patches), default=0.0) for b in bottoms)
        bottoms[0].set_ylim(0, max(highest, 1e-3) * 1.08)
        _legend(figure, columns=4 if columns >= 2 else 2)
        if title:
            figure.suptitle(title)
        _place_boxes(figure, list(zip(tops, drawn)))
    return figure


def _formats(path: str, formats: Optional[Sequence[str]]) -> list:
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in FORMATS:
        raise ValueError(f"A diagram's path must end in .png, .pdf or .svg, got {path!r}.")
    if formats is None:
        return [extension] + [f for f in FORMATS if f != extension]
    formats = [f.lower().lstrip(".") for f in formats]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"Unknown diagram formats {unknown}; choose among {', '.join(FORMATS)}.")
    return [extension] + [f for f in formats if f != extension]


def figure_paths(path: str, formats: Optional[Sequence[str]] = None) -> list:
    """The files `save_figure(figure, path, formats)` writes, `path` first (checked before any work).

    Example:

    ```python
    figure_paths("plots/kd.png")  # ["plots/kd.png", "plots/kd.pdf", "plots/kd.svg"]
    ```
    """
    stem = os.path.splitext(path)[0]
    return [path] + [f"{stem}.{fmt}" for fmt in _formats(path, formats)[1:]]


def save_figure(figure, path: str, formats: Optional[Sequence[str]] = None, dpi: int = PNG_DPI) -> list:
    """Writes `figure` at `path` and, beside it, in the other formats; each file atomically.

    Args:
        figure: A matplotlib `Figure`.
        path: Output path ending in `.png`, `.pdf` or `.svg`; its folder is created if needed.
        formats: Formats to write besides `path`'s own (default: all of png, pdf and svg).
        dpi: Resolution of the PNG.

    Returns:
        The written paths, `path` first.

    Example:

    ```python
    save_figure(reliability_figure(stats), "plots/kd.png")  # plots/kd.png, plots/kd.pdf, plots/kd.svg
    ```
    """
    from matplotlib import rc_context

    written = figure_paths(path, formats)
    for target in written:
        fmt = os.path.splitext(target)[1][1:].lower()
        with atomic_path(target, suffix=f".{fmt}") as temporary, rc_context(_STYLE):
            figure.savefig(temporary, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    return written


def _metadata(fmt: str) -> dict:
    """File metadata without creation dates, so the same figure gives the same bytes."""
    if fmt == "png":
        return {"Software": None}
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": None, "Producer": None}
    return {"Date": None, "Creator": None}


def plot_reliability_diagram(statistics: dict, path: str, title: Optional[str] = None, *,
                             formats: Optional[Sequence[str]] = None, dpi: int = PNG_DPI) -> str:
    """Draws accuracy against confidence per bin and writes the figure as PNG, PDF and SVG.

    Bars show each bin's accuracy; the gap to the bin's mean confidence is
    shaded (over- and under-confidence in their own colours), the diagonal is
    perfect calibration, and a lower panel shows the share of predictions per
    bin. A box gives the ECE and OE of these bins. Every file is written
    atomically.

    Args:
        statistics: `metric.bin_statistics()` of an `ExpectedCalibrationError`
            or `OverconfidenceError`.
        path: Output path (`.png`, `.pdf` or `.svg`); the other formats are
            written beside it with the same stem.
        title: Figure title, e.g. teacher -> student and method (see
            `keras_calikd.training.report.run_title`).
        formats: Formats to write (default: png, pdf and svg).
        dpi: Resolution of the PNG (default 300).

    Returns:
        `path`.

    Example:

    ```python
    ece = ck.metrics.ExpectedCalibrationError(num_bins=15, from_logits=True)
    ece.update_state(labels, logits)
    ck.metrics.plot_reliability_diagram(ece.bin_statistics(), "reliability.png", title="KD + mixup")
    ```
    """
    save_figure(reliability_figure(statistics, title), path, formats, dpi)
    return path


def plot_reliability_grid(panels: Sequence[Tuple[str, dict]], path: str, columns: int = 3, *,
                          title: Optional[str] = None, formats: Optional[Sequence[str]] = None,
                          dpi: int = PNG_DPI) -> str:
    """Several reliability diagrams side by side, one per `(title, statistics)` panel, as PNG, PDF and SVG.

    Args:
        panels: `(title, statistics)` pairs.
        path: Output path (`.png`, `.pdf` or `.svg`); the other formats are written beside it.
        columns: Diagrams per row.
        title: Title of the whole figure.
        formats: Formats to write (default: png, pdf and svg).
        dpi: Resolution of the PNG.

    Returns:
        `path`.

    Example:

    ```python
    ck.metrics.plot_reliability_grid([("KD", kd_stats), ("KD + mixup", mixup_stats)], "diagrams.png")
    ```
    """
    save_figure(reliability_grid_figure(panels, columns, title), path, formats, dpi)
    return path


def figure_to_array(figure, dpi: int = 100) -> np.ndarray:
    """Renders a matplotlib `Figure` to an `(height, width, 4)` uint8 RGBA array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba(), dtype=np.uint8).copy()


def reliability_image(statistics: dict, title: Optional[str] = None, dpi: int = 100) -> np.ndarray:
    """Renders a reliability diagram to an RGBA image array (e.g. for `tf.summary.image`).

    Args:
        statistics: `metric.bin_statistics()` of an `ExpectedCalibrationError` or `OverconfidenceError`.
        title: Diagram title.
        dpi: Pixels per inch (the figure is 4.6 x 5.6 inches).

    Returns:
        A `(height, width, 4)` uint8 array, RGBA.

    Example:

    ```python
    image = reliability_image(ece.bin_statistics(), title="epoch 3")
    tf.summary.image("reliability", image[None], step=3)
    ```
    """
    return figure_to_array(reliability_figure(statistics, title), dpi=dpi)
