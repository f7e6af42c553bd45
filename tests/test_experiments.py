"""Experiments end to end: the gin files, calikd-train, -evaluate and -export on tiny fake data."""

import glob
import json
import os

import gin
import keras
import numpy as np
import pytest

import data_fakes
import keras_calikd as ck
from keras_calikd.cli import common
from keras_calikd.cli import evaluate as evaluate_tool
from keras_calikd.cli import train as train_tool
from keras_calikd.gin_support import configure, gin_dir, run_name
from keras_calikd.training import evaluation
from tiny import tiny_cnn

GIN_DIR = gin_dir()
# Gin files, experiment folders, tools and NumPy evaluation: the same on every backend, so tools/run_tests.sh
# runs these once (TensorFlow pass). The experiment's JAX path (training, in-process export) is tested by the
# test left unmarked here, by tests/test_export.py and by the killed-run and multi-worker tests, whose runs
# evaluate as calikd-evaluate does (collect_logits, calibration_report).
NEUTRAL = pytest.mark.backend_neutral
GIN_FILES = sorted(glob.glob(os.path.join(GIN_DIR, "**", "*.gin"), recursive=True))
FRAGMENTS = ("base/", "data/", "strategies/")


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    with gin.unlock_config():
        gin.clear_config()


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory):
    """A TFDS data folder whose raw Fashion-MNIST files are fake (pixel value = 10 * label)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    data_fakes.write_fashion_mnist(str(data_dir / "downloads" / "manual" / "fashion-mnist"), n_train=96, n_test=40)
    return str(data_dir)


def quick_bindings(runs_dir, data_dir, **extra):
    bindings = {"RUNS_DIR": repr(str(runs_dir)), "DATA_DIR": repr(data_dir), "Experiment.epochs": 2,
                "Experiment.batch_size": 32, "Experiment.eval_batch_size": 40,
                # The faster choice on each backend's CPU: XLA for JAX, a plain graph for TensorFlow.
                "Experiment.jit_compile": keras.backend.backend() == "jax",
                "Experiment.export": False, "Experiment.verbose": 0, "Experiment.model": "'resnet8'",
                "Experiment.train_split": "'train'", "Experiment.diagram_formats": "('png',)",
                # The quickstart holds out train[59500:], beyond the fake data set's training images.
                "Experiment.validation_split": "'test'"}
    bindings.update(extra)
    args = []
    for key, value in bindings.items():
        args += ["--gin_param", f"{key} = {value}"]
    return args


def train(gin_file, *args):
    return train_tool.main(["--gin", gin_file, *args])


def experiment(path, *bindings):
    configure([path], ['Experiment.model = "resnet8"', *bindings])
    return gin.get_configurable("ck.training.Experiment")()


def distiller_of(run, num_classes=100, shape=(32, 32, 3)):
    return run.distiller_factory(teacher=tiny_cnn(num_classes, shape, name="t"),
                                 student=tiny_cnn(num_classes, shape, name="s"))


# ---------------------------------------------------------------- the gin files

@NEUTRAL
@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: os.path.relpath(p, GIN_DIR))
def test_every_gin_file_parses_and_builds(path):
    name = os.path.relpath(path, GIN_DIR)
    if name.startswith(FRAGMENTS) or name == "quickstart/base.gin":
        # Fragments parse on top of a data set file.
        configure([path, os.path.join(GIN_DIR, "data", "cifar100.gin")], ['Experiment.model = "resnet8"'])
        return
    run = experiment(path)
    assert run.name == os.path.splitext(name)[0] == run_name(path)
    assert run.dataset in ck.data.names()
    if run.teacher is None:
        return
    assert os.path.isfile(os.path.join(GIN_DIR, run.teacher + ".gin")), "its teacher has a gin file"
    assert ck.training.method_label(distiller_of(run)).split(" + ")[0] in {"KD", "RKD", "CRD", "DKD", "LSKD"}


TABLE_1_PAIRS = ("wrn_40_2_shufflev1", "resnet32x4_shufflev2", "resnet50_mobilenetv2", "resnet50_vgg8",
                 "resnet32x4_shufflev1", "vgg13_mobilenetv2")


@NEUTRAL
@pytest.mark.parametrize("pair", TABLE_1_PAIRS)
def test_table_1_baselines_use_the_authors_weights(pair):
    rkd = distiller_of(experiment(f"cifar100/{pair}_rkd"))
    assert rkd.alpha is None and rkd.distillations[0].weight == 1.0  # 1 x CE + 1 x RKD
    assert (rkd.distillations[0].distance_weight, rkd.distillations[0].angle_weight) == (25.0, 50.0)
    crd = distiller_of(experiment(f"cifar100/{pair}_crd"))
    strategy = crd.distillations[0]
    assert crd.alpha is None and strategy.weight == 0.8  # 1 x CE + 0.8 x CRD
    assert (strategy.negatives, strategy.num_negatives, strategy.num_samples) == ("other_classes", 16384, None)
    assert isinstance(crd.augmentation, ck.augmentations.Identity)
    kd = distiller_of(experiment(f"cifar100/{pair}_kd"))
    assert kd.alpha == 0.5 and kd.distillations[0].temperature == 50.0


@NEUTRAL
@pytest.mark.parametrize("method", ["rkd", "crd"])
@pytest.mark.parametrize("augmentation", ["balanced", "cutout", "mixup", "cutmix"])
def test_table_5_combinations_balance_with_alpha_one_half(method, augmentation):
    distiller = distiller_of(experiment(f"cifar100/wrn_40_2_shufflev1_{method}_{augmentation}"))
    assert distiller.alpha == 0.5
    assert distiller.distillations[0].weight == {"rkd": 1.0, "crd": 0.8}[method]
    expected = {"balanced": ck.augmentations.Identity, "cutout": ck.augmentations.Cutout,
                "mixup": ck.augmentations.MixUp, "cutmix": ck.augmentations.CutMix}[augmentation]
    assert isinstance(distiller.augmentation, expected)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(GIN_DIR, "*", "teacher_*.gin"))),
                         ids=lambda p: os.path.relpath(p, GIN_DIR))
@NEUTRAL
def test_teachers_use_their_reference_recipe(path):
    run = experiment(path)
    if run.dataset == "tiny_imagenet":  # the paper's TinyImageNet recipe (Sec. 4.2)
        assert (run.epochs, run.schedule, run.milestones, run.weight_decay) == (200, "multistep", (150, 180), 1e-4)
        return
    assert (run.epochs, run.learning_rate, run.schedule, run.milestones, run.gamma, run.weight_decay) == (
        240, 0.05, "multistep", (150, 180, 210), 0.1, 5e-4)


@NEUTRAL
def test_cinic10_cutmix_is_table_3_first_column():
    run = experiment("cinic10_cutmix.gin", 'Experiment.model = "MobileNetV2"')
    distiller = distiller_of(run, 10)
    assert (run.dataset, run.model_name, run.teacher) == ("cinic10", "MobileNetV2", "cinic10/teacher_vgg13")
    assert (run.batch_size, run.learning_rate, run.epochs) == (256, 0.01, 240)
    assert isinstance(distiller.augmentation, ck.augmentations.CutMix) and distiller.augmentation.probability == 0.5
    assert distiller.distillations[0].temperature == 50.0


@NEUTRAL
def test_runs_that_differ_only_in_their_seed_share_a_configuration():
    """results.json's `configuration` groups seeds in the reports; `select_by` enters the signature only when it is
    not the default, so that runs from before it existed resume."""
    def of(**settings):
        run = ck.training.Experiment(name="x", dataset="fashion_mnist", model="resnet8", **settings)
        return run.configuration(run.signature(None)), run.signature(None)

    base, signature = of(seed=0)
    assert "select_by" not in signature and of(seed=3)[0] == base
    for change in (dict(learning_rate=0.01), dict(epochs=10), dict(select_by="nll"), dict(test_split="test[:10]"),
                   dict(precision="mixed_bfloat16")):
        assert of(**change)[0] != base, change
    assert of(select_by="ece")[1]["select_by"] == "ece"
    with pytest.raises(ValueError, match="select_by.*'accuracy', 'nll', 'ece'"):
        of(select_by="loss")


@NEUTRAL
def test_gin_files_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spelling in ("cifar100/teacher_vgg13", "cifar100/teacher_vgg13.gin"):
        assert experiment(spelling).name == "cifar100/teacher_vgg13"
    (tmp_path / "mine.gin").write_text("include 'quickstart/teacher.gin'\nExperiment.epochs = 1\n")
    mine = experiment("mine.gin")
    assert (mine.name, mine.epochs, mine.model_name) == ("mine", 1, "resnet8")
    with pytest.raises(FileNotFoundError, match="neither in the working folder|does not exist"):
        experiment("cifar100/teacher_vgg14")


@NEUTRAL
def test_misspelled_bindings_fail_when_parsed_naming_them():
    for binding, name in (("KD.temprature = 4.0", "temprature"), ("Experment.epochs = 3", "Experment"),
                          ("MixUp.alhpa = 0.2", "alhpa"), ("Experiment.epoch = 3", "epoch")):
        with pytest.raises(ValueError, match=name):
            configure(["quickstart/kd_mixup.gin"], [binding])


@NEUTRAL
def test_the_tool_prints_one_error_line_and_exits_2(capsys):
    assert common.run(train_tool.main, ["--gin", "quickstart/kd_mixup.gin", "--gin_param", "KD.temprature = 4.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "temprature" in err[0]
    assert common.run(train_tool.main, ["--gin", "quickstart/teacher.gin", "--gin_param",
                                        "Experiment.eval_bins = [0]"]) == 2
    assert "`eval_bins` must be a positive integer, got 0" in capsys.readouterr().err

    for formats, message in (("('png', 'jpg')", "`diagram_formats` must be one of 'png', 'pdf', 'svg', got 'jpg'"),
                             ("()", "`diagram_formats` must name each of its formats once"),
                             ("('pdf', 'pdf')", "`diagram_formats` must name each of its formats once")):
        assert common.run(train_tool.main, ["--gin", "quickstart/teacher.gin", "--gin_param",
                                            f"Experiment.diagram_formats = {formats}"]) == 2
        assert message in capsys.readouterr().err


@NEUTRAL
def test_help_lists_the_experiments_and_the_parameters(capsys):
    with pytest.raises(SystemExit) as done:
        train_tool.main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert "cifar100/vgg13_mobilenetv2_kd_mixup" in shown and "cinic10_cutmix" in shown
    assert "Experiment.epochs (default 240)" in shown and "Experiment.dataset (required)" in shown


# ---------------------------------------------------------------- calikd-train end to end

@NEUTRAL
def test_missing_or_unfinished_teacher_is_refused_naming_the_command(tmp_path, fashion_dir):
    bindings = quick_bindings(tmp_path, fashion_dir, **{"Experiment.temperature_scaling_split": "'train[64:]'"})
    with pytest.raises(ck.training.MissingTeacherError) as error:
        train("quickstart/kd.gin", *bindings)
    assert "calikd-train --gin quickstart/teacher.gin" in str(error.value) and str(tmp_path) in str(error.value)
    # A teacher run stopped before its last epoch: only its best checkpoint so far exists.
    checkpoints = tmp_path / "quickstart" / "teacher" / "checkpoints"
    checkpoints.mkdir(parents=True)
    ck.models.get("resnet8", 10, (28, 28, 1)).save(str(checkpoints / "best.keras"))
    with pytest.raises(ck.training.MissingTeacherError, match="has not finished"):
        train("quickstart/kd.gin", *bindings)


@pytest.mark.heavy
@NEUTRAL
def test_train_teacher_student_and_distilled_student(tmp_path, fashion_dir, capsys):
    bindings = quick_bindings(tmp_path, fashion_dir)
    assert train("quickstart/teacher.gin", *bindings, "--gin_param", "Experiment.model = 'resnet14'",
                 "--gin_param", "Experiment.diagram_formats = ('png', 'pdf', 'svg')") == 0
    assert train("quickstart/kd_mixup.gin", *bindings) == 0
    teacher_files = os.listdir(tmp_path / "quickstart" / "teacher")
    assert {"reliability.png", "reliability.pdf", "reliability.svg"} <= set(teacher_files)
    run = tmp_path / "quickstart" / "kd_mixup"
    assert [name for name in os.listdir(run) if name.startswith("reliability")] == ["reliability.png"]
    for name in ("run.json", "config.gin", "operative_config.gin", "results.json", "reliability.png",
                 "logs/metrics.csv", "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/state.npz"):
        assert (run / name).exists(), name
    assert glob.glob(str(run / "logs" / "tensorboard" / "train" / "events.*"))
    results = json.loads((run / "results.json").read_text())
    assert results["role"] == "distilled" and results["method"] == "KD + mixup"
    assert results["teacher_model"] == "resnet14" and results["model"] == "resnet8"
    for key in ("accuracy", "ece_100", "oe_100", "ece_15", "oe_15", "nll", "brier"):
        assert np.isfinite(results[key])
    assert results["num_examples"] == 40 and results["epochs"] == 2
    csv_rows = (run / "logs" / "metrics.csv").read_text().strip().splitlines()
    assert csv_rows[0].startswith("epoch,") and len(csv_rows) == 3
    assert "MixUp.alpha = 0.4" in (run / "operative_config.gin").read_text()
    record = json.loads((run / "run.json").read_text())
    assert record["finished"] and record["provenance"]["backend"] == keras.backend.backend()

    # The same command again leaves the finished run exactly as it is, timings included.
    before = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(run / "**"), recursive=True) if os.path.isfile(p)}
    assert train("quickstart/kd_mixup.gin", *bindings) == 0
    assert "finished its 2 epochs already" in capsys.readouterr().out
    assert before == {p: os.stat(p).st_mtime_ns for p in before}
    # Another configuration in the same folder is refused, naming what differs.
    with pytest.raises(ck.training.RunMismatchError, match=r"another configuration .*'alpha': 0.4.*0.2"):
        train("quickstart/kd_mixup.gin", *bindings, "--gin_param", "MixUp.alpha = 0.2")
    # More epochs continue a finished run: test_wiring_experiment.py's continued run, against an uninterrupted one.


# ---------------------------------------------------------------- evaluation

@NEUTRAL
def test_temperature_fit_matches_a_grid_search(rng):
    logits = rng.normal(scale=4.0, size=(500, 10))
    labels = np.where(rng.uniform(size=500) < 0.6, logits.argmax(1), rng.integers(0, 10, 500))

    def nll(t):
        z = logits / t
        z = z - z.max(1, keepdims=True)
        return -(z[np.arange(500), labels] - np.log(np.exp(z).sum(1))).mean()

    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 20001))
    best = grid[np.argmin([nll(t) for t in grid])]
    assert evaluation.fit_temperature(logits, labels) == pytest.approx(best, rel=1e-3)
    scaled = evaluation.temperature_scaling(logits[:250], labels[:250], logits[250:], labels[250:])
    assert scaled["temperature_scaled"]["nll"] <= scaled["uncalibrated"]["nll"] + 0.05


@NEUTRAL
def test_calibration_report_matches_reference(rng):
    logits = rng.normal(scale=3.0, size=(300, 5))
    labels = rng.integers(0, 5, 300)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    result = evaluation.calibration_report(logits, labels, bins=(15,))
    assert result["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert result["nll"] == pytest.approx(-np.log(probs[np.arange(300), labels]).mean())
    assert result["brier"] == pytest.approx(((probs - np.eye(5)[labels]) ** 2).sum(1).mean())


@NEUTRAL
def test_evaluate_on_fake_cifar100_c(tmp_path):
    data_dir = tmp_path / "tfds"
    fake = data_fakes.write_cifar100_c(str(data_dir / "downloads" / "manual" / "CIFAR-100-C"),
                                       corruptions=("frost", "snow"), per_severity=6)
    keras.utils.set_random_seed(0)
    model = tiny_cnn(100, (32, 32, 3), name="m")
    path = str(tmp_path / "model.keras")
    model.save(path)
    output = tmp_path / "c.json"
    assert evaluate_tool.main(["--model", f"KD={path}", "--dataset", "cifar100_corrupted", "--corruptions",
                               "frost,snow", "--data_dir", str(data_dir), "--bins", "15", "--output",
                               str(output)]) == 0
    result = json.loads(output.read_text())["models"]["KD"]["groups"]
    assert set(result) == {"frost", "snow"} and result["frost"]["num_examples"] == 30
    # Independently: the mean over severities of the per-severity accuracy.
    per_severity = []
    for severity in range(1, 6):
        dataset = ck.data.load("cifar100_corrupted", "test", 100, data_dir=str(data_dir), config=f"frost_{severity}")
        images, labels = next(dataset.as_numpy_iterator())
        np.testing.assert_array_equal(labels, fake["labels"][(severity - 1) * 6:severity * 6])  # stored order
        per_severity.append((model.predict(images, verbose=0).argmax(1) == labels).mean())
    assert result["frost"]["accuracy"] == pytest.approx(np.mean(per_severity))


@NEUTRAL
def test_vector_and_matrix_scaling_are_reported_beside_the_model_with_their_warnings(tmp_path, fashion_dir, capsys):
    keras.utils.set_random_seed(0)
    path = str(tmp_path / "model.keras")
    tiny_cnn(10, (28, 28, 1), name="m").save(path)
    with pytest.raises(ValueError, match=r"--calibration: unknown methods \['platt'\]"):
        evaluate_tool.main(["--model", path, "--dataset", "fashion_mnist", "--calibration", "vector,platt"])
    output = tmp_path / "eval.json"
    assert evaluate_tool.main(["--model", f"M={path}", "--dataset", "fashion_mnist", "--data_dir", fashion_dir,
                               "--calibration", "vector,matrix", "--output", str(output)]) == 0
    entry = json.loads(output.read_text())["models"]["M"]
    printed = capsys.readouterr().out
    assert "| M, uncalibrated |" in printed and "| M + VS |" in printed and "| M + MS |" in printed
    for method in ("vector", "matrix"):
        fitted = entry["calibration"][method]
        assert fitted["fitted_on"] == "half of test" and fitted["calibrated"]["num_examples"] == 20
        assert fitted["uncalibrated"] == entry["calibration"]["vector"]["uncalibrated"]  # the same 20 images
        for warning in fitted["warnings"]:  # 20 images for 110 parameters: likely, and then said
            assert f"warning: M: {warning}" in printed
    assert np.shape(entry["calibration"]["matrix"]["parameters"]["weights"]) == (10, 10)


@NEUTRAL
def test_a_model_of_other_classes_is_refused(tmp_path, fashion_dir):
    path = str(tmp_path / "hundred.keras")
    tiny_cnn(100, (28, 28, 1), name="m").save(path)
    with pytest.raises(ValueError, match="predicts 100 classes but the data set has 10"):
        evaluate_tool.main(["--model", path, "--dataset", "fashion_mnist", "--data_dir", fashion_dir])


# ---------------------------------------------------------------- export (the formats: tests/test_export.py)

@NEUTRAL
def test_an_export_that_does_not_reproduce_the_model_is_not_kept(tmp_path, monkeypatch):
    from keras_calikd.training import export

    model = tiny_cnn(10, (8, 8, 1), name="m")
    monkeypatch.setattr(export, "_max_difference", lambda reference, outputs: 1.0)
    with pytest.raises(export.ExportMismatchError, match="does not reproduce"):
        export.export_saved_model(model, str(tmp_path / "bad"))
    assert os.listdir(tmp_path) == []
