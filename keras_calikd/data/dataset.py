"""What a data set is (`Dataset`), the registry of them, where their files go and how they get prepared.

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
  the prepared folder (`Dataset.locate`);
- preparation: the prepared TFDS builder, prepared once from the raw files
  when needed (`open_builder`), and the check of its TFRecord files
  (`verify_prepared`);
- `info`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from typing import Mapping, NamedTuple, Optional, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_calikd.data._base import not_found_message
from keras_calikd.data.errors import CorruptPreparedDataError, DatasetNotFoundError
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


def prepared_builder(dataset: Dataset, data_dir: Optional[os.PathLike] = None):
    """The TFDS builder of `dataset`'s prepared data in `data_dir`, or None when it is not prepared there.

    Args:
        dataset: A description, with its config selected if it has configs.
        data_dir: TFDS data directory (resolved with `resolve_data_dir`).

    Returns:
        A prepared `tfds.core.DatasetBuilder`, or None.

    Raises:
        NotADirectoryError: `data_dir` cannot be a folder.

    Example:

    ```python
    prepared_builder(lookup("cifar100_corrupted/frost_3"), "/data")   # None until prepared
    ```
    """
    locations = dataset.locate(data_dir)
    if not locations.prepared:
        return None  # Checked first: constructing a builder for an absent folder logs warnings.
    if dataset.builder_cls is None:
        return tfds.builder_from_directory(locations.prepared_dir)
    builder = dataset.builder_cls(data_dir=locations.data_dir, config=dataset.config)
    return builder if builder.is_prepared() else None


def open_builder(dataset: Dataset, data_dir: Optional[os.PathLike] = None, raw_dir: Optional[os.PathLike] = None,
                 prepare: bool = True):
    """Returns `dataset`'s prepared TFDS builder, preparing it once from the raw files if needed and allowed.

    Args:
        dataset: A description, with its config selected if it has configs.
        data_dir: TFDS data directory (resolved with `resolve_data_dir`).
        raw_dir: Folder of the raw files, instead of `Locations.raw_dir` and the fallbacks.
        prepare: Prepare from the raw files when the data is not prepared yet.

    Returns:
        A prepared `tfds.core.DatasetBuilder`.

    Raises:
        DatasetNotFoundError: at once, when the data set is neither prepared nor available as raw
            files (or `prepare` is False); the message says which files go where.
        CorruptFileError: a raw file cannot be read (nothing half-prepared is kept).
        ValueError: the data set has configs and none is selected.

    Example:

    ```python
    builder = open_builder(lookup("fashion_mnist"), "/data")   # prepares from the IDX files once
    ```
    """
    dataset.require_config()
    builder = prepared_builder(dataset, data_dir)
    if builder is not None:
        return builder
    locations = dataset.locate(data_dir)
    if dataset.builder_cls is None:
        raise DatasetNotFoundError(
            f"{dataset.title} is not prepared in {locations.data_dir}: no {locations.prepared_dir}{os.sep}<version>"
            f"{os.sep}dataset_info.json. keras_calikd never downloads (training machines may be offline). "
            f"To get it: {dataset.source}; the result must look like\n{dataset.raw_layout}")
    candidates = [os.fspath(raw_dir)] if raw_dir else [locations.raw_dir, *dataset.fallback_raw_dirs]
    missing = {c: dataset.builder_cls.missing_raw_files(c, dataset.config) for c in candidates}
    found = next((c for c in candidates if not missing[c]), None)
    if found is None:
        message = not_found_message(dataset.title, candidates[0], missing[candidates[0]], dataset.raw_layout,
                                    dataset.source, locations.prepared_dir)
        raise DatasetNotFoundError(message + _other_versions_note(locations.prepared_dir))
    if not prepare:
        raise DatasetNotFoundError(
            f"{dataset.title} is not prepared in {locations.prepared_dir} and prepare=False; its raw files are in "
            f"{found}.")
    builder = dataset.builder_cls(data_dir=locations.data_dir, config=dataset.config, raw_dir=found)
    print(f"Preparing {dataset.title} once, from {found} into {locations.prepared_dir} ...", flush=True)
    tfds.disable_progress_bar()  # one line instead of TFDS's per-split progress bars
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            try_download_gcs=False, manual_dir=os.path.join(locations.data_dir, MANUAL_SUBDIR)))
    finally:
        tfds.enable_progress_bar()
    return builder


def _other_versions_note(prepared_dir: str) -> str:
    """A sentence naming older/newer preparations next to `prepared_dir` (they are never used), or `""`."""
    root, version = os.path.split(prepared_dir)
    others = sorted(v for v in (os.listdir(root) if os.path.isdir(root) else ())
                    if v != version and os.path.isfile(os.path.join(root, v, "dataset_info.json")))
    if not others:
        return ""
    return (f"\n{root} holds other versions ({', '.join(others)}) that this keras_calikd does not read (it "
            f"reads {version}: see the builder's RELEASE_NOTES); they can be deleted.")


# (path, size, mtime) of the prepared TFRecord files already read through in this process.
_VERIFIED = set()


def verify_prepared(dataset: Dataset, builder, split: str) -> None:
    """Reads every TFRecord file of one prepared split through once per process (records and checksums).

    A file is read again only when its size or modification time changed.
    It costs one pass over the split's bytes without decoding (about 0.4 s
    for 120 MB on the 2-core development machine, see docs/data.md).

    Args:
        dataset: The split's data set (for the message).
        builder: Its prepared TFDS builder.
        split: A split name of `builder.info.splits` (no slice).

    Raises:
        CorruptPreparedDataError: a file is missing, damaged (`tf.errors.DataLossError`) or holds
            another number of records than `dataset_info.json` says; the message names it and
            says to delete the prepared folder.

    Example:

    ```python
    description = lookup("cifar10")
    verify_prepared(description, open_builder(description, "/data"), "train")
    ```
    """
    info = builder.info.splits[split]
    prepared_dir = os.fspath(builder.data_dir)
    for path, expected in zip((os.fspath(p) for p in info.filepaths), info.shard_lengths):
        if not os.path.isfile(path):
            raise corrupt_prepared_error(dataset, prepared_dir, "the file is missing", path)
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key in _VERIFIED:
            continue
        try:
            count = int(tf.data.TFRecordDataset(path).batch(4096).reduce(
                tf.constant(0, tf.int64), lambda n, records: n + tf.size(records, out_type=tf.int64)))
        except tf.errors.DataLossError as error:
            raise corrupt_prepared_error(dataset, prepared_dir, error, path) from None
        if count != expected:
            detail = f"it holds {count} records, dataset_info.json announces {expected}"
            raise corrupt_prepared_error(dataset, prepared_dir, detail, path)
        _VERIFIED.add(key)


def corrupt_prepared_error(dataset: Dataset, prepared_dir: str, detail, path: Optional[str] = None):
    """The `CorruptPreparedDataError` for damaged prepared data of `dataset` in `prepared_dir`.

    Args:
        dataset: The data set (what to do differs for TFDS-catalog data sets).
        prepared_dir: The prepared folder.
        detail: What is wrong: a text, or the `tf.errors.DataLossError` TensorFlow raised.
        path: The damaged file, when known.

    Returns:
        A `CorruptPreparedDataError` (to raise).

    Example:

    ```python
    raise corrupt_prepared_error(lookup("cifar10"), "/data/cifar10/3.0.2", "the file is missing")
    ```
    """
    if isinstance(detail, tf.errors.OpError):
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", detail.message, flags=re.S)
        detail = f"TensorFlow: {message.strip()}"
    if dataset.builder_cls is None:
        remedy = f"delete {prepared_dir} and copy a fresh preparation there ({dataset.source})"
    else:
        remedy = f"delete {prepared_dir}; the next load prepares it again from the raw files"
    reason = f"the prepared data of {dataset.full_name} is damaged ({detail}). To fix it, {remedy}."
    return CorruptPreparedDataError(path or prepared_dir, reason, prepared_dir)


def info(name: str, data_dir: Optional[os.PathLike] = None, config: Optional[str] = None) -> Dataset:
    """The description of a data set, with the prepared data's split sizes and class names once prepared.

    Looks for the prepared data in the data directory (a directory listing;
    nothing is prepared, read in bulk or downloaded). Where the files are or
    go: `info(name).locate(data_dir)`.

    Args:
        name: A name of `names()`, optionally with `/<config>` (`"cifar100_corrupted/frost_3"`).
        data_dir: TFDS data directory; default `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.
        config: A config name, instead of the `/<config>` suffix.

    Returns:
        A `Dataset` (the registered one, with `config` selected; `splits` and `class_names` those of
        the prepared data when it is prepared).

    Raises:
        ValueError: unknown name or config (the message lists the known ones).
        NotADirectoryError: `data_dir` cannot be a folder.

    Example:

    ```python
    import keras_calikd.data as ckd
    ckd.info("cifar100").num_classes                 # 100
    ckd.info("fashion_mnist").splits                 # {"train": 60000, "test": 10000}
    ckd.info("tiny_imagenet").locate().raw_dir       # ~/tensorflow_datasets/downloads/manual/tiny-imagenet-200
    ```
    """
    dataset = lookup(name, config)
    data_dir = resolve_data_dir(data_dir)
    builder = None if dataset.configs and dataset.config is None else prepared_builder(dataset, data_dir)
    return dataset if builder is None else with_prepared_facts(dataset, builder)


def with_prepared_facts(dataset: Dataset, builder) -> Dataset:
    """`dataset` with the split sizes (and class names, when the builder names them) of its prepared data.

    Args:
        dataset: The description.
        builder: The prepared TFDS builder of `dataset`.

    Returns:
        A `Dataset`.

    Example:

    ```python
    description = lookup("cinic10")
    with_prepared_facts(description, open_builder(description)).splits   # the prepared split sizes
    ```
    """
    label = builder.info.features["label"]
    names = getattr(label, "names", None)
    class_names = tuple(names) if names and names != [str(i) for i in range(dataset.num_classes)] else None
    return dataclasses.replace(
        dataset, splits={split: int(builder.info.splits[split].num_examples) for split in builder.info.splits},
        class_names=class_names or dataset.class_names)


__all__ = ["DATASETS", "Dataset", "Locations", "corrupt_prepared_error", "info", "lookup", "open_builder",
           "prepared_builder", "register", "resolve_data_dir", "suggest", "verify_prepared", "with_prepared_facts"]
