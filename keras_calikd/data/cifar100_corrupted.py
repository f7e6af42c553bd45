"""TFDS builder for CIFAR-100-C, prepared from the `.npy` files of its release.

Raw layout (https://zenodo.org/record/3555552, `CIFAR-100-C.tar`, untarred)::

    <raw_dir>/<corruption>.npy   # (50000, 32, 32, 3) uint8, one file per corruption
    <raw_dir>/labels.npy         # (50000,) labels, the same 10,000 repeated five times

Severity k (1..5) is the block of rows (k-1)*10000 .. k*10000 of both files.
There is one builder config per corruption and severity, named
`<corruption>_<severity>` (e.g. `frost_3`, see `config_name`), each with a
single split `test`; select one with `load("cifar100_corrupted/frost_3", ...)`
or `load("cifar100_corrupted", ..., config="frost_3")`. Preparing a config
reads only its own corruption file.

Stored order: the rows of the `.npy` files, in order.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from keras_calikd.data._base import RawFilesBuilder
from keras_calikd.data.cifar import CIFAR100
from keras_calikd.data.dataset import Dataset, register
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
    """The config name of one corruption at one severity.

    Args:
        corruption: One of `CORRUPTIONS`.
        severity: One of `SEVERITIES` (1..5).

    Returns:
        `"<corruption>_<severity>"`, e.g. `"frost_3"`.

    Raises:
        ValueError: unknown corruption or severity (the message lists the known ones).

    Example:

    ```python
    ckd.load("cifar100_corrupted", "test", 256, config=config_name("frost", 3))
    ```
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {corruption!r}. Corruptions: {', '.join(CORRUPTIONS)}.")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}.")
    return f"{corruption}_{int(severity)}"


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
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Prepared from CIFAR-100-C's .npy files.",
        "2.0.0": "Examples stored in the .npy files' row order (1.0.0 was written in TFDS's shuffled order).",
    }
    BUILDER_CONFIGS = [
        Cifar100CorruptedConfig(corruption=c, severity=s) for c in CORRUPTIONS for s in SEVERITIES
    ]
    RAW_FOLDER = "CIFAR-100-C"
    SOURCE = "https://zenodo.org/record/3555552 (CIFAR-100-C.tar; untar it, it holds CIFAR-100-C/)"
    LAYOUT = "  <corruption>.npy (one per corruption, (50000, 32, 32, 3) uint8) and labels.npy"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.info_in_file_order(
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
        needed = [os.path.join(raw_dir, "labels.npy")]
        if config_name:
            corruption = next(c.corruption for c in cls.BUILDER_CONFIGS if c.name == config_name)
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


#: CIFAR-100-C's description: one config per corruption and severity; CIFAR-100's statistics (models
#: trained on CIFAR-100 are evaluated on it).
CIFAR100_CORRUPTED = register(Dataset(
    name="cifar100_corrupted", title="CIFAR-100-C", num_classes=100, image_shape=(32, 32, 3),
    splits={"test": 10_000}, mean=CIFAR100.mean, std=CIFAR100.std,
    stats_source="CIFAR-100's constants (models trained on CIFAR-100 are evaluated on it)", crop_padding=4,
    builder_cls=Cifar100Corrupted, configs=tuple(c.name for c in Cifar100Corrupted.BUILDER_CONFIGS),
))
