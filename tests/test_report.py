"""The paper's numbers as data, and calikd-report: tables of runs beside the paper, best marks, CSV, figure."""

import csv
import io
import json
import os
import re

import pytest

from keras_calikd.cli import report as report_cli
from keras_calikd.reference import paper_cells, paper_runs
from keras_calikd.training import report

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCERPT = os.path.join(ROOT, "tests", "data", "paper_tables_excerpt.txt")

# ---------------------------------------------------------------- the paper's cells against its text

# The paper's labels, mapped to model names here, independently of the CSV.
PAIRS_T1 = {"WRN-40-2/ ShuffleNetV1": ("wrn_40_2", "ShuffleV1"),
            "ResNet32x4/ ShuffleNetV2": ("resnet32x4", "ShuffleV2"),
            "ResNet50/ MobileNetV2": ("ResNet50", "MobileNetV2"), "ResNet50/ VGG8": ("ResNet50", "vgg8"),
            "ResNet32x4/ ShuffleNetV1": ("resnet32x4", "ShuffleV1"), "VGG13/ MobileNetV2": ("vgg13", "MobileNetV2")}
COLUMNS_T1 = ["Teacher", "Student", "KD", "RKD", "CRD", "KD + cutout", "KD + mixup", "KD + CutMix"]
PAIRS_T23 = [("vgg13", "MobileNetV2"), ("ResNet50", "MobileNetV2"), ("vgg13", "vgg11")]
METRICS = ("accuracy", "ece", "oe")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def excerpt_sections():
    sections, current = {}, None
    with open(EXCERPT) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("## Table "):
                current = int(line.split()[-1])
                sections[current] = []
            elif current is not None and not line.startswith("#"):
                sections[current].append(line)
    return sections


def numbers(text):
    return [float(n) for n in NUMBER.findall(text)]


def csv_value(table, label, metric, teacher=None, student=None, corruption=None):
    found = [c for c in paper_cells(table=table, metric=metric) if c.label == label
             and (teacher is None or c.teacher == teacher) and (student is None or c.student == student)
             and c.corruption == corruption]
    assert len(found) == 1, (table, label, metric, teacher, student, corruption, found)
    return found[0]


def test_the_csv_covers_every_cell_of_every_table():
    counts = {table: len(paper_cells(table=table)) for table in range(1, 7)}
    # pairs x columns x (Acc, ECE, OE); Table 6: corruptions x rows x 3.
    assert counts == {1: 6 * 8 * 3, 2: 3 * 6 * 3, 3: 3 * 6 * 3, 4: 6 * 3, 5: 8 * 3, 6: 4 * 6 * 3}
    keys = [(c.table, c.dataset, c.corruption, c.teacher, c.student, c.label, c.metric) for c in paper_cells()]
    assert len(keys) == len(set(keys))
    assert {c.metric for c in paper_cells()} == set(METRICS)
    for cell in paper_cells():
        if cell.metric == "oe":  # OE <= ECE holds for every model: conf <= 1 in Eq. 15
            ece = csv_value(cell.table, cell.label, "ece", cell.teacher, cell.student, cell.corruption)
            assert cell.value <= ece.value, cell


def test_table_1_matches_the_text_cell_by_cell():
    lines = excerpt_sections()[1]
    assert lines[0].split("\t")[2:] == COLUMNS_T1
    for line in lines[1:]:
        label, metrics, rest = line.split("\t", 2)
        assert metrics == "Acc ECE OE"
        values = numbers(rest)  # the split KD + CutMix cell reads top to bottom: Acc, ECE, OE
        assert len(values) == 24, line
        teacher, student = PAIRS_T1[label]
        for index, column in enumerate(COLUMNS_T1):
            for offset, metric in enumerate(METRICS):
                cell = csv_value(1, column, metric, teacher, student)
                assert cell.value == values[3 * index + offset], (label, column, metric)
    assert csv_value(1, "KD + CutMix", "accuracy", "resnet32x4", "ShuffleV2").note


def test_table_2_matches_the_text_and_documents_its_reconstructions():
    lines = {line.split("\t")[0]: line for line in excerpt_sections()[2]}
    for label in ("KD", "KD + cutout"):
        values = numbers(lines[label].split("\t", 1)[1])
        for index, (teacher, student) in enumerate(PAIRS_T23):
            for offset, metric in enumerate(METRICS):
                assert csv_value(2, label, metric, teacher, student).value == values[3 * index + offset]
    both = numbers(lines["Teacher Student"].split("\t", 1)[1])
    # Per pair: teacher and student accuracies, then ECEs, then OEs; the first pair lacks the student's ECE.
    assert [csv_value(2, "Teacher", m, "vgg13", "MobileNetV2").value for m in METRICS] == [both[0], both[2], both[3]]
    assert csv_value(2, "Student", "oe", "vgg13", "MobileNetV2").value == both[4]
    assert [csv_value(2, "Student", m, "ResNet50", "MobileNetV2").value for m in METRICS] == [both[6], both[8],
                                                                                              both[10]]
    reconstructed = csv_value(2, "Student", "ece", "vgg13", "MobileNetV2")
    assert reconstructed.value == both[8] and "reconstructed" in reconstructed.note
    cutmix_line = [line for line in excerpt_sections()[2] if line.startswith("\t")][0]
    separate = numbers(cutmix_line)  # the KD + CutMix row again, with misread accuracies
    for index, (teacher, student) in enumerate(PAIRS_T23):
        assert csv_value(2, "KD + CutMix", "ece", teacher, student).value == separate[3 * index + 1]
        assert csv_value(2, "KD + CutMix", "oe", teacher, student).value == separate[3 * index + 2]
        assert csv_value(2, "KD + CutMix", "accuracy", teacher, student).note
    assert csv_value(2, "KD + CutMix", "accuracy", "ResNet50", "MobileNetV2").value == 96.22
    assert csv_value(2, "KD + mixup", "accuracy", "vgg13", "vgg11").value == 93.35


@pytest.mark.parametrize("table", [3, 4, 5])
def test_row_tables_match_the_text(table):
    pairs = {3: PAIRS_T23, 4: [("ResNet34", "ResNet18")], 5: [("wrn_40_2", "ShuffleV1")]}[table]
    checked = 0
    for line in excerpt_sections()[table]:
        label, _, rest = line.partition("\t")
        if not re.fullmatch(r"\d+(\.\d+)?", rest.split("\t")[0].strip()):
            continue  # a header line (model names, metric names)
        values = numbers(rest)
        assert len(values) == 3 * len(pairs), line
        for index, (teacher, student) in enumerate(pairs):
            for offset, metric in enumerate(METRICS):
                assert csv_value(table, label, metric, teacher, student).value == values[3 * index + offset]
                checked += 1
    assert checked == len(paper_cells(table=table))


def test_table_6_matches_the_text_per_corruption():
    lines = excerpt_sections()[6]
    checked = 0
    for line in lines[2:]:
        label, rest = line.split("\t", 1)
        values = numbers(rest)
        assert len(values) == 12, line
        for index, corruption in enumerate(("frost", "snow", "gaussian_blur", "motion_blur")):
            for offset, metric in enumerate(METRICS):
                cell = csv_value(6, label, metric, corruption=corruption)
                assert cell.value == values[3 * index + offset] and cell.dataset == "cifar100_corrupted"
                assert cell.run.startswith("cifar100/")  # the CIFAR-100 runs, evaluated on CIFAR-100-C
                assert cell.role != "distilled" or cell.run.startswith("cifar100/resnet32x4_shufflev1_kd")
                checked += 1
    assert checked == 72


def test_every_run_named_by_a_cell_has_a_gin_file():
    runs = paper_runs()
    assert "cinic10_cutmix" in runs and "cifar100/wrn_40_2_shufflev1_rkd_balanced" in runs
    missing = [run for run in runs if not os.path.isfile(os.path.join(ROOT, "gin", run + ".gin"))]
    assert not missing
    baselines = [c for c in paper_cells(table=1) if c.method in ("RKD", "CRD")]
    assert baselines and all(c.alpha is None and c.run.endswith(("_rkd", "_crd")) for c in baselines)
    assert {c.alpha for c in paper_cells(table=5)} == {0.5}
    with pytest.raises(ValueError, match="Tables 1-6"):
        paper_cells(table=7)


# ---------------------------------------------------------------- calikd-report

def write_run(root, name, dataset, role, model, accuracy, ece, oe, method=None, teacher_model=None, alpha=0.5,
              corruption=None, bins=100):
    result = {"name": name, "dataset": dataset, "role": role, "model": model, "accuracy": accuracy,
              f"ece_{bins}": ece, f"oe_{bins}": oe}
    if role == "distilled":
        result.update(method=method, teacher_model=teacher_model, alpha=alpha)
    if corruption:
        result["corruption"] = corruption
    folder = os.path.join(root, name.replace("/", os.sep) + (f"_{corruption}" if corruption else ""))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(result, f)
    return result


@pytest.fixture
def runs(tmp_path):
    """Tiny fabricated runs named like the paper's cells (WRN-40-2 -> ShuffleV1, Tables 1 and 5) and one other."""
    root = str(tmp_path / "runs")
    pair = dict(dataset="cifar100", teacher_model="wrn_40_2")
    write_run(root, "cifar100/teacher_wrn_40_2", "cifar100", "teacher", "wrn_40_2", 0.7751, 0.1, 0.08)
    write_run(root, "cifar100/student_shufflev1", "cifar100", "student", "ShuffleV1", 0.7, 0.125, 0.0952)
    write_run(root, "cifar100/wrn_40_2_shufflev1_kd_mixup", role="distilled", model="ShuffleV1", accuracy=0.75,
              ece=0.0512, oe=0.0002, method="KD + mixup", **pair)
    write_run(root, "cifar100/wrn_40_2_shufflev1_kd_cutmix", role="distilled", model="ShuffleV1", accuracy=0.75,
              ece=0.0448, oe=0.0004, method="KD + CutMix", **pair)
    write_run(root, "cifar100/wrn_40_2_shufflev1_rkd", role="distilled", model="ShuffleV1", accuracy=0.73,
              ece=0.13, oe=0.1, method="RKD", alpha=None, **pair)
    write_run(root, "cifar100/wrn_40_2_shufflev1_rkd_balanced", role="distilled", model="ShuffleV1",
              accuracy=0.7281, ece=0.12, oe=0.09, method="RKD", **pair)
    write_run(root, "experiments/wrn_40_2_shufflev1_kd_gridmask", role="distilled", model="ShuffleV1",
              accuracy=0.74, ece=0.06, oe=0.01, method="KD + GridMask", **pair)
    return root


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_report_with_the_paper_puts_its_value_and_the_difference_beside_each_cell(runs, tmp_path, capsys):
    output = str(tmp_path / "out" / "table")
    assert report_cli.main([runs, "--paper", "--output", output]) == 0
    markdown = open(output + ".md").read()
    assert markdown == capsys.readouterr().out.split("Wrote")[0].rstrip("\n") + "\n"
    # measured (paper; measured - paper); the accuracy 75.00 ties with KD + CutMix: both bold.
    assert "**75.00** (74.65; +0.35)" in markdown and "**75.00** (74.94; +0.06)" in markdown
    assert "0.051 (0.049; +0.002)" in markdown
    assert "77.51 (77.09; +0.42)" in markdown  # the teacher: no bold, it is not a candidate
    assert "RKD (1 x CE + w x loss)" in markdown and "RKD (alpha=0.5)" in markdown
    assert "73.00 (73.41; -0.41)" in markdown and "72.81 (72.81; +0.00)" in markdown
    assert "| 74.00 |" in markdown  # a run the paper does not report: measured only

    rows = {row["metric"]: row for row in read_csv(output + ".csv")}
    assert rows["Acc"]["KD + mixup"] == "75.00" and rows["Acc"]["KD + mixup (paper)"] == "74.65"
    assert float(rows["Acc"]["KD + mixup (measured - paper)"]) == pytest.approx(0.35)
    assert float(rows["ECE"]["KD + CutMix (measured - paper)"]) == pytest.approx(0.045 - 0.046)
    assert rows["Acc"]["KD + GridMask (paper)"] == "" and rows["Acc"]["KD + GridMask"] == "74.00"
    assert rows["Acc"]["RKD (1 x CE + w x loss) (paper)"] == "73.41"
    assert rows["Acc"]["RKD (alpha=0.5) (paper)"] == "72.81"
    for path in (output + "_ece_accuracy.png", output + "_ece_accuracy.pdf", output + "_ece_accuracy.svg"):
        assert os.path.getsize(path) > 1000
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith(".calikd-tmp-")]


def test_csv_is_numeric_with_a_best_column_and_ties_marked_alike_in_markdown(runs):
    results = report.find_results([runs])
    table = report.pairs_table(results, "cifar100")
    rows = list(csv.DictReader(io.StringIO(report.to_csv(table))))
    assert [row["metric"] for row in rows] == ["Acc", "ECE", "OE"]
    value_columns = [c for c in rows[0] if c not in ("dataset", "pair", "metric", "best")]
    assert value_columns == table["columns"]
    for row in rows:
        for column in value_columns:
            if row[column]:
                float(row[column])  # numbers only: no "*" or markup
    best = {row["metric"]: row["best"].split(";") for row in rows}
    assert best["Acc"] == ["KD + mixup", "KD + CutMix"]  # 75.00 twice
    assert best["OE"] == ["KD + mixup", "KD + CutMix"]  # 0.0002 and 0.0004 both print as 0.000
    assert best["ECE"] == ["KD + CutMix"]
    markdown = report.to_markdown(table)
    oe_line = [line for line in markdown.splitlines() if "| OE |" in line][0]
    assert oe_line.count("**0.000**") == 2 and "**" not in oe_line.split("|")[3]  # the teacher is never best


def test_two_alphas_of_one_method_are_two_columns_and_duplicate_cells_are_refused(runs):
    results = report.find_results([runs])
    table = report.pairs_table(results, "cifar100")
    assert table["columns"][:4] == ["Teacher", "Student", "RKD (1 x CE + w x loss)", "RKD (alpha=0.5)"]
    acc = table["rows"][0]["values"]
    assert acc["RKD (1 x CE + w x loss)"] == pytest.approx(73.0) and acc["RKD (alpha=0.5)"] == pytest.approx(72.81)
    twin = dict(results[-1], name="cifar100/another_kd_mixup", method="KD + mixup", alpha=0.5)
    with pytest.raises(ValueError, match="cifar100/another_kd_mixup.*cifar100/wrn_40_2_shufflev1_kd_mixup"):
        report.pairs_table(results + [twin], "cifar100")


def test_another_bin_count_is_flagged_against_the_paper(tmp_path, capsys):
    root = str(tmp_path / "runs")
    write_run(root, "cifar10/vgg13_vgg11_kd", "cifar10", "distilled", "vgg11", 0.93, 0.05, 0.04, method="KD",
              teacher_model="vgg13", bins=15)
    assert report_cli.main([root, "--paper", "--bins", "15"]) == 0
    out = capsys.readouterr().out
    assert "use 15 bins but the paper's use 100" in out and "**0.050** (0.050; +0.000)" in out
    with pytest.raises(ValueError, match="store ECE/OE at 15 bins, not 100"):
        report_cli.main([root, "--paper"])


def test_table_6_cells_match_a_corruption_evaluation(tmp_path):
    root = str(tmp_path / "runs")
    write_run(root, "cifar100/resnet32x4_shufflev1_kd_mixup", "cifar100_corrupted", "distilled", "ShuffleV1",
              0.57, 0.05, 0.02, method="KD + mixup", teacher_model="resnet32x4", corruption="snow")
    (table,) = report.tables_for(report.find_results([root]), paper=True)
    assert table["corruption"] == "snow"
    assert table["rows"][0]["paper"]["KD + mixup"] == 60.24
    assert "**cifar100_corrupted/snow**" in report.to_markdown(table)
    assert "corruption" in report.to_csv(table).splitlines()[0].split(",")


def test_report_errors_are_value_errors_and_one_line_on_the_console(tmp_path, capsys):
    with pytest.raises(ValueError, match="does not exist"):
        report_cli.main([str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="unrecognized arguments: --bogus"):
        report_cli.main([str(tmp_path), "--bogus"])
    with pytest.raises(ValueError, match="no results.json"):
        report_cli.main([str(tmp_path)])
    assert report_cli.common.run(report_cli.main, [str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_diagram_titles_come_from_the_runs_metadata():
    stats = {"edges": [0.0, 0.5, 1.0], "count": [1, 1], "confidence": [0.4, 0.9], "accuracy": [0.0, 1.0]}
    results = [dict(name="cifar100/teacher_resnet32x4", dataset="cifar100", role="teacher", model="resnet32x4",
                    reliability_15=stats),
               dict(name="cifar100/resnet32x4_shufflev1_kd_mixup", dataset="cifar100", role="distilled",
                    model="ShuffleV1", teacher_model="resnet32x4", method="KD + mixup", alpha=0.5,
                    reliability_15=stats),
               dict(name="cifar100/resnet32x4_shufflev1_crd", dataset="cifar100", role="distilled",
                    model="ShuffleV1", teacher_model="resnet32x4", method="CRD", alpha=None, reliability_15=stats)]
    titles = [title for title, _ in report.reliability_panels(results)]
    assert titles == ["resnet32x4 (teacher)\ncifar100", "resnet32x4 → ShuffleV1\nCRD (1 x CE + w x loss), cifar100",
                      "resnet32x4 → ShuffleV1\nKD + mixup, cifar100"]
    assert not any("cifar100/" in title for title in titles)  # no run names (paths)


# ---------------------------------------------------------------- temperature-scaled runs (the quickstart summary: test_seed_groups.py)

def _quick(role, model, accuracy, ece, oe, method=None, seed=0, scaled=None):
    result = {"dataset": "fashion_mnist", "role": role, "model": model, "accuracy": accuracy, "ece_15": ece,
              "oe_15": oe, "name": f"quickstart/seed{seed}/{method or role}"}
    if method:
        result.update(method=method, teacher_model="resnet14", teacher="quickstart/teacher", alpha=0.5)
    if scaled:
        result["temperature_scaled"] = dict(zip(("accuracy", "ece_15", "oe_15"), scaled), temperature=1.7)
    return result


def test_a_temperature_scaled_run_becomes_its_own_column():
    from keras_calikd.training.report import with_temperature_scaled

    results = with_temperature_scaled([_quick("distilled", "resnet8", 0.8, 0.09, 0.07, "KD",
                                              scaled=(0.8, 0.02, 0.01))])
    assert [r["method"] for r in results] == ["KD", "KD + TS"]
    assert (results[1]["ece_15"], results[1]["name"]) == (0.02, "quickstart/seed0/KD + TS")
    assert "temperature_scaled" not in results[1]
