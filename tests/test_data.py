"""Tests of keras_calikd.data: descriptions, builders from fake raw files in the real layouts, pipelines, errors.

Every custom builder is prepared from small fake files written into a
temporary folder in its authors' layout; Fashion-MNIST is also read from the
real IDX files of Debian's dataset-fashion-mnist package. CIFAR-10/100 are
tested with a tiny prepared TFDS copy written by a subclass of TFDS's own
builder (same name, version and features; fake examples).
"""

from __future__ import annotations

import glob
import json
import os
import re
import runpy
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_calikd.data as ckd
from keras_calikd.data import cifar100_corrupted, dataset
from keras_calikd.data.fashion_mnist import read_idx

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

try:
    import data_fakes as fakes
except ImportError:  # tests/ imported as a package
    from tests import data_fakes as fakes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def _manual(data_dir, folder):
    return os.path.join(str(data_dir), "downloads", "manual", folder)


def _collect(ds):
    """All batches of one iteration of a `load` pipeline, as numpy: (images, labels, indices or None)."""
    images, labels, indices = [], [], []
    for x, y in ds:
        if isinstance(x, dict):
            indices.append(x["index"].numpy())
            x = x["image"]
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels), np.concatenate(indices) if indices else None


def _examples(split):
    """All examples of a `read` split, as numpy: (images, labels, indices)."""
    images, labels, indices = zip(*split.examples.as_numpy_iterator())
    return np.stack(images), np.asarray(labels), np.asarray(indices)


def _prepare_fashion(raw, data_dir):
    """Prepares Fashion-MNIST from `raw` with the builder alone (no `read`: no file check yet)."""
    builder = ckd.FashionMnistIdx(data_dir=str(data_dir), raw_dir=str(raw))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return os.fspath(builder.data_dir)


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def cinic_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cinic")
    counts = fakes.write_cinic10(_manual(data_dir, "cinic10"))
    ckd.read("cinic10", "test", data_dir=str(data_dir))  # prepares all three splits once
    return str(data_dir), counts


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tiny")
    meta = fakes.write_tiny_imagenet(_manual(data_dir, "tiny-imagenet-200"))
    ckd.read("tiny_imagenet", "validation", data_dir=str(data_dir))
    return str(data_dir), meta


@pytest.fixture(scope="session")
def c100c_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("c100c")
    meta = fakes.write_cifar100_c(_manual(data_dir, "CIFAR-100-C"), corruptions=("frost", "snow"), per_severity=4)
    return str(data_dir), meta


@pytest.fixture(scope="session")
def fashion_fake(tmp_path_factory):
    """Fake Fashion-MNIST with random images: (data_dir, raw_dir, {split: (images, labels)} as written)."""
    root = tmp_path_factory.mktemp("fashion_fake")
    written = fakes.write_fashion_mnist(str(root / "raw"), n_train=30, n_test=10, random_images=True)
    return str(root / "data"), str(root / "raw"), written


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory):
    if not os.path.isfile(os.path.join(DEBIAN_FASHION, "train-images-idx3-ubyte.gz")):
        pytest.fail("Debian's dataset-fashion-mnist package is not installed: apt-get install dataset-fashion-mnist "
                    "(tools/run_tests.sh installs it)")
    data_dir = tmp_path_factory.mktemp("fashion")
    ckd.read("fashion_mnist", "test", data_dir=str(data_dir))  # prepares from Debian's files
    return str(data_dir)


# ---------------------------------------------------------------------------------------- descriptions
def test_names_and_registry():
    assert ckd.names() == ["cifar10", "cifar100", "cifar100_corrupted", "cinic10", "fashion_mnist", "tiny_imagenet"]
    for name in ckd.names():
        description = ckd.DATASETS.get(name)
        assert isinstance(description, ckd.Dataset) and description.name == name and description.config is None
    assert ckd.DATASETS.get("cinic10").builder_cls is ckd.Cinic10
    assert ckd.DATASETS.get("cifar10").builder_cls is None and ckd.DATASETS.get("cifar10").tfds_name == "cifar10"
    assert ckd.DATASETS.get("fashion_mnist").tfds_name == "fashion_mnist_idx"


def test_each_data_set_is_described_by_its_own_module():
    from keras_calikd.data import cifar, cinic10, fashion_mnist, tiny_imagenet

    described = [(cifar.CIFAR10, cifar), (cifar.CIFAR100, cifar), (cinic10.CINIC10, cinic10),
                 (tiny_imagenet.TINY_IMAGENET, tiny_imagenet), (fashion_mnist.FASHION_MNIST, fashion_mnist),
                 (cifar100_corrupted.CIFAR100_CORRUPTED, cifar100_corrupted)]
    assert sorted(description.name for description, _ in described) == ckd.names()
    for description, module in described:
        assert ckd.DATASETS.get(description.name) is description  # registered by its module, on import
        assert description.builder_cls is None or description.builder_cls.__module__ == module.__name__


@pytest.mark.parametrize("name", ["cinic10", "tiny_imagenet", "cifar100_corrupted", "fashion_mnist"])
def test_each_description_agrees_with_its_builder(tmp_path, name):
    description = ckd.DATASETS.get(name)
    builder_cls = description.builder_cls
    assert description.configs == tuple(c.name for c in builder_cls.BUILDER_CONFIGS)
    builder = builder_cls(data_dir=str(tmp_path), config=(description.configs or [None])[0])
    features = builder.info.features
    assert tuple(features["image"].shape) == description.image_shape
    assert features["label"].num_classes == description.num_classes
    if description.class_names is not None:
        assert tuple(features["label"].names) == description.class_names
    assert builder.info.disable_shuffling  # written in the raw files' order
    assert str(builder_cls.VERSION) == "2.0.0" and "shuffled" in builder_cls.RELEASE_NOTES["2.0.0"]


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "cifar100_corrupted", "cinic10", "fashion_mnist",
                                  "tiny_imagenet"])
def test_normalization_is_mean_and_std_in_pixel_units(name):
    description = ckd.info(name)
    mean, std = description.normalization
    assert len(mean) == len(std) == description.image_shape[-1]
    np.testing.assert_allclose(mean, 255 * np.asarray(description.mean), rtol=1e-12)
    np.testing.assert_allclose(std, 255 * np.asarray(description.std), rtol=1e-12)


def test_cifar_statistics_and_shared_constants():
    assert ckd.info("cifar100").normalization[0][0] == pytest.approx(129.3105)
    assert ckd.info("cifar100_corrupted").mean == ckd.info("cifar100").mean  # evaluated with CIFAR-100's models
    assert ckd.info("cinic10").class_names == ckd.info("cifar10").class_names  # the same label ids


def test_inconsistent_descriptions_and_duplicate_names_are_rejected():
    facts = dict(name="x", title="X", num_classes=2, image_shape=(8, 8, 3), splits={"train": 4}, mean=(0.5,),
                 std=(0.2,), stats_source="made up", crop_padding=1)
    with pytest.raises(ValueError, match="Inconsistent description of data set 'x': mean and std need one value"):
        ckd.Dataset(**facts)
    with pytest.raises(ValueError, match="class_names needs num_classes names"):
        ckd.Dataset(**{**facts, "mean": (0.5,) * 3, "std": (0.2,) * 3, "class_names": ("a",)})
    with pytest.raises(ValueError, match="data set 'cifar10': that name is already taken"):
        dataset.register(ckd.DATASETS.get("cifar10"))


# ---------------------------------------------------------------------------------------- errors raised early
def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(ValueError, match="Known names: cifar10, cifar100, cifar100_corrupted, cinic10"):
        ckd.load("cifar1000", "train", 8, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="tiny_imagenet"):
        ckd.info("imagenet")
    with pytest.raises(ValueError, match="fashion_mnist"):
        ckd.read("mnist", "train", data_dir=str(tmp_path))
    with pytest.raises(TypeError, match="must be a string"):
        ckd.info(10)


def test_unknown_split_lists_splits(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown split 'valid'.*Did you mean 'validation'.*train, validation, test"):
        ckd.load("cinic10", "valid", 8, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"Splits: train, test"):
        ckd.read("cifar10", "validation", data_dir=str(tmp_path))
    assert not os.listdir(tmp_path)  # raised before looking for files


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "64"])
def test_bad_batch_size_raises_early(tmp_path, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ckd.load("cifar10", "train", batch_size, data_dir=str(tmp_path))


def test_bad_arguments_raise_early(tmp_path):
    d = str(tmp_path)
    with pytest.raises(ValueError, match="shuffle_buffer must be a positive integer"):
        ckd.load("cifar10", "train", 8, data_dir=d, shuffle_buffer=0)
    with pytest.raises(ValueError, match="seed must be an integer or None"):
        ckd.load("cifar10", "train", 8, data_dir=d, seed="0")
    with pytest.raises(ValueError, match="cache must be True, False or a file path"):
        ckd.read("cifar10", "train", data_dir=d, cache=3)


def test_configs_are_selected_generically(tmp_path):
    d = str(tmp_path)
    with pytest.raises(ValueError, match=r"CIFAR-100-C has configs: choose one.*Configs: brightness_1, .*zoom_blur_5"):
        ckd.load("cifar100_corrupted", "test", 8, data_dir=d)
    with pytest.raises(ValueError, match=r"Unknown config 'frost_9' of 'cifar100_corrupted'.*Configs: brightness_1"):
        ckd.load("cifar100_corrupted/frost_9", "test", 8, data_dir=d)
    with pytest.raises(ValueError, match=r"Unknown config 'frosty_1'.*Did you mean 'frost_1'"):
        ckd.read("cifar100_corrupted", "test", data_dir=d, config="frosty_1")
    with pytest.raises(ValueError, match="select different configs"):
        ckd.load("cifar100_corrupted/frost_3", "test", 8, data_dir=d, config="frost_2")
    with pytest.raises(ValueError, match="'cifar10' has no configs"):
        ckd.load("cifar10", "test", 8, data_dir=d, config="frost_1")
    by_name, by_argument = ckd.info("cifar100_corrupted/snow_2", d), ckd.info("cifar100_corrupted", d, "snow_2")
    assert by_name == by_argument and by_name.config == "snow_2" and by_name.full_name == "cifar100_corrupted/snow_2"
    assert ckd.info("cifar100_corrupted").config is None and len(ckd.info("cifar100_corrupted").configs) == 95


def test_cifar100_c_corruptions_severities_and_config_names():
    assert len(cifar100_corrupted.CORRUPTIONS) == 19
    for extra in ("gaussian_blur", "saturate", "spatter", "speckle_noise"):
        assert extra in cifar100_corrupted.CORRUPTIONS
    assert cifar100_corrupted.SEVERITIES == (1, 2, 3, 4, 5)
    assert cifar100_corrupted.config_name("frost", 3) == "frost_3"
    assert ckd.info("cifar100_corrupted").configs == tuple(
        cifar100_corrupted.config_name(c, s) for c in cifar100_corrupted.CORRUPTIONS for s in (1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"Unknown corruption 'frosty'.*brightness.*zoom_blur"):
        cifar100_corrupted.config_name("frosty", 1)
    with pytest.raises(ValueError, match=r"severity must be one of \(1, 2, 3, 4, 5\), got 6"):
        cifar100_corrupted.config_name("frost", 6)


def test_info_static_facts_and_locations(tmp_path):
    d = str(tmp_path)
    i = ckd.info("cifar100", data_dir=d)
    assert (i.num_classes, i.image_shape, i.splits) == (100, (32, 32, 3), {"train": 50_000, "test": 10_000})
    assert i.locate(d) == ckd.Locations(d, None, os.path.join(d, "cifar100"), False)
    t = ckd.info("tiny_imagenet", data_dir=d)
    assert (t.num_classes, t.image_shape, t.crop_padding) == (200, (64, 64, 3), 8)
    assert t.locate(d).raw_dir == _manual(d, "tiny-imagenet-200")
    assert t.locate(d).prepared_dir == os.path.join(d, "tiny_imagenet", "2.0.0")
    assert ckd.info("cinic10", data_dir=d).splits == {"train": 90_000, "validation": 90_000, "test": 90_000}
    f = ckd.info("fashion_mnist", data_dir=d)
    assert (f.image_shape, f.mean, f.std) == ((28, 28, 1), (0.2860406,), (0.3530242,))
    c = ckd.info("cifar100_corrupted/snow_2", data_dir=d)
    assert c.splits == {"test": 10_000} and c.locate(d).raw_dir == _manual(d, "CIFAR-100-C")
    assert c.locate(d).prepared_dir == os.path.join(d, "cifar100_corrupted", "snow_2", "2.0.0")


def test_data_dir_comes_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env_dir"))
    assert ckd.info("cifar10").locate().data_dir == str(tmp_path / "env_dir")
    assert ckd.info("cifar10").locate(str(tmp_path / "arg")).data_dir == str(tmp_path / "arg")
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert ckd.resolve_data_dir() == os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def test_data_dir_that_cannot_be_a_folder_fails_early(tmp_path, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for bad in (a_file, a_file / "data"):
        with pytest.raises(NotADirectoryError, match=f"{a_file} is a file"):
            ckd.load("fashion_mnist", "train", 8, data_dir=str(bad))
        with pytest.raises(NotADirectoryError, match="cannot be a folder"):
            ckd.info("cinic10", data_dir=str(bad))
    monkeypatch.setenv("TFDS_DATA_DIR", str(a_file / "x"))
    with pytest.raises(NotADirectoryError, match=r"\$TFDS_DATA_DIR"):
        ckd.read("cifar10", "test")


@pytest.mark.parametrize(
    "name, folder, must_mention",
    [
        ("cinic10", "cinic10", ["datashare.ed.ac.uk/handle/10283/3192", "valid/<class>/*.png"]),
        ("tiny_imagenet", "tiny-imagenet-200", ["tiny-imagenet-200.zip", "val_annotations.txt", "wnids.txt"]),
        ("cifar100_corrupted/frost_2", "CIFAR-100-C", ["zenodo.org/record/3555552", "frost.npy", "labels.npy"]),
    ],
)
def test_missing_raw_files_fail_at_once_naming_the_files(tmp_path, name, folder, must_mention):
    start = time.monotonic()
    with pytest.raises(ckd.DatasetNotFoundError) as err:
        ckd.load(name, "test" if "cifar" in name or name == "cinic10" else "train", 8, data_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert _manual(tmp_path, folder) in message
    for text in must_mention:
        assert text in message
    assert isinstance(err.value, FileNotFoundError)


def test_missing_fashion_mnist_names_the_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ckd.DatasetNotFoundError) as err:
        ckd.load("fashion_mnist", "train", 8, data_dir=str(tmp_path), raw_dir=str(empty))
    message = str(err.value)
    assert str(empty / "train-images-idx3-ubyte.gz") in message
    assert "zalandoresearch/fashion-mnist" in message and "dataset-fashion-mnist" in message


def test_an_older_shuffled_preparation_is_not_reused(tmp_path, fashion_fake):
    _, raw, written = fashion_fake
    old = tmp_path / "fashion_mnist_idx" / "1.0.0"
    old.mkdir(parents=True)
    (old / "dataset_info.json").write_text("{}")
    assert not ckd.info("fashion_mnist").locate(str(tmp_path)).prepared
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ckd.DatasetNotFoundError, match=r"other versions \(1\.0\.0\).*reads 2\.0\.0.*can be deleted"):
        ckd.read("fashion_mnist", "test", data_dir=str(tmp_path), raw_dir=str(empty))
    images, _, _ = _examples(ckd.read("fashion_mnist", "test", data_dir=str(tmp_path), raw_dir=raw))
    np.testing.assert_array_equal(images[..., 0], written["test"][0])  # prepared anew, as 2.0.0
    assert ckd.info("fashion_mnist").locate(str(tmp_path)).prepared


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_catalog_data_set_missing_fails_without_download(tmp_path, name):
    start = time.monotonic()
    with pytest.raises(ckd.DatasetNotFoundError) as err:
        ckd.load(name, "train", 64, data_dir=str(tmp_path))
    assert time.monotonic() - start < 10  # no network attempt, no retries
    message = str(err.value)
    assert f"tfds build {name} --data_dir=" in message
    assert os.path.join(str(tmp_path), name) in message
    assert not os.path.exists(tmp_path / "downloads")  # nothing was downloaded


def test_empty_split_or_slice_is_an_error(fashion_fake):
    data_dir, raw, _ = fashion_fake
    for split in ("train[:0]", "test[10:]"):
        with pytest.raises(ValueError, match=re.escape(f"The split {split!r} of fashion_mnist holds no examples")):
            ckd.load("fashion_mnist", split, 4, data_dir=data_dir, raw_dir=raw)


def test_batch_larger_than_the_split_is_an_error_when_batches_are_dropped(fashion_fake):
    data_dir, raw, _ = fashion_fake
    with pytest.raises(ValueError, match=r"batch_size 31 is larger than fashion_mnist's split of 30 examples"):
        ckd.load("fashion_mnist", "train", 31, data_dir=data_dir, raw_dir=raw)
    with pytest.raises(ValueError, match=r"split of 10 examples"):
        ckd.load("fashion_mnist", "test", 11, data_dir=data_dir, raw_dir=raw, training=True)
    # Evaluation keeps the remainder: one smaller batch.
    _, labels, _ = _collect(ckd.load("fashion_mnist", "test", 11, data_dir=data_dir, raw_dir=raw))
    assert len(labels) == 10


# ---------------------------------------------------------------------------------------- damaged prepared data
def _tfrecord(prepared_dir, split):
    [path] = glob.glob(os.path.join(prepared_dir, f"*-{split}.tfrecord-*"))
    return path


def _flip_byte(path, offset_fraction=0.5):
    data = bytearray(open(path, "rb").read())
    data[int(len(data) * offset_fraction)] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))
    stat = os.stat(path)  # a later time, even on file systems with coarse timestamps
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing"])
def test_damaged_prepared_tfrecord_is_found_when_read(tmp_path, damage):
    raw = tmp_path / "raw"
    fakes.write_fashion_mnist(str(raw), n_train=30, n_test=10, random_images=True)
    prepared_dir = _prepare_fashion(raw, tmp_path / "data")
    path = _tfrecord(prepared_dir, "train")
    if damage == "flipped byte":
        _flip_byte(path)
    elif damage == "truncated":
        os.truncate(path, os.path.getsize(path) - 100)
    else:
        os.remove(path)
    with pytest.raises(ckd.CorruptPreparedDataError) as err:
        ckd.load("fashion_mnist", "train", 4, data_dir=str(tmp_path / "data"), raw_dir=str(raw))
    message = str(err.value)
    assert err.value.path == path and err.value.prepared_dir == prepared_dir
    assert f"Cannot read {path}" in message and f"delete {prepared_dir}" in message
    assert "prepares it again from the raw files" in message
    assert ("corrupted record" in message) if damage == "flipped byte" else True
    assert isinstance(err.value, ckd.CorruptFileError)  # what the command-line tools catch
    ckd.read("fashion_mnist", "test", data_dir=str(tmp_path / "data"))  # the other split is intact


def test_prepared_file_damaged_after_the_check_is_found_again_and_explained(tmp_path):
    raw = tmp_path / "raw"
    fakes.write_fashion_mnist(str(raw), n_train=30, n_test=10, random_images=True)
    split = ckd.read("fashion_mnist", "train", data_dir=str(tmp_path / "data"), raw_dir=str(raw), cache=False)
    _flip_byte(_tfrecord(split.prepared_dir, "train"))
    with pytest.raises(tf.errors.DataLossError) as err:  # the split read before the damage: TensorFlow's error ...
        _examples(split)
    explained = split.corruption_error(err.value)  # ... which Split turns into a clear one (e.g. mid-training)
    assert isinstance(explained, ckd.CorruptPreparedDataError)
    assert "corrupted record" in str(explained) and f"delete {split.prepared_dir}" in str(explained)
    with pytest.raises(ckd.CorruptPreparedDataError, match="corrupted record"):  # a new read checks the file again
        ckd.read("fashion_mnist", "train", data_dir=str(tmp_path / "data"))


def test_damaged_catalog_copy_says_to_copy_a_fresh_one(tmp_path):
    builder = fakes.write_catalog_copy("cifar10", str(tmp_path), {"train": 12, "test": 7})
    _flip_byte(_tfrecord(os.fspath(builder.data_dir), "test"))
    with pytest.raises(ckd.CorruptPreparedDataError, match=r"copy a fresh preparation there.*tfds build cifar10"):
        ckd.read("cifar10", "test", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------- read
def test_read_yields_uint8_images_labels_and_indices_in_stored_order(fashion_fake):
    data_dir, raw, written = fashion_fake
    split = ckd.read("fashion_mnist", "test", data_dir=data_dir, raw_dir=raw)
    assert isinstance(split, ckd.Split) and split.num_examples == 10
    assert split.dataset == ckd.info("fashion_mnist", data_dir) and split.dataset.config is None
    assert split.prepared_dir == os.path.join(data_dir, "fashion_mnist_idx", "2.0.0")
    image_spec, label_spec, index_spec = split.examples.element_spec
    assert (image_spec.dtype, tuple(image_spec.shape)) == (tf.uint8, (28, 28, 1))
    assert label_spec.dtype == index_spec.dtype == tf.int32 and label_spec.shape.rank == 0
    images, labels, indices = _examples(split)
    np.testing.assert_array_equal(indices, np.arange(10))
    np.testing.assert_array_equal(images[..., 0], written["test"][0])  # image k is row k of the IDX file
    np.testing.assert_array_equal(labels, written["test"][1])
    again, _, _ = _examples(split)  # from the cache
    np.testing.assert_array_equal(again, images)


def test_read_cache_options(fashion_fake, tmp_path):
    data_dir, raw, written = fashion_fake
    cache_file = str(tmp_path / "train.cache")
    for cache in (False, cache_file):
        images, _, _ = _examples(ckd.read("fashion_mnist", "train", data_dir=data_dir, raw_dir=raw, cache=cache))
        np.testing.assert_array_equal(images[..., 0], written["train"][0])
    assert glob.glob(cache_file + "*")  # the file cache was written


def test_fashion_mnist_stored_order_is_the_idx_row_order(fashion_fake):
    data_dir, raw, written = fashion_fake
    for split in ("train", "test"):
        images, labels, _ = _collect(ckd.load("fashion_mnist", split, 7, data_dir=data_dir, raw_dir=raw,
                                              training=False))
        np.testing.assert_array_equal(images[..., 0], written[split][0].astype(np.float32))
        np.testing.assert_array_equal(labels, written[split][1])


# ---------------------------------------------------------------------------------------- CINIC-10
def test_cinic10_shapes_labels_and_raw_pixels(cinic_dir):
    data_dir, counts = cinic_dir
    i = ckd.info("cinic10", data_dir=data_dir)
    assert i.locate(data_dir).prepared and i.splits == counts == {"train": 20, "validation": 10, "test": 11}
    assert i.class_names == fakes.CINIC_CLASSES
    for split, folder in fakes.CINIC_SPLIT_FOLDERS.items():
        ds = ckd.load("cinic10", split, 4, data_dir=data_dir, training=False)
        assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 3]
        assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int32
        images, labels, _ = _collect(ds)
        assert len(labels) == counts[split]
        for image, label in zip(images, labels):
            if image[..., 1].max() == image[..., 1].min() == fakes.CINIC_SPLIT_CODES[folder]:
                assert tuple(image[0, 0, :2]) == fakes.cinic_pixel(label, folder)[:2]  # class folder -> CIFAR-10 id
            else:  # the grayscale bird, decoded to RGB
                assert folder == "test" and label == 2 and (image == 40).all()


def test_cinic10_stored_order_is_the_sorted_file_paths(cinic_dir):
    data_dir, _ = cinic_dir
    raw = _manual(data_dir, "cinic10")
    for split, folder in fakes.CINIC_SPLIT_FOLDERS.items():
        expected = sorted(os.path.relpath(p, raw).replace(os.sep, "/")
                          for p in glob.glob(os.path.join(raw, folder, "*", "*.png")))
        ids = [e["id"].decode() for e in tfds.as_numpy(ckd.Cinic10(data_dir=data_dir).as_dataset(split))]
        assert ids == expected
        images, labels, _ = _examples(ckd.read("cinic10", split, data_dir=data_dir))
        for path, image, label in zip(expected, images, labels):
            _, class_name, file_name = path.split("/")
            assert fakes.CINIC_CLASSES[label] == class_name
            if file_name.startswith("cifar10-"):  # image k is the k-th sorted file
                number = int(file_name[:-4].rsplit("-", 1)[1][1:])
                assert tuple(image[0, 0]) == fakes.cinic_pixel(label, folder, number)


def test_cinic10_corrupt_image_names_the_file(tmp_path):
    raw = _manual(tmp_path, "cinic10")
    fakes.write_cinic10(raw, per_class={"train": 1, "valid": 1, "test": 1}, grayscale_file=False)
    bad = os.path.join(raw, "valid", "dog", "broken.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(ckd.CorruptFileError) as err:
        ckd.load("cinic10", "train", 4, data_dir=str(tmp_path))
    assert bad in str(err.value) and err.value.path == bad
    assert not ckd.info("cinic10").locate(str(tmp_path)).prepared  # nothing half-written is kept


def test_cinic10_wrong_size_image_names_the_file(tmp_path):
    raw = _manual(tmp_path, "cinic10")
    fakes.write_cinic10(raw, per_class={"train": 1, "valid": 1, "test": 1}, grayscale_file=False)
    bad = os.path.join(raw, "test", "cat", "big.png")
    fakes.Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(bad)
    with pytest.raises(ckd.CorruptFileError, match="expected a 32x32 image, found 40x32") as err:
        ckd.load("cinic10", "test", 4, data_dir=str(tmp_path))
    assert bad in str(err.value)


# ---------------------------------------------------------------------------------------- Tiny ImageNet
def test_tiny_imagenet_labels_follow_wnids_and_annotations(tiny_dir):
    data_dir, meta = tiny_dir
    i = ckd.info("tiny_imagenet", data_dir=data_dir)
    assert i.locate(data_dir).prepared and i.splits == {"train": meta["train"], "validation": meta["validation"]}
    assert i.class_names == tuple(meta["wnids"])  # wnids.txt order, not sorted
    assert list(i.class_names) != sorted(i.class_names)
    builder = ckd.TinyImagenet(data_dir=data_dir)
    seen = 0
    for example in tfds.as_numpy(builder.as_dataset("validation")):
        file_name = example["id"].decode().split("/")[-1]
        assert example["label"] == meta["val_labels"][file_name]
        assert example["image"].shape == (64, 64, 3)
        if file_name == "val_0.JPEG":  # the grayscale JPEG: decoded to three equal channels
            image = example["image"].astype(np.int64)
            assert (image[..., 0] == image[..., 2]).all()
            assert abs(image[..., 0].mean() - fakes.tiny_pixel(example["label"])[0]) < 2
        else:
            assert fakes.tiny_label_of(example["image"]) == example["label"]
        seen += 1
    assert seen == meta["validation"]
    for example in tfds.as_numpy(builder.as_dataset("train").take(40)):
        wnid = example["id"].decode().split("/")[1]
        assert meta["wnids"].index(wnid) == example["label"]
        assert fakes.tiny_label_of(example["image"]) == example["label"]


def test_tiny_imagenet_stored_order_follows_wnids_and_the_annotation_file(tiny_dir):
    data_dir, meta = tiny_dir
    _, train_labels, _ = _examples(ckd.read("tiny_imagenet", "train", data_dir=data_dir))
    np.testing.assert_array_equal(train_labels, np.arange(200))  # one image per class, in wnids.txt order
    with open(os.path.join(_manual(data_dir, "tiny-imagenet-200"), "val", "val_annotations.txt")) as f:
        files = [line.split("\t")[0] for line in f if line.strip()]
    _, val_labels, _ = _examples(ckd.read("tiny_imagenet", "validation", data_dir=data_dir))
    np.testing.assert_array_equal(val_labels, [meta["val_labels"][name] for name in files])


def test_tiny_imagenet_training_pipeline_shapes(tiny_dir):
    data_dir, meta = tiny_dir
    ds = ckd.load("tiny_imagenet", "train", 32, data_dir=data_dir, seed=0)
    assert ds.element_spec[0].shape.as_list() == [32, 64, 64, 3]
    assert int(ds.cardinality()) == meta["train"] // 32  # drop_remainder for training
    images, labels, _ = _collect(ds)
    assert images.shape == (meta["train"] // 32 * 32, 64, 64, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 200
    assert images.max() > 100 and images.min() >= 0  # raw pixels
    val_images, val_labels, _ = _collect(ckd.load("tiny_imagenet", "validation", 5, data_dir=data_dir))
    assert len(val_labels) == meta["validation"]  # evaluation keeps the last, smaller batch
    colour = [(p[..., 0] != p[..., 2]).any() for p in val_images]
    assert sum(colour) == meta["validation"] - 1  # all but the grayscale JPEG
    for image, label, is_colour in zip(val_images, val_labels, colour):
        if is_colour:
            assert fakes.tiny_label_of(image.astype(np.float64)) == label


# ---------------------------------------------------------------------------------------- CIFAR-100-C
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_cifar100_c_severity_selects_its_rows_in_order(c100c_dir, severity):
    data_dir, meta = c100c_dir
    n = meta["per_severity"]
    config = cifar100_corrupted.config_name("snow", severity)
    images, labels, _ = _collect(ckd.load("cifar100_corrupted", "test", 3, data_dir=data_dir, config=config))
    assert len(labels) == n
    rows = images[:, 0, 0, 1].astype(np.int64)
    np.testing.assert_array_equal(rows, np.arange((severity - 1) * n, severity * n))  # the .npy rows, in order
    assert (images[..., 0] == 40 * severity).all() and (images[..., 2] == 1).all()  # snow is corruption #1
    np.testing.assert_array_equal(labels, meta["labels"][rows])
    builder = ckd.Cifar100Corrupted(data_dir=data_dir, config=config)
    ids = [int(e["id"]) for e in tfds.as_numpy(builder.as_dataset("test"))]
    assert ids == list(range((severity - 1) * n, severity * n))


def test_cifar100_c_config_name_form_and_info(c100c_dir):
    data_dir, meta = c100c_dir
    by_name = _collect(ckd.load("cifar100_corrupted/frost_2", "test", 4, data_dir=data_dir))
    by_argument = _collect(ckd.load("cifar100_corrupted", "test", 4, data_dir=data_dir, config="frost_2"))
    np.testing.assert_array_equal(by_name[0], by_argument[0])
    assert (by_name[0][..., 2] == 0).all()  # frost is corruption #0
    i = ckd.info("cifar100_corrupted/frost_2", data_dir=data_dir)
    assert i.locate(data_dir).prepared and i.splits == {"test": meta["per_severity"]}
    assert not ckd.info("cifar100_corrupted/frost_4", data_dir=data_dir).locate(data_dir).prepared


def test_cifar100_c_bad_npy_names_the_file(tmp_path):
    raw = _manual(tmp_path, "CIFAR-100-C")
    fakes.write_cifar100_c(raw, corruptions=("fog",), per_severity=2)
    bad = os.path.join(raw, "fog.npy")
    np.save(bad, np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(ckd.CorruptFileError) as err:
        ckd.load("cifar100_corrupted/fog_1", "test", 4, data_dir=str(tmp_path))
    assert bad in str(err.value)


def test_evaluation_yields_the_raw_pixels_unnormalised(tmp_path):
    fakes.write_cifar100_c(_manual(tmp_path, "CIFAR-100-C"), corruptions=("fog",), per_severity=6,
                           base_value=(130, 124, 112))
    images, _, _ = _collect(ckd.load("cifar100_corrupted/fog_1", "test", 4, data_dir=str(tmp_path)))
    assert images.dtype == np.float32 and images.shape == (6, 32, 32, 3)
    raw = np.load(os.path.join(_manual(tmp_path, "CIFAR-100-C"), "fog.npy"))[:6]
    np.testing.assert_array_equal(images, raw.astype(np.float32))  # same values, same order
    # Normalising with the description's constants, as the models do, centres each channel.
    mean, std = ckd.info("cifar100_corrupted").normalization
    np.testing.assert_allclose(((images - mean) / std).mean(axis=(0, 1, 2)), 0.0, atol=0.02)


# ---------------------------------------------------------------------------------------- Fashion-MNIST
def test_fashion_mnist_from_debian_files(fashion_dir):
    i = ckd.info("fashion_mnist", data_dir=fashion_dir)
    assert i.locate(fashion_dir).prepared and i.splits == {"train": 60_000, "test": 10_000}
    ds = ckd.load("fashion_mnist", "test", 1000, data_dir=fashion_dir)
    assert ds.element_spec[0].shape.as_list() == [None, 28, 28, 1]
    images, labels, _ = _collect(ds)
    assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 1000))
    # Stored order: image k of the test split is row k of the IDX file.
    np.testing.assert_array_equal(images[..., 0], read_idx(os.path.join(DEBIAN_FASHION, "t10k-images-idx3-ubyte.gz")))
    np.testing.assert_array_equal(labels, read_idx(os.path.join(DEBIAN_FASHION, "t10k-labels-idx1-ubyte.gz")))
    # The hard-coded constants match the data: normalised test images have mean ~0 and std ~1.
    mean, std = i.normalization
    normalised = (images - mean[0]) / std[0]
    assert abs(normalised.mean()) < 0.05 and abs(normalised.std() - 1.0) < 0.05
    train = ckd.load("fashion_mnist", "train", 128, data_dir=fashion_dir, seed=0)
    assert int(train.cardinality()) == 60_000 // 128
    assert train.element_spec[0].shape.as_list() == [128, 28, 28, 1]


def test_fashion_mnist_from_a_user_folder_and_bad_idx(tmp_path):
    raw = tmp_path / "fm_raw"
    fakes.write_fashion_mnist(str(raw), n_train=30, n_test=10)
    data_dir = str(tmp_path / "data")
    images, labels, _ = _collect(ckd.load("fashion_mnist", "test", 4, data_dir=data_dir, raw_dir=str(raw)))
    assert len(labels) == 10 and all((p == 10 * label).all() for p, label in zip(images, labels))
    bad = tmp_path / "bad"
    fakes.write_fashion_mnist(str(bad))
    with open(bad / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"not gzip at all")
    with pytest.raises(ckd.CorruptFileError) as err:
        ckd.load("fashion_mnist", "test", 4, data_dir=str(tmp_path / "data2"), raw_dir=str(bad))
    assert str(bad / "train-labels-idx1-ubyte.gz") in str(err.value)


# ---------------------------------------------------------------------------------------- CIFAR-10/100 (catalog)
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_catalog_data_set_loads_from_a_prepared_copy(tmp_path, name):
    per_split = {"train": 12, "test": 7}
    builder = fakes.write_catalog_copy(name, str(tmp_path), per_split)
    assert str(builder.data_dir) == os.path.join(str(tmp_path), name, str(tfds.builder_cls(name).VERSION))
    i = ckd.info(name, data_dir=str(tmp_path))
    assert i.locate(str(tmp_path)) == ckd.Locations(str(tmp_path), None, str(builder.data_dir), True)
    assert i.splits == per_split
    images, labels, indices = _collect(ckd.load(name, "test", 3, data_dir=str(tmp_path), with_index=True))
    assert images.shape == (7, 32, 32, 3) and list(indices) == list(range(7))
    assert all((p == 2 * label).all() for p, label in zip(images, labels))
    train = ckd.load(name, "train", 4, data_dir=str(tmp_path), seed=0)
    assert int(train.cardinality()) == 3
    assert _collect(train)[0].shape == (12, 32, 32, 3)


def test_catalog_stored_order_is_the_prepared_files_order(tmp_path):
    builder = fakes.write_catalog_copy("cifar10", str(tmp_path), {"train": 4, "test": 70}, num_shards=2)
    files = sorted(glob.glob(os.path.join(os.fspath(builder.data_dir), "cifar10-test.tfrecord-*")))
    assert len(files) == 2
    records = tf.data.TFRecordDataset(files)  # one file after the other
    in_files = [builder.info.features.deserialize_example(r)["id"].numpy().decode() for r in records]
    assert in_files != sorted(in_files)  # TFDS wrote them in its own hash order
    _, labels, _ = _examples(ckd.read("cifar10", "test", data_dir=str(tmp_path)))
    np.testing.assert_array_equal(labels, [int(i.split("_")[1]) % 10 for i in in_files])  # file after file
    interleaved = builder.as_dataset("test", shuffle_files=False)  # TFDS's default reading interleaves the files
    assert [e["id"].decode() for e in tfds.as_numpy(interleaved)] != in_files


# ---------------------------------------------------------------------------------------- pipeline behaviour
def _epochs(ds, count=2):
    return [_collect(ds) for _ in range(count)]


def test_seed_makes_batches_deterministic(cinic_dir):
    data_dir, _ = cinic_dir

    def make(seed):
        return ckd.load("cinic10", "train", 4, data_dir=data_dir, seed=seed, with_index=True)

    a, b, c = _epochs(make(3)), _epochs(make(3)), _epochs(make(4))
    for epoch_a, epoch_b in zip(a, b):
        for part_a, part_b in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(part_a, part_b)
    assert not np.array_equal(a[0][2], a[1][2])  # reshuffled each epoch
    assert not np.array_equal(a[0][0], a[1][0])
    assert not (np.array_equal(a[0][2], c[0][2]) and np.array_equal(a[0][0], c[0][0]))  # another seed differs


def test_augmentation_is_deterministic_under_seed_and_pads_with_black(tmp_path):
    raw = _manual(tmp_path, "CIFAR-100-C")
    fakes.write_cifar100_c(raw, corruptions=("fog",), per_severity=8, base_value=(200, 150, 100))

    def make(seed):  # a training pipeline over a non-train split: shuffling off (buffer 1), augmentation on
        return ckd.load("cifar100_corrupted/fog_1", "test", 8, data_dir=str(tmp_path), training=True, seed=seed,
                        shuffle_buffer=1)

    (e1, _, _), (e2, _, _) = _epochs(make(7))
    (f1, _, _), (f2, _, _) = _epochs(make(7))
    np.testing.assert_array_equal(e1, f1)
    np.testing.assert_array_equal(e2, f2)
    assert not np.array_equal(e1, e2)
    plain, _, _ = _collect(ckd.load("cifar100_corrupted/fog_1", "test", 8, data_dir=str(tmp_path)))
    assert not np.array_equal(e1, plain)
    assert (e1 == 0).all(axis=-1).any() and plain.min() >= 98  # the zero padding: black pixels, 0 in raw values


@pytest.mark.parametrize("training", [False, True])
def test_with_index_is_a_permutation_of_the_split(cinic_dir, training):
    data_dir, counts = cinic_dir
    ds = ckd.load("cinic10", "train", 5, data_dir=data_dir, with_index=True, training=training, seed=1)
    assert set(ds.element_spec[0]) == {"image", "index"}
    assert ds.element_spec[0]["index"].dtype == tf.int32
    first = _collect(ds)
    second = _collect(ds)
    assert sorted(first[2]) == list(range(counts["train"]))
    if not training:
        np.testing.assert_array_equal(first[2], np.arange(counts["train"]))
    lookup = dict(zip(first[2], first[1]))  # the index names the same example every epoch
    assert all(lookup[i] == label for i, label in zip(second[2], second[1]))


def test_random_crop_flip_batch_is_a_padded_crop_or_its_mirror():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 255, size=(16, 6, 7, 2)).astype(np.uint8)
    out = ckd.random_crop_flip_batch(tf.constant(images), tf.constant(5, tf.int64), padding=2).numpy()
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)])
    flipped_any = moved_any = False
    for img, res in zip(padded, out):
        matches = [
            (dy, dx, flip)
            for dy in range(5) for dx in range(5) for flip in (False, True)
            if np.array_equal((img[:, ::-1] if flip else img)[dy:dy + 6, dx:dx + 7], res)
        ]
        assert matches, "every output must be a crop of the zero-padded image or of its mirror"
        flipped_any |= any(m[2] for m in matches)
        moved_any |= any((m[0], m[1]) != (2, 2) for m in matches)
    assert flipped_any and moved_any
    again = ckd.random_crop_flip_batch(tf.constant(images), tf.constant(5, tf.int64), padding=2).numpy()
    other = ckd.random_crop_flip_batch(tf.constant(images), tf.constant(6, tf.int64), padding=2).numpy()
    np.testing.assert_array_equal(out, again)
    assert not np.array_equal(out, other)


def test_fit_consumes_the_pipeline(cinic_dir):
    data_dir, _ = cinic_dir
    ds = ckd.load("cinic10", "train", 4, data_dir=data_dir, seed=0)
    mean, std = ckd.info("cinic10").normalization
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Normalization(mean=mean, variance=np.square(std)),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_split_slices_are_accepted(cinic_dir):
    data_dir, _ = cinic_dir
    ds = ckd.load("cinic10", "train[:6]", 4, data_dir=data_dir, with_index=True, training=False)
    _, labels, indices = _collect(ds)
    assert len(labels) == 6 and list(indices) == list(range(6))
    _, all_labels, _ = _examples(ckd.read("cinic10", "train", data_dir=data_dir))
    np.testing.assert_array_equal(labels, all_labels[:6])  # the first six in stored order
    # a slice of "train" is a training split by default: fixed-size batches
    assert int(ckd.load("cinic10", "train[:6]", 4, data_dir=data_dir).cardinality()) == 1


# ---------------------------------------------------------------------------------------- benchmark tool
def test_benchmark_data_tool_measures_every_pipeline(tmp_path):
    from keras_calikd.cli import benchmark_data

    raw = tmp_path / "raw"
    fakes.write_fashion_mnist(str(raw), n_train=24, n_test=8, random_images=True)
    output = tmp_path / "result.json"
    assert benchmark_data.main(["--sources", "fashion_mnist", "--raw_dir", str(raw), "--work_dir",
                                str(tmp_path / "work"), "--batch_sizes", "8", "--epochs", "1",
                                "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    [source] = result["sources"]
    assert result["machine"]["cpu_count"] >= 1 and source["read_first_s"] > 0
    runs = {run["pipeline"]: run for run in source["runs"]}
    assert set(runs) == {"train", "train_epoch_keyed", "eval"}
    assert (runs["train"]["images"], runs["train_epoch_keyed"]["images"], runs["eval"]["images"]) == (24, 24, 8)
    assert source["first_pass"]["images"] == 24


def test_benchmark_data_shim_runs_the_cli_from_a_checkout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["benchmark_data.py", "--help"])
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or ".") != ROOT])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(os.path.join(ROOT, "tools", "benchmark_data.py"), run_name="__main__")
    assert exit_.value.code == 0 and sys.path[0] == ROOT  # it put the checkout first on the path
    out = capsys.readouterr().out
    assert "--batch_sizes" in out and "throughput" in out
