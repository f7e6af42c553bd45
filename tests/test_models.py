"""The CIFAR model zoo: shapes, features, downsampling, conventions, errors, precision.

What every registered model must do (its configuration, gin binding, reference parameter count, an XLA-compiled
forward pass per family with its features and head, saving and loading) is checked by the shared harness of
tests/conformance.py, in tests/test_conformance.py.

Kept fast on 2 CPU cores, on both backends:

- Models are built inside `keras.StatelessScope(initialize_variables=False)`:
  every layer and variable (with its shape) is real, only the drawing of
  random initial values is skipped. On JAX each new variable shape would
  otherwise cost one compilation of the random generator (about a second on
  CPU), which dominated the run time.
- Numeric checks feed explicit weights (seeded NumPy arrays) through
  `keras.StatelessScope(state_mapping=...)`. Every scope passes
  `initialize_variables=False`, so no random initial values are ever drawn.
- The training-step test uses an ordinarily initialised model (`compile` +
  `train_on_batch` with `jit_compile=True`), the way training does.
"""

import csv
import os

import keras
import numpy as np
import pytest

from conformance import seeded_values
from keras_calikd import models

PARAM_COUNTS = os.path.join(os.path.dirname(__file__), "data", "param_counts.tsv")

# One representative per family module: (name, feature dimension, input shape of the numeric tests, builder
# options). The ShuffleNets use fewer units per stage (every layer type is still there); the numeric input
# shapes cover all three supported sizes.
FAMILIES = {
    "resnet_cifar": ("resnet8", 64, (28, 28, 1), {}),
    "wide_resnet": ("wrn_16_1", 64, (32, 32, 3), {}),
    "vgg": ("vgg8", 512, (28, 28, 1), {}),
    "mobilenetv2": ("MobileNetV2", 1280, (28, 28, 1), {}),
    "shufflenetv1": ("ShuffleV1", 960, (28, 28, 1), {"stage_units": (2, 1, 1)}),
    "shufflenetv2": ("ShuffleV2", 1024, (28, 28, 1), {"stage_units": (1, 1, 0)}),
    "resnet": ("ResNet18", 512, (64, 64, 3), {}),
}
INPUT_SHAPES = [(32, 32, 3), (64, 64, 3), (28, 28, 1)]


def _reference_rows():
    with open(PARAM_COUNTS, newline="") as f:
        return [(r["architecture"], int(r["num_classes"]), int(r["trainable_parameters"]))
                for r in csv.DictReader(f, delimiter="\t")]


def _trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def _symbolic(name, num_classes, input_shape=(32, 32, 3), **kwargs):
    """Builds the real model; its variables exist with their shapes but hold no random values yet."""
    with keras.StatelessScope(initialize_variables=False):
        return models.get(name, num_classes, input_shape=input_shape, **kwargs)


def _family_model(family):
    name, _, input_shape, kwargs = FAMILIES[family]
    return _symbolic(name, 10, input_shape, **kwargs)


def _call(fn, weights, x, xla=True):
    """`fn(x)` with `weights` in place of the variables' values.

    Compiled with XLA on JAX always (one compilation is much faster than op-by-op dispatch, which compiles
    every primitive), and on TensorFlow when `xla` is true (eager otherwise).
    """
    variables = [variable for variable, _ in weights]

    def run(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values)), initialize_variables=False):
            return fn(x)

    values = [value for _, value in weights]
    if keras.backend.backend() == "jax":
        import jax

        outputs = jax.jit(run)(values, x)
    elif xla:
        import tensorflow as tf

        outputs = tf.function(run, jit_compile=True)(values, x)
    else:
        outputs = run(values, x)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def _images(input_shape, batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch,) + tuple(input_shape)).astype("float32")


# --- registry and parameter counts ---------------------------------------------------------------------------


def test_registered_names_are_the_reference_architectures():
    reference = {arch for arch, _, _ in _reference_rows()}
    assert set(models.names()) == reference
    assert len(reference) == 24
    for name in reference:
        assert callable(getattr(models, name)), name


def test_parameter_count_does_not_depend_on_input_size():
    for name, expected in [("vgg8", 3918858), ("MobileNetV2", 697546)]:
        for input_shape in [(28, 28, 3), (64, 64, 3), (96, 80, 3)]:
            assert _trainable_count(_symbolic(name, 10, input_shape)) == expected, (name, input_shape)


# --- shapes and features -------------------------------------------------------------------------------------

SHAPE_CASES = [(name, dim) for name, dim, _, _ in FAMILIES.values()] + [("ResNet50", 2048), ("resnet32x4", 256)]


@pytest.mark.parametrize("name,dim", SHAPE_CASES, ids=[name for name, _ in SHAPE_CASES])
def test_output_and_feature_shapes(name, dim):
    for input_shape in INPUT_SHAPES:
        model = _symbolic(name, 7, input_shape)
        assert model.input_shape == (None,) + input_shape
        assert model.output_shape == (None, 7), input_shape
        features = model.get_layer("features")
        assert isinstance(features, keras.layers.GlobalAveragePooling2D)
        assert features.output.shape == (None, dim), input_shape
        logits = model.get_layer("logits")
        assert isinstance(logits, keras.layers.Dense) and logits.input is features.output
        assert logits.output is model.outputs[0] and logits.dtype_policy.name == "float32"


def test_vgg_pools_a_fourth_time_for_64_pixel_inputs():
    def final_map(input_shape, **kwargs):
        return _symbolic("vgg8", 10, input_shape, **kwargs).get_layer("block4_0_relu").output.shape[1:3]

    assert final_map((32, 32, 3)) == (4, 4)
    assert final_map((28, 28, 1)) == (3, 3)  # floor pooling, as the reference
    assert final_map((64, 64, 3)) == (4, 4)
    assert final_map((64, 64, 3), extra_pool=False) == (8, 8)


def test_downsampling_and_padding_follow_the_reference():
    # MobileNetV2: stride-2 stem, stride-1 24-channel stage: 32 -> 2 before pooling.
    assert _symbolic("MobileNetV2", 10).get_layer("last_relu").output.shape[1:3] == (2, 2)
    stride_one = _symbolic("MobileNetV2", 10, stem_stride=1)
    assert stride_one.get_layer("last_relu").output.shape[1:3] == (4, 4)
    assert _trainable_count(stride_one) == 697546
    # Strided 3x3 convolutions pad symmetrically (PyTorch's padding=1); odd sizes round up: 28 -> 14 -> 7 -> 4.
    model = _symbolic("ResNet18", 10, (28, 28, 1))
    assert isinstance(model.get_layer("stage2_block0_1_conv_pad"), keras.layers.ZeroPadding2D)
    assert [model.get_layer(f"stage{s}_block0_out").output.shape[1] for s in (1, 2, 3, 4)] == [28, 14, 7, 4]


def test_channel_shuffle_and_split_move_channels_as_specified():
    x = np.arange(2 * 6, dtype="float32").reshape(1, 2, 1, 6)
    shuffled = keras.ops.convert_to_numpy(models.ChannelShuffle(3)(x))
    np.testing.assert_array_equal(shuffled[0, 0, 0], [0, 2, 4, 1, 3, 5])
    np.testing.assert_array_equal(shuffled[0, 1, 0], [6, 8, 10, 7, 9, 11])
    first, second = models.ChannelSplit(2)(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first)[0, 0, 0], [0, 1])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(second)[0, 0, 0], [2, 3, 4, 5])
    with pytest.raises(ValueError, match="cannot be split into 4 groups"):
        models.ChannelShuffle(4)(x)


def test_initialisation_and_batch_norm_conventions():
    model = _symbolic("resnet8", 10, zero_init_residual=True)
    assert isinstance(model.get_layer("stage1_block0_2_bn").gamma_initializer, keras.initializers.Zeros)
    assert isinstance(model.get_layer("stage1_block0_1_bn").gamma_initializer, keras.initializers.Ones)
    init = model.get_layer("stem_conv").kernel_initializer.get_config()
    assert (init["scale"], init["mode"], init["distribution"]) == (2.0, "fan_out", "untruncated_normal")
    assert isinstance(_symbolic("resnet8", 10).get_layer("stage1_block0_2_bn").gamma_initializer,
                      keras.initializers.Ones)
    norms = [layer for layer in _symbolic("wrn_16_1", 10).layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(n.momentum == 0.9 and n.epsilon == 1e-5 for n in norms)


# --- errors --------------------------------------------------------------------------------------------------


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"Unknown model architecture 'resnet9'.*resnet8, resnet8x4"):
        models.get("resnet9", 10)


def test_bad_arguments_raise_value_error():
    for kwargs, message in [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"num_classes": 10, "input_shape": (32, 32)}, "3-tuple"),
        ({"num_classes": 10, "input_shape": (32, 32, 0)}, "positive integers"),
        ({"num_classes": 10, "input_shape": (32, None, 3)}, "positive integers"),
        ({"num_classes": 10, "input_shape": "32x32"}, "3-tuple"),
    ]:
        with pytest.raises(ValueError, match=message):
            models.get("resnet8", **kwargs)


def test_too_small_input_is_a_clear_error():
    for name, input_shape, kwargs, minimum in [
        ("vgg8", (4, 4, 3), {}, 8),
        ("vgg8", (12, 12, 3), {"extra_pool": True}, 16),
        ("MobileNetV2", (8, 8, 3), {}, 16),
        ("MobileNetV2", (4, 4, 3), {"stem_stride": 1}, 8),
        ("ShuffleV2", (4, 32, 3), {}, 8),
        ("ResNet50", (7, 7, 3), {}, 8),
        ("resnet8", (3, 3, 3), {}, 4),
    ]:
        with pytest.raises(ValueError, match=f"{name}: input .* too small.*at least {minimum}"):
            models.get(name, 10, input_shape=input_shape, **kwargs)


def test_builders_validate_when_called_directly():
    with pytest.raises(ValueError, match="num_classes"):
        models.wrn_16_1(-1)
    with pytest.raises(ValueError, match="input_shape"):
        models.ShuffleV1(10, input_shape=(32, 32))


# --- training, precision, serialization ----------------------------------------------------------------------


# Every family's forward pass is XLA-compiled, and the zoo's smallest model (resnet8) takes an XLA training step,
# in tests/test_conformance.py. Here a narrow ShuffleV1 takes one too: it keeps every layer type of its family
# (grouped 1x1 convolutions in 3 groups, the shuffle, depthwise convolutions, both unit types) at a fraction of
# the full model's compilation time.
TRAINED = {
    "ShuffleV1": {"stage_widths": (48, 96), "stage_units": (2, 1)},
}


@pytest.mark.heavy
@pytest.mark.parametrize("name", TRAINED)
def test_one_jit_compiled_training_step_is_finite(name):
    keras.utils.set_random_seed(0)
    model = models.get(name, 10, input_shape=(28, 28, 1), **TRAINED[name])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    before = keras.ops.convert_to_numpy(model.get_layer("logits").kernel)
    loss = model.train_on_batch(_images((28, 28, 1), batch=4), np.array([0, 1, 2, 3], "int32"))
    assert np.isfinite(loss)
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("logits").kernel), before)


def test_mixed_bfloat16_keeps_logits_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = _family_model("shufflenetv2")
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("features").compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"
    weights = list(zip(model.variables, seeded_values(model)))
    logits = _call(lambda x: model(x, training=False), weights, _images((28, 28, 1)), xla=False)
    assert logits.dtype == np.float32 and np.all(np.isfinite(logits))
