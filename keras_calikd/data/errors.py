"""Exceptions raised by `keras_calikd.data`."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A data set is neither prepared in the data directory nor available as raw files.

    The message says which files to put where and where they are published.
    Raised before any work starts (nothing is downloaded: the pipelines work
    offline). Being a `FileNotFoundError`, it can be caught as such.
    """


class CorruptFileError(ValueError):
    """A raw file of a data set (an image, a `.npy` or an IDX file) cannot be read.

    Attributes:
        path: The offending file.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read {self.path}: {reason}")
