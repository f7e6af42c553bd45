"""Atomic file writes: a killed process never leaves a partial or corrupt file under the final name."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename, else it is removed.

    Args:
        path: Final file or folder path.
        suffix: Ending the temporary name must have (e.g. `".keras"`, which Keras checks).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".tmp-", dir=folder)
    target = os.path.join(temporary, "item" + suffix)
    try:
        yield target
        if os.path.isfile(target):
            with open(target, "rb") as f:
                os.fsync(f.fileno())
        if os.path.isdir(path) and not os.path.islink(path):
            # Folders cannot be replaced in one rename: move the old one aside first.
            old = tempfile.mkdtemp(prefix=".old-", dir=folder)
            os.replace(path, os.path.join(old, "item"))
            os.replace(target, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_json(path: str, payload) -> None:
    """Writes `payload` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")


def write_text(path: str, text: str) -> None:
    """Writes `text`, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            f.write(text)


def check_writable(folder: str, needed_bytes: int = 0) -> None:
    """Fails early, with a clear message, if `folder` cannot be written or has too little free space."""
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise PermissionError(
            f"The output folder {folder!r} is not writable ({error.strerror}). Choose another folder "
            "(e.g. --gin_param 'RUNS_DIR=\"/path/with/space\"') or fix its permissions."
        ) from None
    free = shutil.disk_usage(folder).free
    if needed_bytes and free < needed_bytes:
        raise OSError(
            f"The output folder {folder!r} has {free / 2**20:.0f} MiB free, but checkpoints and exports need "
            f"about {needed_bytes / 2**20:.0f} MiB. Free some space or choose another folder."
        )
