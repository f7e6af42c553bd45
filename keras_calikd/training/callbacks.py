"""Callbacks of an experiment run: checkpoints and logs written atomically, and a non-finite-loss guard."""

from __future__ import annotations

import csv
import io
import math
import os
import time

import keras

from keras_calikd.training import checkpoint
from keras_calikd.files import atomic_path, checksum, write_text


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite, with a message naming the step.

    Nothing is written after a non-finite step: checkpoints are only written
    at the end of an epoch whose losses were all finite.

    Args:
        last_checkpoint: A callable returning a description of the last good checkpoint.
    """

    def __init__(self, last_checkpoint=lambda: "none yet"):
        super().__init__()
        self.last_checkpoint = last_checkpoint
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"The training loss became {float(loss)} at epoch {self.epoch + 1}, step {batch + 1}. Training "
                f"stopped; the last good checkpoint is {self.last_checkpoint()}, and nothing was overwritten. "
                "Lower the learning rate or check the data (labels in range, finite images)."
            )


class ExperimentCheckpoint(keras.callbacks.Callback):
    """At the end of each epoch: the best model, the last model, the training state and the CSV log.

    Everything is written atomically, in an order that keeps the files
    consistent if the process is killed at any moment: the best and last
    models first, then the training state (which decides where a resumed run
    continues), then the CSV log regenerated from the history in the state.

    In a multi-process job every process keeps the history and the best
    epoch (the epoch logs are global, so all decide alike) and only the chief
    writes.

    Args:
        state_path: Training-state file (`checkpoint.save_state`).
        best_path: `.keras` file of the exported model with the best `monitor`.
        last_path: `.keras` file of the exported model after the last epoch.
        csv_path: CSV log, one row per epoch.
        export_model: The model to save in `best_path`/`last_path` (the student of a Distiller).
        monitor: Log key that decides the best epoch.
        higher_is_better: Whether the best epoch has the highest `monitor` (accuracy) or the lowest (a loss).
        history: Epoch logs of the run so far (from a resumed state).
        best: Best `monitor` value so far.
        extra_state: Callable returning extra JSON-serialisable state to store.
        write: Whether this process writes the files; default: only the chief of a multi-process job
            (`keras_calikd.training.distribution.is_chief()`).
        files: Size and SHA-256 of the best and last checkpoints when they were written (by file name), from a
            resumed state; kept up to date in every state written.
        train_seconds: The training time of the epochs of a resumed state, to which this process's adds.
        resumes: How many times training continued from a saved state before this process.
    """

    def __init__(self, state_path, best_path, last_path, csv_path, export_model, monitor="val_accuracy",
                 history=None, best=None, extra_state=dict, write=None, files=None, train_seconds=0.0, resumes=0,
                 higher_is_better=True):
        super().__init__()
        if write is None:
            from keras_calikd.training import distribution

            write = distribution.is_chief()
        self.write = bool(write)
        self.state_path, self.best_path, self.last_path, self.csv_path = state_path, best_path, last_path, csv_path
        self.export_model = export_model
        self.monitor = monitor
        self.higher_is_better = bool(higher_is_better)
        self.history = list(history or [])
        self.best = best
        # The first epoch that reached the best value: a later epoch that ties it does not replace it.
        self.best_epoch = min((row["epoch"] for row in self.history if row.get(monitor) == best), default=None)
        self.extra_state = extra_state
        self.files = dict(files or {})
        self.train_seconds, self.resumes = float(train_seconds), int(resumes)
        self._timing = None

    def rewrite_log(self) -> None:
        """Writes the CSV log from the history (a kill between the state and the log left it one row short)."""
        if self.history and self.write:
            write_text(self.csv_path, history_csv(self.history))

    def describe_last(self) -> str:
        if not self.history:
            return "none yet"
        return f"{self.state_path} (after epoch {self.history[-1]['epoch']})"

    def on_train_begin(self, logs=None):
        self._timing = (self.train_seconds, time.perf_counter())  # this process adds its time to the saved epochs'
        if self.history:
            self.resumes += 1

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if not math.isfinite(logs.get("loss", 0.0)):
            return  # never checkpoint a diverged model
        if self._timing is not None:
            self.train_seconds = self._timing[0] + time.perf_counter() - self._timing[1]
        row = dict(logs, epoch=epoch + 1)
        value = logs.get(self.monitor)
        improved = value is not None and math.isfinite(value) and (
            self.best is None or (value > self.best if self.higher_is_better else value < self.best))
        if improved:
            self.best, self.best_epoch = value, epoch + 1
        self.history.append(row)
        if not self.write:
            return
        for path in ([self.best_path] if improved else []) + [self.last_path]:
            save_model(self.export_model, path)
            self.files[os.path.basename(path)] = checksum(path)  # checked before the best one is evaluated
        checkpoint.save_state(self.state_path, self.model, dict(
            epoch=epoch + 1, history=self.history, best=self.best, best_epoch=self.best_epoch, files=self.files,
            train_seconds=self.train_seconds, resumes=self.resumes, **self.extra_state()))
        write_text(self.csv_path, history_csv(self.history))


def save_model(model: keras.Model, path: str) -> None:
    """`model.save(path)` (a `.keras` file), atomically."""
    with atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)


def history_csv(history) -> str:
    """The epoch history as CSV text, `epoch` first."""
    keys = ["epoch"] + sorted({k for row in history for k in row} - {"epoch"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in keys})
    return out.getvalue()
