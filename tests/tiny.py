"""Tiny models and data for fast tests."""

import keras
import numpy as np


def tiny_cnn(num_classes=10, input_shape=(8, 8, 1), name=None, width=8, batch_norm=True):
    """Conv (+BN) + ReLU + global pooling (the "features" layer) + Dense logits."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm)(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name=name)


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
