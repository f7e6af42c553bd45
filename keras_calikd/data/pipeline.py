"""tf.data input pipelines: `read` (one split's examples in stored order) and `load` (batches for `fit`).

`read(name, split)` returns a `Split` whose `examples` are
`(image uint8 (H, W, C), label int32, index int32)` of one prepared split,
unbatched, in the split's stored order (the order of the data set's files,
see docs/data.md), `index` being the position in the split (0..N-1), the
decoded images cached (in memory by default).

`load(name, split, batch_size)` batches them for `keras.Model.fit`:

- evaluation (the default for splits other than `train`): stored order,
  the last, smaller batch kept;
- training (the default for `train` and its slices): the whole split
  shuffled again at each iteration, fixed-size batches, then random crop with
  zero padding and random horizontal flip, vectorised over the batch (one
  pad and two gathers).

There is one training order, `training_batches`: each epoch is a permutation
of the split keyed by (seed, epoch), and its batches are augmented with keys
drawn from (seed, epoch, batch). The resumable runs' `epoch_batches`
(`keras_calikd.training.input`) feeds it the epoch numbers; `load` draws a
fresh epoch key at each iteration.

Images come out as float32 raw pixels, 0..255: the models normalise their
inputs (with `Dataset.normalization`), so every form of a model takes the
same images.
"""

from __future__ import annotations

import functools
import os
import re
from typing import NamedTuple, Optional, Union

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_calikd import checks
from keras_calikd.contract import join_inputs
from keras_calikd.data.dataset import Dataset, lookup, suggest
from keras_calikd.data.prepared import corrupt_prepared_error, open_builder, verify_prepared, with_prepared_facts
from keras_calikd.data.errors import CorruptPreparedDataError, SliceOutOfRangeError

AUTOTUNE = tf.data.AUTOTUNE
_SPLIT_RE = re.compile(r"^([A-Za-z_]+)(\[[^\[\]]*\])?$")


class Split(NamedTuple):
    """One split of a prepared data set, as `read` returns it.

    Attributes:
        examples: Unbatched `tf.data.Dataset` of `(image, label, index)`: image uint8 (H, W, C),
            label int32, index int32 (position in the split, 0..N-1), in stored order, cached.
        num_examples: N, the number of examples (of the slice, for a sliced split).
        dataset: The data set's `Dataset` description, with its config selected and the prepared
            data's split sizes (as `info` gives it).
        prepared_dir: The folder of the prepared TFRecords it reads.

    Example:

    ```python
    split = ckd.read("cifar100", "train")
    split.num_examples, split.dataset.num_classes       # 50000, 100
    ```
    """

    examples: tf.data.Dataset
    num_examples: int
    dataset: Dataset
    prepared_dir: str

    def corruption_error(self, error) -> CorruptPreparedDataError:
        """The clear error for a `tf.errors.DataLossError` raised while iterating this split.

        `read` checks the prepared files once per process; a file damaged
        later shows up as a `tf.errors.DataLossError` from the iterator (e.g.
        inside `fit`), which does not name the file.

        Args:
            error: The `tf.errors.DataLossError` (or a text saying what is wrong).

        Returns:
            A `CorruptPreparedDataError` naming the prepared folder and saying to delete it.

        Example:

        ```python
        try:
            model.fit(batches)
        except tf.errors.DataLossError as error:
            raise split.corruption_error(error) from error
        ```
        """
        return corrupt_prepared_error(self.dataset, self.prepared_dir, error)


def split_name(dataset: Dataset, split: str) -> str:
    """The split of `split` without its TFDS slice.

    Args:
        dataset: The data set's description.
        split: A split name, optionally sliced the TFDS way.

    Returns:
        The split name.

    Raises:
        ValueError: `split` is not a split of `dataset` (the message lists its splits).

    Example:

    ```python
    split_name(ckd.info("cifar100"), "train[:90%]")   # "train"
    ```
    """
    match = _SPLIT_RE.match(split) if isinstance(split, str) else None
    if match is None or match.group(1) not in dataset.splits:
        word = match.group(1) if match else split
        raise ValueError(
            f"Unknown split {split!r} for {dataset.name!r}.{suggest(word, dataset.splits)} Splits: "
            f"{', '.join(dataset.splits)} (optionally sliced the TFDS way, e.g. 'train[:90%]').")
    return match.group(1)


def read(name: str, split: str, data_dir: Optional[os.PathLike] = None, *, config: Optional[str] = None,
         raw_dir: Optional[os.PathLike] = None, cache: Union[bool, str] = True, prepare: bool = True) -> Split:
    """The examples of one split, unbatched, in stored order: the source of `load` and `epoch_batches`.

    Prepares the data set from its raw files the first time (see
    `info(name).locate()`), and reads each prepared TFRecord file through
    once per process to find damage early.

    Args:
        name: A name of `names()`, optionally with `/<config>` (`"cifar100_corrupted/frost_3"`).
        split: A split of `info(name).splits`, optionally sliced the TFDS way (`"train[:45000]"`).
        data_dir: TFDS data directory; default `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.
        config: A config name (`info(name).configs`), instead of the `/<config>` suffix.
        raw_dir: Folder of the raw files, instead of `<data_dir>/downloads/manual/<folder>`.
        cache: True: keep the decoded images in memory; a string: cache to that file; False: no cache.
        prepare: Prepare the data set from its raw files when it is not prepared yet.

    Returns:
        `Split(examples, num_examples, dataset, prepared_dir)`.

    Raises:
        ValueError: unknown name, config or split (the message lists the known ones), an empty
            split or slice, or a bad `cache`.
        SliceOutOfRangeError: a slice asks for examples the split does not hold.
        NotADirectoryError: `data_dir` cannot be a folder.
        DatasetNotFoundError: the data set is neither prepared nor available as raw files.
        CorruptFileError: a raw file cannot be read (its path is in the message).
        CorruptPreparedDataError: a prepared TFRecord file is damaged (delete the prepared folder).

    Example:

    ```python
    test = ckd.read("fashion_mnist", "test")
    image, label, index = next(iter(test.examples))   # uint8 (28, 28, 1), int32, int32 (0)
    ```
    """
    dataset = lookup(name, config).require_config()
    base = split_name(dataset, split)
    if not isinstance(cache, (bool, str)):
        raise ValueError(f"cache must be True, False or a file path, got {cache!r}.")
    builder = open_builder(dataset, data_dir, raw_dir=raw_dir, prepare=prepare)
    verify_prepared(dataset, builder, base)
    try:
        num_examples = int(builder.info.splits[split].num_examples)
    except ValueError as error:  # TFDS: "Requested slice [:1000] incompatible with 64 examples."
        if "incompatible with" not in str(error):
            raise
        raise SliceOutOfRangeError(split, dataset.full_name, builder.info.splits[base].num_examples) from None
    if num_examples == 0:
        raise ValueError(f"The split {split!r} of {dataset.full_name} holds no examples ({base} has "
                         f"{builder.info.splits[base].num_examples}); choose a non-empty split or slice.")
    source = builder.as_dataset(split=split, shuffle_files=False,
                                read_config=tfds.ReadConfig(interleave_cycle_length=1, try_autocache=False))
    shape = tuple(source.element_spec["image"].shape)
    if shape != dataset.image_shape:
        raise ValueError(f"The prepared data set in {builder.data_dir} holds images of shape {shape}, not "
                         f"{dataset.name}'s {dataset.image_shape}; delete it and prepare it again.")
    examples = source.enumerate().map(_numbered, num_parallel_calls=AUTOTUNE)
    if cache:
        examples = examples.cache() if cache is True else examples.cache(cache)
    return Split(examples, num_examples, with_prepared_facts(dataset, builder), os.fspath(builder.data_dir))


def _numbered(index, example):
    return example["image"], tf.cast(example["label"], tf.int32), tf.cast(index, tf.int32)


def load(name: str, split: str, batch_size: int, training: Optional[bool] = None,
         data_dir: Optional[os.PathLike] = None, with_index: bool = False, seed: Optional[int] = None, *,
         config: Optional[str] = None, raw_dir: Optional[os.PathLike] = None, cache: Union[bool, str] = True,
         shuffle_buffer: Optional[int] = None, drop_remainder: Optional[bool] = None,
         prepare: bool = True) -> tf.data.Dataset:
    """A batched `tf.data.Dataset` of one split, ready for `keras.Model.fit`, built on `read`.

    Elements are `(images, labels)`: images float32 (batch, H, W, C) of RAW
    PIXELS, 0..255 (not normalised: the models normalise, see
    `Dataset.normalization`), labels int32 (batch,). With `with_index=True`:
    `({"image": images, "index": indices}, labels)`, indices int32 being the
    examples' positions in the split (0..N-1, the same every epoch).
    Training pipelines shuffle the whole split again at each iteration (each
    epoch), randomly crop with zero padding (black pixels; 4 pixels, 8 for
    Tiny ImageNet) and flip, and drop the last incomplete batch. Evaluation
    pipelines keep the stored order and the last batch.

    Args:
        name, split, data_dir, config, raw_dir, cache, prepare: As for `read`.
        batch_size: Positive number of examples per batch.
        training: Shuffle, augment and drop the remainder; default: `split` is `train` (or a slice of it).
        with_index: Also yield each example's index in its split (for CRD's memory bank).
        seed: Makes shuffling and augmentation deterministic, also across processes; None: fresh
            randomness. A TensorFlow global seed (`keras.utils.set_random_seed`), if set, enters too.
        shuffle_buffer: Below the split's size, a windowed shuffle: each example moves by about this many
            places at most (1: the stored order); default a uniform permutation (see `training_batches`).
        drop_remainder: Drop the last incomplete batch; default `training`.

    Returns:
        A `tf.data.Dataset` with known cardinality (the number of batches).

    Raises:
        ValueError: bad argument, unknown name, config or split, an empty split, or a batch larger than
            the split when the remainder is dropped.
        NotADirectoryError, DatasetNotFoundError, CorruptFileError, CorruptPreparedDataError: as `read`.

    Example:

    ```python
    train = ckd.load("cifar100", "train", batch_size=64, seed=0)     # raw pixels, augmented
    test = ckd.load("cifar100", "test", batch_size=256)              # raw pixels, stored order
    crd = ckd.load("cifar100", "train", 64, with_index=True)          # ({"image", "index"}, label)
    frost = ckd.load("cifar100_corrupted/frost_3", "test", 256)
    ```
    """
    checks.integer(None, "shuffle_buffer", shuffle_buffer, optional=True, whole_floats=False)
    checks.integer(None, "seed", seed, low=None, optional=True, whole_floats=False)
    checks.integer(None, "batch_size", batch_size, whole_floats=False)
    source = read(name, split, data_dir, config=config, raw_dir=raw_dir, cache=cache, prepare=prepare)
    training = split_name(source.dataset, split) == "train" if training is None else bool(training)
    drop_remainder = training if drop_remainder is None else bool(drop_remainder)
    check_batch_size(source, batch_size, drop_remainder)
    if training:
        # A fresh epoch key at each iteration (seeded by `seed`, else by TensorFlow's global seed, if any).
        epoch = tf.data.Dataset.random(seed=derive_seeds(seed)[0], rerandomize_each_iteration=True).take(1)
        batches = training_batches(source, batch_size, epoch.map(lambda key: tf.math.floormod(key, 2**31)),
                                   seed=seed or 0, with_index=with_index, drop_remainder=drop_remainder,
                                   shuffle_buffer=shuffle_buffer)
        steps = source.num_examples // batch_size if drop_remainder else -(-source.num_examples // batch_size)
        return batches.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(AUTOTUNE)
    batches = source.examples.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    inputs = functools.partial(model_inputs, with_index=with_index)
    return batches.map(inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def training_batches(source: Split, batch_size: int, epochs: tf.data.Dataset, *, seed: int,
                     with_index: bool = False, drop_remainder: bool = True, crop_flip: bool = True,
                     shuffle_buffer: Optional[int] = None) -> tf.data.Dataset:
    """The training order: the batches of every epoch in `epochs`, epoch `e`'s depending on `(seed, e)` alone.

    Each epoch draws a permutation of the whole split with
    `tf.random.experimental.stateless_shuffle` from `(seed, e)`, gathers its
    batches from one in-memory copy of the split (read from `source`'s cache),
    and augments batch `b` (random crop with zero padding, random flip) with a
    key drawn from `(seed, e, b)`.

    Args:
        source: The split, from `read`.
        batch_size: Positive number of examples per batch (checked by the callers).
        epochs: A dataset of int64 epoch keys: epoch numbers (`epoch_batches`), or a fresh key per iteration.
        seed: Integer seed of the order and the augmentation.
        with_index: Yield `({"image", "index"}, labels)`.
        drop_remainder: Drop each epoch's last incomplete batch.
        crop_flip: Augment with the random crop and flip; `False`: the images as they are.
        shuffle_buffer: `None` (or at least the split's size): a uniform permutation. Smaller: a stateless
            windowed shuffle, each example sorted by its position plus `shuffle_buffer` times a uniform draw
            (1: the stored order).

    Returns:
        A `tf.data.Dataset` of the epochs' batches back to back, as `model_inputs` gives them (cardinality
        unknown).

    Example:

    ```python
    batches = training_batches(read("cifar100", "train"), 64, tf.data.Dataset.range(3, 240), seed=0)
    ```
    """
    shuffle_seed, augment_seed = derive_seeds(seed)
    one_epoch = functools.partial(
        _one_epoch, whole=source.examples.batch(source.num_examples), num_examples=source.num_examples,
        batch_size=batch_size, drop_remainder=drop_remainder, shuffle_seed=shuffle_seed, augment_seed=augment_seed,
        padding=source.dataset.crop_padding if crop_flip else None, with_index=with_index,
        window=None if shuffle_buffer is None or shuffle_buffer >= source.num_examples else shuffle_buffer)
    return epochs.flat_map(one_epoch)


def _epoch_order(epoch, num_examples, shuffle_seed, window):
    seed = tf.stack([tf.constant(shuffle_seed, tf.int64), epoch])
    if window is None:
        return tf.random.experimental.stateless_shuffle(tf.range(num_examples), seed=seed)
    jitter = float(window) * tf.random.stateless_uniform([num_examples], seed=seed, dtype=tf.float64)
    return tf.argsort(tf.cast(tf.range(num_examples), tf.float64) + jitter, stable=True)


def _one_epoch(epoch, *, whole, num_examples, batch_size, drop_remainder, shuffle_seed, augment_seed, padding,
               with_index, window):
    """The batches of one epoch, from the whole split as one element."""
    order = _epoch_order(epoch, num_examples, shuffle_seed, window)

    def gathered(images, labels, indices):
        def take(rows):
            return tf.gather(images, rows), tf.gather(labels, rows), tf.gather(indices, rows)

        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        return batches.map(take, num_parallel_calls=AUTOTUNE)

    def augment(number, batch):
        key = tf.random.stateless_uniform(
            [], seed=tf.stack([tf.constant(augment_seed, tf.int64), epoch * 2**20 + number]),
            minval=None, maxval=None, dtype=tf.int64)
        images, labels, indices = batch
        if padding is not None:
            images = random_crop_flip_batch(images, key, padding)
        return model_inputs(images, labels, indices, with_index)

    return whole.flat_map(gathered).enumerate().map(augment, num_parallel_calls=AUTOTUNE)


def model_inputs(images: tf.Tensor, labels: tf.Tensor, indices: tf.Tensor, with_index: bool = False):
    """One batch of `(images, labels, indices)` as `load` yields it.

    Args:
        images: (B, H, W, C) images of any dtype (raw pixels).
        labels: (B,) int32 labels.
        indices: (B,) int32 positions in the split.
        with_index: Yield the indices too.

    Returns:
        `(float32 images, labels)`, or `({"image": float32 images, "index": indices}, labels)`.

    Example:

    ```python
    batches = examples.batch(64).map(lambda x, y, i: model_inputs(x, y, i, with_index=True))
    ```
    """
    return join_inputs(tf.cast(images, tf.float32), indices if with_index else None), labels


def check_batch_size(split: Split, batch_size: int, drop_remainder: bool) -> None:
    """Checks a batch size against a split.

    Args:
        split: The split (from `read`).
        batch_size: The batch size.
        drop_remainder: Whether incomplete batches are dropped.

    Raises:
        ValueError: `batch_size` is not a positive integer, or is larger than the split while the
            remainder is dropped (no batch would be left).

    Example:

    ```python
    check_batch_size(ckd.read("cinic10", "train[:10]"), 64, drop_remainder=True)   # ValueError
    ```
    """
    checks.integer(None, "batch_size", batch_size, whole_floats=False)
    if drop_remainder and batch_size > split.num_examples:
        raise ValueError(
            f"batch_size {batch_size} is larger than {split.dataset.full_name}'s split of {split.num_examples} "
            "examples, and incomplete batches are dropped (as in training): no batch would be left. Use a "
            "batch_size of at most the split's size, a larger split, or drop_remainder=False.")


def derive_seeds(seed: Optional[int]):
    """Two independent 31-bit seeds (shuffle, augmentation) from one user seed, or (None, None).

    Args:
        seed: An integer, or None.

    Returns:
        `(shuffle_seed, augment_seed)`, Python ints in 0..2**31-1, the same for the same `seed`.

    Example:

    ```python
    shuffle_seed, augment_seed = derive_seeds(0)
    ```
    """
    if seed is None:
        return None, None
    shuffle_seed, augment_seed = np.random.SeedSequence(int(seed) & 0xFFFFFFFFFFFFFFFF).generate_state(2)
    return int(shuffle_seed) & 0x7FFFFFFF, int(augment_seed) & 0x7FFFFFFF


def _stateless_seeds(key: tf.Tensor):
    """Two stateless-op seeds (shape [2], int64) from one int64 random value."""
    key = tf.cast(key, tf.int64)
    return tf.stack([key, tf.constant(0, tf.int64)]), tf.stack([key, tf.constant(1, tf.int64)])


def random_crop_flip_batch(images: tf.Tensor, key: tf.Tensor, padding: int) -> tf.Tensor:
    """Random crop with zero padding plus random horizontal flip, for a whole batch at once.

    Equivalent, per image, to padding `padding` zero pixels (black, in raw
    pixel values) on every side, cropping back to (H, W) at a uniformly
    random offset, then flipping left-right with probability 1/2. Each image
    gets its own offset and flip.

    Args:
        images: (B, H, W, C) images (any dtype; raw pixels).
        key: int64 scalar; the same key gives the same crops and flips.
        padding: Zero padding in pixels.

    Returns:
        (B, H, W, C) augmented images of the input dtype.

    Example:

    ```python
    out = random_crop_flip_batch(tf.zeros((8, 32, 32, 3), tf.uint8), tf.constant(5, tf.int64), padding=4)
    ```
    """
    height, width = images.shape[1], images.shape[2]
    batch = tf.shape(images)[0]
    offsets_seed, flips_seed = _stateless_seeds(key)
    offsets = tf.random.stateless_uniform([batch, 2], offsets_seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32)
    flips = tf.random.stateless_uniform([batch, 1], flips_seed, minval=0, maxval=2, dtype=tf.int32)
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    rows = offsets[:, :1] + tf.range(height)[None, :]  # (B, H) rows of the padded image
    columns = tf.range(width)[None, :]
    columns = tf.where(flips == 1, width - 1 - columns, columns) + offsets[:, 1:]  # (B, W)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, H, W + 2p, C)
    return tf.gather(out, columns, axis=2, batch_dims=1)  # (B, H, W, C)


__all__ = ["Split", "check_batch_size", "derive_seeds", "training_batches", "load", "model_inputs",
           "random_crop_flip_batch", "read", "split_name"]
