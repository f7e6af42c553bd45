"""The gin files of the methods beyond the paper: each parses and builds the Distiller it describes."""

import os

import gin
import pytest

import keras_calikd as ck
from keras_calikd.gin_support import configure, experiments, gin_dir, register_configurables
from tiny import tiny_cnn

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

CIFAR = "cifar100/resnet32x4_shufflev1_"
# run name -> (method label, {strategy attribute: value}) of every new experiment file.
EXPERIMENTS = {
    CIFAR + "dkd": ("DKD", {"beta": 8.0, "warmup": 20}),
    CIFAR + "dkd_mixup": ("DKD + mixup", {"beta": 8.0, "warmup": 20}),
    CIFAR + "dkd_cutmix": ("DKD + CutMix", {"beta": 8.0, "warmup": 20}),
    CIFAR + "lskd": ("LSKD", {"temperature": 2.0, "weight": 9.0}),
    CIFAR + "lskd_mixup": ("LSKD + mixup", {"temperature": 2.0, "weight": 9.0}),
    CIFAR + "lskd_cutmix": ("LSKD + CutMix", {"temperature": 2.0, "weight": 9.0}),
    CIFAR + "kd_label_smoothing": ("KD + label smoothing", {"temperature": 50.0}),
    CIFAR + "kd_focal": ("KD + focal", {"temperature": 50.0}),
    "study/kd_calibrated_teacher": ("KD", {"temperature": 50.0}),
    "study/dkd": ("DKD", {"beta": 8.0, "warmup": 1}),
    "study/dkd_mixup": ("DKD + mixup", {"beta": 8.0, "warmup": 1}),
    "study/lskd": ("LSKD", {"temperature": 2.0, "weight": 9.0}),
    "study/kd_label_smoothing": ("KD + label smoothing", {}),
    "study/kd_focal": ("KD + focal", {}),
}
AUGMENTATION_SETTINGS = {"label smoothing": ("epsilon", 0.1), "focal": ("gamma", 3.0), "mixup": ("alpha", 0.4),
                         "CutMix": ("probability", 0.5), "cutout": ("size", 16)}


@pytest.fixture(autouse=True)
def _clean_gin(monkeypatch):
    register_configurables()
    # Parse from the shipped folder, so that an include such as 'data/cifar100.gin' is never looked up on the
    # Python path (where the tests' own `data/` folder would shadow it).
    monkeypatch.chdir(gin_dir())
    yield
    with gin.unlock_config():
        gin.clear_config()


def experiment(name):
    configure([name])
    return gin.get_configurable("ck.training.Experiment")()


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_new_experiment_files_build_their_distiller(name):
    label, settings = EXPERIMENTS[name]
    run = experiment(name)
    assert run.name == name and run.role == "distilled"
    study = name.startswith("study/")
    assert (run.dataset, run.teacher, run.model_name) == (
        ("fashion_mnist", "quickstart/teacher", "resnet8") if study else ("cifar100", "cifar100/teacher_resnet32x4",
                                                                      "ShuffleV1"))
    assert run.learning_rate == (0.05 if study else 0.01) and (run.epochs == 15) == study
    assert os.path.isfile(os.path.join(gin_dir(), run.teacher + ".gin"))
    shape = (28, 28, 1) if study else (32, 32, 3)
    distiller = run.distiller_factory(teacher=tiny_cnn(10, shape, name="t"), student=tiny_cnn(10, shape, name="s"))
    assert ck.training.method_label(distiller) == label and distiller.alpha == 0.5
    strategy = distiller.distillations[0]
    assert {key: getattr(strategy, key) for key in settings} == settings
    augmentation = label.split(" + ")[-1]
    if augmentation in AUGMENTATION_SETTINGS:
        key, value = AUGMENTATION_SETTINGS[augmentation]
        assert getattr(distiller.augmentation, key) == value


def test_study_puts_the_new_methods_beside_the_quickstart():
    from keras_calikd.cli.quickstart import STUDIES

    study = sorted(name for name in experiments() if name.startswith("study/"))
    assert study == sorted(n for n in EXPERIMENTS if n.startswith("study/"))
    assert set(STUDIES["paper"]) < set(STUDIES["beyond"]) and set(study) <= set(STUDIES["beyond"])
    for name in study:
        with open(os.path.join(gin_dir(), name + ".gin")) as f:
            lines = f.read().splitlines()
        assert lines[0].startswith("# ") and "include 'quickstart/base.gin'" in lines
    for name in (n for n in EXPERIMENTS if not n.startswith("study/")):
        with open(os.path.join(gin_dir(), name + ".gin")) as f:
            assert f.readline().startswith("# Beyond the paper: resnet32x4 -> ShuffleV1")


@pytest.mark.parametrize("fragment, binding, value", [
    ("dkd", "DKD.alpha", 1.0), ("dkd", "DKD.temperature", 4.0), ("lskd", "LSKD.reduction", "batchmean"),
    ("label_smoothing", "LabelSmoothing.epsilon", 0.1), ("focal", "FocalLoss.gamma", 3.0),
])
def test_strategy_fragments_hold_the_published_settings(fragment, binding, value):
    configure([f"strategies/{fragment}.gin", "data/cifar100.gin"], ["Experiment.model = 'resnet8'"])
    assert gin.query_parameter(binding) == value
