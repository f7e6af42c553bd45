"""Reliability diagrams from the per-bin statistics of a calibration metric."""

from __future__ import annotations

import os
import tempfile
from typing import Sequence, Tuple

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _draw(top, bottom, statistics: dict, title: str | None) -> None:
    """Draws one diagram: per-bin accuracy bars with the gap to confidence (top), bin occupancy (bottom)."""
    edges = np.asarray(statistics["edges"], dtype=np.float64)
    count = np.asarray(statistics["count"], dtype=np.float64)
    accuracy = np.asarray(statistics["accuracy"], dtype=np.float64)
    confidence = np.asarray(statistics["confidence"], dtype=np.float64)
    left, widths = edges[:-1], np.diff(edges)
    occupied = count > 0
    total = max(count.sum(), 1e-12)
    ece = float(np.sum(count / total * np.abs(accuracy - confidence)))

    top.bar(left[occupied], accuracy[occupied], width=widths[occupied], align="edge",
            color="#4c72b0", edgecolor="black", linewidth=0.5, label="accuracy")
    gap_bottom = np.minimum(accuracy, confidence)[occupied]
    top.bar(left[occupied], np.abs(confidence - accuracy)[occupied], bottom=gap_bottom, width=widths[occupied],
            align="edge", color="#dd8452", alpha=0.5, edgecolor="#dd8452", label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=7)
    top.text(0.97, 0.03, f"ECE = {ece:.3f}", ha="right", va="bottom", transform=top.transAxes)
    if title:
        top.set_title(title, fontsize=9)
    bottom.bar(left, count / total, width=widths, align="edge", color="gray", edgecolor="black", linewidth=0.5)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("fraction")


def _save(figure, path: str) -> str:
    """Writes `figure` as a PNG atomically: a failed write leaves no partial file under `path`."""
    pyplot = _pyplot()
    figure.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=120)
        os.replace(temporary, path)
    finally:
        pyplot.close(figure)
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def plot_reliability_diagram(statistics: dict, path: str, title: str | None = None) -> str:
    """Draws accuracy against confidence per bin and writes the figure as a PNG.

    Bars show each bin's accuracy; the gap to the bin's mean confidence is
    shaded, and a lower panel shows how many predictions fall in each bin.
    The file is written atomically.

    Args:
        statistics: `metric.bin_statistics()` of an `ExpectedCalibrationError`
            or `OverconfidenceError`.
        path: Output `.png` path; its folder must exist.
        title: Figure title.

    Returns:
        `path`.

    Example:

    ```python
    ece = ck.metrics.ExpectedCalibrationError(num_bins=15, from_logits=True)
    ece.update_state(labels, logits)
    ck.metrics.plot_reliability_diagram(ece.bin_statistics(), "reliability.png", title="KD + mixup")
    ```
    """
    figure, (top, bottom) = _pyplot().subplots(2, 1, figsize=(4.5, 5.5), sharex=True,
                                               gridspec_kw={"height_ratios": [3, 1]})
    _draw(top, bottom, statistics, title)
    return _save(figure, path)


def plot_reliability_grid(panels: Sequence[Tuple[str, dict]], path: str, columns: int = 3) -> str:
    """Several reliability diagrams side by side, one per `(title, statistics)` panel, in one PNG.

    Example:

    ```python
    ck.metrics.plot_reliability_grid([("KD", kd_stats), ("KD + mixup", mixup_stats)], "diagrams.png")
    ```
    """
    if not panels:
        raise ValueError("plot_reliability_grid needs at least one (title, statistics) panel.")
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = _pyplot().subplots(2 * rows, columns, figsize=(4.0 * columns, 5.0 * rows), squeeze=False,
                                      gridspec_kw={"height_ratios": [3, 1] * rows})
    for index in range(rows * columns):
        row, column = divmod(index, columns)
        top, bottom = axes[2 * row, column], axes[2 * row + 1, column]
        if index < len(panels):
            title, statistics = panels[index]
            _draw(top, bottom, statistics, title)
        else:
            top.axis("off")
            bottom.axis("off")
    return _save(figure, path)
