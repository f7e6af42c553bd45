"""Conventions and building blocks shared by every family of the model zoo.

All models are functional, channels-last Keras models that follow these rules:

- Batch normalisation uses `momentum=0.9, epsilon=1e-5` (PyTorch's 0.1/1e-5):
  gamma 1, beta 0; its moving statistics are non-trainable weights.
- Convolution kernels are He-normal in fan-out mode, drawn from an
  untruncated normal (`VarianceScaling(2.0, "fan_out", "untruncated_normal")`),
  which is what the reference zoo's `kaiming_normal_(mode="fan_out")` /
  `normal(0, sqrt(2 / (k * k * out_channels)))` draws. For depthwise kernels the
  scale is divided by the channel count, because PyTorch counts the fan-out of a
  depthwise kernel as `k * k * channels` while Keras counts `k * k`.
- Padding matches the reference (PyTorch) models exactly: stride-1 convolutions
  use `"same"` (symmetric for odd kernels); a strided `k x k` convolution is an
  explicit symmetric `ZeroPadding2D(k // 2)` followed by a `"valid"`
  convolution. Keras' `"same"` would pad only bottom/right for even inputs, which
  shifts the sampling grid by one pixel. Either way an odd size `n` becomes
  `ceil(n / 2)`, so 28x28 inputs work (28 -> 14 -> 7 -> 4).
- With `normalization=(mean, std)` the first layer is `InputNormalization`
  (named `"normalize"`): the model takes raw pixel images and standardises
  them itself, so its saved and exported forms all take the same input.
- The head is `GlobalAveragePooling2D(name="features")` followed by
  `Dense(num_classes, dtype="float32", name="logits")`: the feature vector is
  the classifier's input, the parameter count does not depend on the input
  size, and the logits stay float32 under the `mixed_bfloat16` policy.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import keras
import numpy as np
from keras import layers

from keras_calikd import checks
from keras_calikd.models.layers import InputNormalization
from keras_calikd.registry import Registry

MODELS = Registry("model architecture")

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
DATA_FORMAT = "channels_last"

NORMALIZATION_LAYER = "normalize"
FEATURES_LAYER = "features"
LOGITS_LAYER = "logits"


# --- argument validation -------------------------------------------------------------------------------------


def validate_num_classes(num_classes, arch: str) -> int:
    """Returns `num_classes` as an int; `ValueError` unless it is a positive integer."""
    return checks.integer(arch, "num_classes", num_classes, whole_floats=False)


def validate_input_shape(input_shape, arch: str, min_size: int = 1) -> tuple:
    """Returns `input_shape` as an `(H, W, C)` tuple of ints.

    Raises `ValueError` unless it is three positive integers and `H` and `W` are
    at least `min_size` (the architecture's total downsampling factor, at which
    its last feature map is 1x1).
    """
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) != 3:
        raise ValueError(
            f"{arch}: `input_shape` must be a 3-tuple (height, width, channels), got {input_shape!r}."
        )
    for value in input_shape:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(
                f"{arch}: `input_shape` must hold three positive integers (height, width, channels), "
                f"got {input_shape!r}."
            )
    height, width, channels = (int(v) for v in input_shape)
    if height < min_size or width < min_size:
        raise ValueError(
            f"{arch}: input {height}x{width} is too small; this architecture downsamples by {min_size}, so "
            f"height and width must be at least {min_size}."
        )
    return height, width, channels


def model_input(input_shape, arch: str, min_size: int = 1, normalization=None):
    """A validated `keras.Input` named `"image"`, and the tensor the network body starts from.

    That tensor is the input itself, or with `normalization=(mean, std)` its
    per-channel standardisation by an `InputNormalization` layer named
    `"normalize"` (the model then takes raw pixel images).
    """
    inputs = keras.Input(shape=validate_input_shape(input_shape, arch, min_size), name="image")
    if normalization is None:
        return inputs, inputs
    try:
        mean, std = normalization
    except (TypeError, ValueError):
        raise ValueError(f"{arch}: `normalization` must be a pair (mean, std) of per-channel values, "
                         f"got {normalization!r}.") from None
    return inputs, InputNormalization(mean, std, name=NORMALIZATION_LAYER)(inputs)


def input_normalization(model: keras.Model):
    """The `(mean, std)` per-channel arrays of `model`'s input normalisation, or `None` when it has none.

    Looks for the `InputNormalization` layer that the zoo's models start with
    when built with `normalization=`.
    """
    for layer in model.layers:
        if isinstance(layer, InputNormalization):
            return np.asarray(layer.mean, np.float32), np.asarray(layer.std, np.float32)
    return None


# --- initialisers --------------------------------------------------------------------------------------------


def conv_initializer(depthwise_channels: int = 1):
    """He-normal (fan-out, untruncated); see the module docstring for depthwise kernels."""
    return keras.initializers.VarianceScaling(2.0 / depthwise_channels, "fan_out", "untruncated_normal")


def torch_linear_initializer():
    """PyTorch's default `nn.Linear` kernel init: uniform in +-1/sqrt(fan_in)."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def small_normal_initializer():
    """`normal(0, 0.01)`, the classifier init of the reference VGG and MobileNetV2."""
    return keras.initializers.RandomNormal(0.0, 0.01)


# --- layer helpers -------------------------------------------------------------------------------------------


def _padding(x, kernel_size: int, strides: int, name: str):
    """Applies the reference padding policy; returns `(x, padding)` for the following layer."""
    if strides == 1:
        return x, "same"
    if kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, data_format=DATA_FORMAT, name=f"{name}_pad")(x)
    return x, "valid"


def conv2d(x, filters: int, kernel_size: int, strides: int = 1, *, name: str, groups: int = 1,
           use_bias: bool = False):
    """A 2-D convolution with the zoo's padding and initialisation (no bias by default)."""
    x, padding = _padding(x, kernel_size, strides, name)
    return layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, groups=groups, use_bias=use_bias,
        kernel_initializer=conv_initializer(), data_format=DATA_FORMAT, name=name,
    )(x)


def depthwise_conv2d(x, kernel_size: int, strides: int = 1, *, name: str):
    """A bias-free depthwise convolution (one filter per channel)."""
    x, padding = _padding(x, kernel_size, strides, name)
    return layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding=padding, use_bias=False,
        depthwise_initializer=conv_initializer(depthwise_channels=int(x.shape[-1])),
        data_format=DATA_FORMAT, name=name,
    )(x)


def batch_norm(x, *, name: str, zero_gamma: bool = False):
    return layers.BatchNormalization(
        axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones", name=name,
    )(x)


def relu(x, *, name: str):
    return layers.ReLU(name=name)(x)


def conv_bn(x, filters: int, kernel_size: int, strides: int = 1, *, name: str, activation: bool = True,
            groups: int = 1, use_bias: bool = False, zero_gamma: bool = False):
    """Convolution, batch norm and (optionally) ReLU; layers named `{name}_conv`, `_bn`, `_relu`."""
    x = conv2d(x, filters, kernel_size, strides, name=f"{name}_conv", groups=groups, use_bias=use_bias)
    x = batch_norm(x, name=f"{name}_bn", zero_gamma=zero_gamma)
    return relu(x, name=f"{name}_relu") if activation else x


def classifier_head(x, num_classes: int, kernel_initializer=None):
    """Global average pooling (`"features"`) and a float32 `Dense` classifier (`"logits"`)."""
    features = layers.GlobalAveragePooling2D(data_format=DATA_FORMAT, name=FEATURES_LAYER)(x)
    return layers.Dense(
        num_classes, kernel_initializer=kernel_initializer or torch_linear_initializer(),
        bias_initializer="zeros", dtype="float32", name=LOGITS_LAYER,
    )(features)


# --- residual blocks shared by the CIFAR ResNets and ResNet18/34/50 ------------------------------------------


def _shortcut(x, filters: int, strides: int, name: str):
    """Identity, or a 1x1 projection + BN when the shape changes (the reference's option B)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    return conv_bn(x, filters, 1, strides, name=f"{name}_proj", activation=False)


def basic_block(x, filters: int, strides: int = 1, *, name: str, zero_init_residual: bool = False):
    """Post-activation basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, add the shortcut, ReLU."""
    shortcut = _shortcut(x, filters, strides, name)
    y = conv_bn(x, filters, 3, strides, name=f"{name}_1")
    y = conv_bn(y, filters, 3, 1, name=f"{name}_2", activation=False, zero_gamma=zero_init_residual)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return relu(y, name=f"{name}_out")


def bottleneck_block(x, filters: int, strides: int = 1, *, name: str, expansion: int = 4,
                     zero_init_residual: bool = False):
    """Post-activation bottleneck: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand to `expansion * filters`."""
    shortcut = _shortcut(x, expansion * filters, strides, name)
    y = conv_bn(x, filters, 1, 1, name=f"{name}_1")
    y = conv_bn(y, filters, 3, strides, name=f"{name}_2")
    y = conv_bn(y, expansion * filters, 1, 1, name=f"{name}_3", activation=False, zero_gamma=zero_init_residual)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return relu(y, name=f"{name}_out")


# --- docstrings ----------------------------------------------------------------------------------------------


PAPER_REFERENCE = (
    'Mishra et al., "Distilling Calibrated Student from an Uncalibrated\n'
    '        Teacher", which uses these architectures as teachers and students;\n'
    '        the CIFAR model zoo of Tian et al., "Contrastive Representation\n'
    '        Distillation", ICLR 2020.'
)


def documented(template: str, **fields):
    """Decorator that sets a builder's docstring from a family template (shared Args/Example/Reference)."""

    def decorator(fn):
        fn.__doc__ = template.format(builder=fn.__name__, paper=PAPER_REFERENCE, **fields)
        return fn

    return decorator
