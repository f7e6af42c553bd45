"""Serializable custom layers of the zoo: the input normalisation and ShuffleNet's channel operations.

Both are pure data movement (no weights) written with `keras.ops`, so they run
under XLA on every backend and round-trip through `get_config` and
`model.save(...)`/`keras.models.load_model(...)`. Tensors are channels-last.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops


def _static_channels(input_shape, layer) -> int:
    channels = input_shape[-1]
    if channels is None:
        raise ValueError(f"{type(layer).__name__} {layer.name!r} needs a known channel dimension, got {input_shape}.")
    return int(channels)


@keras.saving.register_keras_serializable(package="keras_calikd")
class ChannelShuffle(keras.layers.Layer):
    """Interleaves the channels of `groups` equal channel groups (ShuffleNet's shuffle).

    Channel `g * (C // groups) + j` of the input becomes channel `j * groups + g`
    of the output, so each group of a following grouped convolution sees
    channels from every group of the preceding one.

    Args:
        groups: Number of channel groups; must divide the channel count.
    """

    def __init__(self, groups: int, **kwargs):
        super().__init__(**kwargs)
        groups = int(groups)
        if groups < 1:
            raise ValueError(f"ChannelShuffle: `groups` must be >= 1, got {groups}.")
        self.groups = groups

    def build(self, input_shape):
        channels = _static_channels(input_shape, self)
        if channels % self.groups:
            raise ValueError(
                f"ChannelShuffle {self.name!r}: {channels} channels cannot be split into {self.groups} groups."
            )

    def call(self, inputs):
        if self.groups == 1:
            return inputs
        channels = inputs.shape[-1]
        shape = ops.shape(inputs)
        height, width = shape[1], shape[2]
        x = ops.reshape(inputs, (-1, height, width, self.groups, channels // self.groups))
        x = ops.swapaxes(x, 3, 4)
        return ops.reshape(x, (-1, height, width, channels))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["groups"] = self.groups
        return config


@keras.saving.register_keras_serializable(package="keras_calikd")
class ChannelSplit(keras.layers.Layer):
    """Splits a tensor along channels into `[x[..., :size], x[..., size:]]`.

    Args:
        size: Number of channels of the first output (`0 < size < C`).
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        size = int(size)
        if size < 1:
            raise ValueError(f"ChannelSplit: `size` must be >= 1, got {size}.")
        self.size = size

    def build(self, input_shape):
        channels = _static_channels(input_shape, self)
        if not self.size < channels:
            raise ValueError(f"ChannelSplit {self.name!r}: cannot take {self.size} of {channels} channels.")

    def call(self, inputs):
        return [inputs[..., : self.size], inputs[..., self.size :]]

    def compute_output_shape(self, input_shape):
        head = tuple(input_shape[:-1])
        return [head + (self.size,), head + (input_shape[-1] - self.size,)]

    def get_config(self):
        config = super().get_config()
        config["size"] = self.size
        return config


@keras.saving.register_keras_serializable(package="keras_calikd")
class InputNormalization(keras.layers.Layer):
    """Standardises each channel of raw images: `(x - mean) / std`, the model's first layer.

    With the normalisation inside the model, every form of a trained model
    (the `.keras` file, a SavedModel, a TFLite conversion) takes the same raw
    images (pixel values 0-255, float or uint8), and no caller needs the data
    set's constants. The constants are part of the layer's config, not
    weights.

    Args:
        mean: Per-channel mean, in the units of the inputs (pixels); one
            value or one per channel.
        std: Per-channel standard deviation, positive, same units.

    Example:

    ```python
    inputs = keras.Input((32, 32, 3))
    x = ck.models.InputNormalization(mean=(129.3, 124.1, 112.4), std=(68.2, 65.4, 70.4))(inputs)
    ```
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in np.ravel(mean))
        self.std = tuple(float(s) for s in np.ravel(std))
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"InputNormalization: `mean` and `std` need one value per channel each, got "
                             f"{len(self.mean)} and {len(self.std)}.")
        if min(self.std) <= 0:
            raise ValueError(f"InputNormalization: `std` must be positive, got {self.std}.")

    def build(self, input_shape):
        channels = _static_channels(input_shape, self)
        if len(self.mean) not in (1, channels):
            raise ValueError(f"InputNormalization {self.name!r}: {len(self.mean)} values of `mean` and `std` for "
                             f"{channels} channels; give one value per channel.")

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        mean = ops.convert_to_tensor(np.asarray(self.mean, np.float32), self.compute_dtype)
        scale = ops.convert_to_tensor(1.0 / np.asarray(self.std, np.float32), self.compute_dtype)
        return (inputs - mean) * scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(mean=list(self.mean), std=list(self.std))
        return config
