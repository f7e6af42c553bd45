"""Reliability diagrams: legend, colours, fonts, the ECE/OE box off the bars, aligned grids, files, images."""

import os

import numpy as np
import pytest

import keras_calikd as ck
from keras_calikd.metrics import reliability

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral


def statistics(accuracy, confidence, count=None):
    accuracy = np.asarray(accuracy, dtype=float)
    bins = len(accuracy)
    return {"edges": np.linspace(0, 1, bins + 1), "count": np.ones(bins) * 10 if count is None else np.asarray(count),
            "confidence": np.asarray(confidence, dtype=float), "accuracy": accuracy}


OVERCONFIDENT = statistics([0.0, 0.1, 0.2, 0.3, 0.6], [0.1, 0.3, 0.5, 0.7, 0.95], count=[0, 5, 10, 20, 65])
UNDERCONFIDENT = statistics([0.3, 0.7, 0.8, 0.9, 1.0], [0.1, 0.3, 0.5, 0.7, 0.9])
ALL_HIGH = statistics([0.95] * 5, [0.1, 0.3, 0.5, 0.7, 0.9])  # bars reach the top everywhere


def reference_errors(s):
    """Eq. 14 and 15, written out independently."""
    share = np.asarray(s["count"], float) / np.sum(s["count"])
    gap = s["confidence"] - s["accuracy"]
    return float(np.sum(share * np.abs(gap))), float(np.sum(share * s["confidence"] * np.maximum(gap, 0)))


def _accuracy_axes(figure):
    return [axes for axes in figure.axes if axes.get_ylabel() == "Accuracy" or axes.texts]


def _box(axes):
    (box,) = [text for text in axes.texts if "ECE" in text.get_text() or "no predictions" in text.get_text()]
    return box


def _bar_extents(axes, renderer):
    return [patch.get_window_extent(renderer) for patch in axes.patches
            if patch.get_visible() and patch.get_height() > 0 and patch.get_width() > 0]


def test_legend_names_each_element_in_the_colour_it_is_drawn():
    from matplotlib.colors import to_rgba

    figure = reliability.reliability_figure(OVERCONFIDENT, title="t")
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["Accuracy", "Over-confidence gap", "Under-confidence gap",
                                                          "Perfect calibration"]
    handles = legend.legend_handles
    top = _accuracy_axes(figure)[0]
    filled = {to_rgba(p.get_facecolor()) for p in top.patches if p.get_fill()}
    assert to_rgba(handles[0].get_facecolor()) in filled  # accuracy bars
    assert to_rgba(handles[1].get_facecolor()) in filled  # over-confidence gaps: this model has some
    assert handles[1].get_facecolor() != handles[2].get_facecolor()
    under = reliability.reliability_figure(UNDERCONFIDENT)
    assert to_rgba(handles[2].get_facecolor()) in {to_rgba(p.get_facecolor())
                                                   for p in _accuracy_axes(under)[0].patches if p.get_fill()}
    (diagonal,) = [line for line in top.lines if list(line.get_xdata()) == [0, 1]]
    assert diagonal.get_linestyle() == handles[3].get_linestyle() == "--"
    assert to_rgba(diagonal.get_color()) == to_rgba(handles[3].get_color())


@pytest.mark.parametrize("stats", [OVERCONFIDENT, UNDERCONFIDENT, ALL_HIGH], ids=["over", "under", "all_high"])
def test_box_holds_ece_and_oe_and_covers_no_bar(stats):
    figure = reliability.reliability_figure(stats, title="teacher → student\nKD + mixup")
    renderer = figure.canvas.get_renderer()
    top = _accuracy_axes(figure)[0]
    box = _box(top)
    ece, oe = reference_errors(stats)
    assert f"ECE = {ece:.3f}" in box.get_text() and f"OE = {oe:.3f}" in box.get_text()
    extent = box.get_bbox_patch().get_window_extent(renderer)
    assert extent.y1 <= top.get_window_extent(renderer).y1 + 1  # inside the accuracy axes
    assert not [bar for bar in _bar_extents(top, renderer) if bar.overlaps(extent)]


def test_every_text_is_at_least_10_points():
    from matplotlib.text import Text

    for figure in (reliability.reliability_figure(OVERCONFIDENT, title="a → b\nKD"),
                   reliability.reliability_grid_figure([("a", OVERCONFIDENT), ("b", ALL_HIGH), ("c", UNDERCONFIDENT),
                                                        ("d", OVERCONFIDENT)], columns=3, title="CIFAR-100")):
        figure.canvas.draw()
        texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert len(texts) > 20
        assert min(t.get_fontsize() for t in texts) >= 10


def test_grid_panels_share_limits_and_line_up():
    panels = [("first", OVERCONFIDENT), ("second", ALL_HIGH), ("third", UNDERCONFIDENT), ("fourth", OVERCONFIDENT)]
    figure = reliability.reliability_grid_figure(panels, columns=2)
    renderer = figure.canvas.get_renderer()
    tops = [axes for axes in figure.axes if axes.texts]
    bottoms = [axes for axes in figure.axes if axes.get_visible() and axes not in tops]
    assert len(tops) == len(bottoms) == 4
    assert len({axes.get_ylim() for axes in tops}) == 1 and len({axes.get_xlim() for axes in tops}) == 1
    assert len({axes.get_ylim() for axes in bottoms}) == 1 and len({axes.get_xlim() for axes in bottoms}) == 1
    assert tops[0].get_ylim()[1] > 1.0  # head room for the box of the panel whose bars reach the top
    positions = [axes.get_position() for axes in tops]
    assert positions[0].y1 == pytest.approx(positions[1].y1) and positions[2].x0 == pytest.approx(positions[0].x0)
    assert len({round(p.width, 6) for p in positions}) == 1 and len({round(p.height, 6) for p in positions}) == 1
    for axes in tops:
        assert not [bar for bar in _bar_extents(axes, renderer)
                    if bar.overlaps(_box(axes).get_bbox_patch().get_window_extent(renderer))]
    assert [axes.get_title() for axes in tops] == ["first", "second", "third", "fourth"]


def test_diagram_is_written_as_png_pdf_and_svg_atomically(tmp_path):
    path = str(tmp_path / "reliability.png")
    assert ck.metrics.plot_reliability_diagram(OVERCONFIDENT, path, title="vgg13 → MobileNetV2\nKD") == path
    with open(path, "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (round(4.6 * 300), round(5.6 * 300))  # print resolution
    with open(tmp_path / "reliability.pdf", "rb") as f:
        assert f.read(5) == b"%PDF-"
    assert "<svg" in (tmp_path / "reliability.svg").read_text()[:2000]
    assert sorted(os.listdir(tmp_path)) == ["reliability.pdf", "reliability.png", "reliability.svg"]  # no .tmp-*
    grid = str(tmp_path / "grid.svg")
    ck.metrics.plot_reliability_grid([("a", OVERCONFIDENT), ("b", UNDERCONFIDENT)], grid, 2, formats=["svg"])
    assert os.path.isfile(grid) and not os.path.exists(tmp_path / "grid.png")
    with pytest.raises(ValueError, match=r"\.png, \.pdf or \.svg"):
        ck.metrics.plot_reliability_diagram(OVERCONFIDENT, str(tmp_path / "x.jpg"))


def test_image_array_and_statistics_of_a_metric():
    metric = ck.metrics.ExpectedCalibrationError(num_bins=10, from_logits=False)
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]], "float32")
    metric.update_state(np.array([0, 1, 1, 1]), probabilities)
    image = reliability.reliability_image(metric.bin_statistics(), title="epoch 1", dpi=50)
    assert image.dtype == np.uint8 and image.shape == (280, 230, 4)
    assert image[..., :3].std() > 10
    ece, _ = reliability.calibration_errors(metric.bin_statistics())
    assert ece == pytest.approx(float(metric.result()), abs=1e-6)
    with pytest.raises(ValueError, match="lack accuracy"):
        reliability.reliability_figure({"edges": [0, 1], "count": [1], "confidence": [0.5]})
    with pytest.raises(ValueError, match="inconsistent"):
        reliability.reliability_figure(dict(OVERCONFIDENT, count=[1, 2]))
