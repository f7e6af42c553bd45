"""Tiny models and data for fast tests, and a compiled loop of augmentation calls."""

import keras
import numpy as np
from keras import ops


def tiny_cnn(num_classes=10, input_shape=(8, 8, 1), name=None, width=8, batch_norm=True):
    """Conv (+BN) + ReLU + global pooling (the "features" layer) + Dense logits."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm)(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name=name)


def zoo_tiny(num_classes, input_shape=(32, 32, 3), name=None, normalization=None):
    """A one-convolution network that keeps the zoo's conventions (`keras_calikd.models`), for whole runs.

    Input `"image"`, `InputNormalization` with `normalization=(mean, std)`, a
    `"features"` layer and float32 `"logits"`: what `Experiment` and the export
    expect of a zoo model, at a fraction of ResNet-8's compilation time.
    Register it (`ck.models.MODELS.register(...)`) to name it in a run's config.
    """
    from keras_calikd.models import InputNormalization

    inputs = keras.Input(input_shape, name="image")
    x = inputs if normalization is None else InputNormalization(*normalization)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, dtype="float32", name="logits")(x),
                       name=name or "zoo_tiny")


def dense_model(num_classes=4, input_shape=(3, 3, 1), name=None):
    """A linear model on flattened pixels (no batch norm, no randomness), with a "features" layer."""
    inputs = keras.Input(input_shape)
    features = keras.layers.Flatten(name="features")(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(features), name=name)


def blobs(n=256, num_classes=10, shape=(8, 8, 1), seed=0):
    """A learnable synthetic task: each class has its own mean image."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes,) + shape).astype("float32")
    labels = rng.integers(0, num_classes, n).astype("int32")
    images = means[labels] + 0.5 * rng.normal(size=(n,) + shape).astype("float32")
    return images.astype("float32"), labels


class Repeat(keras.layers.Layer):
    """Calls an augmentation on its input batch (labels 0..B-1); returns the images, lambda and sources."""

    def __init__(self, augmentation, **kwargs):
        super().__init__(**kwargs)
        self.augmentation = augmentation

    def build(self, input_shape):
        if not self.augmentation.built:  # as the Distiller built it, when it was
            self.augmentation.build(input_shape)

    def call(self, images):
        out = self.augmentation.augment(images, ops.arange(images.shape[0], dtype="int32"))
        per_row = [ops.broadcast_to(ops.cast(value, "float32"), (images.shape[0],)) for value in (out.lam, out.sources)]
        return (out.images, *per_row)


def repeated(augmentation, images, calls, xla=None):
    """`augment` called `calls` times on `images` with one seed generator, in a compiled loop (`predict`).

    Eager calls cost a dispatch per operation (on JAX, a compilation per new shape); this costs one compilation.
    `xla`: compile with XLA (`True`), or not; `None`: on JAX only.

    Returns:
        The augmented images `(calls, B, H, W, C)`, and each call's lambda and number of sources, `(calls,)` each.
    """
    batch = images.shape[0]
    inputs = keras.Input(images.shape[1:], batch_size=batch)
    model = keras.Model(inputs, Repeat(augmentation)(inputs))
    model.compile(jit_compile=keras.backend.backend() == "jax" if xla is None else xla)
    out_images, lams, sources = model.predict(np.tile(images, (calls, 1, 1, 1)), batch_size=batch, verbose=0)
    return (out_images.reshape((calls,) + images.shape), lams.reshape(calls, batch)[:, 0],
            sources.reshape(calls, batch)[:, 0])
