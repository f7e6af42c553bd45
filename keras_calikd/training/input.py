"""Training input of a resumable run: the epochs' batches depend on (seed, epoch) alone, and each process's share.

`epoch_batches` gives the training order (`keras_calikd.data.pipeline.training_batches`,
stateless random ops keyed by (seed, epoch, batch)) for given epochs, so that a
run restarted at epoch e sees exactly the batches an uninterrupted run sees at
epoch e; `keras_calikd.data.load` draws its epoch keys afresh at each iteration
instead. `shard_batches` gives one process of a multi-process job its rows of
every global batch.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from keras_calikd import checks
from keras_calikd.data.pipeline import Split, check_batch_size, training_batches

AUTOTUNE = tf.data.AUTOTUNE


def epoch_batches(split: Split, batch_size: int, seed: int, first_epoch: int, num_epochs: Optional[int] = None,
                  with_index: bool = False, drop_remainder: bool = True, crop_flip: bool = True) -> tf.data.Dataset:
    """Training batches of `num_epochs` epochs back to back, epoch `e`'s depending on `(seed, e)` alone.

    The epochs `first_epoch, first_epoch + 1, ...` of the training order
    (`keras_calikd.data.pipeline.training_batches`: a permutation keyed by
    `(seed, e)`, augmentation keyed by `(seed, e, b)`), so a run resumed at
    epoch `e` sees exactly the batches of an uninterrupted run. Elements are
    those of `keras_calikd.data.load`: float32 raw-pixel images (0..255) and
    int32 labels, with `{"image", "index"}` inputs when `with_index`.

    Args:
        split: The training split, from `keras_calikd.data.read`.
        batch_size: Positive number of examples per batch.
        seed: Integer seed of the order and the augmentation.
        first_epoch: The first epoch (0-based) the dataset holds.
        num_epochs: How many epochs it holds; None: endless (pass `steps_per_epoch` to `fit`).
        with_index: Also yield each example's index in the split.
        drop_remainder: Drop each epoch's last incomplete batch.
        crop_flip: Augment with the random crop and flip (the paper's standard augmentation); `False`: the
            images as they are, in the epoch's order.

    Returns:
        A `tf.data.Dataset` of `num_epochs * steps` batches (`steps` = batches per epoch), with that
        cardinality; endless (cardinality unknown) when `num_epochs` is None.

    Raises:
        ValueError: `seed`, `first_epoch` or `num_epochs` is not an integer of the right range, or
            the batch size is bad or larger than the split when the remainder is dropped.

    Example:

    ```python
    train = keras_calikd.data.read("cifar100", "train")
    batches = epoch_batches(train, 64, seed=0, first_epoch=initial_epoch, num_epochs=240 - initial_epoch)
    model.fit(batches, epochs=240, initial_epoch=initial_epoch, steps_per_epoch=train.num_examples // 64)
    ```
    """
    checks.integer(None, "seed", seed, low=None, whole_floats=False)
    checks.integer(None, "first_epoch", first_epoch, low=0, whole_floats=False)
    checks.integer(None, "num_epochs", num_epochs, optional=True, whole_floats=False)
    check_batch_size(split, batch_size, drop_remainder)
    last = first_epoch + num_epochs if num_epochs is not None else np.iinfo(np.int64).max
    batches = training_batches(split, batch_size, tf.data.Dataset.range(first_epoch, last), seed=seed,
                               with_index=with_index, drop_remainder=drop_remainder, crop_flip=crop_flip)
    if num_epochs is not None:
        steps = split.num_examples // batch_size if drop_remainder else -(-split.num_examples // batch_size)
        batches = batches.apply(tf.data.experimental.assert_cardinality(num_epochs * steps))
    return batches.prefetch(AUTOTUNE)


def shard_batches(dataset: tf.data.Dataset, num_shards: int, index: int) -> tf.data.Dataset:
    """Shard `index` of every batch: its consecutive rows `[index * b / n, (index + 1) * b / n)` of each batch b.

    How each process of a multi-process JAX job gets its part of every
    global batch (the processes build the same batches from the same seed
    and epoch, so together they feed each global batch once, in order). The
    rows of every tensor of an element are sliced alike; each batch, the
    last included, must hold a multiple of `num_shards` rows (the shard
    checks it as it reads).

    Args:
        dataset: A `tf.data.Dataset` of batches (tensors, or nests of tensors, with the batch first).
        num_shards: Positive number of shards (processes).
        index: This shard, in `[0, num_shards)`.

    Returns:
        A `tf.data.Dataset` with the same number of batches, each `1 / num_shards` of the rows.

    Raises:
        ValueError: `num_shards` or `index` out of range (at once); a batch that does not split evenly
            (`tf.errors.InvalidArgumentError` when it is read).

    Example:

    ```python
    batches = epoch_batches(split, 128, seed=0, first_epoch=3, num_epochs=237)
    mine = shard_batches(batches, jax.process_count(), jax.process_index())    # 64 rows per batch on 2 processes
    ```
    """
    checks.integer(None, "num_shards", num_shards, whole_floats=False)
    checks.integer(None, "index", index, low=0, whole_floats=False)
    if index >= num_shards:
        raise ValueError(f"index must be below num_shards ({num_shards}), got {index}.")
    if num_shards == 1:
        return dataset

    def rows(*element):
        tensors = tf.nest.flatten(element)
        size = tf.shape(tensors[0])[0]
        check = tf.debugging.assert_equal(
            size % num_shards, 0, message=f"keras_calikd: a batch does not split into {num_shards} equal shards; "
                                          f"use batch sizes and split sizes that are multiples of {num_shards}.")
        with tf.control_dependencies([check]):
            share = size // num_shards
        sliced = tf.nest.map_structure(lambda t: t[index * share:(index + 1) * share], element)
        return sliced if len(element) > 1 else sliced[0]

    return dataset.map(rows, num_parallel_calls=AUTOTUNE, deterministic=True)


__all__ = ["epoch_batches", "shard_batches"]
