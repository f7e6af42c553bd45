"""TFDS builder for CIFAR-100-C, prepared from the `.npy` files of its release.

Raw layout (https://zenodo.org/record/3555552, `CIFAR-100-C.tar`, untarred)::

    <raw_dir>/<corruption>.npy   # (50000, 32, 32, 3) uint8, one file per corruption
    <raw_dir>/labels.npy         # (50000,) labels, the same 10,000 repeated five times

Severity k (1..5) is the block of rows (k-1)*10000 .. k*10000 of both files.
There is one builder config per corruption and severity, named
`<corruption>_<severity>` (e.g. `frost_3`), each with a single split `test`.
Preparing a config reads only its own corruption file.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from keras_calikd.data._base import RawFilesBuilder
from keras_calikd.data.errors import CorruptFileError, DatasetNotFoundError

#: The corruptions of the CIFAR-100-C release (Hendrycks & Dietterich, 2019):
#: the 15 benchmark corruptions plus the 4 extra ones (gaussian_blur,
#: saturate, spatter, speckle_noise).
CORRUPTIONS = (
    "brightness",
    "contrast",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "frost",
    "gaussian_blur",
    "gaussian_noise",
    "glass_blur",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "pixelate",
    "saturate",
    "shot_noise",
    "snow",
    "spatter",
    "speckle_noise",
    "zoom_blur",
)
SEVERITIES = (1, 2, 3, 4, 5)


def config_name(corruption: str, severity: int) -> str:
    """The builder config name of one corruption at one severity, e.g. `"frost_3"`."""
    return f"{corruption}_{severity}"


def parse_config_name(name: str):
    """`"frost_3"` -> `("frost", 3)`; raises `ValueError` for an unknown corruption or severity."""
    corruption, _, severity = name.rpartition("_")
    if corruption not in CORRUPTIONS or severity not in {str(s) for s in SEVERITIES}:
        raise ValueError(
            f"Unknown CIFAR-100-C config {name!r}: expected '<corruption>_<severity>' with severity 1..5 and a "
            f"corruption among {', '.join(CORRUPTIONS)}."
        )
    return corruption, int(severity)


class Cifar100CorruptedConfig(tfds.core.BuilderConfig):
    """One corruption at one severity."""

    def __init__(self, *, corruption: str, severity: int, **kwargs):
        super().__init__(
            name=config_name(corruption, severity),
            description=f"CIFAR-100-C, {corruption} at severity {severity}.",
            **kwargs,
        )
        self.corruption = corruption
        self.severity = severity


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise CorruptFileError(path, f"not a readable .npy file ({type(e).__name__}: {e}).") from e


class Cifar100Corrupted(RawFilesBuilder, skip_registration=True):
    """CIFAR-100-C test images, one config per corruption and severity (10,000 images each).

    Features: `image` (32, 32, 3) uint8 (stored as raw bytes: lossless, no
    re-encoding), `label` (CIFAR-100 fine label), `id` (the row in the
    release's `.npy` files, as text: severity k holds rows (k-1)*N .. k*N-1
    with N the number of rows / 5).
    """

    name = "cifar100_corrupted"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Prepared from CIFAR-100-C's .npy files."}
    BUILDER_CONFIGS = [
        Cifar100CorruptedConfig(corruption=c, severity=s) for c in CORRUPTIONS for s in SEVERITIES
    ]
    RAW_FOLDER = "CIFAR-100-C"
    SOURCE = "https://zenodo.org/record/3555552 (CIFAR-100-C.tar; untar it, it holds CIFAR-100-C/)"
    LAYOUT = "  <corruption>.npy (one per corruption, (50000, 32, 32, 3) uint8) and labels.npy"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="CIFAR-100-C (Hendrycks & Dietterich, 2019), one corruption at one severity.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(32, 32, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                    ),
                    "label": tfds.features.ClassLabel(num_classes=100),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/hendrycks/robustness",
        )

    @classmethod
    def missing_raw_files(cls, raw_dir, config_name=None):
        corruption = parse_config_name(config_name)[0] if config_name else None
        needed = [os.path.join(raw_dir, "labels.npy")]
        if corruption:
            needed.append(os.path.join(raw_dir, f"{corruption}.npy"))
        return [p for p in needed if not os.path.isfile(p)]

    def _split_generators(self, dl_manager):
        missing = self.missing_raw_files(self.raw_dir, self.builder_config.name)
        if missing:
            raise DatasetNotFoundError(f"CIFAR-100-C files missing: {', '.join(missing)}")
        return {"test": self._generate_examples(self.builder_config)}

    def _generate_examples(self, config):
        images_path = os.path.join(self.raw_dir, f"{config.corruption}.npy")
        labels_path = os.path.join(self.raw_dir, "labels.npy")
        images, labels = _load_npy(images_path), _load_npy(labels_path)
        if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
            raise CorruptFileError(
                images_path, f"expected uint8 images of shape (N, 32, 32, 3), got {images.dtype} {images.shape}."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise CorruptFileError(
                labels_path, f"expected {len(images)} labels to match {images_path}, got shape {labels.shape}."
            )
        if len(images) % len(SEVERITIES):
            raise CorruptFileError(images_path, f"{len(images)} rows do not split into {len(SEVERITIES)} severities.")
        block = len(images) // len(SEVERITIES)
        start = (config.severity - 1) * block
        for row in range(start, start + block):
            label = int(labels[row])
            if not 0 <= label < 100:
                raise CorruptFileError(labels_path, f"row {row}: label {label} is outside 0..99.")
            yield row, {"image": np.ascontiguousarray(images[row]), "label": label, "id": str(row)}
