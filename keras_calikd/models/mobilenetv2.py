"""MobileNetV2 for CIFAR, the "half" variant of the distillation zoo (registered as `MobileNetV2`).

Layout: a 3x3 stem convolution, seven stages of inverted residual blocks
(expansion `t`, output channels `c * width_multiplier`, `n` blocks, stride `s`
on the first block):

    t  c    n  s
    1  16   1  1
    6  24   2  1   <- stride 1 here (2 in the ImageNet model): the CIFAR change
    6  32   3  2
    6  64   4  2
    6  96   3  1
    6  160  3  2
    6  320  1  1

then a 1x1 convolution to 1280 channels, global average pooling and the
classifier. With width 0.5 the stage widths are 8/12/16/32/48/80/160, the stem
has 16 channels.

Details needed to match the reference parameter counts exactly:

- every inverted residual block starts with a 1x1 expansion conv-BN-ReLU,
  even when the expansion is 1 (the ImageNet model skips it there);
- the last convolution stays 1280 wide for widths <= 1 (it is widened only for
  widths above 1); channel counts are `int(c * width)` with no rounding to 8;
- all convolutions are bias-free and followed by BN; ReLU (not ReLU6) after the
  expansion and depthwise convolutions, none after the projection; the
  residual is added when the stride is 1 and the width does not change.

Spatial layout: the reference model (CRD zoo) has a stride-2 stem and moves
the CIFAR stride change to the 24-channel stage, so a 32x32 input is
downsampled 16x to a 2x2 map before pooling. `stem_stride=1` gives the variant
with a stride-1 stem (4x4 final map, about 4x the compute); the parameter count
is the same either way.

Initialisation: He-normal fan-out (untruncated normal) for every convolution,
with the fan-out of depthwise kernels counted as PyTorch does
(`k * k * channels`), as the reference; classifier `normal(0, 0.01)` with zero
bias. No zero-initialised gamma option (not in the reference).
"""

from __future__ import annotations

import keras
from keras import layers

from keras_calikd.models import common
from keras_calikd.models.common import MODELS

_SETTINGS = (  # expansion is None: use the model's `expansion`
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)


def _inverted_residual(x, filters: int, strides: int, expansion: int, name: str):
    in_channels = int(x.shape[-1])
    y = common.conv_bn(x, in_channels * expansion, 1, 1, name=f"{name}_expand")
    y = common.depthwise_conv2d(y, 3, strides, name=f"{name}_dw_conv")
    y = common.relu(common.batch_norm(y, name=f"{name}_dw_bn"), name=f"{name}_dw_relu")
    y = common.conv_bn(y, filters, 1, 1, name=f"{name}_project", activation=False)
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


@MODELS.register("MobileNetV2")
def MobileNetV2(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, width_multiplier=0.5, expansion=6,
                stem_stride=2, last_channels=1280):
    """MobileNetV2 for 32x32 images, by default the half-width model of the distillation zoo.

    Args:
        num_classes: Number of classes of the classifier.
        input_shape: `(height, width, channels)` of one image; at least
            `8 * stem_stride` pixels per side (16x16 by default).
        name: Model name (default `"MobileNetV2"`).
        normalization: `(mean, std)` per channel, in pixel units: the model
            then starts with an `InputNormalization` layer and takes raw
            pixel images. `None`: it takes images as they come.
        width_multiplier: Multiplier of every stage width and of the stem
            (0.5 for the zoo's `mobile_half`).
        expansion: Expansion factor of the inverted residual blocks (after the
            first stage, which always uses 1).
        stem_stride: Stride of the stem convolution: 2 as in the reference
            zoo (total downsampling 16), or 1 (total downsampling 8).
        last_channels: Width of the last 1x1 convolution for
            `width_multiplier <= 1` (scaled by the multiplier above 1).

    Returns:
        A functional `keras.Model` mapping images to float32 logits; its layer
        `"features"` outputs the pooled `(batch, 1280)` feature vector.

    Example:

    ```python
    student = keras_calikd.models.MobileNetV2(num_classes=100)
    student = keras_calikd.models.get("MobileNetV2", num_classes=10, input_shape=(28, 28, 1))
    ```

    Reference:
        Sandler et al., "MobileNetV2: Inverted Residuals and Linear
        Bottlenecks", CVPR 2018.
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher" (a student architecture there); the CIFAR model zoo of Tian
        et al., "Contrastive Representation Distillation", ICLR 2020.
    """
    name = name or "MobileNetV2"
    width_multiplier = float(width_multiplier)
    if width_multiplier <= 0:
        raise ValueError(f"{name}: `width_multiplier` must be > 0, got {width_multiplier}.")
    if stem_stride not in (1, 2):
        raise ValueError(f"{name}: `stem_stride` must be 1 or 2, got {stem_stride!r}.")
    expansion = int(expansion)
    if expansion < 1:
        raise ValueError(f"{name}: `expansion` must be >= 1, got {expansion}.")
    inputs, x = common.model_input(input_shape, name, 8 * stem_stride, normalization)
    num_classes = common.validate_num_classes(num_classes, name)
    x = common.conv_bn(x, int(32 * width_multiplier), 3, stem_stride, name="stem")
    for stage, (t, c, n, s) in enumerate(_SETTINGS):
        for block in range(n):
            x = _inverted_residual(x, int(c * width_multiplier), s if block == 0 else 1,
                                   expansion if t is None else t, name=f"stage{stage}_block{block}")
    width = int(last_channels * width_multiplier) if width_multiplier > 1.0 else int(last_channels)
    x = common.conv_bn(x, width, 1, 1, name="last")
    outputs = common.classifier_head(x, num_classes, common.small_normal_initializer())
    return keras.Model(inputs, outputs, name=name)

