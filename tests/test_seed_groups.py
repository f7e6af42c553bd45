"""calikd-report and calikd-quickstart over seeds: cells of several seeds, paired differences and their verdicts.

Synthetic `results.json` folders only (no training). The references are written from the textbook definitions:
the sample standard deviation with divisor n - 1, and the two-sided 95% Student's t quantiles from a t table.
"""

import csv
import json
import math
import os

import numpy as np
import pytest

from keras_calikd import metrics
from keras_calikd.cli import quickstart
from keras_calikd.cli import report as report_cli
from keras_calikd.training import report, report_figures

pytestmark = pytest.mark.backend_neutral

#: t_{0.975, df}: the two-sided 95% quantiles of Student's t distribution (a t table, more digits).
T_975 = {2: 4.302652729749464, 3: 3.182446305284263, 4: 2.7764451051977987}

ECE = {"Student": [0.031, 0.024, 0.029], "KD": [0.020, 0.017, 0.024], "KD + mixup": [0.012, 0.008, 0.015]}
ACC = {"Student": [0.801, 0.794, 0.799], "KD": [0.790, 0.792, 0.787], "KD + mixup": [0.783, 0.788, 0.781]}


def write(root, name, role, seed, accuracy, ece, oe=0.01, method=None, configuration=None, **extra):
    result = {"name": name, "dataset": "fashion_mnist", "role": role, "model": "resnet14" if role == "teacher"
              else "resnet8", "accuracy": accuracy, "ece_15": ece, "oe_15": oe, "seed": seed,
              "configuration": configuration or f"config-{role}-{method}", **extra}
    if method:
        result.update(method=method, teacher_model="resnet14", teacher="quickstart/teacher", alpha=0.5)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(result, f)
    return result


def study(root, ece=ECE, acc=ACC):
    """A teacher (one seed) and the student, KD and KD + mixup at seeds 0, 1, 2, named like the quickstart's."""
    runs = [write(root, "quickstart/teacher", "teacher", 0, 0.807, 0.058, 0.047)]
    for seed in range(3):
        prefix = "quickstart" if seed == 0 else f"quickstart/seed{seed}"
        runs.append(write(root, f"{prefix}/student", "student", seed, acc["Student"][seed], ece["Student"][seed]))
        for method, folder in (("KD", "kd"), ("KD + mixup", "kd_mixup")):
            runs.append(write(root, f"{prefix}/{folder}", "distilled", seed, acc[method][seed], ece[method][seed],
                              method=method))
    return runs


def t_interval(values):
    """mean, sd (divisor n - 1) and the 95% t interval of the mean, from the textbook formulas."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    mean = sum(x) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    half = T_975[n - 1] * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


STATISTICS = {"edges": [0.0, 0.5, 1.0], "count": [1, 1], "confidence": [0.4, 0.9], "accuracy": [0.0, 1.0]}


def test_the_quickstart_over_seeds_reports_cells_and_paired_differences_with_t_intervals(tmp_path, monkeypatch):
    """calikd-quickstart --seeds 0,1,2 (its training replaced by synthetic runs) -> summary.md and calikd-report's
    files, checked against the textbook t intervals; the reliability diagrams are seed 0's."""
    values = {"quickstart/student": "Student", "quickstart/kd": "KD", "quickstart/kd_mixup": "KD + mixup"}

    def train(run, name, seed, runs_dir, bindings):
        assert f"RUNS_DIR = {str(tmp_path)!r}" in bindings
        if run == quickstart.TEACHER:
            return write(runs_dir, name, "teacher", seed, 0.807, 0.058, 0.047, reliability_15=STATISTICS)
        method = values[run]
        return write(runs_dir, name, "student" if method == "Student" else "distilled", seed, ACC[method][seed],
                     ECE[method][seed], method=None if method == "Student" else method, reliability_15=STATISTICS)

    drawn = {}  # the figures' inputs (drawing them is tested in test_report.py and below): seconds saved
    monkeypatch.setattr(quickstart, "_train", train)
    monkeypatch.setitem(quickstart.STUDIES, "paper", tuple(values))
    monkeypatch.setattr(report_figures, "plot_accuracy_calibration",
                        lambda tables, path: drawn.setdefault("ece_accuracy", (tables, path)) and [path])
    monkeypatch.setattr(metrics, "plot_reliability_grid",
                        lambda panels, path: drawn.setdefault("grid", panels) and path)
    assert quickstart.main(["--runs_dir", str(tmp_path), "--seeds", "0,1,2"]) == 0
    output = str(tmp_path / "quickstart" / "report")
    markdown = open(output + ".md").read()
    assert open(str(tmp_path / "quickstart" / "summary.md")).read() == markdown
    mean, sd, low, high = t_interval(ECE["KD"])
    assert f"{mean:.3f} ± {sd:.3f} [{low:.3f}, {high:.3f}]" in markdown
    assert "Seeds per cell: 1, 3." in markdown and "Student's t" in markdown
    assert "| 80.70 |" in markdown  # the teacher: one seed, its value alone
    tables, path = drawn["ece_accuracy"]
    assert path == output + "_ece_accuracy.png" and tables[0]["rows"][1]["summaries"]["KD"].n == 3
    assert [title.split("\n")[0] for title, _ in drawn["grid"]] == [  # seed 0's runs only
        "resnet14 (teacher)", "resnet8 (from scratch)", "resnet14 → resnet8", "resnet14 → resnet8"]

    rows = {row["metric"]: row for row in read_csv(output + ".csv")}
    for metric, scale, values in (("ECE", 1.0, ECE), ("Acc", 100.0, ACC)):
        for column in ("Student", "KD", "KD + mixup"):
            mean, sd, low, high = t_interval([scale * v for v in values[column]])
            row = rows[metric]
            assert (row[f"{column} n"], float(row[column])) == ("3", pytest.approx(mean, abs=0.006))
            assert [float(row[f"{column} {k}"]) for k in ("sd", "low", "high")] == pytest.approx(
                [sd, low, high], abs=0.0006 if metric == "Acc" else 0.00006)
    assert rows["ECE"]["Teacher n"] == "1" and rows["ECE"]["Teacher sd"] == ""

    differences = {(r["metric"], r["a"], r["b"]): r for r in read_csv(output + "_differences.csv")}
    for a, b in (("KD + mixup", "KD"), ("KD", "Student"), ("KD + mixup", "Student")):
        paired = np.subtract(ECE[a], ECE[b])
        mean, sd, low, high = t_interval(paired)
        row = differences[("ECE", a, b)]
        assert [float(row[k]) for k in ("mean", "sd", "low", "high")] == pytest.approx([mean, sd, low, high],
                                                                                         rel=1e-9)
        assert (row["n"], row["seeds"]) == ("3", "0;1;2")
        assert row["verdict"] == ("lower" if high < 0 else "higher" if low > 0 else
                                  "no difference detected at 3 seeds")
    assert differences[("ECE", "KD + mixup", "KD")]["verdict"] == "lower"
    # The joint with the ownership rule: the quickstart's outputs are recorded as the tools' own, so a rerun
    # replaces them instead of refusing them as a user's files.
    manifest = json.load(open(tmp_path / "quickstart" / ".calikd-outputs.json"))["files"]
    assert {"summary.md", "report.md", "report.csv", "report_differences.csv"} <= set(manifest)
    from keras_calikd.files import Outputs

    Outputs("calikd-quickstart", overwrite=True).claim(str(tmp_path / "quickstart" / "summary.md"))
    for name in ("report.md", "report.csv", "report_differences.csv"):
        Outputs("calikd-report", overwrite=True).claim(str(tmp_path / "quickstart" / name))
    assert ("ECE", "Student", "KD") not in differences  # each pair of columns once
    assert "| resnet14/resnet8 | ECE | KD + mixup | KD | -0.009 [" in markdown and "| lower |" in markdown


def test_a_verdict_becomes_no_difference_when_the_spread_over_seeds_covers_the_gap(tmp_path):
    clear = dict(ECE, **{"KD + mixup": [0.012, 0.008, 0.015]})  # 0.0087 below KD, seed by seed within 0.004
    noisy = dict(ECE, **{"KD + mixup": [0.002, 0.028, 0.005]})  # the same mean difference, spread 0.014
    verdicts = []
    for name, ece in (("clear", clear), ("noisy", noisy)):
        study(str(tmp_path / name), ece=ece)
        (table,) = report.tables_for(report.find_results([str(tmp_path / name)]), bins=15)
        found = {(c["metric"], c["column"], c["reference"]): c for c in report.seed_groups.comparisons(table)}
        verdicts.append(found[("ECE", "KD + mixup", "KD")]["verdict"])
        assert found[("ECE", "KD + mixup", "KD")]["difference"].mean == pytest.approx(-0.026 / 3)
    assert verdicts == ["lower", "no difference detected at 3 seeds"]


def test_cells_hold_the_seeds_of_one_configuration_only(tmp_path):
    root = str(tmp_path / "runs")
    study(root)
    results = report.find_results([root])
    (kd_mixup,) = [r for r in results if r["name"] == "quickstart/kd_mixup"]
    other = dict(kd_mixup, name="quickstart/seed3/kd_mixup", seed=3, configuration="another")
    with pytest.raises(ValueError, match="differ in more than their seed"):
        report.tables_for(results + [other], bins=15)
    twin = dict(kd_mixup, name="quickstart/copy/kd_mixup")
    with pytest.raises(ValueError, match="two of them share a seed"):
        report.tables_for(results + [twin], bins=15)
    old = {k: v for k, v in twin.items() if k not in ("seed", "configuration")}
    with pytest.raises(ValueError, match="lacks its seed and configuration"):
        report.tables_for(results + [old], bins=15)


def test_the_report_says_how_checkpoints_were_picked_and_help_says_how_intervals_are_computed(tmp_path):
    root = str(tmp_path / "runs")
    runs = study(root)
    (table,) = report.tables_for(runs, bins=15)
    assert "best epoch by validation accuracy (select_by)" in report.to_markdown(table)
    (table,) = report.tables_for([dict(r, select_by="nll") for r in runs[:4]] + runs[4:], bins=15)
    assert "validation NLL (4 runs)" in report.to_markdown(table)
    text = report_cli.parser().format_help()
    assert "Student's t interval" in text and "sd / sqrt(n)" in text and "excludes\nzero" in text


def test_the_figure_draws_error_bars_for_cells_of_several_seeds(tmp_path):
    runs = study(str(tmp_path / "runs"))
    bars = {}
    for seeds, runs_of in (("all", runs), ("seed 0", runs[:4])):
        figure = report_figures.accuracy_calibration_figure(report.tables_for(runs_of, bins=15))
        bars[seeds] = [c for c in figure.axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert (len(bars["all"]), len(bars["seed 0"])) == (3, 0)  # Student, KD, KD + mixup; one seed: none
    _, _, (x_bar, y_bar) = bars["all"][0]  # the student's
    _, _, low, high = t_interval([100 * v for v in ACC["Student"]])
    assert x_bar.get_segments()[0][:, 0] == pytest.approx([low, high])
    _, _, low, high = t_interval(ECE["Student"])
    assert y_bar.get_segments()[0][:, 1] == pytest.approx([low, high])


def test_a_temperature_scaled_seed_is_its_own_column_paired_on_its_seeds(tmp_path):
    runs = study(str(tmp_path / "runs"))
    runs[2]["temperature_scaled"] = {"accuracy": 0.79, "ece_15": 0.01, "oe_15": 0.005, "temperature": 1.3}
    text = quickstart.summary(runs)
    assert "| resnet14/resnet8 | ECE | KD + TS | KD | -0.010 | 1 | undecided (one seed) |" in text
    assert "One seed decides no difference" not in text  # the other cells have 3 seeds


def test_the_single_seed_summary_states_the_difference_one_seed_cannot_resolve(tmp_path):
    runs = study(str(tmp_path / "runs"))[:4]  # seed 0
    widths = [0.0040, 0.0050, 0.0052, 0.0090]
    for run, width in zip(runs, widths):
        run["intervals"] = {"estimates": {"ece_15": {"value": run["ece_15"], "low": run["ece_15"] - width,
                                                     "high": run["ece_15"] + width}}}
    text = quickstart.summary(runs)
    assert "ECE ±0.005 [0.004, 0.009]" in text  # the median half-width 0.0051 (their mean: 0.0058)
    assert "undecided (one seed)" in text and "| lower |" not in text
    assert quickstart.MEASURED_SEED_SPREAD in text and "one seed resolves no difference from KD" in text
