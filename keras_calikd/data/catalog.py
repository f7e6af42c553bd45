"""The data sets `keras_calikd.data` knows: their facts, where their files go, and their TFDS builders.

Every data set is a `DatasetSpec` registered in `DATASETS` under its load
name. The spec holds what is known without looking at any file (classes,
image shape, published split sizes, normalisation constants, augmentation
padding) and knows how to get a prepared TFDS builder:

- catalog data sets (`cifar10`, `cifar100`) are read from a folder that
  `tfds build` prepared on a machine with internet and that was copied to
  `<data_dir>/<name>/<version>/`; nothing is ever downloaded;
- the other data sets are prepared once, by this package's own TFDS builders,
  from raw files the user put in `<data_dir>/downloads/manual/<folder>/`.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
from typing import Mapping, Optional, Tuple

import tensorflow_datasets as tfds

from keras_calikd.data import cifar100_corrupted, cinic10, fashion_mnist, tiny_imagenet
from keras_calikd.data._base import RawFilesBuilder, not_found_message
from keras_calikd.data.errors import DatasetNotFoundError
from keras_calikd.registry import Registry

DATASETS = Registry("data set")

#: Per-channel normalisation constants, on images scaled to [0, 1], and where they come from.
#: CIFAR-10: mean and standard deviation of every pixel of the 50,000 training images
#: (the exact values, 0.49139968 ... / 0.24703223 ..., are widely reproduced; rounded here).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
#: CIFAR-100: the constants of the CRD code base (Tian et al., 2020) the paper's authors built on;
#: they are the per-pixel statistics of the 50,000 training images.
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
#: CINIC-10: the values its authors publish in the data set's README (BayesWatch/cinic-10).
CINIC10_MEAN, CINIC10_STD = (0.47889522, 0.47227842, 0.43047404), (0.24205776, 0.23828046, 0.25874835)
#: Tiny ImageNet: the constants most public Tiny ImageNet training scripts use (traced back to the
#: tjmoon0104/pytorch-tiny-imagenet notebook); not recomputed here: the data is not on the build machine.
TINY_IMAGENET_MEAN, TINY_IMAGENET_STD = (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)
#: Fashion-MNIST: computed by this package once over the 60,000 training images of the IDX files
#: (Debian's dataset-fashion-mnist): mean 0.28604060, standard deviation 0.35302424.
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860406,), (0.3530242,)

#: Where Debian and the README tell users to put the raw files: `<data_dir>/downloads/manual/`.
MANUAL_SUBDIR = os.path.join("downloads", "manual")


def resolve_data_dir(data_dir: Optional[os.PathLike] = None) -> str:
    """The TFDS data directory: `data_dir`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.

    Read at call time (TFDS itself reads `$TFDS_DATA_DIR` once, at import).
    """
    if data_dir:
        return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    env = os.environ.get("TFDS_DATA_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a data set and how to reach its TFDS builder.

    Attributes:
        name: The load name.
        title: Human-readable name for messages.
        num_classes: Number of classes.
        image_shape: (H, W, C).
        splits: Split name -> number of examples in the published release.
        mean, std: Per-channel normalisation constants on [0, 1] images.
        stats_source: Where `mean` and `std` come from.
        crop_padding: Zero padding of the training random crop, in pixels.
        class_names: Class names in label order, when known without the data.
        tfds_name: Folder name of the prepared data set under `data_dir`.
        builder_cls: This package's builder (raw files -> TFDS), or None for a TFDS catalog data set.
        fallback_raw_dirs: Raw folders tried after `<data_dir>/downloads/manual/<folder>`.
        has_configs: Whether the data set is split into builder configs (CIFAR-100-C).
    """

    name: str
    title: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    splits: Mapping[str, int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    stats_source: str
    crop_padding: int
    class_names: Optional[Tuple[str, ...]]
    tfds_name: str
    builder_cls: Optional[type] = None
    fallback_raw_dirs: Tuple[str, ...] = ()
    has_configs: bool = False

    # ----------------------------------------------------------------- locations
    def raw_dir(self, data_dir: str) -> Optional[str]:
        """The one documented folder for this data set's raw files, or None (catalog data sets)."""
        if self.builder_cls is None:
            return None
        return os.path.join(data_dir, MANUAL_SUBDIR, self.builder_cls.RAW_FOLDER)

    def prepared_root(self, data_dir: str, config: Optional[str] = None) -> str:
        root = os.path.join(data_dir, self.tfds_name)
        return os.path.join(root, config) if config else root

    def layout(self) -> str:
        if self.builder_cls is None:
            return (
                f"  a folder prepared by TFDS: {self.tfds_name}/<version>/ with dataset_info.json and "
                f"{self.tfds_name}-<split>.tfrecord-* files"
            )
        return self.builder_cls.LAYOUT

    def source(self) -> str:
        if self.builder_cls is None:
            return (
                f"TFDS's catalog: on a machine with internet run `tfds build {self.tfds_name} --data_dir=DIR` "
                f"(or tfds.builder('{self.tfds_name}', data_dir='DIR').download_and_prepare()), then copy "
                f"DIR/{self.tfds_name}/ to the data directory here"
            )
        return self.builder_cls.SOURCE

    # ----------------------------------------------------------------- builders
    def prepared_builder(self, data_dir: str, config: Optional[str] = None):
        """The builder of the prepared data set in `data_dir`, or None when it is not prepared."""
        if self.builder_cls is None:
            version_dir = _latest_version_dir(self.prepared_root(data_dir))
            return None if version_dir is None else tfds.builder_from_directory(version_dir)
        version_dir = os.path.join(self.prepared_root(data_dir, config), str(self.builder_cls.VERSION))
        if not os.path.isfile(os.path.join(version_dir, "dataset_info.json")):
            return None  # Checked first: constructing a builder for an absent folder logs warnings.
        builder = self.builder_cls(data_dir=data_dir, config=config)
        return builder if builder.is_prepared() else None

    def builder(self, data_dir: str, config: Optional[str] = None, raw_dir: Optional[str] = None,
                prepare: bool = True):
        """Returns a prepared TFDS builder, preparing it from the raw files if needed and allowed.

        Raises:
            DatasetNotFoundError: at once, when the data set is neither prepared nor available as
                raw files (or `prepare` is False). The message says which files go where.
        """
        builder = self.prepared_builder(data_dir, config)
        if builder is not None:
            return builder
        prepared_dir = self.prepared_root(data_dir, config)
        if self.builder_cls is None:
            raise DatasetNotFoundError(
                f"{self.title} is not prepared in {data_dir}: no {prepared_dir}{os.sep}<version>{os.sep}"
                f"dataset_info.json. keras_calikd never downloads (training machines may be offline). "
                f"To get it: {self.source()}; the result must look like\n{self.layout()}"
            )
        found, missing = self.find_raw_dir(data_dir, config, raw_dir)
        if found is None:
            raise DatasetNotFoundError(
                not_found_message(self.title, missing[0], missing[1], self.layout(), self.source(), prepared_dir)
            )
        if not prepare:
            raise DatasetNotFoundError(
                f"{self.title} is not prepared in {prepared_dir} and prepare=False; its raw files are in {found}."
            )
        builder = self.builder_cls(data_dir=data_dir, config=config, raw_dir=found)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                try_download_gcs=False, manual_dir=os.path.join(data_dir, MANUAL_SUBDIR)
            )
        )
        return builder

    def find_raw_dir(self, data_dir: str, config: Optional[str], raw_dir: Optional[str]):
        """Returns (folder holding complete raw files or None, (first folder looked at, its missing files))."""
        candidates = [os.fspath(raw_dir)] if raw_dir else [self.raw_dir(data_dir), *self.fallback_raw_dirs]
        first_missing = None
        for candidate in candidates:
            missing = self.builder_cls.missing_raw_files(candidate, config)
            if not missing:
                return candidate, None
            if first_missing is None:
                first_missing = (candidate, missing)
        return None, first_missing


def _latest_version_dir(root: str) -> Optional[str]:
    """The highest `<root>/<x.y.z>/` holding a `dataset_info.json`, or None."""
    if not os.path.isdir(root):
        return None
    versions = []
    for entry in os.listdir(root):
        if re.fullmatch(r"\d+\.\d+\.\d+", entry) and os.path.isfile(os.path.join(root, entry, "dataset_info.json")):
            versions.append(tuple(int(p) for p in entry.split(".")))
    if not versions:
        return None
    return os.path.join(root, ".".join(str(p) for p in max(versions)))


def _register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)


_register(DatasetSpec(
    name="cifar10", title="CIFAR-10", num_classes=10, image_shape=(32, 32, 3),
    splits={"train": 50_000, "test": 10_000}, mean=CIFAR10_MEAN, std=CIFAR10_STD,
    stats_source="per-pixel statistics of the CIFAR-10 training set", crop_padding=4,
    class_names=cinic10.CLASS_NAMES, tfds_name="cifar10",
))
_register(DatasetSpec(
    name="cifar100", title="CIFAR-100", num_classes=100, image_shape=(32, 32, 3),
    splits={"train": 50_000, "test": 10_000}, mean=CIFAR100_MEAN, std=CIFAR100_STD,
    stats_source="CRD code base (Tian et al., 2020), CIFAR-100 training set", crop_padding=4,
    class_names=None, tfds_name="cifar100",
))
_register(DatasetSpec(
    name="cinic10", title="CINIC-10", num_classes=10, image_shape=(32, 32, 3),
    splits={"train": 90_000, "validation": 90_000, "test": 90_000}, mean=CINIC10_MEAN, std=CINIC10_STD,
    stats_source="CINIC-10 README (BayesWatch/cinic-10)", crop_padding=4,
    class_names=cinic10.CLASS_NAMES, tfds_name=cinic10.Cinic10.name, builder_cls=cinic10.Cinic10,
))
_register(DatasetSpec(
    name="tiny_imagenet", title="Tiny ImageNet", num_classes=200, image_shape=(64, 64, 3),
    splits={"train": 100_000, "validation": 10_000}, mean=TINY_IMAGENET_MEAN, std=TINY_IMAGENET_STD,
    stats_source="constants common to public Tiny ImageNet training code (not recomputed)", crop_padding=8,
    class_names=None, tfds_name=tiny_imagenet.TinyImagenet.name, builder_cls=tiny_imagenet.TinyImagenet,
))
_register(DatasetSpec(
    name="cifar100_corrupted", title="CIFAR-100-C", num_classes=100, image_shape=(32, 32, 3),
    splits={"test": 10_000}, mean=CIFAR100_MEAN, std=CIFAR100_STD,
    stats_source="CIFAR-100's constants (models trained on CIFAR-100 are evaluated on it)", crop_padding=4,
    class_names=None, tfds_name=cifar100_corrupted.Cifar100Corrupted.name,
    builder_cls=cifar100_corrupted.Cifar100Corrupted, has_configs=True,
))
_register(DatasetSpec(
    name="fashion_mnist", title="Fashion-MNIST", num_classes=10, image_shape=(28, 28, 1),
    splits={"train": 60_000, "test": 10_000}, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD,
    stats_source="computed once by keras_calikd over the 60,000 training images", crop_padding=4,
    class_names=fashion_mnist.CLASS_NAMES, tfds_name=fashion_mnist.FashionMnistIdx.name,
    builder_cls=fashion_mnist.FashionMnistIdx, fallback_raw_dirs=(fashion_mnist.DEBIAN_DIR,),
))


def get_spec(name: str) -> Tuple[DatasetSpec, Optional[str]]:
    """Splits `"cifar100_corrupted/frost_3"` into its spec and config name; plain names have no config."""
    if not isinstance(name, str):
        raise TypeError(f"A data set name must be a string, got {name!r}. Known names: {', '.join(DATASETS.names())}.")
    base, sep, config = name.partition("/")
    spec = DATASETS.get(base)
    if sep and not spec.has_configs:
        raise ValueError(f"Data set {base!r} has no configs; load it as {base!r}, not {name!r}.")
    return spec, (config if sep else None)


def resolve_config(spec: DatasetSpec, config: Optional[str], corruption=None, severity=None,
                   required: bool = True) -> Optional[str]:
    """Validates the config of `spec` given as a name suffix and/or `corruption`/`severity` arguments."""
    if not spec.has_configs:
        if corruption is not None or severity is not None:
            raise ValueError(f"`corruption` and `severity` apply to cifar100_corrupted only, not to {spec.name!r}.")
        return None
    corruptions = cifar100_corrupted.CORRUPTIONS
    if config is not None:
        named_corruption, named_severity = cifar100_corrupted.parse_config_name(config)
        if (corruption is not None and corruption != named_corruption) or (
            severity is not None and not (isinstance(severity, numbers.Integral) and severity == named_severity)
        ):
            raise ValueError(
                f"{spec.name}/{config} conflicts with corruption={corruption!r}, severity={severity!r}."
            )
        return config
    if corruption is None and severity is None and not required:
        return None
    if corruption is None or severity is None:
        raise ValueError(
            f"{spec.name} needs a corruption and a severity: load('{spec.name}', ..., corruption='frost', "
            f"severity=3) or load('{spec.name}/frost_3', ...). Corruptions: {', '.join(corruptions)}."
        )
    if corruption not in corruptions:
        raise ValueError(f"Unknown corruption {corruption!r}. Known corruptions: {', '.join(corruptions)}.")
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}.")
    return cifar100_corrupted.config_name(corruption, int(severity))


__all__ = ["DATASETS", "DatasetSpec", "RawFilesBuilder", "get_spec", "resolve_config", "resolve_data_dir"]
