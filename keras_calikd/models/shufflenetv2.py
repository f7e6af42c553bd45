"""ShuffleNet v2 (1x) for CIFAR, registered as `ShuffleV2`.

Layout: a 1x1 stem convolution to 24 channels (no striding), three stages of
one downsampling unit followed by 3/7/3 basic units with widths 116/232/464, a
1x1 convolution to 1024 channels, global average pooling and the classifier.

- basic unit: split the channels in halves; the second half goes through
  1x1 conv-BN-ReLU, depthwise 3x3 conv-BN, 1x1 conv-BN-ReLU; concatenate with
  the untouched first half and shuffle with 2 groups;
- downsampling unit: both branches see the whole input: (depthwise 3x3/2-BN,
  1x1-BN-ReLU) and (1x1-BN-ReLU, depthwise 3x3/2-BN, 1x1-BN-ReLU), each to
  half the output width; concatenate and shuffle.

Details needed to match the reference parameter counts exactly: every
convolution is bias-free and followed by BN; the stem is a 1x1 convolution
(not the ImageNet 3x3/2 + max-pool); the number of basic units per stage is
3/7/3 *after* the downsampling unit (4/8/4 units in all).

The channel split and shuffle are the serializable layers `ChannelSplit` and
`ChannelShuffle` of `keras_calikd.models.layers`.

Initialisation: He-normal fan-out (untruncated normal) for every convolution
and PyTorch's default uniform classifier kernel with a zero bias. The
reference keeps PyTorch's default (uniform, fan-in) initialisation for the
ShuffleNets; the zoo-wide He-normal convention is used here instead. No
zero-initialised gamma option.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_calikd.models import common
from keras_calikd.models.common import MODELS
from keras_calikd.models.layers import ChannelShuffle, ChannelSplit

_STEM_WIDTH = 24


def _depthwise_bn(x, strides: int, name: str):
    return common.batch_norm(common.depthwise_conv2d(x, 3, strides, name=f"{name}_conv"), name=f"{name}_bn")


def _basic_unit(x, name: str):
    half = int(x.shape[-1]) // 2
    kept, y = ChannelSplit(half, name=f"{name}_split")(x)
    y = common.conv_bn(y, half, 1, 1, name=f"{name}_pw1")
    y = _depthwise_bn(y, 1, name=f"{name}_dw")
    y = common.conv_bn(y, half, 1, 1, name=f"{name}_pw2")
    y = layers.Concatenate(name=f"{name}_concat")([kept, y])
    return ChannelShuffle(2, name=f"{name}_shuffle")(y)


def _down_unit(x, width: int, name: str):
    mid = width // 2
    left = _depthwise_bn(x, 2, name=f"{name}_left_dw")
    left = common.conv_bn(left, mid, 1, 1, name=f"{name}_left_pw")
    right = common.conv_bn(x, mid, 1, 1, name=f"{name}_right_pw1")
    right = _depthwise_bn(right, 2, name=f"{name}_right_dw")
    right = common.conv_bn(right, mid, 1, 1, name=f"{name}_right_pw2")
    y = layers.Concatenate(name=f"{name}_concat")([left, right])
    return ChannelShuffle(2, name=f"{name}_shuffle")(y)


@MODELS.register("ShuffleV2")
def ShuffleV2(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, stage_widths=(116, 232, 464),
              stage_units=(3, 7, 3), last_channels=1024):
    """ShuffleNet v2 1x for 32x32 images (the distillation zoo's `ShuffleV2`).

    Args:
        num_classes: Number of classes of the classifier.
        input_shape: `(height, width, channels)` of one image; at least 8x8.
        name: Model name (default `"ShuffleV2"`).
        normalization: `(mean, std)` per channel, in pixel units: the model
            then starts with an `InputNormalization` layer and takes raw
            pixel images. `None`: it takes images as they come.
        stage_widths: Output width of each stage (even numbers).
        stage_units: Number of basic units of each stage, after its
            downsampling unit.
        last_channels: Width of the final 1x1 convolution.

    Returns:
        A functional `keras.Model` mapping images to float32 logits; its layer
        `"features"` outputs the pooled `(batch, 1024)` feature vector.

    Example:

    ```python
    student = keras_calikd.models.ShuffleV2(num_classes=100)
    student = keras_calikd.models.get("ShuffleV2", num_classes=10, input_shape=(28, 28, 1))
    ```

    Reference:
        Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
        Architecture Design", ECCV 2018.
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher" (a student architecture there); the CIFAR model zoo of Tian
        et al., "Contrastive Representation Distillation", ICLR 2020.
    """
    name = name or "ShuffleV2"
    stage_widths, stage_units = tuple(int(w) for w in stage_widths), tuple(int(u) for u in stage_units)
    if len(stage_widths) != len(stage_units) or min(stage_units, default=-1) < 0 or \
            any(w % 2 for w in stage_widths):
        raise ValueError(f"{name}: `stage_widths` (even) and `stage_units` (>= 0) must have the same length, "
                         f"got {stage_widths} and {stage_units}.")
    inputs, x = common.model_input(input_shape, name, 2 ** len(stage_widths), normalization)
    num_classes = common.validate_num_classes(num_classes, name)
    x = common.conv_bn(x, _STEM_WIDTH, 1, 1, name="stem")
    for stage, (width, units) in enumerate(zip(stage_widths, stage_units), start=1):
        x = _down_unit(x, width, name=f"stage{stage}_down")
        for unit in range(units):
            x = _basic_unit(x, name=f"stage{stage}_unit{unit}")
    x = common.conv_bn(x, int(last_channels), 1, 1, name="last")
    outputs = common.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
