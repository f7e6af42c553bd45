"""The CIFAR model zoo of knowledge distillation, as Keras functional models.

Every architecture is a plain builder function
`builder(num_classes, input_shape=(32, 32, 3), name=None, **options)`
registered in `MODELS` under the zoo's name (`resnet8`, `wrn_40_2`, `vgg13`,
`MobileNetV2`, `ShuffleV1`, `ResNet50`, ...); `get(name, num_classes, ...)`
builds one by name. The trainable parameter counts equal those of the
reference PyTorch zoo (Tian et al., 2020) that the paper's experiments use.

Every model:

- is a functional `keras.Model` with one input (`"image"`, channels-last);
- with `normalization=(mean, std)` starts with an `InputNormalization` layer
  and takes raw pixel images (`keras_calikd.data` pipelines yield those, and
  `Experiment` builds its models so);
- ends in `GlobalAveragePooling2D(name="features")` and
  `Dense(num_classes, dtype="float32", name="logits")`, so
  `keras.Model(model.inputs, [model.outputs[0], model.get_layer("features").output])`
  returns logits and penultimate features from one forward pass, and the
  logits are float32 under `mixed_bfloat16`;
- accepts any input size at least as large as its total downsampling
  (32x32x3 CIFAR/CINIC-10, 64x64x3 TinyImageNet, 28x28x1 Fashion-MNIST);
- serializes with `get_config`/`from_config` and `model.save(...)`.

Conventions (BN momentum/epsilon, He-normal fan-out initialisation, padding)
are described in `keras_calikd.models.common`; zero-initialised last BN gammas
are available (`zero_init_residual=True`) for the post-activation ResNets only.
"""

from __future__ import annotations

import keras

from keras_calikd.models.common import MODELS, input_normalization, validate_input_shape, validate_num_classes
from keras_calikd.models.layers import ChannelShuffle, ChannelSplit, InputNormalization
from keras_calikd.models.mobilenetv2 import MobileNetV2
from keras_calikd.models.resnet import ResNet18, ResNet34, ResNet50
from keras_calikd.models.resnet_cifar import (
    resnet8,
    resnet8x4,
    resnet14,
    resnet20,
    resnet32,
    resnet32x4,
    resnet44,
    resnet56,
    resnet110,
)
from keras_calikd.models.shufflenetv1 import ShuffleV1
from keras_calikd.models.shufflenetv2 import ShuffleV2
from keras_calikd.models.vgg import vgg8, vgg11, vgg13, vgg16, vgg19
from keras_calikd.models.wide_resnet import wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2


def get(name: str, num_classes: int, input_shape=(32, 32, 3), **kwargs) -> keras.Model:
    """Builds the architecture registered as `name`.

    Args:
        name: A registered name (see `names()`), e.g. `"resnet32x4"`.
        num_classes: Number of classes (a positive integer).
        input_shape: `(height, width, channels)` of one image.
        **kwargs: Options of that architecture's builder (e.g. `name=`,
            `normalization=(mean, std)` in pixel units, `zero_init_residual=`
            for ResNets, `extra_pool=` for VGG).

    Returns:
        A new functional `keras.Model` (float32 logits; a `"features"` layer).

    Raises:
        ValueError: For an unknown name (the message lists the known ones), a
            bad `num_classes` or `input_shape`, or an input smaller than the
            architecture's downsampling.

    Example:

    ```python
    teacher = keras_calikd.models.get("resnet32x4", num_classes=100)
    student = keras_calikd.models.get("ShuffleV2", num_classes=10, input_shape=(28, 28, 1),
                                      normalization=keras_calikd.data.info("fashion_mnist").normalization)
    ```
    """
    builder = MODELS.get(name)
    num_classes = validate_num_classes(num_classes, name)
    input_shape = validate_input_shape(input_shape, name)
    return builder(num_classes, input_shape=input_shape, **kwargs)


def names() -> list:
    """The registered architecture names, sorted."""
    return MODELS.names()


__all__ = [
    "MODELS", "ChannelShuffle", "ChannelSplit", "InputNormalization", "MobileNetV2", "ResNet18", "ResNet34",
    "ResNet50", "ShuffleV1", "ShuffleV2", "get", "input_normalization", "names", "resnet8", "resnet8x4", "resnet14", "resnet20", "resnet32", "resnet32x4",
    "resnet44", "resnet56", "resnet110", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "wrn_16_1", "wrn_16_2",
    "wrn_40_1", "wrn_40_2",
]
