"""VGG with batch norm for CIFAR (vgg8, vgg11, vgg13, vgg16, vgg19).

Layout: five blocks of 3x3 conv-BN-ReLU layers with 64/128/256/512/512
channels, 2x2 max-pooling after blocks 1-3 (and after block 4 for inputs of
64 pixels or more), global average pooling after block 5 and a single
512 -> classes linear classifier (the ImageNet VGG's fully connected layers are
dropped).

Details needed to match the reference parameter counts exactly:

- the convolutions keep their bias even though batch norm follows them (the
  reference builds them with PyTorch's default `bias=True`);
- convolutions per block: vgg8 1/1/1/1/1, vgg11 1/1/2/2/2, vgg13 2/2/2/2/2,
  vgg16 2/2/3/3/3, vgg19 2/2/4/4/4.

Behaviour kept from the reference: the 4th max-pooling is applied only for
64x64 inputs (TinyImageNet), so a 32x32 input reaches block 5 at 4x4; here it
is applied when the input height is at least 64 unless `extra_pool` says
otherwise. Max-pooling is `"valid"` (floor), as PyTorch's: 28 -> 14 -> 7 -> 3.

Initialisation: convolutions He-normal fan-out (untruncated normal) with zero
bias; classifier `normal(0, 0.01)` with zero bias, as the reference. VGG has no
residual branches, so there is no zero-initialised gamma option.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_calikd.models import common
from keras_calikd.models.common import MODELS

_DOC = """VGG-{depth} with batch norm (convolutions per block: {config}).

    Args:
        num_classes: Number of classes of the classifier.
        input_shape: `(height, width, channels)` of one image; at least 8x8
            (16x16 with the 4th pooling).
        name: Model name (default `"{builder}"`).
        normalization: `(mean, std)` per channel, in pixel units: the model
            then starts with an `InputNormalization` layer and takes raw
            pixel images. `None`: it takes images as they come.
        extra_pool: Whether to max-pool after block 4 as well. `None` (default)
            pools when the input height is at least 64, as the reference does
            for 64x64 TinyImageNet images.

    Returns:
        A functional `keras.Model` mapping images to float32 logits; its layer
        `"features"` outputs the pooled `(batch, 512)` feature vector.

    Example:

    ```python
    model = keras_calikd.models.{builder}(num_classes=100)
    model = keras_calikd.models.get("{builder}", num_classes=200, input_shape=(64, 64, 3))
    ```

    Reference:
        Simonyan and Zisserman, "Very Deep Convolutional Networks for
        Large-Scale Image Recognition", ICLR 2015; Ioffe and Szegedy, "Batch
        Normalization", ICML 2015.
        {paper}
    """

_WIDTHS = (64, 128, 256, 512, 512)
_CONVS_PER_BLOCK = {
    8: (1, 1, 1, 1, 1),
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


def _vgg(depth: int, num_classes, input_shape, normalization, name, extra_pool):
    height = common.validate_input_shape(input_shape, name)[0]
    if extra_pool is None:
        extra_pool = height >= 64
    pools = 4 if extra_pool else 3
    inputs, x = common.model_input(input_shape, name, 2 ** pools, normalization)
    num_classes = common.validate_num_classes(num_classes, name)
    for block, (filters, convs) in enumerate(zip(_WIDTHS, _CONVS_PER_BLOCK[depth])):
        for index in range(convs):
            x = common.conv_bn(x, filters, 3, 1, name=f"block{block}_{index}", use_bias=True)
        if block < pools:
            x = layers.MaxPooling2D(2, data_format=common.DATA_FORMAT, name=f"block{block}_pool")(x)
    outputs = common.classifier_head(x, num_classes, common.small_normal_initializer())
    return keras.Model(inputs, outputs, name=name)


def _doc(depth):
    return common.documented(_DOC, depth=depth, config="/".join(map(str, _CONVS_PER_BLOCK[depth])))


@MODELS.register("vgg8")
@_doc(8)
def vgg8(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, extra_pool=None):
    return _vgg(8, num_classes, input_shape, normalization, name or "vgg8", extra_pool)


@MODELS.register("vgg11")
@_doc(11)
def vgg11(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, extra_pool=None):
    return _vgg(11, num_classes, input_shape, normalization, name or "vgg11", extra_pool)


@MODELS.register("vgg13")
@_doc(13)
def vgg13(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, extra_pool=None):
    return _vgg(13, num_classes, input_shape, normalization, name or "vgg13", extra_pool)


@MODELS.register("vgg16")
@_doc(16)
def vgg16(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, extra_pool=None):
    return _vgg(16, num_classes, input_shape, normalization, name or "vgg16", extra_pool)


@MODELS.register("vgg19")
@_doc(19)
def vgg19(num_classes, input_shape=(32, 32, 3), name=None, normalization=None, extra_pool=None):
    return _vgg(19, num_classes, input_shape, normalization, name or "vgg19", extra_pool)
