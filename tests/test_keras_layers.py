"""AugMix, RandAugment and any Keras preprocessing layer as strategies, checked against Keras' own layers.

The Distiller feeds raw pixels (0-255) to a student that normalises them
itself and builds each strategy with the student's `(mean, std)` in pixels.
The comparisons with Keras' own layers run in the TensorFlow pass only
(`backend_neutral`): the strategies and Keras' layers go through the same
backend dispatch, and on JAX each comparison would compile these layers again
(6-10 s each on a 2-core CPU). The JAX pass trains both strategies through
the Distiller, compiled with XLA, and checks the JAX-specific equalization.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from keras_calikd.augmentations.augmix import ChainsDrawnPerCall
from keras_calikd.augmentations.keras_layer import HistogramEqualization, with_histogram_equalization
from tiny import zoo_tiny

ON_JAX = keras.backend.backend() == "jax"
PIXELS = (np.float32([120.0, 110.0, 100.0]), np.float32([60.0, 55.0, 50.0]))  # a student's normalisation


def pixels(n=8, size=8, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 255.0, (n, size, size, channels)).astype("float32")


class _Call(keras.layers.Layer):
    def __init__(self, function, layers=(), **kwargs):
        super().__init__(**kwargs)
        self.function = function
        self.used = list(layers)  # tracked, so that the model carries their seed states from call to call

    def build(self, input_shape):
        pass

    def call(self, images):
        return self.function(images)


def compiled(function, images, calls, layers=()):
    """`function(images)` called `calls` times by one compiled program (a TensorFlow graph, a JAX program), as a
    NumPy array; the state of `layers` (the layers `function` uses) is carried from call to call."""
    inputs = keras.Input(images.shape[1:], batch_size=len(images))
    model = keras.Model(inputs, _Call(function, layers)(inputs))
    model.compile(jit_compile=False)
    out = model.predict(np.tile(images, (calls,) + (1,) * (images.ndim - 1)), batch_size=len(images), verbose=0)
    return out.reshape((calls, len(images)) + out.shape[1:])


def run(function, images):
    return ops.convert_to_numpy(function(ops.convert_to_tensor(images)))


def test_histogram_equalization_is_keras_equalization():
    """On JAX Keras counts with a loop over the bins: 32 bins here, to keep its eager calls few."""
    images = pixels(n=2, size=6)
    images[1] = np.round(images[1] / 64) * 64  # few grey levels: a histogram with empty bins
    expected = keras.layers.Equalization(value_range=(0, 255), bins=32)(images)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(HistogramEqualization(value_range=(0, 255), bins=32)(images)),
        ops.convert_to_numpy(expected))
    assert hasattr(keras.layers.Equalization, "_custom_histogram_fixed_width")  # the method it replaces


@pytest.mark.backend_neutral  # TensorFlow pass only: see the module's docstring
def test_randaugment_gives_the_keras_layers_images_for_the_same_seed():
    """Keras' RandAugment with the equalization the test above shows equal, and the strategy, seed 3."""
    images = pixels()
    strategy = ck.augmentations.RandAugment(num_ops=2, factor=0.6, seed=3)
    strategy.build(images.shape, 10, PIXELS)
    reference = with_histogram_equalization(keras.layers.RandAugment(num_ops=2, factor=0.6, seed=3))
    ours = run(lambda x: strategy.augment(x, ops.zeros((8,), "int32")).images, images)
    theirs = run(lambda x: reference(x, training=True), images)
    assert np.abs(ours - images).max() > 1.0  # the images were augmented
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


@pytest.mark.backend_neutral  # TensorFlow pass only: see the module's docstring
def test_augmix_chains_give_the_keras_layers_images_for_the_same_operations():
    """The chains drawn per call, in Keras' own format, through Keras' own `AugMix.transform_images`."""
    images = pixels(n=4)
    layer = with_histogram_equalization(ChainsDrawnPerCall(num_chains=2, chain_depth=2, all_ops=False, seed=4))
    layer.build(images.shape)
    transformation = layer.get_random_transformation(images)
    names, operations = layer._augment_layers, ops.convert_to_numpy(transformation["operations"])

    def rolled(parameters, position):  # image i takes the draws of image i - position at that position
        return keras.tree.map_structure(lambda leaf: leaf if leaf is None or isinstance(leaf, (int, float))
                                        else np.roll(ops.convert_to_numpy(leaf), position, axis=0), parameters)

    chains = [[{"layer_name": names[operations[p]],
                "transformation": rolled(transformation["parameters"][names[operations[p]]], p)}
               for p in range(2 * c, 2 * c + 2) if operations[p] < len(names)] for c in range(2)]
    assert sum(len(chain) for chain in chains) >= 2, operations  # seed 4 draws operations, not only "none"
    keras_format = {"chain_mixing_weights": transformation["chain_mixing_weights"],
                    "weight_sample": transformation["weight_sample"], "chain_transforms": chains}
    expected = keras.layers.AugMix.transform_images(layer, images, keras_format)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.transform_images(images, transformation)),
                               ops.convert_to_numpy(expected), atol=1e-3)


@pytest.mark.backend_neutral  # TensorFlow pass only (a graph there): see the module's docstring
def test_augmix_draws_other_operations_at_every_call_of_a_compiled_step():
    """Keras' own layer draws them with Python's `random` when traced: once for every call of the program."""
    images = pixels(n=2, size=4)
    layer = ChainsDrawnPerCall(num_chains=3, chain_depth=3, seed=1)

    def operations(x):
        drawn = ops.cast(layer.get_random_transformation(x)["operations"], "float32")
        return ops.broadcast_to(drawn[None], (2, 9))

    drawn = compiled(operations, images, calls=40, layers=[layer])[:, 0].astype(int)  # (calls, positions)
    assert len({tuple(row) for row in drawn}) == 40  # 12**9 possible draws
    counts = np.bincount(drawn.ravel(), minlength=12)  # 11 operations and "none", uniformly: 30 each
    assert len(counts) == 12 and counts.min() >= 12 and counts.max() <= 52  # 4 standard deviations


@pytest.mark.parametrize("name", ["augmix", "randaugment"])
def test_trains_a_normalising_student_on_raw_pixels_through_the_distiller(name):
    """XLA where the backend allows it: JAX compiles the step, TensorFlow (no XLA kernels) runs it as a graph."""
    keras.utils.set_random_seed(0)
    teacher, student = zoo_tiny(4, (8, 8, 3), "t", PIXELS), zoo_tiny(4, (8, 8, 3), "s", PIXELS)
    strategy = ck.augmentations.get(name)
    distiller = ck.Distiller(teacher, student, distillation="kd", augmentation=strategy)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    assert distiller.jit_compile is ON_JAX and strategy.xla_compatible is ON_JAX
    before = [ops.convert_to_numpy(w) for w in student.trainable_weights]
    history = distiller.fit(pixels(), np.arange(8) % 4, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["augmentation_loss"][0]) and history["augmentation_loss"][0] > 0
    assert any(not np.allclose(b, ops.convert_to_numpy(a)) for b, a in zip(before, student.trainable_weights))
    if not ON_JAX:
        with pytest.raises(ValueError, match="cannot run inside a compiled"):
            distiller.compile(optimizer="sgd", jit_compile=True)


@pytest.mark.backend_neutral
@pytest.mark.parametrize("name", ["augmix", "randaugment"])
def test_colour_strategies_take_pixels_from_a_normalising_student_and_refuse_an_unknown_range(name):
    strategy = ck.augmentations.get(name)
    strategy.build((None, 8, 8, 3), 10, PIXELS)  # a normalising student: raw pixels, (0, 255)
    assert strategy.value_range == (0.0, 255.0) and strategy.layer.value_range == (0.0, 255.0)
    with pytest.raises(ValueError, match="no input normalisation layer.*normalization=.*or pass `value_range"):
        ck.augmentations.get(name).build((None, 8, 8, 3), 10, None)
    with pytest.raises(ValueError, match=r"cannot be the statistics of images in the value range \(0.0, 1.0\)"):
        ck.augmentations.get({"augmix": ck.augmentations.AugMix, "randaugment": ck.augmentations.RandAugment}[name](
            value_range=(0, 1))).build((None, 8, 8, 3), 10, PIXELS)
    ck.augmentations.AUGMENTATIONS.get(name)(value_range=(0, 1)).build((None, 8, 8, 3), 10, None)  # given: taken
    with pytest.raises(ValueError, match="RGB .3-channel. or grey .1-channel. images, got 2 channels"):
        ck.augmentations.get(name).build((None, 8, 8, 2), 10, (np.float32([1, 1]), np.float32([50, 50])))


@pytest.mark.backend_neutral  # TensorFlow pass only: see the module's docstring
def test_a_grey_image_is_augmented_as_the_grey_rgb_image_would_be():
    grey = pixels(n=2, size=6, channels=1)
    outputs = []
    for images in (grey, np.tile(grey, (1, 1, 1, 3))):
        strategy = ck.augmentations.RandAugment(num_ops=2, factor=0.5, seed=2)
        channels = images.shape[-1]
        strategy.build(images.shape, 10, (np.full(channels, 120.0, "float32"), np.full(channels, 60.0, "float32")))
        outputs.append(run(lambda x: strategy.augment(x, ops.zeros((2,), "int32")).images, images))
    assert outputs[0].shape == grey.shape and np.abs(outputs[0] - grey).max() > 1
    for channel in range(3):
        np.testing.assert_allclose(outputs[0][..., 0], outputs[1][..., channel], atol=1e-3)


def test_any_keras_layer_is_a_strategy_with_the_layers_output():
    images = pixels(n=4)
    strategy = ck.augmentations.KerasLayer(keras.layers.RandomContrast(0.5, value_range=(0, 255), seed=6), seed=0)
    strategy.build(images.shape, 10, PIXELS)
    out = strategy.augment(ops.convert_to_tensor(images), ops.arange(4, dtype="int32"))
    expected = keras.layers.RandomContrast(0.5, value_range=(0, 255), seed=6)(images, training=True)
    np.testing.assert_allclose(ops.convert_to_numpy(out.images), ops.convert_to_numpy(expected), atol=1e-4)
    assert float(out.lam) == 1.0 and float(out.sources) == 1.0 and strategy.label == "RandomContrast"
    assert strategy.xla_compatible is ON_JAX
    assert ck.augmentations.KerasLayer(keras.layers.RandomFlip(), xla_compatible=True).xla_compatible is True
    with pytest.raises(ValueError, match=r"value range \(0.0, 1.0\)"):  # a layer made for [0, 1] images
        ck.augmentations.KerasLayer(keras.layers.RandomContrast(0.5, value_range=(0, 1))).build(
            images.shape, 10, PIXELS)
    with pytest.raises(ValueError, match="`layer` must be a Keras layer"):
        ck.augmentations.KerasLayer("random_contrast")


@pytest.mark.backend_neutral
@pytest.mark.parametrize("strategy", [
    ck.augmentations.AugMix(num_chains=2, chain_depth=1, factor=(0.1, 0.4), alpha=0.5, all_ops=False,
                            interpolation="nearest", value_range=(0, 1), label_source="teacher", seed=3),
    ck.augmentations.AugMix(),
    ck.augmentations.RandAugment(num_ops=1, factor=0.2, value_range=(-1, 1), seed=2),
    ck.augmentations.KerasLayer(keras.layers.RandomContrast(0.3, value_range=(0, 255), seed=1), xla_compatible=False),
])
def test_config_round_trip(strategy):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(clone) is type(strategy) and clone.get_config() == strategy.get_config()
    unnamed = lambda config: {k: v for k, v in config.items() if k != "name"}  # noqa: E731
    assert unnamed(clone.layer.get_config()) == unnamed(strategy.layer.get_config())
