"""Tests of keras_calikd.data: builders from fake raw files in the real layouts, pipelines, errors.

Every custom builder is prepared from small fake files written into a
temporary folder in its authors' layout; Fashion-MNIST is also loaded from the
real IDX files of Debian's dataset-fashion-mnist package. CIFAR-10/100 are
tested with a tiny prepared TFDS copy written by a subclass of TFDS's own
builder (same name, version and features; fake examples).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

import keras  # noqa: E402

import keras_calikd.data as ckd  # noqa: E402
from keras_calikd.data import catalog  # noqa: E402

try:
    import data_fakes as fakes
except ImportError:  # tests/ imported as a package
    from tests import data_fakes as fakes

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def _manual(data_dir, folder):
    return os.path.join(str(data_dir), "downloads", "manual", folder)


def _collect(ds):
    """All batches of one iteration, as numpy: (images, labels, indices or None)."""
    images, labels, indices = [], [], []
    for x, y in ds:
        if isinstance(x, dict):
            indices.append(x["index"].numpy())
            x = x["image"]
        images.append(x.numpy())
        labels.append(y.numpy())
    return (
        np.concatenate(images),
        np.concatenate(labels),
        np.concatenate(indices) if indices else None,
    )


def _raw_pixels(name, normalized):
    """Undoes `load`'s normalisation: back to uint8 pixel values."""
    spec = ckd.DATASETS.get(name)
    raw = (normalized * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)) * 255.0
    return np.rint(raw).astype(np.int64)


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cinic_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cinic")
    counts = fakes.write_cinic10(_manual(data_dir, "cinic10"))
    ckd.load("cinic10", "test", 8, data_dir=str(data_dir))  # prepares all three splits once
    return str(data_dir), counts


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tiny")
    meta = fakes.write_tiny_imagenet(_manual(data_dir, "tiny-imagenet-200"))
    ckd.load("tiny_imagenet", "validation", 4, data_dir=str(data_dir))
    return str(data_dir), meta


@pytest.fixture(scope="module")
def c100c_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("c100c")
    meta = fakes.write_cifar100_c(_manual(data_dir, "CIFAR-100-C"), corruptions=("frost", "snow"), per_severity=4)
    return str(data_dir), meta


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    if not os.path.isfile(os.path.join(DEBIAN_FASHION, "train-images-idx3-ubyte.gz")):
        pytest.skip("Debian's dataset-fashion-mnist package is not installed")
    data_dir = tmp_path_factory.mktemp("fashion")
    ckd.load("fashion_mnist", "test", 1000, data_dir=str(data_dir))  # prepares from Debian's files
    return str(data_dir)


# ---------------------------------------------------------------------------------------- catalog / errors
def test_names_and_registry():
    assert ckd.names() == ["cifar10", "cifar100", "cifar100_corrupted", "cinic10", "fashion_mnist", "tiny_imagenet"]
    assert ckd.DATASETS.get("cinic10").builder_cls is ckd.Cinic10


def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(ValueError, match="Known names: cifar10, cifar100, cifar100_corrupted, cinic10"):
        ckd.load("cifar1000", "train", 8, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="tiny_imagenet"):
        ckd.info("imagenet")


def test_unknown_split_lists_splits(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown split 'valid'.*train, validation, test"):
        ckd.load("cinic10", "valid", 8, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"Splits: train, test"):
        ckd.load("cifar10", "validation", 8, data_dir=str(tmp_path))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "64"])
def test_bad_batch_size_raises_early(tmp_path, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ckd.load("cifar10", "train", batch_size, data_dir=str(tmp_path))


def test_cifar100_c_arguments_are_validated(tmp_path):
    d = str(tmp_path)
    with pytest.raises(ValueError, match="severity must be an integer in 1..5"):
        ckd.load("cifar100_corrupted", "test", 8, data_dir=d, corruption="frost", severity=6)
    with pytest.raises(ValueError, match="severity must be an integer in 1..5"):
        ckd.load("cifar100_corrupted", "test", 8, data_dir=d, corruption="frost", severity=0)
    with pytest.raises(ValueError, match=r"Unknown corruption 'frosty'.*brightness.*zoom_blur"):
        ckd.load("cifar100_corrupted", "test", 8, data_dir=d, corruption="frosty", severity=1)
    with pytest.raises(ValueError, match="needs a corruption and a severity"):
        ckd.load("cifar100_corrupted", "test", 8, data_dir=d)
    with pytest.raises(ValueError, match="Unknown CIFAR-100-C config 'frost_9'"):
        ckd.load("cifar100_corrupted/frost_9", "test", 8, data_dir=d)
    with pytest.raises(ValueError, match="conflicts"):
        ckd.load("cifar100_corrupted/frost_3", "test", 8, data_dir=d, severity=2)
    with pytest.raises(ValueError, match="apply to cifar100_corrupted only"):
        ckd.load("cifar10", "test", 8, data_dir=d, corruption="frost", severity=1)


def test_corruption_list_is_the_full_release():
    assert len(ckd.CORRUPTIONS) == 19
    for extra in ("gaussian_blur", "saturate", "spatter", "speckle_noise"):
        assert extra in ckd.CORRUPTIONS
    assert len(ckd.Cifar100Corrupted.BUILDER_CONFIGS) == 19 * 5
    assert ckd.SEVERITIES == (1, 2, 3, 4, 5)


def test_info_static_facts(tmp_path):
    d = str(tmp_path)
    i = ckd.info("cifar100", data_dir=d)
    assert (i.num_classes, i.image_shape, i.splits) == (100, (32, 32, 3), {"train": 50_000, "test": 10_000})
    assert len(i.mean) == len(i.std) == 3 and not i.prepared
    t = ckd.info("tiny_imagenet", data_dir=d)
    assert (t.num_classes, t.image_shape, t.crop_padding) == (200, (64, 64, 3), 8)
    assert t.raw_dir == _manual(d, "tiny-imagenet-200")
    assert ckd.info("cinic10", data_dir=d).splits == {"train": 90_000, "validation": 90_000, "test": 90_000}
    f = ckd.info("fashion_mnist", data_dir=d)
    assert (f.image_shape, f.mean, f.std) == ((28, 28, 1), (0.2860406,), (0.3530242,))
    c = ckd.info("cifar100_corrupted", data_dir=d, corruption="snow", severity=2)
    assert c.name == "cifar100_corrupted/snow_2" and c.splits == {"test": 10_000}
    assert c.raw_dir == _manual(d, "CIFAR-100-C")


def test_data_dir_comes_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env_dir"))
    assert ckd.info("cifar10").data_dir == str(tmp_path / "env_dir")
    assert ckd.info("cifar10", data_dir=str(tmp_path / "arg")).data_dir == str(tmp_path / "arg")
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert catalog.resolve_data_dir() == os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


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


# ---------------------------------------------------------------------------------------- CINIC-10
def test_cinic10_shapes_labels_and_splits(cinic_dir):
    data_dir, counts = cinic_dir
    i = ckd.info("cinic10", data_dir=data_dir)
    assert i.prepared and i.splits == counts == {"train": 20, "validation": 10, "test": 11}
    assert i.class_names == fakes.CINIC_CLASSES
    for split, folder in fakes.CINIC_SPLIT_FOLDERS.items():
        ds = ckd.load("cinic10", split, 4, data_dir=data_dir, training=False)
        assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 3]
        assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int32
        images, labels, _ = _collect(ds)
        assert len(labels) == counts[split]
        pixels = _raw_pixels("cinic10", images)
        for image, label in zip(pixels, labels):
            if image[..., 1].max() == image[..., 1].min() == fakes.CINIC_SPLIT_CODES[folder]:
                assert tuple(image[0, 0]) == fakes.cinic_pixel(label, folder)  # class folder -> CIFAR-10 id
            else:  # the grayscale bird, decoded to RGB
                assert folder == "test" and label == 2 and (image == 40).all()


def test_cinic10_builder_ids_follow_class_folders(cinic_dir):
    data_dir, _ = cinic_dir
    builder = ckd.Cinic10(data_dir=data_dir)
    for example in tfds.as_numpy(builder.as_dataset("validation")):
        folder, class_name, _ = example["id"].decode().split("/")
        assert folder == "valid" and fakes.CINIC_CLASSES.index(class_name) == example["label"]


def test_cinic10_corrupt_image_names_the_file(tmp_path):
    raw = _manual(tmp_path, "cinic10")
    fakes.write_cinic10(raw, per_class={"train": 1, "valid": 1, "test": 1}, grayscale_file=False)
    bad = os.path.join(raw, "valid", "dog", "broken.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(ckd.CorruptFileError) as err:
        ckd.load("cinic10", "train", 4, data_dir=str(tmp_path))
    assert bad in str(err.value) and err.value.path == bad
    assert not ckd.info("cinic10", data_dir=str(tmp_path)).prepared  # nothing half-written is kept


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
    assert i.prepared and i.splits == {"train": meta["train"], "validation": meta["validation"]}
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


def test_tiny_imagenet_training_pipeline_shapes(tiny_dir):
    data_dir, meta = tiny_dir
    ds = ckd.load("tiny_imagenet", "train", 32, data_dir=data_dir, seed=0)
    assert ds.element_spec[0].shape.as_list() == [32, 64, 64, 3]
    assert int(ds.cardinality()) == meta["train"] // 32  # drop_remainder for training
    images, labels, _ = _collect(ds)
    assert images.shape == (meta["train"] // 32 * 32, 64, 64, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 200
    val_images, val_labels, _ = _collect(ckd.load("tiny_imagenet", "validation", 5, data_dir=data_dir))
    assert len(val_labels) == meta["validation"]  # evaluation keeps the last, smaller batch
    val_pixels = _raw_pixels("tiny_imagenet", val_images)
    colour = [(p[..., 0] != p[..., 2]).any() for p in val_pixels]
    assert sum(colour) == meta["validation"] - 1  # all but the grayscale JPEG
    for image, label, is_colour in zip(val_pixels, val_labels, colour):
        if is_colour:
            assert fakes.tiny_label_of(image.astype(np.float64)) == label


# ---------------------------------------------------------------------------------------- CIFAR-100-C
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_cifar100_c_severity_selects_its_rows(c100c_dir, severity):
    data_dir, meta = c100c_dir
    n = meta["per_severity"]
    ds = ckd.load("cifar100_corrupted", "test", 3, data_dir=data_dir, corruption="snow", severity=severity)
    images, labels, _ = _collect(ds)
    pixels = _raw_pixels("cifar100_corrupted", images)
    assert len(labels) == n
    rows = pixels[:, 0, 0, 1]
    assert sorted(rows) == list(range((severity - 1) * n, severity * n))
    assert (pixels[..., 0] == 40 * severity).all() and (pixels[..., 2] == 1).all()  # snow is corruption #1
    np.testing.assert_array_equal(labels, meta["labels"][rows])
    builder = ckd.Cifar100Corrupted(data_dir=data_dir, config=f"snow_{severity}")
    ids = sorted(int(e["id"]) for e in tfds.as_numpy(builder.as_dataset("test")))
    assert ids == list(range((severity - 1) * n, severity * n))


def test_cifar100_c_config_name_form_and_info(c100c_dir):
    data_dir, meta = c100c_dir
    by_name = _collect(ckd.load("cifar100_corrupted/frost_2", "test", 4, data_dir=data_dir))
    by_args = _collect(ckd.load("cifar100_corrupted", "test", 4, data_dir=data_dir, corruption="frost", severity=2))
    np.testing.assert_array_equal(by_name[0], by_args[0])
    assert (_raw_pixels("cifar100_corrupted", by_name[0])[..., 2] == 0).all()  # frost is corruption #0
    i = ckd.info("cifar100_corrupted/frost_2", data_dir=data_dir)
    assert i.prepared and i.splits == {"test": meta["per_severity"]}
    assert not ckd.info("cifar100_corrupted/frost_4", data_dir=data_dir).prepared


def test_cifar100_c_bad_npy_names_the_file(tmp_path):
    raw = _manual(tmp_path, "CIFAR-100-C")
    fakes.write_cifar100_c(raw, corruptions=("fog",), per_severity=2)
    bad = os.path.join(raw, "fog.npy")
    np.save(bad, np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(ckd.CorruptFileError) as err:
        ckd.load("cifar100_corrupted/fog_1", "test", 4, data_dir=str(tmp_path))
    assert bad in str(err.value)


def test_eval_normalisation_centres_each_channel(tmp_path):
    spec = ckd.DATASETS.get("cifar100_corrupted")
    base = np.rint(np.asarray(spec.mean) * 255).astype(np.uint8)
    fakes.write_cifar100_c(_manual(tmp_path, "CIFAR-100-C"), corruptions=("fog",), per_severity=6, base_value=base)
    images, _, _ = _collect(ckd.load("cifar100_corrupted/fog_1", "test", 4, data_dir=str(tmp_path)))
    assert images.dtype == np.float32 and images.shape == (6, 32, 32, 3)
    np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), 0.0, atol=0.02)
    # exactly (x / 255 - mean) / std per channel
    raw = np.load(os.path.join(_manual(tmp_path, "CIFAR-100-C"), "fog.npy"))[:6].astype(np.float32)
    expected = (raw / 255.0 - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    np.testing.assert_allclose(np.sort(images.ravel()), np.sort(expected.ravel()), atol=1e-5)


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


def test_augmentation_is_deterministic_under_seed_and_differs_between_epochs(tmp_path):
    raw = _manual(tmp_path, "CIFAR-100-C")
    fakes.write_cifar100_c(raw, corruptions=("fog",), per_severity=8)
    # A training pipeline over a non-train split: shuffling off (buffer 1), augmentation on.
    def make(seed):
        return ckd.load("cifar100_corrupted/fog_1", "test", 8, data_dir=str(tmp_path), training=True, seed=seed,
                        shuffle_buffer=1)
    (e1, _, _), (e2, _, _) = _epochs(make(7))
    (f1, _, _), (f2, _, _) = _epochs(make(7))
    np.testing.assert_array_equal(e1, f1)
    np.testing.assert_array_equal(e2, f2)
    assert not np.array_equal(e1, e2)
    plain, _, _ = _collect(ckd.load("cifar100_corrupted/fog_1", "test", 8, data_dir=str(tmp_path)))
    assert not np.array_equal(e1, plain)
    # Zero padding shows as pixels at the normalised value of 0 somewhere in an augmented batch.
    zero = (-np.asarray(ckd.DATASETS.get("cifar100_corrupted").mean) / ckd.DATASETS.get("cifar100_corrupted").std)
    assert np.isclose(e1, zero.astype(np.float32), atol=1e-5).all(axis=-1).any()


@pytest.mark.parametrize("training", [False, True])
def test_with_index_is_a_permutation_of_the_split(cinic_dir, training):
    data_dir, counts = cinic_dir
    ds = ckd.load("cinic10", "train", 5, data_dir=data_dir, with_index=True, training=training, seed=1)
    assert set(ds.element_spec[0]) == {"image", "index"}
    assert ds.element_spec[0]["index"].dtype == tf.int32
    first = _collect(ds)
    second = _collect(ds)
    assert sorted(first[2]) == list(range(counts["train"]))
    # the index names the same example every epoch: same label and same un-augmented image
    if not training:
        np.testing.assert_array_equal(first[2], np.arange(counts["train"]))
    lookup = dict(zip(first[2], first[1]))
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
    single = ckd.random_crop_flip_image(tf.constant(images[0]), tf.constant(5, tf.int64), padding=0).numpy()
    assert np.array_equal(single, images[0]) or np.array_equal(single, images[0][:, ::-1])


def test_per_element_augmentation_variant_matches_shapes(cinic_dir):
    data_dir, counts = cinic_dir
    ds = ckd.load("cinic10", "train", 4, data_dir=data_dir, seed=0, augment_per_batch=False)
    images, labels, _ = _collect(ds)
    assert images.shape == (counts["train"] // 4 * 4, 32, 32, 3)
    images2, _, _ = _collect(ckd.load("cinic10", "train", 4, data_dir=data_dir, seed=0, augment_per_batch=False))
    np.testing.assert_array_equal(images, images2)


def test_fit_consumes_the_pipeline(cinic_dir):
    data_dir, _ = cinic_dir
    ds = ckd.load("cinic10", "train", 4, data_dir=data_dir, seed=0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_split_slices_are_accepted(cinic_dir):
    data_dir, _ = cinic_dir
    ds = ckd.load("cinic10", "train[:6]", 4, data_dir=data_dir, with_index=True, training=False)
    _, labels, indices = _collect(ds)
    assert len(labels) == 6 and sorted(indices) == list(range(6))
    # a slice of "train" is a training split by default: fixed-size batches
    assert int(ckd.load("cinic10", "train[:6]", 4, data_dir=data_dir).cardinality()) == 1


# ---------------------------------------------------------------------------------------- Fashion-MNIST
def test_fashion_mnist_from_debian_files(fashion_dir):
    i = ckd.info("fashion_mnist", data_dir=fashion_dir)
    assert i.prepared and i.splits == {"train": 60_000, "test": 10_000}
    ds = ckd.load("fashion_mnist", "test", 1000, data_dir=fashion_dir)
    assert ds.element_spec[0].shape.as_list() == [None, 28, 28, 1]
    images, labels, _ = _collect(ds)
    assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.float32
    assert labels.min() == 0 and labels.max() == 9
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 1000))
    # the hard-coded constants match the data: test-set mean and std are close to the training set's
    assert abs(images.mean()) < 0.05 and abs(images.std() - 1.0) < 0.05
    train = ckd.load("fashion_mnist", "train", 128, data_dir=fashion_dir, seed=0)
    assert int(train.cardinality()) == 60_000 // 128
    assert train.element_spec[0].shape.as_list() == [128, 28, 28, 1]


def test_fashion_mnist_from_a_user_folder_and_bad_idx(tmp_path):
    raw = tmp_path / "fm_raw"
    fakes.write_fashion_mnist(str(raw), n_train=30, n_test=10)
    data_dir = str(tmp_path / "data")
    images, labels, _ = _collect(ckd.load("fashion_mnist", "test", 4, data_dir=data_dir, raw_dir=str(raw)))
    assert len(labels) == 10
    pixels = _raw_pixels("fashion_mnist", images)
    assert all((p == 10 * label).all() for p, label in zip(pixels, labels))
    bad = tmp_path / "bad"
    fakes.write_fashion_mnist(str(bad))
    with open(bad / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"not gzip at all")
    with pytest.raises(ckd.CorruptFileError) as err:
        ckd.load("fashion_mnist", "test", 4, data_dir=str(tmp_path / "data2"), raw_dir=str(bad))
    assert str(bad / "train-labels-idx1-ubyte.gz") in str(err.value)


# ---------------------------------------------------------------------------------------- CIFAR-10/100 (catalog)
def _write_fake_prepared_catalog_copy(name, data_dir, per_split):
    """Prepares a tiny copy of TFDS's `name` (same builder name, version and features; fake examples)."""
    base = tfds.builder_cls(name)

    class FakeCopy(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in ("train", "test")}

        def _generate_examples(self, split):
            for i in range(per_split[split]):
                label = i % (10 if name == "cifar10" else 100)
                image = np.full((32, 32, 3), 2 * label, np.uint8)
                example = {"id": f"{split}_{i:05d}", "image": image, "label": label}
                if name == "cifar100":
                    example["coarse_label"] = label % 20
                yield example["id"], example

    FakeCopy.name = name
    builder = FakeCopy(data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_catalog_data_set_loads_from_a_prepared_copy(tmp_path, name):
    per_split = {"train": 12, "test": 7}
    builder = _write_fake_prepared_catalog_copy(name, str(tmp_path), per_split)
    assert str(builder.data_dir) == os.path.join(str(tmp_path), name, str(tfds.builder_cls(name).VERSION))
    i = ckd.info(name, data_dir=str(tmp_path))
    assert i.prepared and i.splits == per_split
    images, labels, indices = _collect(ckd.load(name, "test", 3, data_dir=str(tmp_path), with_index=True))
    assert images.shape == (7, 32, 32, 3) and sorted(indices) == list(range(7))
    assert all((p == 2 * label).all() for p, label in zip(_raw_pixels(name, images), labels))
    train = ckd.load(name, "train", 4, data_dir=str(tmp_path), seed=0)
    assert int(train.cardinality()) == 3
    assert _collect(train)[0].shape == (12, 32, 32, 3)


# ---------------------------------------------------------------------------------------- epoch-keyed training order
def test_epoch_keyed_pipeline_resumes_with_the_same_batches(tmp_path):
    raw = tmp_path / "raw"
    fakes.write_fashion_mnist(str(raw), n_train=30, n_test=10)
    common = dict(data_dir=str(tmp_path / "data"), raw_dir=str(raw), with_index=True, seed=7)
    whole = list(ckd.load("fashion_mnist", "train", 8, first_epoch=0, num_epochs=3, **common).as_numpy_iterator())
    resumed = list(ckd.load("fashion_mnist", "train", 8, first_epoch=2, num_epochs=1, **common).as_numpy_iterator())
    assert len(whole) == 9 and len(resumed) == 3  # 3 full batches of 8 per epoch of 30 examples
    for (x_whole, y_whole), (x_resumed, y_resumed) in zip(whole[6:], resumed):
        np.testing.assert_array_equal(x_whole["index"], x_resumed["index"])
        np.testing.assert_array_equal(x_whole["image"], x_resumed["image"])
        np.testing.assert_array_equal(y_whole, y_resumed)
    orders = [np.concatenate([x["index"] for x, _ in whole[3 * e:3 * e + 3]]) for e in range(3)]
    assert not np.array_equal(orders[0], orders[1])  # a new order every epoch
    with pytest.raises(ValueError, match="first_epoch"):
        ckd.load("fashion_mnist", "train", 8, first_epoch=0, data_dir=common["data_dir"], raw_dir=str(raw))
