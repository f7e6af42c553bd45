"""Every registered distillation, augmentation, metric and model, through the shared checks of tests/conformance.py.

The parameters are the registries themselves: a new entry is checked here without a line of this file changing.
Cheap by design: tiny inputs, one training step, models at their smallest input (one model per family module for
the training step, whose compilation dominates; every model for the structural checks).
"""

import csv
import inspect
import os

import gin
import keras
import numpy as np
import pytest

import keras_calikd as ck
from conformance import (check_config_round_trip, check_gin_binding, check_metrics_train_and_save,
                         check_model_trains_and_saves, check_published_defaults, check_strategy_trains_and_saves,
                         required_arguments, smallest_input)
from keras_calikd.gin_support import register_configurables

DISTILLATIONS = ck.distillations.DISTILLATIONS
AUGMENTATIONS = ck.augmentations.AUGMENTATIONS
PARAM_COUNTS = os.path.join(os.path.dirname(__file__), "data", "param_counts.tsv")
STRATEGIES = [(DISTILLATIONS, name) for name in DISTILLATIONS.names()] + \
    [(AUGMENTATIONS, name) for name in AUGMENTATIONS.names()]
STRATEGY_IDS = [f"{registry.kind.split()[0]}:{name}" for registry, name in STRATEGIES]


def training_pairs():
    """`(distillation, augmentation)` pairs in which every registered strategy trains at least once.

    Each distillation trains beside an augmentation that runs under XLA (in turn, until both lists are
    covered), so that one compiled step checks two strategies; an augmentation that declares it cannot run
    under XLA trains beside KD.
    """
    distillations = DISTILLATIONS.names()
    xla = [name for name in AUGMENTATIONS.names() if build(AUGMENTATIONS, name).xla_compatible]
    pairs = [(distillations[i % len(distillations)], xla[i % len(xla)])
             for i in range(max(len(distillations), len(xla)))]
    return pairs + [("kd", name) for name in AUGMENTATIONS.names() if name not in xla]


def build(registry, name):
    """The registered strategy, built with its default arguments (and the harness's values of required ones)."""
    cls = registry.get(name)
    return cls(**required_arguments(cls))


def strategy_class(registry, name):
    """The registered class, after checking that it builds with its defaults on this backend."""
    build(registry, name)
    return registry.get(name)


def reference_counts():
    with open(PARAM_COUNTS, newline="") as f:
        return [(r["architecture"], int(r["num_classes"]), int(r["trainable_parameters"]))
                for r in csv.DictReader(f, delimiter="\t")]


def families():
    """One model per family module: the registered model with the fewest reference parameters."""
    counts = {arch: count for arch, _, count in sorted(reference_counts(), key=lambda row: -row[2])}
    chosen = {}
    for name, builder in ck.models.MODELS.items():
        module = inspect.unwrap(builder).__module__
        if module not in chosen or counts.get(name, 0) < counts.get(chosen[module], 0):
            chosen[module] = name
    return sorted(chosen.values())


# ---------------------------------------------------------------- strategies


@pytest.mark.parametrize("registry, name", STRATEGIES, ids=STRATEGY_IDS)
def test_strategy_config_round_trip(registry, name):
    check_config_round_trip(strategy_class(registry, name))


@pytest.mark.parametrize("registry, name", STRATEGIES, ids=STRATEGY_IDS)
def test_strategy_gin_binding(registry, name):
    check_gin_binding(strategy_class(registry, name), lambda: registry.resolve(name))


@pytest.mark.parametrize("registry, name", STRATEGIES, ids=STRATEGY_IDS)
def test_strategy_published_defaults(registry, name):
    check_published_defaults(strategy_class(registry, name), name)


@pytest.mark.parametrize("distillation, augmentation", training_pairs(), ids=lambda name: name)
def test_strategies_train_under_xla_and_save(distillation, augmentation, tmp_path):
    check_strategy_trains_and_saves(build(DISTILLATIONS, distillation), build(AUGMENTATIONS, augmentation), tmp_path)


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("cls", ck.metrics.CALIBRATION_METRICS, ids=lambda cls: cls.__name__)
def test_metric_config_round_trip(cls):
    check_config_round_trip(cls)


@pytest.mark.parametrize("cls", ck.metrics.CALIBRATION_METRICS, ids=lambda cls: cls.__name__)
def test_metric_gin_binding(cls):
    register_configurables()
    check_gin_binding(cls, lambda: gin.get_configurable(cls.__name__)())


@pytest.mark.parametrize("cls", ck.metrics.CALIBRATION_METRICS, ids=lambda cls: cls.__name__)
def test_metric_published_defaults(cls):
    check_published_defaults(cls)


def test_metrics_train_under_xla_and_save(tmp_path):
    check_metrics_train_and_save(ck.metrics.CALIBRATION_METRICS, tmp_path)


# ---------------------------------------------------------------- models


@pytest.mark.backend_neutral  # layer structure, not computation: tools/run_tests.sh runs it once
@pytest.mark.parametrize("name", ck.models.names())
def test_model_config_round_trip_gin_binding_and_published_size(name):
    """The configuration rebuilds the model; gin binds its builder; its parameters are the reference zoo's."""
    register_configurables()
    side = smallest_input(name)
    with gin.unlock_config():
        gin.clear_config()
        gin.parse_config(f"{name}.name = 'bound'")
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = ck.models.get(name, 10, input_shape=(side, side, 3))
            clone = keras.Model.from_config(model.get_config())
        with gin.unlock_config(), pytest.raises(ValueError, match="no_such_option"):
            gin.parse_config(f"{name}.no_such_option = 1")
    finally:
        with gin.unlock_config():
            gin.clear_config()
    assert model.name == "bound" and clone.get_config() == model.get_config()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    rows = [(classes, count) for arch, classes, count in reference_counts() if arch == name]
    assert rows, f"tests/data/param_counts.tsv has no reference count of {name}"
    for classes, expected in rows:  # the count does not depend on the input size
        built = model
        if classes != 10:
            with keras.StatelessScope(initialize_variables=False):
                built = ck.models.get(name, classes, input_shape=(side, side, 3))
        assert sum(int(np.prod(v.shape)) for v in built.trainable_weights) == expected, (name, classes)


@pytest.mark.parametrize("name", families())
def test_model_compiles_under_xla_and_saves(name, tmp_path):
    """Every family's smallest model through one XLA program; the zoo's smallest also takes an XLA training step.

    A training step of every family (forward and backward compiled) was measured at 38-86 s per backend on the
    2-core development machine, beyond the CI budget; the forward pass and the saved weights are checked for each.
    """
    smallest = min(reference_counts(), key=lambda row: row[2])[0]
    check_model_trains_and_saves(name, tmp_path, train=name == smallest)
