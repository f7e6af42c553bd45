"""tools/train.py, evaluate.py, report.py and export.py, end to end on tiny fake data."""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import gin
import keras
import numpy as np
import pytest

import data_fakes
import keras_calikd as ck
from keras_calikd.gin_support import register_configurables
from keras_calikd.training import evaluation, report
from tiny import tiny_cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_FILES = sorted(glob.glob(os.path.join(ROOT, "gin", "**", "*.gin"), recursive=True))
KERAS_CV_FILES = {"cifar100_kd_gridmask.gin", "cifar100_kd_fouriermix.gin"}


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_tool, evaluate_tool, report_tool = load_tool("train"), load_tool("evaluate"), load_tool("report")


@pytest.fixture(autouse=True)
def _clean_gin():
    register_configurables()
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(scope="module")
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
                "Experiment.train_split": "'train'"}
    bindings.update(extra)
    args = []
    for key, value in bindings.items():
        args += ["--gin_param", f"{key} = {value}"]
    return args


def train(gin_file, *args):
    gin.clear_config()
    return train_tool.main(["--gin", os.path.join(ROOT, "gin", gin_file), *args])


# ---------------------------------------------------------------- gin files

@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "gin")))
def test_every_gin_file_parses_and_builds(path):
    name = os.path.relpath(path, os.path.join(ROOT, "gin"))
    if name.startswith(("base/", "data/", "strategies/")) or name == "quickstart/base.gin":
        # Fragments parse on top of a data set file (strategies may use its NUM_TRAIN).
        train_tool.configure([path, os.path.join(ROOT, "gin", "data", "cifar100.gin")], ['Experiment.model = "resnet8"'])
        return
    train_tool.configure([path], ['Experiment.model = "resnet8"'])
    experiment = gin.get_configurable("ck.training.Experiment")()
    assert experiment.name == os.path.splitext(name)[0]
    assert experiment.dataset in ck.data.names()
    if experiment.teacher is None:
        return
    assert os.path.isfile(os.path.join(ROOT, "gin", experiment.teacher + ".gin")), "its teacher has a gin file"
    if name in KERAS_CV_FILES and keras.backend.backend() != "tensorflow":
        with pytest.raises(Exception, match="TensorFlow backend"):
            experiment.distiller_factory(teacher=tiny_cnn(100, (32, 32, 3), name="t"),
                                         student=tiny_cnn(100, (32, 32, 3), name="s"))
        return
    distiller = experiment.distiller_factory(teacher=tiny_cnn(100, (32, 32, 3), name="t"),
                                             student=tiny_cnn(100, (32, 32, 3), name="s"))
    assert distiller.alpha == 0.5
    assert ck.training.method_label(distiller).split(" + ")[0] in {"KD", "RKD", "CRD"}


def test_cinic10_cutmix_is_table_3_first_column():
    train_tool.configure([os.path.join(ROOT, "gin", "cinic10_cutmix.gin")], [])
    experiment = gin.get_configurable("ck.training.Experiment")()
    distiller = experiment.distiller_factory(teacher=tiny_cnn(10, (32, 32, 3), name="t"),
                                             student=tiny_cnn(10, (32, 32, 3), name="s"))
    assert (experiment.dataset, experiment.model_name, experiment.teacher) == (
        "cinic10", "MobileNetV2", "cinic10/teacher_vgg13")
    assert (experiment.batch_size, experiment.learning_rate, experiment.epochs) == (256, 0.01, 240)
    assert isinstance(distiller.augmentation, ck.augmentations.CutMix) and distiller.augmentation.probability == 0.5
    assert distiller.distillations[0].temperature == 50.0


def test_unknown_bindings_fail_at_start_naming_them(tmp_path):
    with pytest.raises(SystemExit, match="Experment"):
        train("quickstart/teacher.gin", "--gin_param", "Experment.epochs = 3")
    with pytest.raises(SystemExit, match="epoch"):
        train("quickstart/teacher.gin", "--gin_param", "Experiment.epoch = 3")
    with pytest.raises(SystemExit, match="Unknown model architecture 'resnet9'"):
        train("quickstart/teacher.gin", "--gin_param", "Experiment.model = 'resnet9'",
              "--gin_param", f"RUNS_DIR = '{tmp_path}'")
    with pytest.raises(SystemExit, match=r"`Experiment.jit_compile` must be True, False or \"auto\", got 'yes'"):
        train("quickstart/teacher.gin", "--gin_param", "Experiment.jit_compile = 'yes'",
              "--gin_param", f"RUNS_DIR = '{tmp_path}'")


def test_missing_teacher_names_the_command(tmp_path, fashion_dir):
    with pytest.raises(SystemExit) as error:
        train("quickstart/kd.gin", *quick_bindings(tmp_path, fashion_dir))
    message = str(error.value)
    assert "teacher checkpoint" in message and "python tools/train.py --gin gin/quickstart/teacher.gin" in message
    assert f"RUNS_DIR = \"{tmp_path}\"" in message


# ---------------------------------------------------------------- train.py end to end

def test_train_teacher_student_and_distilled_student(tmp_path, fashion_dir, capsys):
    bindings = quick_bindings(tmp_path, fashion_dir)
    assert train("quickstart/teacher.gin", *bindings, "--gin_param", "Experiment.model = 'resnet14'") == 0
    assert train("quickstart/student.gin", *bindings) == 0
    assert train("quickstart/kd_mixup.gin", *bindings) == 0
    run = tmp_path / "quickstart" / "kd_mixup"
    for name in ("config.gin", "operative_config.gin", "results.json", "reliability.png", "logs/metrics.csv",
                 "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/state.npz"):
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

    # The same command again resumes after the last epoch: nothing to train, the same results.
    assert train("quickstart/kd_mixup.gin", *bindings) == 0
    assert json.loads((run / "results.json").read_text())["accuracy"] == results["accuracy"]
    assert "Resuming quickstart/kd_mixup after epoch 2" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="different configuration"):
        train("quickstart/kd_mixup.gin", *bindings, "--gin_param", "MixUp.alpha = 0.2")

    # The report: one row per pair with Teacher, Student and KD + mixup columns.
    assert report_tool.main([str(tmp_path), "--output", str(tmp_path / "table"), "--bins", "15",
                             "--diagrams", str(tmp_path / "diagrams.png")]) == 0
    assert (tmp_path / "diagrams.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "table.md").read_text()
    assert "| resnet14/resnet8 | Acc |" in markdown and "KD + mixup" in markdown
    assert (tmp_path / "table.csv").read_text().startswith("dataset,pair,metric,Teacher,Student,KD + mixup")


# ---------------------------------------------------------------- report, evaluation

def fake_result(role, model, accuracy, ece, oe, method=None, teacher_model=None):
    result = {"dataset": "cifar100", "role": role, "model": model, "accuracy": accuracy, "ece_100": ece,
              "oe_100": oe, "name": f"{role}_{model}_{method}"}
    if method:
        result.update(method=method, teacher_model=teacher_model)
    return result


def test_report_builds_the_paper_layout_and_marks_the_best():
    results = [fake_result("teacher", "vgg13", 0.76, 0.07, 0.05), fake_result("student", "MobileNetV2", 0.63, 0.17, 0.13)]
    for method, acc, ece, oe in [("KD", 0.64, 0.13, 0.10), ("KD + mixup", 0.66, 0.047, 0.002),
                                 ("KD + CutMix", 0.665, 0.037, 0.022), ("CRD", 0.67, 0.11, 0.09)]:
        results.append(fake_result("distilled", "MobileNetV2", acc, ece, oe, method, "vgg13"))
    table = report.pairs_table(results, "cifar100")
    assert table["columns"] == ["Teacher", "Student", "KD", "CRD", "KD + mixup", "KD + CutMix"]
    rows = {row["metric"]: row for row in table["rows"]}
    assert rows["Acc"]["values"]["Teacher"] == pytest.approx(76.0)
    markdown = report.to_markdown(table)
    assert "**67.00**" in markdown and "**0.037**" in markdown and "**0.002**" in markdown
    assert "**76.00**" not in markdown  # the teacher is not a candidate
    assert "0.022" in report.to_csv(table) and "67.00*" in report.to_csv(table)


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


def test_calibration_report_matches_reference(rng):
    logits = rng.normal(scale=3.0, size=(300, 5))
    labels = rng.integers(0, 5, 300)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    result = evaluation.calibration_report(logits, labels, bins=(15,))
    assert result["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert result["nll"] == pytest.approx(-np.log(probs[np.arange(300), labels]).mean())
    assert result["brier"] == pytest.approx(((probs - np.eye(5)[labels]) ** 2).sum(1).mean())


def test_evaluate_on_fake_cifar100_c(tmp_path, rng):
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
    result = json.loads(output.read_text())["models"]["KD"]
    assert set(result) == {"frost", "snow"} and result["frost"]["num_examples"] == 30
    # Independently: the mean over severities of the per-severity accuracy.
    per_severity = []
    for severity in range(1, 6):
        dataset = ck.data.load("cifar100_corrupted", "test", 100, data_dir=str(data_dir), corruption="frost",
                               severity=severity)
        images, labels = next(dataset.as_numpy_iterator())
        np.testing.assert_array_equal(np.sort(labels), np.sort(fake["labels"][(severity - 1) * 6:severity * 6]))
        per_severity.append((model.predict(images, verbose=0).argmax(1) == labels).mean())
    assert result["frost"]["accuracy"] == pytest.approx(np.mean(per_severity))


def test_evaluate_with_temperature_scaling_and_a_diagram(tmp_path, fashion_dir):
    keras.utils.set_random_seed(0)
    model = tiny_cnn(10, (28, 28, 1), name="m")
    path = str(tmp_path / "model.keras")
    model.save(path)
    output, diagram = tmp_path / "eval.json", tmp_path / "diagram.png"
    assert evaluate_tool.main(["--model", path, "--dataset", "fashion_mnist", "--data_dir", fashion_dir,
                               "--temperature_scaling", "--diagram", str(diagram), "--output", str(output)]) == 0
    entry = json.loads(output.read_text())["models"][path]
    assert entry["report"]["num_examples"] == 40
    scaled = entry["temperature_scaling"]
    # Fashion-MNIST has no validation split: the temperature is fitted on one half of the test split and
    # both rows are reported on the other half.
    assert scaled["fitted_on"] == "half of test" and scaled["uncalibrated"]["num_examples"] == 20
    assert scaled["temperature"] > 0 and diagram.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- SavedModel export

def test_export_round_trip_outside_keras_calikd(tmp_path, rng):
    keras.utils.set_random_seed(1)
    model = ck.models.get("resnet8", num_classes=10, input_shape=(28, 28, 1))
    checkpoint = str(tmp_path / "best.keras")
    model.save(checkpoint)
    exported = str(tmp_path / "saved_model")
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export.py"), "--checkpoint", checkpoint,
                    "--output", exported, "--dataset", "fashion_mnist"], env=env, check=True, capture_output=True)
    images = rng.integers(0, 256, (5, 28, 28, 1)).astype("uint8")
    np.save(tmp_path / "images.npy", images)
    reload = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"served = tf.saved_model.load({exported!r})\n"
        f"images = np.load({str(tmp_path / 'images.npy')!r})\n"
        "out = served.signatures['serving_default'](images=tf.constant(images))\n"
        f"np.save({str(tmp_path / 'served.npy')!r}, out['probabilities'].numpy())\n"
        "assert 'keras_calikd' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", reload], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=True,
                   capture_output=True, cwd=str(tmp_path))
    info = ck.data.info("fashion_mnist")
    normalized = (images / 255.0 - np.asarray(info.mean)) / np.asarray(info.std)
    logits = model.predict(normalized.astype("float32"), verbose=0)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(np.load(tmp_path / "served.npy"), expected, rtol=1e-4, atol=1e-5)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", exported, "--all"], capture_output=True, text=True,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert "signature_def['serving_default']" in shown.stdout and "probabilities" in shown.stdout
    assert "signature_def['serve_normalized']" in shown.stdout
