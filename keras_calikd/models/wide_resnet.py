"""Wide residual networks WRN-d-k (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2).

Layout: a 3x3 stem convolution to 16 channels, three stages of
`n = (d - 4) / 6` pre-activation blocks of widths 16k/32k/64k (stride 2 at the
start of stages 2 and 3), a final BN-ReLU, global average pooling and the
classifier.

Details needed to match the reference parameter counts exactly:

- pre-activation blocks: BN-ReLU-conv3x3-BN-ReLU-conv3x3, all convolutions
  bias-free; no batch norm directly after the stem;
- a block that changes the width has a bias-free 1x1 (strided) projection
  shortcut without batch norm, applied to the block's pre-activated input
  (BN-ReLU(x)), as in the reference; other blocks add the raw input;
- one final BN (64k channels) before pooling.

Initialisation: convolutions He-normal fan-out (untruncated normal); the
classifier kernel uses PyTorch's default uniform +-1/sqrt(fan_in) and a zero
bias, as the reference. There is no zero-initialised gamma option (the
pre-activation layout has no last BN in the residual branch).
"""

from __future__ import annotations

import keras
from keras import layers

from keras_calikd.models import common
from keras_calikd.models.common import MODELS

_DOC = """Wide ResNet WRN-{depth}-{widen} (stage widths {widths}), pre-activation blocks.

    Args:
        num_classes: Number of classes of the classifier.
        input_shape: `(height, width, channels)` of one image; at least 4x4.
        name: Model name (default `"{builder}"`).
        normalization: `(mean, std)` per channel, in pixel units: the model
            then starts with an `InputNormalization` layer and takes raw
            pixel images. `None`: it takes images as they come.
        dropout_rate: Dropout between the two convolutions of each block
            (0 in the reference zoo and the paper).

    Returns:
        A functional `keras.Model` mapping images to float32 logits; its layer
        `"features"` outputs the pooled `(batch, {feature_dim})` feature vector.

    Example:

    ```python
    model = keras_calikd.models.{builder}(num_classes=100)
    model = keras_calikd.models.get("{builder}", num_classes=200, input_shape=(64, 64, 3))
    ```

    Reference:
        Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016.
        {paper}
    """

_MIN_SIZE = 4  # two stride-2 stages


def _preact_block(x, filters: int, strides: int, dropout_rate: float, name: str):
    preact = common.relu(common.batch_norm(x, name=f"{name}_bn1"), name=f"{name}_relu1")
    if x.shape[-1] == filters:
        shortcut = x
    else:
        shortcut = common.conv2d(preact, filters, 1, strides, name=f"{name}_proj")
    y = common.conv2d(preact, filters, 3, strides, name=f"{name}_conv1")
    y = common.relu(common.batch_norm(y, name=f"{name}_bn2"), name=f"{name}_relu2")
    if dropout_rate > 0:
        y = layers.Dropout(dropout_rate, name=f"{name}_dropout")(y)
    y = common.conv2d(y, filters, 3, 1, name=f"{name}_conv2")
    return layers.Add(name=f"{name}_add")([y, shortcut])


def _wide_resnet(depth: int, widen: int, num_classes, input_shape, normalization, name, dropout_rate):
    if (depth - 4) % 6:
        raise ValueError(f"Wide ResNet depth must be 6n + 4, got {depth}.")
    dropout_rate = float(dropout_rate)
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"{name}: `dropout_rate` must be in [0, 1), got {dropout_rate}.")
    blocks = (depth - 4) // 6
    inputs, x = common.model_input(input_shape, name, _MIN_SIZE, normalization)
    num_classes = common.validate_num_classes(num_classes, name)
    x = common.conv2d(x, 16, 3, 1, name="stem_conv")
    for stage, filters in enumerate((16 * widen, 32 * widen, 64 * widen), start=1):
        for block in range(blocks):
            strides = 2 if stage > 1 and block == 0 else 1
            x = _preact_block(x, filters, strides, dropout_rate, name=f"stage{stage}_block{block}")
    x = common.relu(common.batch_norm(x, name="final_bn"), name="final_relu")
    outputs = common.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)


def _doc(depth, widen):
    return common.documented(_DOC, depth=depth, widen=widen, widths=f"{16 * widen}/{32 * widen}/{64 * widen}",
                             feature_dim=64 * widen)


@MODELS.register("wrn_16_1")
@_doc(16, 1)
def wrn_16_1(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, dropout_rate=0.0):
    return _wide_resnet(16, 1, num_classes, input_shape, normalization, name or "wrn_16_1", dropout_rate)


@MODELS.register("wrn_16_2")
@_doc(16, 2)
def wrn_16_2(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, dropout_rate=0.0):
    return _wide_resnet(16, 2, num_classes, input_shape, normalization, name or "wrn_16_2", dropout_rate)


@MODELS.register("wrn_40_1")
@_doc(40, 1)
def wrn_40_1(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, dropout_rate=0.0):
    return _wide_resnet(40, 1, num_classes, input_shape, normalization, name or "wrn_40_1", dropout_rate)


@MODELS.register("wrn_40_2")
@_doc(40, 2)
def wrn_40_2(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, dropout_rate=0.0):
    return _wide_resnet(40, 2, num_classes, input_shape, normalization, name or "wrn_40_2", dropout_rate)
