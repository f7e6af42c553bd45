"""TFDS builder for Tiny ImageNet (tiny-imagenet-200), prepared from its distributed folder.

Raw layout (http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzipped)::

    <raw_dir>/wnids.txt                        # 200 WordNet ids, one a line: the class order
    <raw_dir>/train/<wnid>/images/*.JPEG       # 500 per class -> split "train"
    <raw_dir>/val/images/*.JPEG                # 10,000 -> split "validation"
    <raw_dir>/val/val_annotations.txt          # file <TAB> wnid <TAB> box ...

The unlabeled `test/` folder is not used. Images are 64x64; the few grayscale
JPEGs of the release decode to RGB (TFDS expands them on load).

Stored order: `train` by class in `wnids.txt` order, within a class the file
names sorted; `validation` in the line order of `val_annotations.txt`.
"""

from __future__ import annotations

import glob
import os

import tensorflow_datasets as tfds

from keras_calikd.data._base import RawFilesBuilder, read_image_file
from keras_calikd.data.dataset import Dataset, register
from keras_calikd.data.errors import CorruptFileError, DatasetNotFoundError

NUM_CLASSES = 200


def read_wnids(raw_dir: str) -> list:
    """The class order: the WordNet ids of `wnids.txt`, in file order."""
    path = os.path.join(raw_dir, "wnids.txt")
    with open(path) as f:
        wnids = [line.strip() for line in f if line.strip()]
    if len(set(wnids)) != len(wnids) or not wnids:
        raise CorruptFileError(path, "expected unique WordNet ids, one a line.")
    return wnids


def read_val_annotations(raw_dir: str, wnids) -> list:
    """[(file name, label)] of the validation images, in annotation-file order."""
    path = os.path.join(raw_dir, "val", "val_annotations.txt")
    index = {w: i for i, w in enumerate(wnids)}
    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise CorruptFileError(
                    path, f"line {line_no}: expected 'file<TAB>wnid<TAB>box...' with a wnid of wnids.txt, "
                    f"got {line.strip()!r}."
                )
            rows.append((fields[0], index[fields[1]]))
    return rows


class TinyImagenet(RawFilesBuilder, skip_registration=True):
    """Tiny ImageNet: 200 classes of 64x64 RGB images, 100,000 train and 10,000 validation.

    Features: `image` (64, 64, 3) uint8 (the original JPEGs, validated while
    preparing), `label` (index in `wnids.txt`; the label names are the wnids),
    `id` (path relative to `raw_dir`, e.g. `"val/images/val_7.JPEG"`).
    """

    name = "tiny_imagenet"
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Prepared from tiny-imagenet-200.zip's folders.",
        "2.0.0": "Examples stored in the raw files' order: train by wnids.txt then sorted file names, validation "
                 "in val_annotations.txt order (1.0.0 was written in TFDS's shuffled order).",
    }
    RAW_FOLDER = "tiny-imagenet-200"
    SOURCE = "http://cs231n.stanford.edu/tiny-imagenet-200.zip (unzip it; it holds tiny-imagenet-200/)"
    LAYOUT = (
        "  wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt"
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.info_in_file_order(
            description="Tiny ImageNet (CS231n), prepared from tiny-imagenet-200/.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(64, 64, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://cs231n.stanford.edu/",
        )

    @classmethod
    def missing_raw_files(cls, raw_dir, config_name=None):
        needed = [
            os.path.join(raw_dir, "wnids.txt"),
            os.path.join(raw_dir, "train") + os.sep,
            os.path.join(raw_dir, "val", "images") + os.sep,
            os.path.join(raw_dir, "val", "val_annotations.txt"),
        ]
        return [p for p in needed if not os.path.exists(p)]

    def _split_generators(self, dl_manager):
        missing = self.missing_raw_files(self.raw_dir)
        if missing:
            raise DatasetNotFoundError(f"Tiny ImageNet files missing: {', '.join(missing)}")
        wnids = read_wnids(self.raw_dir)
        if len(wnids) != NUM_CLASSES:
            raise CorruptFileError(
                os.path.join(self.raw_dir, "wnids.txt"), f"expected {NUM_CLASSES} wnids, found {len(wnids)}."
            )
        self.info.features["label"].names = wnids
        absent = [w for w in wnids if not os.path.isdir(os.path.join(self.raw_dir, "train", w, "images"))]
        if absent:
            raise DatasetNotFoundError(
                "Tiny ImageNet training folders missing: "
                + ", ".join(os.path.join(self.raw_dir, "train", w, "images") for w in absent[:5])
            )
        return {
            "train": self._generate_examples(("train", wnids)),
            "validation": self._generate_examples(("val", wnids)),
        }

    def _generate_examples(self, args):
        part, wnids = args
        if part == "train":
            files = [
                (os.path.relpath(path, self.raw_dir).replace(os.sep, "/"), label)
                for label, wnid in enumerate(wnids)
                for path in sorted(glob.glob(os.path.join(self.raw_dir, "train", wnid, "images", "*.JPEG")))
            ]
        else:
            files = [(f"val/images/{name}", label) for name, label in read_val_annotations(self.raw_dir, wnids)]
        for key, (relative, label) in enumerate(files):
            path = os.path.join(self.raw_dir, *relative.split("/"))
            if not os.path.exists(path):
                raise DatasetNotFoundError(
                    f"{path} is listed in {os.path.join(self.raw_dir, 'val', 'val_annotations.txt')} "
                    "but does not exist."
                )
            yield key, {"image": read_image_file(path, (64, 64), "jpeg"), "label": label, "id": relative}


#: Tiny ImageNet's description: the constants most public Tiny ImageNet training scripts use (traced
#: back to the tjmoon0104/pytorch-tiny-imagenet notebook); not recomputed here: the data is not on the
#: build machine.
TINY_IMAGENET = register(Dataset(
    name="tiny_imagenet", title="Tiny ImageNet", num_classes=NUM_CLASSES, image_shape=(64, 64, 3),
    splits={"train": 100_000, "validation": 10_000},
    mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262),
    stats_source="constants common to public Tiny ImageNet training code (not recomputed)", crop_padding=8,
    builder_cls=TinyImagenet,
))
