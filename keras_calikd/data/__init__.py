"""Input pipelines of keras_calikd: tf.data datasets of the paper's data sets.

The pipelines are tf.data under both Keras backends; this subpackage imports
TensorFlow and tensorflow-datasets (it is imported on first use).

Public API:

- `load(name, split, batch_size, ...)`: a batched (and, for training,
  shuffled and augmented) `tf.data.Dataset` of raw-pixel images for
  `keras.Model.fit`; the models normalise.
- `read(name, split, ...)`: a `Split`: the split's unbatched, cached
  examples `(image uint8, label, index)` in stored order.
- `info(name, data_dir=None, config=None)`: the data set's `Dataset`
  description (classes, image shape, split sizes, normalisation constants,
  configs); `info(name).locate(data_dir)` says where its files go.
- `names()`, `DATASETS`: the data set names and the registry of descriptions.
- `random_crop_flip_batch`: the training augmentation, for a batch.
- `DatasetNotFoundError`, `CorruptFileError`, `CorruptPreparedDataError`: what goes wrong with files.
- The TFDS builders: `Cinic10`, `TinyImagenet`, `Cifar100Corrupted`, `FashionMnistIdx`.

Each data set is one module of this package holding its builder and its
description (`cifar`, `cinic10`, `tiny_imagenet`, `cifar100_corrupted`,
`fashion_mnist`); importing the package imports every module of it, which
registers them, so adding a data set is adding its module (docs/data.md).
CIFAR-100-C's corruptions are in `keras_calikd.data.cifar100_corrupted`
(`CORRUPTIONS`, `SEVERITIES`, `config_name`).
"""

import importlib
import pkgutil

from keras_calikd.quiet import import_tensorflow

import_tensorflow()  # before the modules below import it, with its start-up lines filtered

from keras_calikd.data.cifar100_corrupted import Cifar100Corrupted
from keras_calikd.data.cinic10 import Cinic10
from keras_calikd.data.dataset import DATASETS, Dataset, Locations, resolve_data_dir
from keras_calikd.data.errors import (CorruptFileError, CorruptPreparedDataError, DatasetNotFoundError,
                                   SliceOutOfRangeError)
from keras_calikd.data.fashion_mnist import FashionMnistIdx
from keras_calikd.data.pipeline import Split, load, random_crop_flip_batch, read
from keras_calikd.data.prepared import info
from keras_calikd.data.tiny_imagenet import TinyImagenet

for _module in pkgutil.iter_modules(__path__):  # each data set's module registers its description
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def names() -> list:
    """The names `load`, `read` and `info` accept, sorted.

    Returns:
        A list of strings.

    Example:

    ```python
    keras_calikd.data.names()
    # ['cifar10', 'cifar100', 'cifar100_corrupted', 'cinic10', 'fashion_mnist', 'tiny_imagenet']
    ```
    """
    return DATASETS.names()


__all__ = [
    "DATASETS",
    "Cifar100Corrupted",
    "Cinic10",
    "CorruptFileError",
    "CorruptPreparedDataError",
    "Dataset",
    "DatasetNotFoundError",
    "FashionMnistIdx",
    "Locations",
    "SliceOutOfRangeError",
    "Split",
    "TinyImagenet",
    "info",
    "load",
    "names",
    "random_crop_flip_batch",
    "read",
    "resolve_data_dir",
]
