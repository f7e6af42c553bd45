"""keras_calikd.training.input.epoch_batches: a training order that depends on (seed, epoch) alone."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import keras_calikd.data as ckd
from keras_calikd.training.input import epoch_batches

# Backend-neutral: tools/run_tests.sh runs this module once, in its TensorFlow pass.
pytestmark = pytest.mark.backend_neutral

try:
    import data_fakes as fakes
except ImportError:  # tests/ imported as a package
    from tests import data_fakes as fakes

#: Batches of the epoch-keyed pipeline before it moved out of keras_calikd.data (then
#: `load("cifar10", "train", 8, with_index=True, seed=7, first_epoch=0, num_epochs=3)`, normalised images),
#: on the fake CIFAR-10 copy of the `train` fixture: (indices, labels, sha256 prefix of the uint8 pixels).
BEFORE_THE_MOVE = [
    ([11, 7, 18, 6, 13, 2, 1, 16], [5, 7, 6, 0, 7, 9, 3, 1], "4d8a4bae53e26686"),
    ([15, 3, 8, 19, 0, 4, 17, 14], [1, 8, 2, 5, 4, 8, 3, 2], "92bc093ecde2587a"),
    ([9, 7, 19, 3, 4, 10, 15, 16], [4, 7, 5, 8, 8, 6, 1, 1], "89fa15947a728cd3"),
    ([2, 11, 1, 18, 8, 0, 17, 5], [9, 5, 3, 6, 2, 4, 3, 0], "f350c177952a5294"),
    ([1, 13, 7, 6, 15, 18, 8, 3], [3, 7, 7, 0, 1, 6, 2, 8], "31fb85e8385785ac"),
    ([0, 10, 19, 12, 5, 14, 16, 4], [4, 6, 5, 9, 0, 2, 1, 8], "be40607d2aa35447"),
]


@pytest.fixture(scope="session")
def train(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("cifar10"))
    fakes.write_catalog_copy("cifar10", data_dir, {"train": 20, "test": 5}, random_images=True, seed=0)
    return ckd.read("cifar10", "train", data_dir=data_dir)


def _batches(ds):
    return [(x["index"].tolist(), y.tolist(), x["image"]) for x, y in ds.as_numpy_iterator()]


def test_same_batches_as_before_the_move(train):
    batches = _batches(epoch_batches(train, 8, seed=7, first_epoch=0, num_epochs=3, with_index=True))
    assert len(batches) == len(BEFORE_THE_MOVE)
    for (indices, labels, images), (indices_before, labels_before, digest) in zip(batches, BEFORE_THE_MOVE):
        assert (indices, labels) == (indices_before, labels_before)
        assert images.dtype == np.float32 and images.max() > 200  # raw pixels now, not normalised
        assert hashlib.sha256(images.astype(np.uint8).tobytes()).hexdigest()[:16] == digest


def test_a_resumed_run_sees_the_batches_of_an_uninterrupted_one(train):
    whole = _batches(epoch_batches(train, 8, seed=7, first_epoch=0, num_epochs=3, with_index=True))
    resumed = _batches(epoch_batches(train, 8, seed=7, first_epoch=2, num_epochs=1, with_index=True))
    assert len(whole) == 6 and len(resumed) == 2  # 2 full batches of 8 per epoch of 20 examples
    for (i_whole, y_whole, x_whole), (i_resumed, y_resumed, x_resumed) in zip(whole[4:], resumed):
        assert (i_whole, y_whole) == (i_resumed, y_resumed)
        np.testing.assert_array_equal(x_whole, x_resumed)
    orders = [sum((whole[2 * e][0], whole[2 * e + 1][0]), []) for e in range(3)]
    assert orders[0] != orders[1] != orders[2]  # a new order every epoch
    other_seed = _batches(epoch_batches(train, 8, seed=8, first_epoch=2, num_epochs=1, with_index=True))
    assert [b[0] for b in other_seed] != [b[0] for b in resumed]


def test_batches_are_augmented_crops_of_the_split(train):
    images, _, indices = (np.stack(a) for a in zip(*train.examples.as_numpy_iterator()))
    [(x, y)] = list(epoch_batches(train, 20, seed=0, first_epoch=5, num_epochs=1).as_numpy_iterator())
    assert x.shape == (20, 32, 32, 3) and y.dtype == np.int32  # plain (images, labels) without with_index
    padding = train.dataset.crop_padding
    padded = np.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)]).astype(np.float32)
    originals = [next(k for k in range(20) if any(
        np.array_equal((padded[k][:, ::-1] if flip else padded[k])[dy:dy + 32, dx:dx + 32], image)
        for dy in range(2 * padding + 1) for dx in range(2 * padding + 1) for flip in (False, True)))
        for image in x]
    assert sorted(originals) == list(range(20))  # every example once per epoch, cropped or flipped
    assert any(not np.array_equal(image, images[k]) for image, k in zip(x, originals))


def test_endless_without_num_epochs_and_remainder_kept_on_request(train):
    endless = epoch_batches(train, 8, seed=1, first_epoch=0)
    assert len(list(endless.take(7).as_numpy_iterator())) == 7  # beyond the 2 batches of one epoch
    assert int(epoch_batches(train, 8, seed=1, first_epoch=4, num_epochs=3).cardinality()) == 6
    kept = epoch_batches(train, 8, seed=1, first_epoch=0, num_epochs=1, drop_remainder=False)
    assert int(kept.cardinality()) == 3 and [len(y) for _, y in kept.as_numpy_iterator()] == [8, 8, 4]


@pytest.mark.parametrize("arguments, message", [
    (dict(seed=None), "seed must be an integer"),
    (dict(seed=True), "seed must be an integer"),
    (dict(first_epoch=-1), "first_epoch must be an integer >= 0"),
    (dict(num_epochs=0), "num_epochs must be a positive integer"),
    (dict(batch_size=21), "batch_size 21 is larger than cifar10's split of 20 examples"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
])
def test_bad_arguments_are_rejected(train, arguments, message):
    arguments = {"batch_size": 8, "seed": 0, "first_epoch": 0, **arguments}
    with pytest.raises(ValueError, match=message):
        epoch_batches(train, **arguments)
