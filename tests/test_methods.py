"""A run's method as data: what results.json stores, how the reports order and draw it, and a new strategy's way in."""

import json
import os
import re
import sys

import gin
import pytest

import keras_calikd as ck
from conformance import (README, check_config_round_trip, check_gin_binding, check_published_defaults,
                         check_strategy_trains_and_saves)
from keras_calikd.cli import report as report_cli
from keras_calikd.gin_support import configure, register_configurables
from keras_calikd.training import methods, report, report_figures
from tiny import tiny_cnn

# A distillation strategy as a newcomer writes it: one module (CONTRIBUTING.md, "Adding a distillation").
STRATEGY_MODULE = '''"""PKD: KD with the teacher's logits shifted to zero mean (an example: one module and one gin file)."""

from keras import ops

from keras_calikd import checks
from keras_calikd.distillations.base import DISTILLATIONS, Distillation


@DISTILLATIONS.register("pkd")
class PKD(Distillation):
    label = "PKD"
    table_position = 1.5  # between RKD (1) and CRD (2)
    color = "#123456"

    def __init__(self, temperature: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = checks.number("PKD", "temperature", temperature, low=0.0, low_open=True)

    def compute_loss(self, teacher, student, batch, training=True):
        t = self.temperature
        shifted = teacher.logits - ops.mean(teacher.logits, axis=-1, keepdims=True)
        log_p = ops.log_softmax(shifted / t, axis=-1)
        return ops.mean(ops.sum(ops.exp(log_p) * (log_p - ops.log_softmax(student.logits / t, axis=-1)), -1)) * t * t

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
'''
STRATEGY_GIN = '''# PKD with its published setting.
import calikd_example_pkd
include 'strategies/distill.gin'
Distiller.distillation = 'pkd'
PKD.temperature = 3.0
'''


def distiller(distillation="kd", augmentation="none", **kwargs):
    return ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=distillation, augmentation=augmentation,
                        **kwargs)


def run(name, role, model, accuracy, ece, method=None, legacy=False):
    """A results.json of a run on cifar100 (WRN-40-2 -> ShuffleV1); `method`: the fields `methods.describe` gives."""
    result = {"name": name, "dataset": "cifar100", "role": role, "model": model, "accuracy": accuracy,
              "ece_100": ece, "oe_100": ece / 2}
    if role == "distilled":
        result.update(method, teacher_model="wrn_40_2")
        if legacy:  # results.json as the earlier version wrote it: the label only
            result.pop("distillation")
            result.pop("augmentation")
    return result


def write(root, results):
    for result in results:
        folder = os.path.join(root, result["name"])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(result, f)


def paper_runs(legacy=False):
    """Teacher, student and four distilled runs (KD + mixup first: the order of the runs is not the table's)."""
    methods_of = {"kd_mixup": ("kd", "mixup"), "crd": ("crd", "none"), "kd": ("kd", "none"), "rkd": ("rkd", "none")}
    results = [run("teacher", "teacher", "wrn_40_2", 0.77, 0.1), run("student", "student", "ShuffleV1", 0.7, 0.12)]
    for index, (name, (d, a)) in enumerate(methods_of.items()):
        results.append(run(name, "distilled", "ShuffleV1", 0.72 + index / 100, 0.05 + index / 100,
                           methods.describe(distiller(d, a)), legacy))
    return results


def test_results_store_the_method_as_the_names_of_its_strategies():
    described = methods.describe(distiller(["dkd", "lskd"], "mixup", alpha=None))
    assert described == {"method": "DKD + LSKD + mixup", "distillation": ["dkd", "lskd"], "augmentation": "mixup",
                         "alpha": None}
    assert methods.describe(distiller("kd", "focal"), calibrated_teacher=True)["method"] == \
        "KD + focal (calibrated teacher)"
    method = methods.method_of(dict(described, teacher_temperature=1.4))
    assert method == methods.Method("DKD + LSKD + mixup", ("dkd", "lskd"), "mixup", True, None) and method.known
    assert ck.distillations.DISTILLATIONS.name_of(ck.distillations.KD(temperature=2.0)) == "kd"
    assert ck.distillations.DISTILLATIONS.name_of(type("Unregistered", (ck.distillations.KD,), {})()) is None


def test_earlier_results_holding_only_the_label_give_the_same_tables():
    new, old = (report.pairs_table(paper_runs(legacy), "cifar100") for legacy in (False, True))
    assert new["columns"] == old["columns"] == ["Teacher", "Student", "KD", "RKD", "CRD", "KD + mixup"]
    assert new["rows"] == old["rows"] and new["methods"] == old["methods"]
    assert methods.method_of({"method": "KD + label smoothing (calibrated teacher)", "teacher_temperature": 2.0}) == \
        methods.Method("KD + label smoothing (calibrated teacher)", ("kd",), "label_smoothing", True)
    # A label no registered strategy has is kept as it is: an unknown method, in the last column.
    unknown = run("other", "distilled", "ShuffleV1", 0.7, 0.1, {"method": "KD + Frobnicate", "alpha": 0.5})
    table = report.pairs_table(paper_runs(True) + [unknown], "cifar100")
    assert table["columns"][-1] == "KD + Frobnicate" and not table["methods"]["KD + Frobnicate"].known


def test_columns_and_styles_come_from_what_the_strategies_declare():
    extra = [("dkd", "none"), ("kd", ck.augmentations.Cutout(size=4)), ("kd", "label_smoothing"), ("rkd", "cutmix")]
    results = paper_runs() + [run(f"x{i}", "distilled", "ShuffleV1", 0.7, 0.1, methods.describe(distiller(d, a)))
                              for i, (d, a) in enumerate(extra)]
    results[-1]["temperature_scaled"] = {"accuracy": 0.7, "ece_100": 0.02, "oe_100": 0.01, "temperature": 1.5}
    table = report.pairs_table(report.with_temperature_scaled(results), "cifar100")
    assert table["columns"] == ["Teacher", "Student", "KD", "RKD", "CRD", "DKD", "KD + cutout", "KD + mixup",
                                "KD + label smoothing", "RKD + CutMix", "RKD + CutMix + TS"]
    styles = report_figures.method_styles(table["columns"], table["methods"])
    assert styles["KD + mixup"] == (ck.distillations.KD.color, ck.augmentations.MixUp.marker)
    assert styles["RKD + CutMix"][0] == styles["RKD"][0] == ck.distillations.RKD.color
    assert styles["RKD + CutMix + TS"] != styles["RKD + CutMix"]  # a run and its scaled scores: two markers
    assert len(set(styles.values())) == len(styles)


@pytest.fixture
def example_strategy(tmp_path, monkeypatch):
    """PKD's module and gin file in a folder of the user's; registered while the test runs, then removed."""
    register_configurables()  # before the registry's entries are swapped for a copy: gin decorates them in place
    registry = ck.distillations.DISTILLATIONS
    for attribute in ("_entries", "_undecorated"):
        monkeypatch.setattr(registry, attribute, dict(getattr(registry, attribute)))
    (tmp_path / "calikd_example_pkd.py").write_text(STRATEGY_MODULE)
    (tmp_path / "pkd.gin").write_text(STRATEGY_GIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "calikd_example_pkd", raising=False)
    yield tmp_path
    with gin.unlock_config():
        gin.clear_config()


def test_a_new_distillation_in_one_module_and_a_gin_file_takes_its_place_in_the_report_and_the_checks(
        example_strategy):
    """The issue's measure of the layering: a strategy's module and gin file, and nothing else, are enough."""
    configure([str(example_strategy / "pkd.gin")], run_name_binding=False)  # imports the module: it registers
    trained = gin.get_configurable("Distiller")(tiny_cnn(name="t"), tiny_cnn(name="s"))
    pkd = trained.distillations[0]
    assert type(pkd).__name__ == "PKD" and pkd.temperature == 3.0  # bound by gin although registered after it
    root = str(example_strategy / "runs")
    write(root, paper_runs(legacy=True) + [run("pkd", "distilled", "ShuffleV1", 0.76, 0.04, methods.describe(trained))])
    output = str(example_strategy / "report" / "table")
    assert report_cli.main([root, "--output", output]) == 0
    header = next(line for line in open(output + ".md") if line.startswith("| Teacher/Student"))
    assert [c.strip() for c in header.strip("|\n").split("|")][2:] == ["Teacher", "Student", "KD", "RKD", "PKD",
                                                                       "CRD", "KD + mixup"]
    assert "**76.00**" in open(output + ".md").read()  # compared with the others in its row
    (table,) = report.tables_for(report.find_results([root]))
    assert report_figures.method_styles(table["columns"], table["methods"])["PKD"] == ("#123456", "o")
    assert os.path.getsize(output + "_ece_accuracy.png") > 1000

    # The conformance checks every registered strategy goes through (tests/test_conformance.py).
    cls = ck.distillations.DISTILLATIONS.get("pkd")
    check_config_round_trip(cls)
    check_gin_binding(cls, lambda: ck.distillations.get("pkd"))
    check_strategy_trains_and_saves("pkd", "none", example_strategy)
    with pytest.raises(AssertionError, match="README.md does not document 'pkd'"):
        check_published_defaults(cls, "pkd")
    documented = example_strategy / "README.md"  # the newcomer's README row, with the published setting
    row = "| `pkd` | `ck.distillations.PKD` | `temperature=4.0`, `weight=1.0` |\n"
    documented.write_text(re.sub(r"(\| `kd` \|[^\n]*\n)", lambda m: m.group(1) + row, open(README).read()))
    check_published_defaults(cls, "pkd", readme=str(documented))
