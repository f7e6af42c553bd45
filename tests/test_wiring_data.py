"""Each data set's published constants, and the training crop by what it does, through the pipelines that use it.

The constants are written here from their published sources (docs/data.md names each; the paper and
/work/shared/reference/README.md give the image sizes and class counts), not read from the package. The crop is
tested on images whose content reveals the offset and the flip each output was cut with.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import data_fakes
import keras_calikd.data as ckd
from keras_calikd.training.input import epoch_batches

# Data pipelines and constants: the same on every backend, so tools/run_tests.sh runs this module once.
pytestmark = pytest.mark.backend_neutral

CIFAR100 = dict(mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761))  # the CRD code base (Tian et al.)
# name: classes, image shape, published split sizes, normalisation (mean, std on [0, 1]), crop padding.
# Padding: the standard CIFAR crop of 32x32 images padded by 4 (the CRD code base the paper builds on); 8 for
# Tiny ImageNet's 64x64 images and 4 for Fashion-MNIST's 28x28 (docs/data.md, "Augmentation").
PUBLISHED = {
    # Per-pixel statistics of the CIFAR-10 training set, as commonly published.
    "cifar10": (10, (32, 32, 3), {"train": 50_000, "test": 10_000},
                dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)), 4),
    "cifar100": (100, (32, 32, 3), {"train": 50_000, "test": 10_000}, CIFAR100, 4),
    # CINIC-10's README (BayesWatch/cinic-10); 90,000 images in each of train/, valid/ and test/.
    "cinic10": (10, (32, 32, 3), {"train": 90_000, "validation": 90_000, "test": 90_000},
                dict(mean=(0.47889522, 0.47227842, 0.43047404), std=(0.24205776, 0.23828046, 0.25874835)), 4),
    # The constants of public Tiny ImageNet training code; 500 training images per class, 10,000 in val/.
    "tiny_imagenet": (200, (64, 64, 3), {"train": 100_000, "validation": 10_000},
                      dict(mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262)), 8),
    # CIFAR-100's models are evaluated on it with CIFAR-100's constants; 10,000 images per corruption and severity.
    "cifar100_corrupted": (100, (32, 32, 3), {"test": 10_000}, CIFAR100, 4),
    # Computed over the 60,000 training images (Debian's files).
    "fashion_mnist": (10, (28, 28, 1), {"train": 60_000, "test": 10_000},
                      dict(mean=(0.2860406,), std=(0.3530242,)), 4),
}


def test_every_data_set_has_its_published_constants(tmp_path):
    assert sorted(ckd.names()) == sorted(PUBLISHED)
    for name, (classes, shape, splits, statistics, padding) in PUBLISHED.items():
        info = ckd.info(name, data_dir=str(tmp_path))  # an empty folder: the description, not a prepared copy
        assert (info.num_classes, info.image_shape, info.crop_padding) == (classes, shape, padding), name
        assert dict(info.splits) == splits, name
        assert (info.mean, info.std) == (statistics["mean"], statistics["std"]), name
        mean, std = info.normalization  # what the models are built with: pixel units
        np.testing.assert_allclose(mean, 255 * np.array(statistics["mean"]), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(std, 255 * np.array(statistics["std"]), rtol=1e-12, err_msg=name)


# ---------------------------------------------------------------- the crop, by what it does

MARK, SIDE_MARK = 200, 100


def marked(count, height, width, row, column):
    """Black uint8 images with MARK at (row, column) and SIDE_MARK at its right: where they land after a crop
    tells the offset, and their order the flip."""
    images = np.zeros((count, height, width, 1), np.uint8)
    images[:, row, column] = MARK
    images[:, row, column + 1] = SIDE_MARK
    return images


def crops_of(outputs, padding, row, column):
    """`(row offset, column offset, flipped)` of each output, in the padded image's coordinates (0 .. 2p).

    An output is `flip?(padded[dy:dy + H, dx:dx + W])`: unflipped, the mark lands at (row + p - dy,
    column + p - dx); flipped, at column W - 1 - (column + p - dx), its side mark to its left."""
    width = outputs.shape[2]
    found = []
    for image in outputs[..., 0]:
        [[r, c]] = np.argwhere(image == MARK)
        [[_, side]] = np.argwhere(image == SIDE_MARK)
        flipped = side == c - 1
        assert flipped or side == c + 1
        dx = column + padding - (width - 1 - c if flipped else c)
        found.append((row + padding - r, dx, int(flipped)))
    return np.array(found)


def test_offsets_are_uniform_over_the_padded_range_independent_and_flips_fair():
    padding, side, cells = 4, 12, 9 * 9 * 2
    images = marked(100 * cells, side, side, 6, 6)
    outputs = ckd.random_crop_flip_batch(tf.constant(images), tf.constant(11, tf.int64), padding).numpy()
    crops = crops_of(outputs, padding, 6, 6)
    assert crops[:, :2].min() == 0 and crops[:, :2].max() == 2 * padding
    # One chi-square test over the joint (row offset, column offset, flip) table: 162 cells of 100 expected
    # draws each. Offsets missing at the ends, rows equal to columns, or unfair flips all fail it.
    counts = np.zeros((9, 9, 2))
    np.add.at(counts, tuple(crops.T), 1)
    assert counts.min() > 0
    assert stats.chisquare(counts.ravel()).pvalue > 1e-3


@pytest.fixture(scope="session")
def marked_fashion_dir(tmp_path_factory):
    """A TFDS data folder whose raw Fashion-MNIST files hold 256 marked training images (and 4 test images)."""
    data_dir = tmp_path_factory.mktemp("tfds_marked")
    raw = data_dir / "downloads" / "manual" / "fashion-mnist"
    raw.mkdir(parents=True)
    for prefix, count in (("train", 256), ("t10k", 4)):
        data_fakes.write_idx(str(raw / f"{prefix}-images-idx3-ubyte.gz"), marked(count, 28, 28, 14, 14)[..., 0])
        data_fakes.write_idx(str(raw / f"{prefix}-labels-idx1-ubyte.gz"), np.arange(count) % 10)
    return str(data_dir)


@pytest.mark.parametrize("pipeline", ["epoch_batches", "load"])
def test_the_training_pipelines_crop_with_the_data_sets_padding(marked_fashion_dir, monkeypatch, pipeline):
    """The padding of the data set's description reaches the crop of both training pipelines: with Fashion-MNIST
    described with a padding of 3 for this test (its published 4 is pinned above), 1,024 draws span offsets of
    exactly 0 .. 6 on each axis, uniformly, and half of the images are flipped."""
    padding = 3
    described = dataclasses.replace(ckd.DATASETS.get("fashion_mnist"), crop_padding=padding)
    monkeypatch.setitem(ckd.DATASETS._entries, "fashion_mnist", described)
    if pipeline == "epoch_batches":
        split = ckd.read("fashion_mnist", "train", data_dir=marked_fashion_dir)
        batches = epoch_batches(split, 64, seed=0, first_epoch=0, num_epochs=4)
    else:
        batches = ckd.load("fashion_mnist", "train", 64, data_dir=marked_fashion_dir, seed=0).repeat(4)
    images = np.concatenate([x for x, _ in batches.as_numpy_iterator()]).astype(np.uint8)
    assert len(images) == 1024
    crops = crops_of(images, padding, 14, 14)
    for axis in (0, 1):
        counts = np.bincount(crops[:, axis], minlength=2 * padding + 1)
        assert len(counts) == 2 * padding + 1 and counts.min() > 0, counts
        assert stats.chisquare(counts).pvalue > 1e-3, counts
    assert stats.binomtest(int(crops[:, 2].sum()), len(crops), 0.5).pvalue > 1e-3
