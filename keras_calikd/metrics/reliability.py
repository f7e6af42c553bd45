"""Reliability diagrams from the per-bin statistics of a calibration metric."""

from __future__ import annotations

import os
import tempfile

import numpy as np


def plot_reliability_diagram(statistics: dict, path: str, title: str | None = None) -> str:
    """Draws accuracy against confidence per bin and writes the figure as a PNG.

    Bars show each bin's accuracy; the gap to the diagonal (the bin's mean
    confidence) is shaded, and a lower panel shows how many predictions fall
    in each bin. The file is written atomically: a failed write leaves no
    partial PNG behind.

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
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    edges = np.asarray(statistics["edges"], dtype=np.float64)
    count = np.asarray(statistics["count"], dtype=np.float64)
    accuracy = np.asarray(statistics["accuracy"], dtype=np.float64)
    confidence = np.asarray(statistics["confidence"], dtype=np.float64)
    left, widths = edges[:-1], np.diff(edges)
    occupied = count > 0
    total = max(count.sum(), 1e-12)
    ece = float(np.sum(count / total * np.abs(accuracy - confidence)))

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    top.bar(left[occupied], accuracy[occupied], width=widths[occupied], align="edge",
            color="#4c72b0", edgecolor="black", linewidth=0.5, label="accuracy")
    gap_bottom = np.minimum(accuracy, confidence)[occupied]
    top.bar(left[occupied], np.abs(confidence - accuracy)[occupied], bottom=gap_bottom, width=widths[occupied],
            align="edge", color="#dd8452", alpha=0.5, edgecolor="#dd8452", label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.text(0.97, 0.03, f"ECE = {ece:.3f}", ha="right", va="bottom", transform=top.transAxes)
    if title:
        top.set_title(title)
    bottom.bar(left, count / total, width=widths, align="edge", color="gray", edgecolor="black", linewidth=0.5)
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("fraction")
    figure.tight_layout()

    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=120)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        if os.path.exists(temporary):
            os.remove(temporary)
    return path
