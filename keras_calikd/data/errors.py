"""Exceptions raised by `keras_calikd.data`."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A data set is neither prepared in the data directory nor available as raw files.

    The message says which files to put where and where they are published.
    Raised before any work starts (nothing is downloaded: the pipelines work
    offline). Being a `FileNotFoundError`, it can be caught as such.

    Example:

    ```python
    try:
        ckd.load("tiny_imagenet", "train", 128)
    except ckd.DatasetNotFoundError as error:
        print(error)   # which files go where, and where they are published
    ```
    """


class CorruptFileError(ValueError):
    """A file of a data set (an image, a `.npy`, an IDX or a prepared TFRecord file) cannot be read.

    Args:
        path: The offending file (or folder).
        reason: What is wrong with it, and how to fix it where that is not obvious.

    Attributes:
        path: The offending file (or folder).
        reason: The `reason` argument.

    Example:

    ```python
    try:
        ckd.load("cinic10", "train", 64)
    except ckd.CorruptFileError as error:
        print("replace", error.path)
    ```
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read {self.path}: {reason}")


class CorruptPreparedDataError(CorruptFileError):
    """A prepared TFRecord file of a data set is damaged (TensorFlow reports `tf.errors.DataLossError`).

    Raised by `read`/`load` when they find the damage (they check every
    prepared file once per process) and built by `Split.corruption_error` for
    a `tf.errors.DataLossError` caught later, e.g. in the middle of training.
    The message names the file (or the prepared folder) and says to delete
    the prepared folder so that the next load prepares it again.

    Args:
        path: The damaged file, or the prepared folder when the file is not known.
        reason: What TensorFlow reported, and the remedy.
        prepared_dir: The prepared folder to delete.

    Attributes:
        prepared_dir: The prepared folder to delete (besides `path` and `reason`).

    Example:

    ```python
    try:
        split = ckd.read("cifar100", "train")
    except ckd.CorruptPreparedDataError as error:
        shutil.rmtree(error.prepared_dir)   # then copy or prepare it again
    ```
    """

    def __init__(self, path, reason: str, prepared_dir):
        self.prepared_dir = str(prepared_dir)
        super().__init__(path, reason)


class SliceOutOfRangeError(ValueError):
    """A TFDS slice of a split asks for examples the split does not hold (e.g. `"train[:1000]"` of 64 images).

    Args:
        split: The sliced split as given (`"train[:1000]"`).
        dataset: The data set's full name.
        num_examples: The number of examples of the whole split.

    Attributes:
        split, num_examples: The arguments; `base`: the split's name without its slice.

    Example:

    ```python
    try:
        ckd.read("fashion_mnist", "test[:20000]")
    except ckd.SliceOutOfRangeError as error:
        print(error.base, error.num_examples)   # test 10000
    ```
    """

    def __init__(self, split: str, dataset: str, num_examples: int):
        self.split, self.num_examples = split, int(num_examples)
        self.base = split.split("[")[0]
        self.within = (f"give a slice within its {self.num_examples} images, e.g. '{self.base}[:{self.num_examples}]' "
                       f"or a percentage such as '{self.base}[:50%]'")
        super().__init__(f"The slice {split!r} asks for more images than {dataset}'s {self.base} split holds "
                         f"({self.num_examples}); {self.within}.")
