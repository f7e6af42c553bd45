"""The conformance harness: what every registered distillation, augmentation, metric and model must do.

One check per property, shared by every kind of component (the keras-hub habit of one test harness per kind):

- `check_config_round_trip`: `from_config(get_config())` and Keras serialization give the same object, and the
  configuration holds every constructor argument (checked with values other than the defaults);
- `check_gin_binding`: every constructor argument binds through gin and reaches the object; a misspelled one
  fails when it is parsed;
- `check_published_defaults`: the defaults are the ones README.md publishes for the entry;
- `check_strategy_trains_and_saves`: one XLA-compiled training step of a Distiller with the strategy (where
  the strategy declares it can run under XLA), then save and load restore every variable;
- `check_model_trains_and_saves` (models, at their smallest input) and `check_metrics_train_and_save`
  (all metrics in one compiled model) likewise.

tests/test_conformance.py runs them over every registry entry; tests/test_methods.py runs them on a strategy it
registers itself.
"""

import ast
import inspect
import json
import os
import re

import gin
import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from keras_calikd.gin_support import register_configurables

from tiny import blobs, tiny_cnn, zoo_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
REQUIRED = inspect.Parameter.empty
#: Values of required constructor arguments, where a component has one (a metric's or strategy's class count).
REQUIRED_VALUES = {"num_classes": 10,
                   "layer": keras.saving.serialize_keras_object(  # KerasLayer's layer, in the form a config holds
                       keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=1, name="contrast"))}
#: Keras' own layer and metric arguments: Keras tests them.
KERAS_ARGUMENTS = ("name", "dtype", "trainable")


def constructor_arguments(cls) -> dict:
    """`{argument: default}` of what `cls(...)` takes, through `**kwargs` to its bases (`REQUIRED`: no default)."""
    arguments = {}
    for klass in cls.__mro__:
        if klass in (keras.layers.Layer, keras.metrics.Metric, keras.Model, object) or "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        for p in parameters:
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                arguments.setdefault(p.name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return {name: value for name, value in arguments.items() if name not in KERAS_ARGUMENTS}


def required_arguments(cls) -> dict:
    """The harness's values of `cls`'s required constructor arguments (`REQUIRED_VALUES`)."""
    return {name: REQUIRED_VALUES[name] for name, value in constructor_arguments(cls).items() if value is REQUIRED}


def _other_values(default):
    """Values other than `default` of the same kind, in the order they are tried."""
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int):
        return [default + 1, default * 2 + 3]
    if isinstance(default, float):
        return [default / 2 if default else 0.5, default * 2 + 0.25, default + 1.0]
    return []


def other_arguments(cls) -> dict:
    """An argument value other than the default for every numeric or boolean argument that accepts one."""
    chosen = {}
    base = required_arguments(cls)
    for name, default in constructor_arguments(cls).items():
        for value in _other_values(default):
            try:
                cls(**base, **{name: value})
            except (ValueError, TypeError):
                continue
            chosen[name] = value
            break
    cls(**base, **chosen)  # together too
    return chosen


def check_config_round_trip(cls):
    """The configuration holds every constructor argument, with its value, and revives the same object."""
    arguments = dict(required_arguments(cls), **other_arguments(cls))
    obj = cls(**arguments)
    config = obj.get_config()
    missing = set(constructor_arguments(cls)) - set(config)
    assert not missing, f"{cls.__name__}.get_config() leaves out {sorted(missing)}"
    assert {name: config[name] for name in arguments} == arguments
    clone = cls.from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(revived).__name__ == cls.__name__ and revived.get_config() == config


def check_gin_binding(cls, make):
    """Every constructor argument binds through gin and reaches the object `make()` creates; typos fail."""
    register_configurables()
    values = dict(required_arguments(cls), **other_arguments(cls))
    with gin.unlock_config():
        gin.clear_config()
        gin.parse_config([f"{cls.__name__}.{name} = {value!r}" for name, value in values.items()])
    try:
        config = make().get_config()
        assert {name: config[name] for name in values} == values
        with gin.unlock_config(), pytest.raises(ValueError, match="no_such_option"):
            gin.parse_config(f"{cls.__name__}.no_such_option = 1")
    finally:
        with gin.unlock_config():
            gin.clear_config()


def _readme_strategies(readme=README):
    """`{registered name: {option: value}}` of README.md's table of strategies (defaults = published settings)."""
    rows = {}
    with open(readme, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 3 or not cells[0].startswith("`"):
                continue
            options = {name: ast.literal_eval(value) for name, value in re.findall(r"`(\w+)=([^`]+)`", cells[2])}
            for name in re.findall(r"`([\w.]+)`", cells[0]):
                rows[name] = options
    return rows


def _readme_metrics(readme=README):
    """`{class name: {argument: value}}` of README.md's list of metrics."""
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    documented = {}
    for name, arguments in re.findall(r"`ck\.metrics\.(\w+)(?:\(([^)]*)\))?`", text):
        options = dict(re.findall(r"(\w+)=([^,]+)", arguments or ""))
        documented.setdefault(name, {}).update({k: ast.literal_eval(v.strip()) for k, v in options.items()})
    return documented


def check_published_defaults(cls, name=None, readme=README):
    """README.md documents the entry (a strategy by its registered `name`), and each default it gives is the code's."""
    documented = _readme_strategies(readme) if name is not None else _readme_metrics(readme)
    key = name if name is not None else cls.__name__
    assert key in documented, f"README.md does not document {key!r}"
    defaults = constructor_arguments(cls)
    for option, value in documented[key].items():
        assert option in defaults, f"README.md names {key}'s option {option!r}, which {cls.__name__} does not take"
        assert defaults[option] == value, f"{cls.__name__}({option}={defaults[option]!r}); README.md: {value!r}"


def as_json(config):
    """A configuration as a `.keras` file holds it (JSON: tuples become lists)."""
    return json.loads(json.dumps(config))


def _values(variables):
    return [np.asarray(ops.convert_to_numpy(v)) for v in variables]


def check_strategy_trains_and_saves(distillation, augmentation, tmp_path):
    """One XLA step of a Distiller with the strategies (without XLA where they say they cannot), then save and load.

    16x16 raw-pixel images and models that normalise them: every strategy's published options fit them (a
    cutout hole of 16 pixels; colour operations that need the images' range).
    """
    keras.utils.set_random_seed(0)
    x, y = blobs(8, shape=(16, 16, 1))
    x = np.clip(128.0 + 40.0 * x, 0.0, 255.0)  # raw pixels, for models that normalise them as the zoo's do
    teacher, student = (zoo_tiny(10, (16, 16, 1), name=role, normalization=((128.0,), (40.0,)))
                        for role in ("teacher", "student"))
    distiller = ck.Distiller(teacher, student, distillation=distillation, augmentation=augmentation)
    xla = distiller.augmentation.xla_compatible
    distiller.compile(optimizer=ck.training.SGD(0.05, momentum=0.9), jit_compile=True if xla else False)
    history = distiller.fit({"image": x, "index": np.arange(8, dtype="int32")}, y, batch_size=8, epochs=1,
                            verbose=0).history
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["distillation_loss"]).all()
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.models.load_model(path)
    assert [type(d).__name__ for d in loaded.distillations] == [type(d).__name__ for d in distiller.distillations]
    assert [d.get_config() for d in loaded.distillations] == [d.get_config() for d in distiller.distillations]
    assert as_json(loaded.augmentation.get_config()) == as_json(distiller.augmentation.get_config())
    for expected, got in zip(distiller.augmentation.input_normalization, loaded.augmentation.input_normalization):
        np.testing.assert_array_equal(np.asarray(got, "float32"), np.asarray(expected, "float32"))
    for before, after in ((distiller.variables, loaded.variables),
                          (distiller.optimizer.variables, loaded.optimizer.variables)):
        for expected, got in zip(_values(before), _values(after), strict=True):
            np.testing.assert_array_equal(got, expected)


def smallest_input(name) -> int:
    """The smallest height and width a registered model takes (its total downsampling, from its own error)."""
    try:
        ck.models.get(name, 10, input_shape=(1, 1, 1))
    except ValueError as error:
        return int(re.search(r"at least (\d+)", str(error)).group(1))
    return 1


def seeded_values(model, seed=0):
    """Seeded values for every variable of `model` (explicit values: no random initialiser is compiled on JAX)."""
    rng = np.random.default_rng(seed)
    values = []
    for variable in model.variables:
        shape = tuple(variable.shape)
        if len(shape) >= 2:
            value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif variable.name in ("gamma", "moving_variance"):
            value = 1.0 + 0.1 * rng.uniform(size=shape)
        else:
            value = 0.1 * rng.normal(size=shape)
        values.append(value.astype(variable.dtype))
    return values


def _compiled(forward, variables, values, images, labels, train):
    """Logits, features, loss and (with `train`) the gradient of every variable's value, in one XLA program."""
    def loss_of(values, images, labels):
        with keras.StatelessScope(state_mapping=list(zip(variables, values)), initialize_variables=False):
            logits, features = forward(images, training=train)
        loss = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return loss, (logits, features)

    if keras.backend.backend() == "jax":
        import jax

        if train:
            (loss, outputs), gradients = jax.jit(jax.value_and_grad(loss_of, has_aux=True))(values, images, labels)
        else:
            (loss, outputs), gradients = jax.jit(loss_of)(values, images, labels), None
    else:
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(values, images, labels):
            with tf.GradientTape() as tape:
                tape.watch(values)
                loss, outputs = loss_of(values, images, labels)
            return loss, outputs, tape.gradient(loss, values, unconnected_gradients="zero") if train else None

        loss, outputs, gradients = step([tf.constant(v) for v in values], images, labels)
    as_numpy = lambda tree: keras.tree.map_structure(lambda t: np.asarray(ops.convert_to_numpy(t)), tree)  # noqa
    return as_numpy(loss), as_numpy(outputs), None if gradients is None else as_numpy(list(gradients))


def check_model_trains_and_saves(name, tmp_path, train=True):
    """The zoo's contract at the model's smallest input, raw pixels in, with seeded weights.

    One XLA-compiled forward pass gives logits and penultimate features
    together, the logits the linear head of exactly those features; with
    `train`, the same program is a training step (finite gradients that
    reach the first layer, applied by SGD). The weights then save and load
    unchanged, normalisation included. (Seeded weights: on JAX, drawing
    random initial values compiles the generator once per variable shape.)
    """
    side = smallest_input(name)
    with keras.StatelessScope(initialize_variables=False):
        model = ck.models.get(name, 10, input_shape=(side, side, 1), normalization=((72.9,), (90.0,)))
    forward = keras.Model(model.inputs, [model.outputs[0], model.get_layer("features").output])
    variables, values = model.variables, seeded_values(model)
    images = np.random.default_rng(0).integers(0, 256, (2, side, side, 1)).astype("float32")
    loss, (logits, features), gradients = _compiled(forward, variables, values, images, np.array([0, 1], "int32"),
                                                    train)
    assert np.isfinite(loss) and logits.shape == (2, 10) and logits.dtype == np.float32 and np.std(logits) > 0
    kernel, bias = (value for variable, value in zip(variables, values) if variable.path.startswith("logits/"))
    np.testing.assert_allclose(features @ kernel + bias, logits, rtol=1e-4, atol=1e-4)
    saved = values
    if train:
        trainable = [id(v) in {id(t) for t in model.trainable_variables} for v in variables]
        assert all(np.isfinite(g).all() for g in gradients) and np.abs(gradients[trainable.index(True)]).sum() > 0
        saved = [v - 0.1 * g if t else v for v, g, t in zip(values, gradients, trainable)]

    path = str(tmp_path / f"{name}.keras")
    with keras.StatelessScope(state_mapping=list(zip(variables, saved)), initialize_variables=False):
        model.save(path)  # writes the mapped weights
    with keras.StatelessScope(initialize_variables=False) as scope:
        loaded = keras.models.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for expected, variable in zip(saved, loaded.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(ops.convert_to_numpy(scope.get_current_value(variable))), expected)
    assert ck.models.input_normalization(loaded)[0].tolist() == pytest.approx([72.9])


def check_metrics_train_and_save(classes, tmp_path):
    """The metrics in one model compiled with XLA: a fit gives values in [0, 1]; saving the model keeps them."""
    keras.utils.set_random_seed(0)
    metrics = [cls(**required_arguments(cls), from_logits=True) for cls in classes]
    model = tiny_cnn(input_shape=(8, 8, 1), width=4)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=metrics, jit_compile=True)
    x, y = blobs(16)
    logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    for metric in metrics:
        values = np.atleast_1d(logs[metric.name])
        assert np.all((values >= 0.0) & (values <= 1.0)), (metric.name, values)
    path = str(tmp_path / "metrics.keras")
    model.save(path)
    revived = keras.models.load_model(path).get_compile_config()["metrics"]
    assert [keras.saving.deserialize_keras_object(m).get_config() for m in revived] == \
        [m.get_config() for m in metrics]
