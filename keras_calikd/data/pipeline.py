"""tf.data input pipelines: `load` (batches ready for `keras.Model.fit`) and `info`.

Pipeline of `load`, in order:

1. read the prepared TFDS split in its stored order and number each example
   (`index`, 0..N-1 within the split: stable across epochs);
2. cache the decoded uint8 images (in memory by default);
3. training only: shuffle the whole split, reshuffled each iteration;
4. batch (fixed-size batches for training: `drop_remainder=True`);
5. training only: random crop with zero padding and random horizontal flip,
   vectorised over the batch (one pad and two gathers per batch), keyed by a
   per-batch random value from `tf.data.Dataset.random`;
6. per-channel normalisation with the data set's mean and std, `prefetch`.

With a `seed`, shuffling and augmentation are deterministic: two pipelines
built with the same seed yield the same batches, epoch after epoch (each
new iteration of a dataset is a new epoch, reshuffled and re-augmented).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
from typing import Dict, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from keras_calikd.data.catalog import DatasetSpec, get_spec, resolve_config, resolve_data_dir

AUTOTUNE = tf.data.AUTOTUNE
_SPLIT_RE = re.compile(r"^([A-Za-z_]+)(\[[^\[\]]*\])?$")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What `info` reports about a data set.

    Attributes:
        name: Load name (with `/<config>` for CIFAR-100-C when one was given).
        num_classes: Number of classes.
        image_shape: (H, W, C) of the images `load` yields.
        splits: Split name -> number of examples: those of the prepared data when `prepared`,
            else those of the published release.
        mean, std: Per-channel normalisation constants (on images scaled to [0, 1]).
        stats_source: Where `mean` and `std` come from.
        crop_padding: Zero padding, in pixels, of the training random crop.
        class_names: Class names in label order, when known (None otherwise).
        data_dir: The resolved TFDS data directory.
        prepared: Whether the prepared TFDS data set was found in `data_dir`.
        prepared_dir: Where the prepared data set is (or will be written).
        raw_dir: The folder where the user puts the raw files (None for TFDS catalog data sets).
        raw_layout: What goes in `raw_dir` (or in `prepared_dir` for catalog data sets).
        source: Where the files are published / how to obtain them.
    """

    name: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    splits: Dict[str, int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    stats_source: str
    crop_padding: int
    class_names: Optional[Tuple[str, ...]]
    data_dir: str
    prepared: bool
    prepared_dir: str
    raw_dir: Optional[str]
    raw_layout: str
    source: str


def info(name: str, data_dir: Optional[os.PathLike] = None, *, corruption: Optional[str] = None,
         severity: Optional[int] = None) -> DatasetInfo:
    """Describes a data set: classes, shapes, split sizes, normalisation, and where its files go.

    Looks for the prepared data set in the data directory (a directory
    listing; nothing is prepared, read in bulk or downloaded): when found,
    split sizes and class names are those of the prepared data, otherwise
    those of the published release.

    Args:
        name: A name of `names()`, e.g. `"cifar100"`; CIFAR-100-C also accepts `"cifar100_corrupted/frost_3"`.
        data_dir: TFDS data directory; default `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.
        corruption, severity: CIFAR-100-C only: which config to look up (optional).

    Returns:
        A `DatasetInfo`.

    Example:

    ```python
    import keras_calikd.data as ckd
    ckd.info("cifar100").num_classes          # 100
    ckd.info("tiny_imagenet").raw_dir        # ~/tensorflow_datasets/downloads/manual/tiny-imagenet-200
    ckd.info("fashion_mnist").splits          # {"train": 60000, "test": 10000}
    ```
    """
    spec, config = get_spec(name)
    config = resolve_config(spec, config, corruption, severity, required=False)
    data_dir = resolve_data_dir(data_dir)
    builder = None if (spec.has_configs and config is None) else spec.prepared_builder(data_dir, config)
    splits = dict(spec.splits)
    class_names = spec.class_names
    if builder is not None:
        splits = {split: int(builder.info.splits[split].num_examples) for split in builder.info.splits}
        label = builder.info.features["label"]
        if getattr(label, "names", None) and label.names != [str(i) for i in range(spec.num_classes)]:
            class_names = tuple(label.names)
    return DatasetInfo(
        name=f"{spec.name}/{config}" if config else spec.name,
        num_classes=spec.num_classes,
        image_shape=tuple(spec.image_shape),
        splits=splits,
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        stats_source=spec.stats_source,
        crop_padding=spec.crop_padding,
        class_names=class_names,
        data_dir=data_dir,
        prepared=builder is not None,
        prepared_dir=str(builder.data_dir) if builder is not None else spec.prepared_root(data_dir, config),
        raw_dir=spec.raw_dir(data_dir),
        raw_layout=spec.layout(),
        source=spec.source(),
    )


def _check_split(spec: DatasetSpec, split) -> str:
    """Returns the base split name of `split` (which may carry a TFDS slice, e.g. `"train[:90%]"`)."""
    match = _SPLIT_RE.match(split) if isinstance(split, str) else None
    if match is None or match.group(1) not in spec.splits:
        raise ValueError(
            f"Unknown split {split!r} for {spec.name!r}. Splits: {', '.join(spec.splits)} "
            f"(optionally sliced the TFDS way, e.g. 'train[:90%]')."
        )
    return match.group(1)


def _derive_seeds(seed: Optional[int]):
    """Two independent 31-bit seeds (shuffle, augmentation) from one user seed, or (None, None)."""
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

    Equivalent, per image, to padding `padding` zero pixels on every side,
    cropping back to (H, W) at a uniformly random offset, then flipping
    left-right with probability 1/2. Each image gets its own offset and flip.

    Args:
        images: (B, H, W, C) images (any dtype; raw pixels, before normalisation).
        key: int64 scalar; the same key gives the same crops and flips.
        padding: Zero padding in pixels.

    Returns:
        (B, H, W, C) augmented images of the input dtype.
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


def random_crop_flip_image(image: tf.Tensor, key: tf.Tensor, padding: int) -> tf.Tensor:
    """`random_crop_flip_batch` for one (H, W, C) image (the per-element variant)."""
    crop_seed, flip_seed = _stateless_seeds(key)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)


def _normalizer(spec: DatasetSpec):
    std = np.asarray(spec.std, np.float32)
    scale = tf.constant(1.0 / (255.0 * std), tf.float32)
    shift = tf.constant(-np.asarray(spec.mean, np.float32) / std, tf.float32)

    def normalize(images):
        return tf.cast(images, tf.float32) * scale + shift

    return normalize


def load(
    name: str,
    split: str,
    batch_size: int,
    training: Optional[bool] = None,
    data_dir: Optional[os.PathLike] = None,
    with_index: bool = False,
    seed: Optional[int] = None,
    *,
    corruption: Optional[str] = None,
    severity: Optional[int] = None,
    raw_dir: Optional[os.PathLike] = None,
    cache: Union[bool, str] = True,
    shuffle_buffer: Optional[int] = None,
    drop_remainder: Optional[bool] = None,
    augment_per_batch: bool = True,
    prepare: bool = True,
    first_epoch: Optional[int] = None,
    num_epochs: Optional[int] = None,
) -> tf.data.Dataset:
    """Returns a batched, normalised `tf.data.Dataset` of one split, ready for `keras.Model.fit`.

    Elements are `(images, labels)`: images float32 (batch, H, W, C)
    normalised per channel with the data set's mean and std, labels int32
    (batch,). With `with_index=True` they are
    `({"image": images, "index": indices}, labels)`, `indices` int32 being
    each example's position in its split (0..N-1, the same every epoch).

    Training pipelines shuffle the whole split (again at each iteration, i.e.
    each epoch), apply the paper's standard augmentation (random crop with
    zero padding: 4 pixels, 8 for Tiny ImageNet; random horizontal flip) and
    drop the last incomplete batch. Evaluation pipelines keep the stored
    order and only normalise.

    Data sets other than CIFAR-10/100 are prepared into `data_dir` from their
    raw files the first time (see `info(name).raw_dir`); a missing data set
    raises `DatasetNotFoundError` at once, saying which files go where.

    Args:
        name: One of `names()`: `cifar10`, `cifar100`, `cinic10`, `tiny_imagenet`,
            `cifar100_corrupted` (also `cifar100_corrupted/<corruption>_<severity>`), `fashion_mnist`.
        split: A split of `info(name).splits` (`train`, `validation`, `test`), optionally sliced
            the TFDS way (`"train[:45000]"`, `"train[90%:]"`).
        batch_size: Positive number of examples per batch.
        training: Shuffle, augment and drop the remainder; default: `split` is `train` (or a slice of it).
        data_dir: TFDS data directory; default `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.
        with_index: Also yield each example's index in its split (for CRD memory banks).
        seed: Makes shuffling and augmentation deterministic, also across processes; None: fresh
            randomness. A TensorFlow global seed (`keras.utils.set_random_seed`), if set, enters too.
        corruption, severity: CIFAR-100-C only: one of `CORRUPTIONS` and 1..5.
        raw_dir: Folder holding the raw files, instead of `<data_dir>/downloads/manual/<folder>`
            (and, for Fashion-MNIST, Debian's /usr/share/datasets/fashion-mnist).
        cache: True: keep decoded images in memory; a string: cache to that file path; False: no cache.
        shuffle_buffer: Shuffle buffer size; default the number of examples (a uniform shuffle).
        drop_remainder: Drop the last incomplete batch; default `training`.
        augment_per_batch: Augment whole batches with vectorised ops (faster, see docs/data.md);
            False augments each image separately. Both draw crops and flips the same way.
        prepare: Prepare the data set from its raw files when it is not prepared yet.
        first_epoch: Training only, with a `seed`: the dataset holds `num_epochs` epochs back to back
            (endless if None), epoch `e` counting from `first_epoch`, and epoch `e`'s order and
            augmentation depend on `(seed, e)` alone. A run resumed at epoch `e` then sees exactly the
            batches an uninterrupted run sees. Pass `steps_per_epoch` to `fit`.
        num_epochs: With `first_epoch`: how many epochs the dataset holds.

    Returns:
        A `tf.data.Dataset` with known cardinality (number of batches).

    Raises:
        ValueError: unknown name, split, corruption, bad severity or batch size.
        DatasetNotFoundError: the data set is neither prepared nor available as raw files.
        CorruptFileError: a raw file cannot be read (its path is in the message).

    Example:

    ```python
    import keras_calikd.data as ckd
    train = ckd.load("cifar100", "train", batch_size=64, seed=0)
    test = ckd.load("cifar100", "test", batch_size=256)
    model.fit(train, validation_data=test, epochs=240)

    crd_train = ckd.load("cifar100", "train", 64, with_index=True)   # ({"image", "index"}, label)
    frost = ckd.load("cifar100_corrupted", "test", 256, corruption="frost", severity=3)
    ```
    """
    spec, config = get_spec(name)
    config = resolve_config(spec, config, corruption, severity, required=True)
    base_split = _check_split(spec, split)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if shuffle_buffer is not None and (
        isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, numbers.Integral) or shuffle_buffer < 1
    ):
        raise ValueError(f"shuffle_buffer must be a positive integer or None, got {shuffle_buffer!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}.")
    if not isinstance(cache, (bool, str)):
        raise ValueError(f"cache must be True, False or a file path, got {cache!r}.")
    if first_epoch is not None and (seed is None or isinstance(first_epoch, bool)
                                    or not isinstance(first_epoch, numbers.Integral) or first_epoch < 0):
        raise ValueError(f"first_epoch must be a non-negative integer, with a seed; got {first_epoch!r} "
                         f"(seed {seed!r}).")
    if num_epochs is not None and (isinstance(num_epochs, bool) or not isinstance(num_epochs, numbers.Integral)
                                   or num_epochs < 1):
        raise ValueError(f"num_epochs must be a positive integer or None, got {num_epochs!r}.")
    if first_epoch is not None and not augment_per_batch:
        raise ValueError("first_epoch needs augment_per_batch=True (epoch-keyed pipelines augment whole batches).")
    training = base_split == "train" if training is None else bool(training)
    drop_remainder = training if drop_remainder is None else bool(drop_remainder)

    builder = spec.builder(resolve_data_dir(data_dir), config, raw_dir=raw_dir, prepare=prepare)
    source = builder.as_dataset(split=split, shuffle_files=False)
    num_examples = int(source.cardinality())
    image_spec = source.element_spec["image"]
    if tuple(image_spec.shape) != tuple(spec.image_shape):
        raise ValueError(
            f"The prepared data set in {builder.data_dir} holds images of shape {tuple(image_spec.shape)}, "
            f"not {spec.name}'s {tuple(spec.image_shape)}."
        )

    def number(index, example):
        return example["image"], tf.cast(example["label"], tf.int32), tf.cast(index, tf.int32)

    ds = source.enumerate().map(number, num_parallel_calls=AUTOTUNE)
    if cache is True:
        ds = ds.cache()
    elif cache:
        ds = ds.cache(cache)

    shuffle_seed, augment_seed = _derive_seeds(seed)
    buffer = shuffle_buffer or (num_examples if num_examples > 0 else 50_000)
    normalize = _normalizer(spec)
    padding = spec.crop_padding

    def finish(images, labels, indices):
        images = normalize(images)
        if with_index:
            return {"image": images, "index": indices}, labels
        return images, labels

    def reshuffled(ds):
        """Shuffled, batched and augmented examples, in a new order at each iteration."""
        ds = ds.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
        keys = tf.data.Dataset.random(seed=augment_seed, rerandomize_each_iteration=True)
        if augment_per_batch:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
            ds = tf.data.Dataset.zip((ds, keys))

            def augment_batch(batch, key):
                images, labels, indices = batch
                return finish(random_crop_flip_batch(images, key, padding), labels, indices)

            ds = ds.map(augment_batch, num_parallel_calls=AUTOTUNE)
        else:
            ds = tf.data.Dataset.zip((ds, keys))

            def augment_image(example, key):
                image, label, index = example
                return random_crop_flip_image(image, key, padding), label, index

            ds = ds.map(augment_image, num_parallel_calls=AUTOTUNE)
            ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
            ds = ds.map(finish, num_parallel_calls=AUTOTUNE)
        return ds

    if not training:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
        ds = ds.map(finish, num_parallel_calls=AUTOTUNE)
    elif first_epoch is None:
        ds = reshuffled(ds)
    else:
        ds = _epoch_keyed(ds, num_examples, batch_size, drop_remainder, shuffle_seed, augment_seed, first_epoch,
                          num_epochs, lambda images, key: random_crop_flip_batch(images, key, padding), finish)
    return ds.prefetch(AUTOTUNE)


def _epoch_keyed(examples, num_examples, batch_size, drop_remainder, shuffle_seed, augment_seed, first_epoch,
                 num_epochs, augment, finish):
    """Epochs back to back whose order and augmentation depend on (seed, epoch) alone.

    Only stateless random ops are used (tf.data's seeded ops depend on the
    global seed and on how often the dataset was iterated): each epoch draws a
    permutation of the whole split from `(shuffle_seed, epoch)` and gathers its
    batches from one in-memory copy of the split (read from the cache); batch
    `b` of epoch `e` is augmented with a key drawn from `(augment_seed, e, b)`.
    """
    last = first_epoch + num_epochs if num_epochs is not None else np.iinfo(np.int64).max
    whole = examples.batch(num_examples)  # the split as one element

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples), seed=tf.stack([tf.constant(shuffle_seed, tf.int64), epoch]))

        def gathered(images, labels, indices):
            def take(rows):
                return tf.gather(images, rows), tf.gather(labels, rows), tf.gather(indices, rows)

            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder).map(
                take, num_parallel_calls=AUTOTUNE)

        def augment_batch(number, batch):
            key = tf.random.stateless_uniform(
                [], seed=tf.stack([tf.constant(augment_seed, tf.int64), epoch * 2**20 + number]),
                minval=None, maxval=None, dtype=tf.int64)
            images, labels, indices = batch
            return finish(augment(images, key), labels, indices)

        return whole.flat_map(gathered).enumerate().map(augment_batch, num_parallel_calls=AUTOTUNE)

    return tf.data.Dataset.range(first_epoch, last).flat_map(epoch_batches)
