"""TFDS builder for Fashion-MNIST, prepared from the four original IDX files.

Raw files (https://github.com/zalandoresearch/fashion-mnist, or Debian's
`dataset-fashion-mnist` package, which installs them under
/usr/share/datasets/fashion-mnist/)::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   # 60,000
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    # 10,000 -> split "test"

The IDX files are parsed here (no checksum is checked: Debian recompresses
them, so their sha256 differ from those TFDS registers for its own download).
The builder is named `fashion_mnist_idx` so that its prepared folder never
mixes with TFDS's own `fashion_mnist` in the same data directory.

Stored order: the rows of the IDX files, in order.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

from keras_calikd.data._base import RawFilesBuilder
from keras_calikd.data.dataset import Dataset, register
from keras_calikd.data.errors import CorruptFileError

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Split -> (images file, labels file).
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: Where Debian's `dataset-fashion-mnist` package installs the files.
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) of unsigned bytes into an array.

    The format: two zero bytes, a type byte (0x08 = uint8), the number of
    dimensions, then each dimension as a big-endian uint32, then the data.
    """
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise CorruptFileError(path, f"cannot be read or decompressed ({type(e).__name__}: {e}).") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise CorruptFileError(path, "not an IDX file of unsigned bytes (bad magic number).")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    if len(data) != header + int(np.prod(dims)):
        raise CorruptFileError(path, f"holds {len(data) - header} bytes of data, its header announces {dims}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_split(raw_dir: str, split: str):
    """(images (N, 28, 28, 1) uint8, labels (N,) uint8) of one split."""
    images_path, labels_path = (os.path.join(raw_dir, f) for f in FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CorruptFileError(images_path, f"expected images of shape (N, 28, 28), got {images.shape}.")
    if labels.shape != (images.shape[0],):
        raise CorruptFileError(labels_path, f"expected {images.shape[0]} labels, got shape {labels.shape}.")
    if labels.size and labels.max() > 9:
        raise CorruptFileError(labels_path, f"labels must be 0..9, found {int(labels.max())}.")
    return images[..., None], labels


class FashionMnistIdx(RawFilesBuilder, skip_registration=True):
    """Fashion-MNIST: 70,000 28x28 grayscale images of 10 clothing classes.

    Features: `image` (28, 28, 1) uint8 (raw bytes), `label`, `id` (the
    row in its IDX file, as text, e.g. `"train/123"`).
    """

    name = "fashion_mnist_idx"
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Prepared from the IDX files.",
        "2.0.0": "Examples stored in the IDX files' row order (1.0.0 was written in TFDS's shuffled order).",
    }
    RAW_FOLDER = "fashion-mnist"
    SOURCE = (
        "https://github.com/zalandoresearch/fashion-mnist (data/fashion/*.gz), or install Debian's "
        f"dataset-fashion-mnist package (files in {DEBIAN_DIR})"
    )
    LAYOUT = "  " + ", ".join(f for pair in FILES.values() for f in pair)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.info_in_file_order(
            description="Fashion-MNIST (Xiao et al., 2017), prepared from its IDX files.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(28, 28, 1), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                    ),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    @classmethod
    def missing_raw_files(cls, raw_dir, config_name=None):
        return [
            os.path.join(raw_dir, f) for pair in FILES.values() for f in pair
            if not os.path.isfile(os.path.join(raw_dir, f))
        ]

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in FILES}

    def _generate_examples(self, split):
        images, labels = read_split(self.raw_dir, split)
        for row in range(len(images)):
            yield row, {"image": images[row], "label": int(labels[row]), "id": f"{split}/{row}"}


#: Fashion-MNIST's description. Its statistics were computed by this package once over the 60,000
#: training images of the IDX files (Debian's dataset-fashion-mnist): mean 0.28604060, standard
#: deviation 0.35302424.
FASHION_MNIST = register(Dataset(
    name="fashion_mnist", title="Fashion-MNIST", num_classes=10, image_shape=(28, 28, 1),
    splits={"train": 60_000, "test": 10_000}, mean=(0.2860406,), std=(0.3530242,),
    stats_source="computed once by keras_calikd over the 60,000 training images", crop_padding=4,
    class_names=CLASS_NAMES, builder_cls=FashionMnistIdx, fallback_raw_dirs=(DEBIAN_DIR,),
))
