"""ShuffleNet (v1) for CIFAR, registered as `ShuffleV1`.

Layout: a 1x1 stem convolution to 24 channels (no striding), three stages of
4/8/4 shuffle units with output widths 240/480/960 and 3 groups, global average
pooling and the classifier. The first unit of each stage has stride 2 and
concatenates its branch with a 3x3 average-pooled shortcut (so its branch
outputs `width - input width` channels); the other units add the identity.

Details needed to match the reference parameter counts exactly:

- a unit's bottleneck width is a quarter of its branch output (54, 60, 120,
  120, 240 ...); the 1x1 reduce and 1x1 expand convolutions are grouped (3
  groups), except the very first reduce convolution, which reads the 24-channel
  stem and is not grouped (nor followed by a shuffle);
- every convolution is bias-free and followed by BN; the depthwise 3x3 is
  followed by BN and ReLU (the reference keeps a ReLU there).

The stride-2 shortcut is `ZeroPadding2D(1)` + `AveragePooling2D(3, 2)`, which
averages over the zero padding like PyTorch's `AvgPool2d(3, 2, padding=1)`.
Grouped 1x1 convolutions are `Conv2D(groups=3)`; they run (eager and under XLA)
on the TensorFlow CPU backend of TF 2.21 and on JAX.

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
from keras_calikd.models.layers import ChannelShuffle

_MIN_SIZE = 8  # three stride-2 stages
_STEM_WIDTH = 24


def _shuffle_unit(x, width: int, strides: int, groups: int, reduce_groups: int, name: str):
    branch_width = width - int(x.shape[-1]) if strides == 2 else width
    mid = branch_width // 4
    y = common.conv_bn(x, mid, 1, 1, groups=reduce_groups, name=f"{name}_reduce")
    if reduce_groups > 1:
        y = ChannelShuffle(reduce_groups, name=f"{name}_shuffle")(y)
    y = common.depthwise_conv2d(y, 3, strides, name=f"{name}_dw_conv")
    y = common.relu(common.batch_norm(y, name=f"{name}_dw_bn"), name=f"{name}_dw_relu")
    y = common.conv_bn(y, branch_width, 1, 1, groups=groups, activation=False, name=f"{name}_expand")
    if strides == 2:
        shortcut = layers.ZeroPadding2D(1, data_format=common.DATA_FORMAT, name=f"{name}_pool_pad")(x)
        shortcut = layers.AveragePooling2D(3, 2, data_format=common.DATA_FORMAT, name=f"{name}_pool")(shortcut)
        y = layers.Concatenate(name=f"{name}_concat")([y, shortcut])
    else:
        y = layers.Add(name=f"{name}_add")([y, x])
    return common.relu(y, name=f"{name}_out")


@MODELS.register("ShuffleV1")
def ShuffleV1(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, groups=3, stage_widths=(240, 480, 960),
              stage_units=(4, 8, 4)):
    """ShuffleNet v1 for 32x32 images (the distillation zoo's `ShuffleV1`, g = 3).

    Args:
        num_classes: Number of classes of the classifier.
        input_shape: `(height, width, channels)` of one image; at least 8x8.
        name: Model name (default `"ShuffleV1"`).
        normalization: `(mean, std)` per channel, in pixel units: the model
            then starts with an `InputNormalization` layer and takes raw
            pixel images. `None`: it takes images as they come.
        groups: Groups of the grouped 1x1 convolutions and of the shuffle.
        stage_widths: Output width of each stage.
        stage_units: Number of shuffle units of each stage (the first one
            downsamples).

    Returns:
        A functional `keras.Model` mapping images to float32 logits; its layer
        `"features"` outputs the pooled `(batch, 960)` feature vector.

    Example:

    ```python
    student = keras_calikd.models.ShuffleV1(num_classes=100)
    student = keras_calikd.models.get("ShuffleV1", num_classes=10, input_shape=(28, 28, 1))
    ```

    Reference:
        Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural
        Network for Mobile Devices", CVPR 2018.
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher" (a student architecture there); the CIFAR model zoo of Tian
        et al., "Contrastive Representation Distillation", ICLR 2020.
    """
    name = name or "ShuffleV1"
    stage_widths, stage_units = tuple(int(w) for w in stage_widths), tuple(int(u) for u in stage_units)
    if len(stage_widths) != len(stage_units) or min(stage_units, default=0) < 1:
        raise ValueError(f"{name}: `stage_widths` and `stage_units` must have the same length and units >= 1, "
                         f"got {stage_widths} and {stage_units}.")
    inputs, x = common.model_input(input_shape, name, 2 ** len(stage_widths), normalization)
    num_classes = common.validate_num_classes(num_classes, name)
    x = common.conv_bn(x, _STEM_WIDTH, 1, 1, name="stem")
    for stage, (width, units) in enumerate(zip(stage_widths, stage_units), start=1):
        for unit in range(units):
            first = unit == 0
            x = _shuffle_unit(x, width, 2 if first else 1, groups,
                              reduce_groups=1 if (stage == 1 and first) else groups,
                              name=f"stage{stage}_unit{unit}")
    outputs = common.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
