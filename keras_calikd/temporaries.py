"""The temporaries of atomic writes: made so that only this library's are ever recognised, removed once abandoned.

`keras_calikd.files.atomic_path` writes every file and folder under a
temporary folder beside its target (`make_temporary`). A kill can leave one
behind; `remove_temporaries` deletes it at the next start. A folder is
provably a temporary of this library only when it has a name `make_temporary`
makes (`.calikd-tmp-*`, `.calikd-old-*`) and holds its marker file (or nothing:
killed before the marker was written); a user's folder that merely looks like
one is never touched.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile

TEMPORARY_PREFIXES = (".calikd-tmp-", ".calikd-old-")
TEMPORARY_MARK = ".calikd-temporary"  # inside every temporary folder: what makes it provably this library's
TEMPORARY_NAME = re.compile(r"^\.calikd-(tmp|old)-[A-Za-z0-9_]{8}$")  # tempfile.mkdtemp's names, our prefixes
RUN_MARKER = "run.json"  # present in every run folder of an Experiment (whose temporaries are its own)


def make_temporary(folder: str, aside: bool = False):
    """A new temporary folder in `folder`, locked and marked as this library's; returns `(path, descriptor)`.

    The lock is released by closing the descriptor (or by the process's end). A kill between the folder's
    creation and its marker leaves an empty folder, which `remove_temporaries` may delete: nothing is lost.

    Args:
        folder: Where (beside the target it is written for).
        aside: A folder holding an earlier version moved aside (`.calikd-old-*`), not a new one.
    """
    temporary = tempfile.mkdtemp(prefix=TEMPORARY_PREFIXES[1 if aside else 0], dir=folder)
    held = hold(temporary)
    try:
        with open(os.path.join(temporary, TEMPORARY_MARK), "w") as f:
            f.write("keras_calikd temporary: removed at the next start of a keras_calikd tool or run\n")
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        os.close(held)
        raise
    return temporary, held


def hold(folder: str) -> int:
    """Locks `folder` (an OS lock, released when the process ends, also on SIGKILL); returns the descriptor."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


def remove_temporaries(folder: str, recursive: bool = True) -> list:
    """Deletes the temporaries that killed atomic writes left in `folder`; returns their paths.

    Only folders that are provably this library's temporaries are removed: a
    name `make_temporary` makes (`.calikd-tmp-*`, `.calikd-old-*`), its marker
    file inside (or nothing at all inside: killed before the marker was written),
    and a writer that has ended (a living writer holds their lock). A subfolder
    holding a run of its own (`run.json`) is left to that run. A folder moved
    aside (`.calikd-old-*`) whose target is missing is moved back first: it is
    the last complete version.

    Args:
        folder: Where to look.
        recursive: Also in its subfolders (a run's folder), or in `folder` alone (beside a tool's output).
    """
    removed = []
    for root, folders, _ in os.walk(folder):
        for name in list(folders):
            path = os.path.join(root, name)
            if not TEMPORARY_NAME.match(name):
                if not recursive or os.path.isfile(os.path.join(path, RUN_MARKER)):
                    folders.remove(name)
                continue
            folders.remove(name)
            if _remove_if_abandoned(root, path):
                removed.append(path)
    return removed


def _remove_if_abandoned(root: str, path: str) -> bool:
    try:
        if os.path.islink(path) or not (os.path.isfile(os.path.join(path, TEMPORARY_MARK)) or not os.listdir(path)):
            return False  # not provably ours: a user's folder that only has a name like ours
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # its writer is alive
        os.close(descriptor)
        return False
    try:
        if os.path.basename(path).startswith(TEMPORARY_PREFIXES[1]) and os.path.exists(os.path.join(path, "item")) \
                and os.path.isfile(os.path.join(path, "target")):
            _restore_moved_aside(root, path)
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(descriptor)
    return True


def _restore_moved_aside(root: str, aside: str) -> None:
    """Puts a folder moved aside by an interrupted replacement back where it was, if nothing took its place."""
    with open(os.path.join(aside, "target")) as f:
        target = os.path.join(root, f.read().strip())
    if not os.path.exists(target):
        os.replace(os.path.join(aside, "item"), target)
