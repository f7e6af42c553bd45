"""What a data set is (`Dataset`), the registry of them, and where their files go.

Each data set is described once, by the module that owns it: that module
defines its TFDS builder (if it has one) and its `Dataset` description and
registers the description in `DATASETS` under its load name (`cifar.py` for
CIFAR-10/100, read from TFDS's catalog; `cinic10.py`, `tiny_imagenet.py`,
`cifar100_corrupted.py`, `fashion_mnist.py`). This module holds what is
common to all of them:

- the `Dataset` description and the `DATASETS` registry (`register`);
- the one config mechanism (`lookup`: `"cifar100_corrupted/frost_3"`, or
  `config="frost_3"`, validated against `Dataset.configs`);
- locations: the data directory (`resolve_data_dir`), the raw folder and
  the prepared folder (`Dataset.locate`).

How the files get prepared and checked, and `info`, are `keras_calikd.data.prepared`'s.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from typing import Mapping, NamedTuple, Optional, Tuple

from keras_calikd.registry import Registry

#: Load name -> `Dataset`. Filled by the data sets' own modules (imported by `keras_calikd.data`).
DATASETS = Registry("data set")

#: Where Debian and the README tell users to put the raw files: `<data_dir>/downloads/manual/`.
MANUAL_SUBDIR = os.path.join("downloads", "manual")


class Locations(NamedTuple):
    """Where one data set's files are in one data directory (see `Dataset.locate`).

    Attributes:
        data_dir: The resolved TFDS data directory.
        raw_dir: The documented folder of the raw files, `<data_dir>/downloads/manual/<folder>`
            (None for a TFDS-catalog data set: it has no raw files here).
        prepared_dir: The folder of the prepared TFRecords, `<data_dir>/<tfds name>/[<config>/]<version>`;
            for a catalog data set not copied yet, `<data_dir>/<name>`; for a data set with configs
            and none selected, the folder holding all of them.
        prepared: Whether a prepared data set (its `dataset_info.json`) is in `prepared_dir`.

    Example:

    ```python
    ckd.info("cinic10").locate("/data")
    # Locations(data_dir='/data', raw_dir='/data/downloads/manual/cinic10',
    #           prepared_dir='/data/cinic10/2.0.0', prepared=False)
    ```
    """

    data_dir: str
    raw_dir: Optional[str]
    prepared_dir: str
    prepared: bool


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The static facts of one data set; its module defines and registers it (see docs/data.md).

    Not to be confused with `tf.data.Dataset`: this is a description, the
    pipelines (`read`, `load`) return `tf.data.Dataset`s.

    Attributes:
        name: The load name (`load(name, ...)`) and key in `DATASETS`.
        title: Human-readable name, for messages.
        num_classes: Number of classes.
        image_shape: (H, W, C) of the stored images.
        splits: Split name -> number of examples: the published release's here, the prepared
            data's in what `info` returns once the data set is prepared.
        mean: Per-channel mean of the pixels scaled to [0, 1].
        std: Per-channel standard deviation of the pixels scaled to [0, 1].
        stats_source: Where `mean` and `std` come from.
        crop_padding: Zero padding, in pixels, of the training random crop.
        class_names: Class names in label order, when known (None otherwise).
        builder_cls: This package's TFDS builder (raw files -> prepared TFRecords), or None for a
            data set of TFDS's catalog, read from a copy that `tfds build <name>` prepared.
        fallback_raw_dirs: Raw folders tried after `<data_dir>/downloads/manual/<builder_cls.RAW_FOLDER>`.
        configs: Names of the data set's configs (its builder's configs); empty if it has none.
        config: The selected config (set by `lookup`, `info`, `read`); None in `DATASETS`.

    Raises:
        ValueError: when the facts contradict each other (e.g. 3 channels but 1 mean).

    Example:

    ```python
    import keras_calikd.data as ckd
    cifar100 = ckd.info("cifar100")
    cifar100.image_shape          # (32, 32, 3)
    cifar100.normalization        # ((129.3..., 124.1..., 112.4...), (68.2..., 65.4..., 70.4...))
    cifar100.locate().raw_dir     # None: a TFDS-catalog data set
    ```
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
    class_names: Optional[Tuple[str, ...]] = None
    builder_cls: Optional[type] = None
    fallback_raw_dirs: Tuple[str, ...] = ()
    configs: Tuple[str, ...] = ()
    config: Optional[str] = None

    def __post_init__(self):
        for field in ("image_shape", "mean", "std", "fallback_raw_dirs", "configs"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        object.__setattr__(self, "splits", dict(self.splits))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
        problems = [
            "image_shape must be (H, W, C)" if len(self.image_shape) != 3 else "",
            "mean and std need one value per channel" if not len(self.mean) == len(self.std) == self.image_shape[-1]
            else "",
            "std must be positive" if min(self.std, default=0) <= 0 else "",
            "it needs at least one split" if not self.splits else "",
            "class_names needs num_classes names" if self.class_names and len(self.class_names) != self.num_classes
            else "",
            "configs must be unique" if len(set(self.configs)) != len(self.configs) else "",
        ]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError(f"Inconsistent description of data set {self.name!r}: {'; '.join(problems)}.")

    @property
    def normalization(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """`(mean, std)` per channel in pixel units (0..255): `255 * self.mean`, `255 * self.std`.

        The constants a model's input normalisation is built with: the
        pipelines yield raw pixels, models compute `(x - mean) / std`.
        """
        return tuple(255.0 * m for m in self.mean), tuple(255.0 * s for s in self.std)

    @property
    def full_name(self) -> str:
        """`name`, with `/<config>` when a config is selected (e.g. `"cifar100_corrupted/frost_3"`)."""
        return f"{self.name}/{self.config}" if self.config else self.name

    @property
    def tfds_name(self) -> str:
        """The folder of the prepared data under the data directory: the builder's name."""
        return self.builder_cls.name if self.builder_cls is not None else self.name

    @property
    def raw_layout(self) -> str:
        """What goes in the raw folder (for a catalog data set: what the prepared copy looks like)."""
        if self.builder_cls is None:
            return (f"  a folder prepared by TFDS: {self.tfds_name}/<version>/ with dataset_info.json and "
                    f"{self.tfds_name}-<split>.tfrecord-* files")
        return self.builder_cls.LAYOUT

    @property
    def source(self) -> str:
        """Where the files are published, or how to get a catalog data set's prepared copy."""
        if self.builder_cls is None:
            return (f"TFDS's catalog: on a machine with internet run `tfds build {self.name} --data_dir=DIR` "
                    f"(or tfds.builder('{self.name}', data_dir='DIR').download_and_prepare()), then copy "
                    f"DIR/{self.name}/ to the data directory here")
        return self.builder_cls.SOURCE

    def with_config(self, config: Optional[str]) -> "Dataset":
        """This description with `config` selected, validated against `configs`.

        Args:
            config: A name of `configs`, or None (no config selected).

        Returns:
            A `Dataset` whose `config` is `config`.

        Raises:
            ValueError: the data set has no configs, or `config` is not one of them (the message lists them).
        """
        if config is None or config == self.config:
            return dataclasses.replace(self, config=config)
        if not self.configs:
            raise ValueError(f"Data set {self.name!r} has no configs; load it as {self.name!r}, without "
                             f"config {config!r}.")
        if config not in self.configs:
            raise ValueError(f"Unknown config {config!r} of {self.name!r}.{suggest(config, self.configs)} "
                             f"Configs: {', '.join(self.configs)}.")
        return dataclasses.replace(self, config=config)

    def require_config(self) -> "Dataset":
        """Returns self; raises `ValueError` (listing `configs`) when the data set has configs and none is selected."""
        if self.configs and self.config is None:
            raise ValueError(
                f"{self.title} has configs: choose one, e.g. load('{self.name}/{self.configs[0]}', ...) or "
                f"load('{self.name}', ..., config='{self.configs[0]}'). Configs: {', '.join(self.configs)}.")
        return self

    def locate(self, data_dir: Optional[os.PathLike] = None) -> Locations:
        """Where this data set's files are, or go, in a data directory (a directory listing, nothing more).

        Args:
            data_dir: TFDS data directory; default `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.

        Returns:
            `Locations(data_dir, raw_dir, prepared_dir, prepared)`.

        Raises:
            NotADirectoryError: `data_dir` cannot be a folder (see `resolve_data_dir`).
        """
        data_dir = resolve_data_dir(data_dir)
        root = os.path.join(data_dir, self.tfds_name, *([self.config] if self.config else []))
        raw_dir = None
        if self.builder_cls is None:
            version_dir = _latest_version_dir(root)
            prepared_dir = version_dir or root
        else:
            raw_dir = os.path.join(data_dir, MANUAL_SUBDIR, self.builder_cls.RAW_FOLDER)
            has_config = self.config is not None or not self.configs
            prepared_dir = os.path.join(root, str(self.builder_cls.VERSION)) if has_config else root
        prepared = os.path.isfile(os.path.join(prepared_dir, "dataset_info.json"))
        return Locations(data_dir, raw_dir, prepared_dir, prepared)


def register(dataset: Dataset) -> Dataset:
    """Registers `dataset` in `DATASETS` under its name and returns it (called by the data set's module).

    Args:
        dataset: The description.

    Returns:
        `dataset`.

    Raises:
        ValueError: the name is taken, or a config is selected.

    Example:

    ```python
    CINIC10 = register(Dataset(name="cinic10", title="CINIC-10", num_classes=10, ...))
    ```
    """
    if dataset.config is not None:
        raise ValueError(f"Register {dataset.name!r} without a selected config (got {dataset.config!r}).")
    return DATASETS.register(dataset.name)(dataset)


def suggest(word: str, choices) -> str:
    """A hint for an error message: the closest of `choices` to a misspelled `word`.

    Args:
        word: What the user wrote.
        choices: The valid names.

    Returns:
        `" Did you mean 'x'?"` for the closest choice, or `""` when none is close.

    Example:

    ```python
    suggest("valid", ["train", "validation", "test"])   # " Did you mean 'validation'?"
    ```
    """
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def lookup(name: str, config: Optional[str] = None) -> Dataset:
    """The description of a data set, with its config selected: the one config mechanism.

    Args:
        name: A name of `names()`, optionally with `/<config>` (`"cifar100_corrupted/frost_3"`).
        config: A config name, instead of the `/<config>` suffix.

    Returns:
        The registered `Dataset`, with `config` set (None when none is given).

    Raises:
        TypeError: `name` is not a string.
        ValueError: unknown name (the message lists the names), unknown config (it lists the
            configs), a config for a data set without configs, or a suffix and `config` that differ.

    Example:

    ```python
    lookup("cifar100_corrupted/frost_3") == lookup("cifar100_corrupted", config="frost_3")  # True
    ```
    """
    if not isinstance(name, str):
        raise TypeError(f"A data set name must be a string, got {name!r}. Known names: {', '.join(DATASETS.names())}.")
    base, sep, suffix = name.partition("/")
    dataset = DATASETS.get(base)
    if sep:
        if config is not None and config != suffix:
            raise ValueError(f"{name!r} and config={config!r} select different configs; give one of them.")
        config = suffix
    return dataset.with_config(config)


def resolve_data_dir(data_dir: Optional[os.PathLike] = None) -> str:
    """The TFDS data directory: `data_dir`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.

    Read at call time (TFDS itself reads `$TFDS_DATA_DIR` once, at import).

    Args:
        data_dir: A folder (need not exist yet), or None.

    Returns:
        The absolute path.

    Raises:
        NotADirectoryError: the path cannot be a folder: it, or a folder above it, is a regular file.

    Example:

    ```python
    resolve_data_dir("~/data")    # '/home/me/data'
    ```
    """
    origin = "data_dir"
    if data_dir:
        path = os.fspath(data_dir)
    elif os.environ.get("TFDS_DATA_DIR"):
        path, origin = os.environ["TFDS_DATA_DIR"], "$TFDS_DATA_DIR"
    else:
        path, origin = os.path.join("~", "tensorflow_datasets"), "the default data directory"
    path = os.path.abspath(os.path.expanduser(path))
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if os.path.exists(existing) and not os.path.isdir(existing):
        raise NotADirectoryError(
            f"The data directory {path} ({origin}) cannot be a folder: {existing} is a file. Pass a data_dir "
            "(or set $TFDS_DATA_DIR to a folder) that is, or can become, a folder.")
    return path


def _latest_version_dir(root: str) -> Optional[str]:
    """The highest `<root>/<x.y.z>/` holding a `dataset_info.json`, or None."""
    versions = []
    if os.path.isdir(root):
        for entry in os.listdir(root):
            if re.fullmatch(r"\d+\.\d+\.\d+", entry) and os.path.isfile(os.path.join(root, entry, "dataset_info.json")):
                versions.append(tuple(int(p) for p in entry.split(".")))
    return os.path.join(root, ".".join(str(p) for p in max(versions))) if versions else None


__all__ = ["DATASETS", "MANUAL_SUBDIR", "Dataset", "Locations", "lookup", "register", "resolve_data_dir", "suggest"]
