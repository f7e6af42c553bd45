"""Prepared data: the TFDS builder of a data set's prepared files, prepared once from its raw files, and checked.

- `open_builder`: the prepared TFDS builder, prepared once from the raw files
  when needed (nothing is ever downloaded);
- `verify_prepared`: each prepared TFRecord file read through once per
  process, so that damage is found before training, with a message saying
  what to delete (`corrupt_prepared_error`);
- `info`: a data set's description with the prepared data's split sizes and
  class names.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_calikd.data._base import not_found_message
from keras_calikd.data.dataset import MANUAL_SUBDIR, Dataset, lookup, resolve_data_dir
from keras_calikd.data.errors import CorruptPreparedDataError, DatasetNotFoundError


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


__all__ = ["corrupt_prepared_error", "info", "open_builder", "prepared_builder", "verify_prepared",
           "with_prepared_facts"]
