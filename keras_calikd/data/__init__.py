"""Input pipelines of keras_calikd: tf.data datasets of the paper's data sets.

This subpackage is the only part of keras_calikd that imports TensorFlow and
tensorflow-datasets (the pipelines are tf.data under both Keras backends).

Public API:

- `load(name, split, batch_size, ...)`: a batched, normalised (and, for
  training, shuffled and augmented) `tf.data.Dataset` for `keras.Model.fit`.
- `info(name)`: classes, image shape, split sizes, normalisation constants
  and where the data set's files go.
- `names()`: the data set names: cifar10, cifar100, cinic10, tiny_imagenet,
  cifar100_corrupted, fashion_mnist.
- `DATASETS`: the registry of `DatasetSpec`s behind those names.
- `CORRUPTIONS`, `SEVERITIES`: CIFAR-100-C's configs.
- `DatasetNotFoundError`, `CorruptFileError`: what goes wrong with files.
- The TFDS builders: `Cinic10`, `TinyImagenet`, `Cifar100Corrupted`, `FashionMnistIdx`.

Where files go (with `data_dir` = the `data_dir` argument, else
`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`): see docs/data.md and
`info(name).raw_dir`.
"""

from keras_calikd.data.catalog import DATASETS, DatasetSpec, resolve_data_dir
from keras_calikd.data.cifar100_corrupted import CORRUPTIONS, SEVERITIES, Cifar100Corrupted
from keras_calikd.data.cinic10 import Cinic10
from keras_calikd.data.errors import CorruptFileError, DatasetNotFoundError
from keras_calikd.data.fashion_mnist import FashionMnistIdx
from keras_calikd.data.pipeline import (
    DatasetInfo,
    info,
    load,
    random_crop_flip_batch,
    random_crop_flip_image,
)
from keras_calikd.data.tiny_imagenet import TinyImagenet


def names() -> list:
    """The names `load` and `info` accept, sorted.

    Example:

    ```python
    keras_calikd.data.names()
    # ['cifar10', 'cifar100', 'cifar100_corrupted', 'cinic10', 'fashion_mnist', 'tiny_imagenet']
    ```
    """
    return DATASETS.names()


__all__ = [
    "CORRUPTIONS",
    "DATASETS",
    "SEVERITIES",
    "Cifar100Corrupted",
    "Cinic10",
    "CorruptFileError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetSpec",
    "FashionMnistIdx",
    "TinyImagenet",
    "info",
    "load",
    "names",
    "random_crop_flip_batch",
    "random_crop_flip_image",
    "resolve_data_dir",
]
