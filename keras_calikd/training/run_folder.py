"""A run's folder: one writer at a time, leftovers of killed writes cleaned, resumed only by the same run.

`run.json` in the folder records what the run is (the settings that decide
its training), where it runs (backend, Keras version, precision) and whether
it finished. A process that opens the folder holds an OS lock on it until it
exits (the lock dies with the process, also on SIGKILL), so a second process
fails at once instead of writing into the same files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from typing import Optional

from keras_calikd.files import RUN_MARKER, remove_temporaries, write_json

LOCK_FILE = ".lock"


class RunInUseError(RuntimeError):
    """Another process is training into the same run folder."""


class RunMismatchError(ValueError):
    """A run folder holds a run of another configuration, backend, Keras version or precision."""


class RunFolder:
    """The folder of one run, opened by at most one process at a time.

    Args:
        path: The run's folder (created when missing).

    Example:

    ```python
    with RunFolder("runs/cifar100/kd") as run:
        run.check_resumable(signature, provenance)
        ...
        run.mark_finished(epochs=240)
    ```
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self) -> None:
        """Takes the folder's lock and removes temporaries that killed writes left behind."""
        os.makedirs(self.path, exist_ok=True)
        lock = os.open(os.path.join(self.path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
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
        os.ftruncate(lock, 0)
        os.pwrite(lock, str(os.getpid()).encode(), 0)
        self._lock = lock
        remove_temporaries(self.path)

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    # ------------------------------------------------------------------ what the run is

    def record(self) -> Optional[dict]:
        """The folder's `run.json`, or `None` for a new folder."""
        path = os.path.join(self.path, RUN_MARKER)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as error:
            raise RunMismatchError(f"{path} cannot be read ({error}); it is written atomically, so the file was "
                                   "changed by hand. Restore it or start the run in a new folder.") from None

    def check_resumable(self, signature: dict, provenance: dict) -> None:
        """Refuses a folder holding another run; writes `run.json` for a new one.

        Args:
            signature: The settings that decide the training (a resumed run must match them all).
            provenance: Backend, Keras version and precision (a resumed run must match them too).
        """
        record = self.record()
        if record is None:
            write_json(os.path.join(self.path, RUN_MARKER),
                       {"signature": signature, "provenance": provenance, "finished": False})
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

    def finished_epochs(self) -> Optional[int]:
        """The number of epochs a finished run was trained for, or `None` while it is not finished."""
        record = self.record() or {}
        return record.get("epochs") if record.get("finished") else None

    def mark_finished(self, epochs: int, finished: bool = True) -> None:
        """Records that the run finished `epochs` epochs (or, with `finished=False`, that it continues)."""
        record = self.record() or {}
        write_json(os.path.join(self.path, RUN_MARKER), dict(record, finished=finished, epochs=int(epochs)))


def is_finished(path: str) -> bool:
    """Whether the run folder `path` holds a finished run (read without taking its lock)."""
    try:
        with open(os.path.join(path, RUN_MARKER)) as f:
            return bool(json.load(f).get("finished"))
    except (OSError, ValueError):
        return False
