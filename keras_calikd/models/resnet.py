"""ResNet18/34/50 for small images (CIFAR, 64x64 TinyImageNet).

Layout: a 3x3 stride-1 stem convolution to 64 channels (no 7x7/2 convolution
and no max-pooling, unlike the ImageNet models), four stages of widths
64/128/256/512 (stride 2 at the start of stages 2-4), global average pooling
and the classifier. ResNet18/34 use basic blocks (2/2/2/2 and 3/4/6/3),
ResNet50 bottleneck blocks (3/4/6/3, 4x expansion to 256..2048 channels).

Details needed to match the reference parameter counts exactly:

- every convolution is bias-free and followed by BN; only the classifier has
  a bias;
- a block that changes the shape has a 1x1 (strided) convolution + BN
  projection shortcut; in ResNet50 this includes the first block (64 -> 256);
- the bottleneck's stride sits on its 3x3 convolution.

Initialisation: convolutions He-normal fan-out (untruncated normal), as the
reference; the classifier kernel uses PyTorch's default uniform
+-1/sqrt(fan_in) with a zero bias. `zero_init_residual=True` zero-initialises
the last batch-norm gamma of each residual branch (off by default, as in the
reference).
"""

from __future__ import annotations

import keras

from keras_calikd.models import common
from keras_calikd.models.common import MODELS

_DOC = """ResNet-{depth} with a 3x3 stride-1 stem for small images ({kind} blocks {blocks}).

    Args:
        num_classes: Number of classes of the classifier.
        input_shape: `(height, width, channels)` of one image; at least 8x8.
            64x64 for TinyImageNet (200 classes), 32x32 for CIFAR.
        name: Model name (default `"{builder}"`).
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
    teacher = keras_calikd.models.{builder}(num_classes=200, input_shape=(64, 64, 3))
    teacher = keras_calikd.models.get("{builder}", num_classes=100)
    ```

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
        {paper}
    """

_WIDTHS = (64, 128, 256, 512)
_MIN_SIZE = 8  # three stride-2 stages


def _resnet(block_fn, blocks, num_classes, input_shape, normalization, name, zero_init_residual):
    inputs, x = common.model_input(input_shape, name, _MIN_SIZE, normalization)
    num_classes = common.validate_num_classes(num_classes, name)
    x = common.conv_bn(x, _WIDTHS[0], 3, 1, name="stem")
    for stage, (filters, count) in enumerate(zip(_WIDTHS, blocks), start=1):
        for block in range(count):
            strides = 2 if stage > 1 and block == 0 else 1
            x = block_fn(x, filters, strides, name=f"stage{stage}_block{block}",
                         zero_init_residual=zero_init_residual)
    outputs = common.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)


@MODELS.register("ResNet18")
@common.documented(_DOC, depth=18, kind="basic", blocks="2/2/2/2", feature_dim=512)
def ResNet18(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _resnet(common.basic_block, (2, 2, 2, 2), num_classes, input_shape, normalization, name or "ResNet18",
                   zero_init_residual)


@MODELS.register("ResNet34")
@common.documented(_DOC, depth=34, kind="basic", blocks="3/4/6/3", feature_dim=512)
def ResNet34(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _resnet(common.basic_block, (3, 4, 6, 3), num_classes, input_shape, normalization, name or "ResNet34",
                   zero_init_residual)


@MODELS.register("ResNet50")
@common.documented(_DOC, depth=50, kind="bottleneck", blocks="3/4/6/3", feature_dim=2048)
def ResNet50(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, zero_init_residual=False):
    return _resnet(common.bottleneck_block, (3, 4, 6, 3), num_classes, input_shape, normalization, name or "ResNet50",
                   zero_init_residual)
