"""Files that are never lost: atomic writes, their leftovers cleaned at the next start, outputs claimed safely.

Every file and folder keras_calikd writes goes through `atomic_path`: the
content is written under a temporary name beside the target (`.tmp-*`) and
renamed into place in one step, so a process killed at any instant leaves
either the old file or the new one, never a partial one. A kill can leave the
temporary itself behind; `remove_temporaries` deletes those (only names this
module creates) when the next run starts.

A tool writes only into a target it owns (`claim_output`): a new path, or one
it created itself earlier (marked by a small file); a run folder is never
replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

TEMPORARY_PREFIXES = (".tmp-", ".old-")
RUN_MARKER = "run.json"  # present in every run folder of an Experiment


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename, else it is removed.

    Args:
        path: Final file or folder path.
        suffix: Ending the temporary name must have (e.g. `".keras"`, which Keras checks).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=TEMPORARY_PREFIXES[0], dir=folder)
    target = os.path.join(temporary, "item" + suffix)
    try:
        yield target
        if os.path.isfile(target):
            with open(target, "rb") as f:
                os.fsync(f.fileno())
        if os.path.isdir(path) and not os.path.islink(path):
            # Folders cannot be replaced in one rename: move the old one aside first.
            old = tempfile.mkdtemp(prefix=TEMPORARY_PREFIXES[1], dir=folder)
            with open(os.path.join(old, "target"), "w") as f:  # lets remove_temporaries put it back
                f.write(os.path.basename(path))
            os.replace(path, os.path.join(old, "item"))
            os.replace(target, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def remove_temporaries(folder: str) -> list:
    """Deletes the temporaries that killed atomic writes left anywhere under `folder`; returns their paths.

    Only folders named by `atomic_path` (`.tmp-*`, `.old-*`) are removed. A
    folder moved aside (`.old-*`) whose target is missing is moved back first:
    it is the last complete version.
    """
    removed = []
    for root, folders, _ in os.walk(folder):
        for name in list(folders):
            if not name.startswith(TEMPORARY_PREFIXES):
                continue
            path = os.path.join(root, name)
            folders.remove(name)
            if name.startswith(TEMPORARY_PREFIXES[1]) and os.path.exists(os.path.join(path, "item")) \
                    and os.path.isfile(os.path.join(path, "target")):
                _restore_moved_aside(root, path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _restore_moved_aside(root: str, aside: str) -> None:
    """Puts a folder moved aside by an interrupted replacement back where it was, if nothing took its place."""
    with open(os.path.join(aside, "target")) as f:
        target = os.path.join(root, f.read().strip())
    if not os.path.exists(target):
        os.replace(os.path.join(aside, "item"), target)


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


class OutputExistsError(FileExistsError):
    """An output path holds something the tool did not create, or that it may not replace."""


def claim_output(path: str, marker: str | None, overwrite: bool = False) -> None:
    """Checks that a tool may write its output at `path`, before any work starts.

    The path must be new, or hold an output this tool created earlier (a
    folder holding `marker`, or a file for `marker=None` outputs that are
    single files); an earlier output is replaced only with `overwrite`. A
    folder holding a run (`run.json`) or anything else is never replaced.

    Raises:
        OutputExistsError: with what is there and what to do.
    """
    if not os.path.lexists(path):
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.exists(parent) and not os.path.isdir(parent):
            raise OutputExistsError(f"Cannot write {path!r}: {parent!r} is a file, not a folder.")
        return
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, RUN_MARKER)):
        raise OutputExistsError(f"{path!r} is a run folder; outputs never replace a run. Write to a new path, "
                                f"e.g. {os.path.join(path, 'exported')!r}.")
    ours = os.path.isfile(os.path.join(path, marker)) if marker else os.path.isfile(path)
    if os.path.isdir(path) and not os.listdir(path):
        return
    if not ours:
        raise OutputExistsError(f"{path!r} already exists and was not written by this tool; nothing was changed. "
                                "Choose a new path.")
    if not overwrite:
        raise OutputExistsError(f"{path!r} holds an earlier output; pass --overwrite to replace it, or choose a "
                                "new path.")
