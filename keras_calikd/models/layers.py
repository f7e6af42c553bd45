"""Serializable custom layers needed by the ShuffleNet families.

Both are pure data movement (no weights) written with `keras.ops`, so they run
under XLA on every backend and round-trip through `get_config` and
`model.save(...)`/`keras.models.load_model(...)`. Tensors are channels-last.
"""

from __future__ import annotations

import keras
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
