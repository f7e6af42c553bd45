"""CIFAR ResNets (resnet8 ... resnet110, resnet8x4, resnet32x4).

Layout: a 3x3 stem convolution, three stages of `n = (depth - 2) / 6` basic
blocks (the first block of stages 2 and 3 has stride 2), global average pooling
and the classifier. Widths are 16 (stem) and 16/32/64 for the plain models,
32 (stem) and 64/128/256 for the `x4` models.

Details needed to match the reference parameter counts exactly:

- every convolution is bias-free and followed by batch norm;
- when a block changes shape (stride 2, or the stem-to-stage-1 width change of
  the `x4` models) the shortcut is a 1x1 strided convolution + batch norm
  (projection shortcut), not the zero-padding "option A" of He et al.;
- the classifier is the only layer with a bias.

Initialisation: convolutions He-normal fan-out (untruncated normal), as the
reference zoo; the classifier kernel uses PyTorch's default uniform
+-1/sqrt(fan_in) with a zero bias (PyTorch draws the bias uniformly too).
`zero_init_residual=True` zero-initialises the last batch-norm gamma of each
residual branch (off by default, as in the reference).
"""

from __future__ import annotations

import keras

from keras_calikd.models import common
from keras_calikd.models.common import MODELS

_DOC = """CIFAR ResNet-{depth}{suffix} ({widths}): basic blocks, {blocks} per stage.

    Args:
        num_classes: Number of classes of the classifier.
        input_shape: `(height, width, channels)` of one image; at least 4x4.
        name: Model name (default `"{registered}"`).
        normalization: `(mean, std)` per channel, in pixel units: the model
            then starts with an `InputNormalization` layer and takes raw
            pixel images. `None`: it takes images as they come.
        zero_init_residual: Zero-initialise the last batch-norm gamma of every
            residual branch, so each block starts as the identity.

    Returns:
        A functional `keras.Model` mapping images to float32 logits; its layer
        `"features"` outputs the pooled `(batch, {feature_dim})` feature vector.

    Example:

    ```python
    model = keras_calikd.models.{builder}(num_classes=100)
    model = keras_calikd.models.get("{registered}", num_classes=10, input_shape=(28, 28, 1))
    ```

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
        {paper}
    """

_PLAIN = (16, 16, 32, 64)
_X4 = (32, 64, 128, 256)
_MIN_SIZE = 4  # two stride-2 stages


def _cifar_resnet(depth: int, widths, num_classes, input_shape, normalization, name, zero_init_residual):
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}.")
    blocks = (depth - 2) // 6
    inputs, x = common.model_input(input_shape, name, _MIN_SIZE, normalization)
    num_classes = common.validate_num_classes(num_classes, name)
    x = common.conv_bn(x, widths[0], 3, 1, name="stem")
    for stage, filters in enumerate(widths[1:], start=1):
        for block in range(blocks):
            strides = 2 if stage > 1 and block == 0 else 1
            x = common.basic_block(x, filters, strides, name=f"stage{stage}_block{block}",
                                   zero_init_residual=zero_init_residual)
    outputs = common.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)


def _plain_doc(depth):
    return common.documented(_DOC, depth=depth, suffix="", widths="widths 16/32/64", blocks=(depth - 2) // 6,
                             registered=f"resnet{depth}", feature_dim=64)


def _x4_doc(depth):
    return common.documented(_DOC, depth=depth, suffix="x4", widths="4x wider: 64/128/256, stem 32",
                             blocks=(depth - 2) // 6, registered=f"resnet{depth}x4", feature_dim=256)


@MODELS.register("resnet8")
@_plain_doc(8)
def resnet8(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(8, _PLAIN, num_classes, input_shape, normalization, name or "resnet8", zero_init_residual)


@MODELS.register("resnet14")
@_plain_doc(14)
def resnet14(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(14, _PLAIN, num_classes, input_shape, normalization, name or "resnet14", zero_init_residual)


@MODELS.register("resnet20")
@_plain_doc(20)
def resnet20(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(20, _PLAIN, num_classes, input_shape, normalization, name or "resnet20", zero_init_residual)


@MODELS.register("resnet32")
@_plain_doc(32)
def resnet32(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(32, _PLAIN, num_classes, input_shape, normalization, name or "resnet32", zero_init_residual)


@MODELS.register("resnet44")
@_plain_doc(44)
def resnet44(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(44, _PLAIN, num_classes, input_shape, normalization, name or "resnet44", zero_init_residual)


@MODELS.register("resnet56")
@_plain_doc(56)
def resnet56(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(56, _PLAIN, num_classes, input_shape, normalization, name or "resnet56", zero_init_residual)


@MODELS.register("resnet110")
@_plain_doc(110)
def resnet110(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(110, _PLAIN, num_classes, input_shape, normalization, name or "resnet110", zero_init_residual)


@MODELS.register("resnet8x4")
@_x4_doc(8)
def resnet8x4(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(8, _X4, num_classes, input_shape, normalization, name or "resnet8x4", zero_init_residual)


@MODELS.register("resnet32x4")
@_x4_doc(32)
def resnet32x4(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _cifar_resnet(32, _X4, num_classes, input_shape, normalization, name or "resnet32x4", zero_init_residual)
