"""A run's folder: one writer at a time, a run's alone, leftovers of killed writes cleaned, resumed by the same run.

`run.json` in the folder records what the run is (the settings that decide
its training), where it runs (backend, Keras version, precision), whether it
finished and, once finished, the size and SHA-256 of every file it wrote. A
process that opens the folder holds an OS lock on it until it exits (the lock
dies with the process, also on SIGKILL), so a second process fails at once
instead of writing into the same files.

A run folder holds one run and nothing else: never inside another run nor
around one, never a folder holding files the run did not write. A process
refused before it trained leaves nothing behind (not the folder it created,
nor its lock file).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from typing import Optional

from keras_calikd.files import (RUN_MARKER, describe_change, enclosing_run, folder_checksums, make_temporary,
                                remove_temporaries, write_json)

LOCK_FILE = ".lock"
#: The files a run writes into its folder, and the folders it writes whole (relative paths): nothing else is its.
RUN_FILES = ("run.json", "config.gin", "operative_config.gin", "results.json", "reliability.png", "reliability.pdf",
             "reliability.svg", "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/state.npz",
             "logs/metrics.csv")
RUN_TREES = ("logs/tensorboard/", "saved_model/")
#: What to do about a file of a finished run that is not the one it wrote; the rest are rewritten by an evaluation.
_REDO = "Delete results.json and run the same command again: the run evaluates its best checkpoint again and " \
        "rewrites its results, diagrams and export."
_ADVICE = {
    "checkpoints/best.keras": "The run's results come from it: restore it from a copy, or train the run again under "
                              "another Experiment.name (or after deleting its folder).",
    "checkpoints/last.keras": "It is needed to continue the run: restore it from a copy, or train the run again "
                              "under another Experiment.name (or after deleting its folder).",
    "checkpoints/state.npz": "It is needed to continue the run: restore it from a copy, or train the run again "
                             "under another Experiment.name (or after deleting its folder).",
}


class RunInUseError(RuntimeError):
    """Another process is training into the same run folder."""


class RunMismatchError(ValueError):
    """A run folder holds a run of another configuration, backend, Keras version or precision."""


class RunFolderError(ValueError):
    """A folder that cannot hold this run: inside another run, around other runs, or holding others' files."""


class RunDamagedError(ValueError):
    """A file of a run is not the one the run wrote (changed, truncated or missing)."""


def is_run_file(relative: str) -> bool:
    """Whether `relative` (a path inside a run folder, `/`-separated) is one a run writes."""
    return relative in RUN_FILES or relative.startswith(RUN_TREES)


def run_files(path: str) -> dict:
    """`{relative path: {"size", "sha256"}}` of the files of the run at `path` (run.json and the lock aside)."""
    return {name: value for name, value in folder_checksums(path, skip={RUN_MARKER, LOCK_FILE}).items()
            if is_run_file(name)}


def foreign_files(path: str) -> list:
    """The files under the run folder `path` that its run did not write (relative paths)."""
    return sorted(name for name in folder_checksums(path, skip={LOCK_FILE}) if not is_run_file(name))


class RunFolder:
    """The folder of one run, opened by at most one process at a time.

    Args:
        path: The run's folder (created when missing, removed again if the process writes nothing into it).

    Example:

    ```python
    with RunFolder("runs/cifar100/kd") as run:
        run.check_resumable(signature, provenance)
        run.start(signature, provenance)
        ...
        run.mark_finished(epochs=240)
    ```
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = None
        self._created = []

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self) -> None:
        """Checks where the folder is, takes its lock, removes temporaries that killed writes left behind.

        Raises:
            RunFolderError: the folder is inside another run, holds other runs, or holds files that are not a run's.
            RunInUseError: another process holds the run.
        """
        outer = enclosing_run(os.path.dirname(os.path.abspath(self.path)))
        if outer is not None:
            raise RunFolderError(f"{self.path} would be inside the run folder {outer}, and a run never holds another "
                                 "run. Choose an Experiment.name (or a RUNS_DIR) outside it.")
        self._created = _missing_folders(self.path)
        os.makedirs(self.path, exist_ok=True)
        try:
            self._take_lock()
            remove_temporaries(self.path)
            self._check_contents()
        except BaseException:
            self.close()
            raise

    def _take_lock(self) -> None:
        path = os.path.join(self.path, LOCK_FILE)
        while True:
            lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = os.pread(lock, 64, 0).decode(errors="replace").strip() or "another process"
                os.close(lock)
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    raise RunInUseError(
                        f"The run {self.path} is in use by process {holder}: wait for it to finish or stop it; two "
                        "processes never train into one run folder."
                    ) from None
                raise
            if _same_file(lock, path):
                break
            os.close(lock)  # the process that held it removed the file as it ended: take the new one
        os.ftruncate(lock, 0)
        os.pwrite(lock, str(os.getpid()).encode(), 0)
        self._lock = lock

    def _check_contents(self) -> None:
        if os.path.isfile(os.path.join(self.path, RUN_MARKER)):
            return
        inner = next((os.path.join(root, RUN_MARKER) for root, _, files in os.walk(self.path) if RUN_MARKER in files),
                     None)
        if inner is not None:
            raise RunFolderError(f"{self.path} holds another run ({os.path.dirname(inner)}), and a run never holds "
                                 "another run. Choose another Experiment.name.")
        names = sorted(name for name in os.listdir(self.path) if name != LOCK_FILE)
        if not names:
            return
        theirs = [name for name in RUN_FILES + tuple(t.rstrip("/") for t in RUN_TREES)
                  if os.path.exists(os.path.join(self.path, name))]
        if theirs:
            raise RunFolderError(
                f"{self.path} holds a run's files ({', '.join(theirs[:3])}) but no run.json, which records what the "
                "run is: without it the run cannot be checked or resumed. Restore run.json, or delete the folder to "
                "train the run again, or choose another Experiment.name.")
        raise RunFolderError(f"{self.path} holds files that are not a run's (e.g. {names[0]!r}); a run starts in a new "
                             "or empty folder. Choose another Experiment.name or RUNS_DIR, or move them away.")

    def close(self) -> None:
        """Releases the lock, removing its file, and the folders `open` created if nothing was written into them."""
        if self._lock is None:
            return
        path = os.path.join(self.path, LOCK_FILE)
        if _same_file(self._lock, path):  # removed while held: a process waiting for it takes a new one
            os.remove(path)
        os.close(self._lock)  # releases the lock
        self._lock = None
        for folder in reversed(self._created):
            try:
                os.rmdir(folder)
            except OSError:  # something was written: the run is there
                break

    # ------------------------------------------------------------------ what the run is

    def record(self) -> Optional[dict]:
        """The folder's `run.json`, or `None` for a new folder."""
        path = os.path.join(self.path, RUN_MARKER)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError) as error:
            record = error
        if not isinstance(record, dict):
            raise RunMismatchError(f"{path} cannot be read ({record}); it is written atomically, so the file was "
                                   "changed by hand. Restore it or start the run in a new folder.")
        return record

    def check_resumable(self, signature: dict, provenance: dict) -> None:
        """Refuses a folder holding another run.

        Args:
            signature: The settings that decide the training (a resumed run must match them all).
            provenance: Backend, Keras version and precision (a resumed run must match them too).
        """
        record = self.record()
        if record is None:
            return
        for kind, expected, here in (("configuration", record.get("signature", {}), signature),
                                     ("environment", record.get("provenance", {}), provenance)):
            differences = [f"{key}: {expected.get(key)!r} in the run, {here.get(key)!r} now"
                           for key in sorted(set(expected) | set(here)) if expected.get(key) != here.get(key)]
            if differences:
                raise RunMismatchError(
                    f"{self.path} holds a run of another {kind} ({'; '.join(differences)}). Resume it as it was "
                    "started, or choose another run name (Experiment.name) or RUNS_DIR."
                )

    def start(self, signature: dict, provenance: dict) -> None:
        """Writes `run.json` for a new run (the first file of a run: from here on the folder is the run's)."""
        if self.record() is None:
            write_json(os.path.join(self.path, RUN_MARKER),
                       {"signature": signature, "provenance": provenance, "finished": False})

    def finished_epochs(self) -> Optional[int]:
        """The number of epochs a finished run was trained for, or `None` while it is not finished."""
        record = self.record() or {}
        return record.get("epochs") if record.get("finished") else None

    def mark_finished(self, epochs: int, finished: bool = True) -> None:
        """Records that the run finished `epochs` epochs, with its files' checksums (or, with `finished=False`,
        that it continues)."""
        record = {k: v for k, v in (self.record() or {}).items() if k != "files"}
        record.update(finished=finished, epochs=int(epochs))
        if finished:
            record["files"] = run_files(self.path)
        write_json(os.path.join(self.path, RUN_MARKER), record)

    def verify(self, names=None, recorded: Optional[dict] = None) -> None:
        """Checks that the run's files are the ones it wrote (the checksums of run.json, or `recorded`).

        Args:
            names: Which files to check (relative paths); default every one recorded.
            recorded: `{relative path: {"size", "sha256"}}` to check against; default the finished run's.

        Raises:
            RunDamagedError: naming the first file that differs and what to do.
        """
        recorded = recorded if recorded is not None else (self.record() or {}).get("files", {})
        for name in sorted(recorded if names is None else set(names) & set(recorded)):
            change = describe_change(recorded[name], os.path.join(self.path, *name.split("/")))
            if change:
                raise RunDamagedError(f"{os.path.join(self.path, name)} is not the file the run wrote ({change}). "
                                      f"{_ADVICE.get(name, _REDO)}")


def is_finished(path: str) -> bool:
    """Whether the run folder `path` holds a finished run (read without taking its lock)."""
    try:
        with open(os.path.join(path, RUN_MARKER)) as f:
            return bool(json.load(f).get("finished"))
    except (OSError, ValueError, AttributeError):
        return False


def remove_run(path: str, check_only: bool = False) -> None:
    """Deletes the run folder `path`: only when no process holds it and it holds nothing its run did not write.

    The folder is first moved under a temporary name (`.calikd-tmp-*`, removed at the
    next cleanup if a kill interrupts the deletion), so it never stays half
    deleted under its own name.

    Args:
        path: A run folder.
        check_only: Check, delete nothing (to check several runs before deleting any).

    Raises:
        RunFolderError: `path` is not a run folder, or holds files its run did not write.
        RunInUseError: a process holds the run.
    """
    if not os.path.isfile(os.path.join(path, RUN_MARKER)) or os.path.islink(path):
        raise RunFolderError(f"{path} is not a run folder (no run.json); nothing was deleted.")
    foreign = foreign_files(path)
    if foreign:
        raise RunFolderError(f"{path} holds {foreign[0]!r}, which its run did not write; nothing was deleted. Move "
                             "it out of the run folder (or delete the folder yourself).")
    folder = RunFolder(path)
    folder._take_lock()
    try:
        if not check_only:
            aside, held = make_temporary(os.path.dirname(os.path.abspath(path)))
            try:
                os.replace(path, os.path.join(aside, "item"))
                shutil.rmtree(aside, ignore_errors=True)
            finally:
                os.close(held)
    finally:
        folder.close()


def _same_file(descriptor: int, path: str) -> bool:
    """Whether the open file `descriptor` is still the file at `path`."""
    try:
        here, there = os.fstat(descriptor), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _missing_folders(path: str) -> list:
    """The folders `os.makedirs(path)` would create, outermost first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing[::-1]
