"""Shared machinery of the TFDS builders that prepare data sets from raw files.

Each builder reads the files a user downloaded by hand (the machines this
library targets may be offline) from one folder, `raw_dir`, validates them, and
writes a regular TFDS data set under `<data_dir>/<builder name>/...`, in the
order of the raw files (not shuffled: see `RawFilesBuilder.info_in_file_order`).
Later loads read the prepared TFRecords and never look at the raw files again.
"""

from __future__ import annotations

import io
import os
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow_datasets as tfds

from keras_calikd.data.errors import CorruptFileError, DatasetNotFoundError


class RawFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A `GeneratorBasedBuilder` whose raw files come from a local folder.

    Subclasses set `RAW_FOLDER` (the folder's conventional name under
    `<data_dir>/downloads/manual/`), `SOURCE` (where the files are published),
    `LAYOUT` (what goes in that folder), implement `missing_raw_files(raw_dir)`
    listing what is absent, build their `_info` with `info_in_file_order` and yield
    their examples in the order of the raw files with integer keys 0, 1, ...

    Args:
        raw_dir: Folder holding the raw files. Only needed to prepare the data
            set; loading an already prepared data set ignores it.
        **kwargs: `data_dir`, `config`, `version` of `tfds.core.DatasetBuilder`.
    """

    RAW_FOLDER: str = ""
    SOURCE: str = ""
    LAYOUT: str = ""

    def __init__(self, *, raw_dir: Optional[os.PathLike] = None, **kwargs):
        self._raw_dir = None if raw_dir is None else os.fspath(raw_dir)
        super().__init__(**kwargs)

    @property
    def raw_dir(self) -> str:
        if self._raw_dir is None:
            raise DatasetNotFoundError(
                f"No raw folder was given to prepare {self.name!r}; expected {self.RAW_FOLDER}/ "
                f"({self.SOURCE})."
            )
        return self._raw_dir

    def info_in_file_order(self, **kwargs) -> tfds.core.DatasetInfo:
        """`tfds.core.DatasetInfo(builder=self, disable_shuffling=True, **kwargs)`.

        `disable_shuffling` makes TFDS write the examples in the order the
        builder yields them (sorted by their integer keys) instead of
        TFDS's hash order, and read them back in that order: the prepared
        data keeps the raw files' order (docs/data.md, "Stored order").
        """
        return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, **kwargs)

    @classmethod
    def missing_raw_files(cls, raw_dir: str, config_name: Optional[str] = None) -> list:
        """Returns the paths (under `raw_dir`) that preparing needs but that do not exist."""
        raise NotImplementedError

    def _split_generators(self, dl_manager):  # pragma: no cover - subclasses override.
        raise NotImplementedError


def _pil():
    try:
        from PIL import Image  # Pillow ships with matplotlib, a dependency of keras_calikd.
    except ImportError as e:  # pragma: no cover
        raise ImportError("Preparing image-folder data sets needs Pillow: pip install pillow") from e
    return Image


def read_image_file(path: str, size: Tuple[int, int], fmt: str):
    """Reads and fully decodes one image file, for validation, and returns what to store.

    Args:
        path: The image file.
        size: Expected (height, width).
        fmt: `"png"` or `"jpeg"`, the encoding the prepared data set stores.

    Returns:
        The original file bytes when they decode to 8-bit RGB or grayscale in
        the stored format (TFDS's decoder expands grayscale to RGB), otherwise
        a (H, W, 3) uint8 array converted to RGB, which TFDS re-encodes.

    Raises:
        CorruptFileError: naming `path`, when it cannot be read or decoded, or has the wrong size.
    """
    Image = _pil()
    try:
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if (im.height, im.width) != tuple(size):
                raise CorruptFileError(
                    path, f"expected a {size[0]}x{size[1]} image, found {im.height}x{im.width}."
                )
            stored_format = {"png": "PNG", "jpeg": "JPEG"}[fmt]
            if im.format == stored_format and im.mode in ("RGB", "L"):
                return data
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except CorruptFileError:
        raise
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...).
        raise CorruptFileError(path, f"not a readable image ({type(e).__name__}: {e}).") from e


def not_found_message(title: str, raw_dir: str, missing: Sequence[str], layout: str, source: str,
                      prepared_dir: str) -> str:
    shown = "\n".join(f"  - {m}" for m in list(missing)[:10])
    more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
    return (
        f"{title} is not prepared in {prepared_dir} and its raw files are missing:\n{shown}{more}\n"
        f"Put the files, as their authors distribute them, in {raw_dir}:\n{layout}\n"
        f"They are published at {source}. Nothing is downloaded automatically; once the files are "
        f"there, the next load prepares the data set once into {prepared_dir}."
    )
