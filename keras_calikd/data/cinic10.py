"""TFDS builder for CINIC-10, prepared from the folder layout its authors distribute.

Raw layout (https://datashare.ed.ac.uk/handle/10283/3192, `CINIC-10.tar.gz`)::

    <raw_dir>/train/<class>/*.png   # 90,000 images
    <raw_dir>/valid/<class>/*.png   # 90,000 images -> split "validation"
    <raw_dir>/test/<class>/*.png    # 90,000 images

with the ten CIFAR-10 class folders. Labels follow CIFAR-10's class order, so
a CIFAR-10 model and CINIC-10 data agree on label ids.

Stored order: class folders in label order (which is also alphabetical), and
within a folder the file names sorted, i.e. the files' sorted relative paths.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from keras_calikd.data._base import RawFilesBuilder, read_image_file
from keras_calikd.data.cifar import CIFAR10_CLASS_NAMES
from keras_calikd.data.dataset import Dataset, register
from keras_calikd.data.errors import DatasetNotFoundError

#: CIFAR-10's class order (also CINIC-10's folder names).
CLASS_NAMES = CIFAR10_CLASS_NAMES
#: Split name -> folder of the raw layout.
SPLIT_FOLDERS = {"train": "train", "validation": "valid", "test": "test"}


class Cinic10(RawFilesBuilder, skip_registration=True):
    """CINIC-10: 270,000 32x32 RGB images (CIFAR-10 plus downsampled ImageNet), 10 classes.

    Features: `image` (32, 32, 3) uint8 (the original PNGs, validated while
    preparing), `label` (CIFAR-10 order), `id` (the file's path relative to
    `raw_dir`, e.g. `"train/cat/cifar10-train-123.png"`).
    """

    name = "cinic10"
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Prepared from the distributed PNG folders.",
        "2.0.0": "Examples stored in the files' sorted order (1.0.0 was written in TFDS's shuffled order).",
    }
    RAW_FOLDER = "cinic10"
    SOURCE = "https://datashare.ed.ac.uk/handle/10283/3192 (CINIC-10.tar.gz)"
    LAYOUT = (
        "  train/<class>/*.png, valid/<class>/*.png, test/<class>/*.png\n"
        f"  with the class folders {', '.join(CLASS_NAMES)}"
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.info_in_file_order(
            description="CINIC-10 (Darlow et al., 2018), prepared from its PNG folders.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(32, 32, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/BayesWatch/cinic-10",
        )

    @classmethod
    def missing_raw_files(cls, raw_dir, config_name=None):
        return [
            os.path.join(raw_dir, folder, name) + os.sep
            for folder in SPLIT_FOLDERS.values()
            for name in CLASS_NAMES
            if not os.path.isdir(os.path.join(raw_dir, folder, name))
        ]

    def _split_generators(self, dl_manager):
        missing = self.missing_raw_files(self.raw_dir)
        if missing:
            raise DatasetNotFoundError(f"CINIC-10 class folders missing: {', '.join(missing[:5])}")
        return {split: self._generate_examples(folder) for split, folder in SPLIT_FOLDERS.items()}

    def _generate_examples(self, folder):
        files = [
            (label, f"{folder}/{class_name}/{file_name}")
            for label, class_name in enumerate(CLASS_NAMES)
            for file_name in sorted(os.listdir(os.path.join(self.raw_dir, folder, class_name)))
            if file_name.lower().endswith(".png")
        ]
        for key, (label, relative) in enumerate(files):
            path = os.path.join(self.raw_dir, *relative.split("/"))
            yield key, {"image": read_image_file(path, (32, 32), "png"), "label": label, "id": relative}


#: CINIC-10's description.
CINIC10 = register(Dataset(
    name="cinic10", title="CINIC-10", num_classes=10, image_shape=(32, 32, 3),
    splits={"train": 90_000, "validation": 90_000, "test": 90_000},
    mean=(0.47889522, 0.47227842, 0.43047404), std=(0.24205776, 0.23828046, 0.25874835),
    stats_source="CINIC-10 README (BayesWatch/cinic-10)", crop_padding=4,
    class_names=CLASS_NAMES, builder_cls=Cinic10,
))
