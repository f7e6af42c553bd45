"""TensorBoard logs of calibration: per-epoch validation reliability diagrams, final test metrics, hyperparameters.

`CalibrationTensorBoard` is a Keras callback that, at the end of every epoch
with validation, draws the reliability diagram of the validation set from the
per-bin statistics the compiled `ExpectedCalibrationError` holds right after
validation (no extra pass over the data) and writes it as an image. After
training, `write_test_metrics` writes the final test metrics as scalars and
`write_hparams` the run's hyperparameters through TensorBoard's HParams
plugin, so runs compare in its dashboard with the test metrics as columns.

Everything goes to `<log_dir>/calibration/` (`SUBFOLDER`); with `log_dir` the
run's `logs/tensorboard/`, TensorBoard shows it beside Keras' own `train/`
and `validation/` logs. It works on every Keras backend: TensorFlow, always
installed with keras_calikd, writes the event files (on the CPU).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from typing import Mapping, Optional

import keras
import numpy as np

SUBFOLDER = "calibration"
IMAGE_TAG = "validation/reliability_diagram"
TEST_PREFIX = "test/"
#: Keys of a `results.json` written as test scalars (plus every `ece_<bins>` and `oe_<bins>`).
TEST_KEYS = ("accuracy", "nll", "brier")


def _tf():
    import tensorflow as tf

    return tf


def test_metrics(results: Mapping) -> dict:
    """The final test metrics of a `results.json` dict, as `{"test/<key>": value}`.

    Args:
        results: A run's results: `accuracy`, `ece_<bins>`, `oe_<bins>`, `nll`, `brier` (absent keys are skipped).

    Returns:
        Tag -> float, e.g. `{"test/accuracy": 0.74, "test/ece_100": 0.05, ...}`.

    Example:

    ```python
    test_metrics({"accuracy": 0.7, "ece_100": 0.05})  # {"test/accuracy": 0.7, "test/ece_100": 0.05}
    ```
    """
    keys = [k for k in TEST_KEYS if k in results]
    keys += sorted(k for k in results if re.fullmatch(r"(ece|oe|mce|adaptive_ece|classwise_ece)_\d+", k))
    return {TEST_PREFIX + k: float(results[k]) for k in keys
            if isinstance(results[k], numbers.Real) and math.isfinite(results[k])}


def _scalar(value):
    """A value the HParams plugin accepts: bool, int, float or str (None and others become strings)."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return "none" if value is None else str(value)


def hparams_from_results(results: Mapping, signature: Optional[Mapping] = None, **extra) -> dict:
    """The hyperparameters of a run, flat, for `write_hparams`.

    Args:
        results: The run's `results.json` dict (`name`, `dataset`, `role`, `model`, and for distilled runs
            `teacher_model`, `method`, `alpha`).
        signature: The run's training settings (`Experiment.signature(trainer)`, stored as `run.json`'s
            `"signature"`): learning rate, batch size, schedule, seed, and the distillation and augmentation
            strategies with their settings.
        **extra: More hyperparameters (e.g. `epochs=240`); they override the others.

    Returns:
        `{"name", "dataset", "role", "model", "teacher", "method", "alpha", "temperature", "augmentation", ...}`;
        strategy settings appear as `"<Class>.<setting>"` (e.g. `"MixUp.alpha"`), `temperature` is the KD
        temperature (`"none"` without KD), and `alpha` is `"none"` where the run has no balance.

    Example:

    ```python
    hparams = hparams_from_results(results, record["signature"], epochs=240)
    ```
    """
    role = results.get("role")
    hparams = {"name": results.get("name"), "dataset": results.get("dataset"), "role": role,
               "model": results.get("model"), "teacher": results.get("teacher_model") if role == "distilled" else None,
               "method": results.get("method") or ("teacher" if role == "teacher" else "from scratch"),
               "alpha": results.get("alpha"), "temperature": None, "augmentation": None}
    signature = dict(signature or {})
    for key in ("learning_rate", "batch_size", "weight_decay", "momentum", "schedule", "seed", "train_split"):
        if key in signature:
            hparams[key] = signature[key]
    if "alpha" in signature:
        hparams["alpha"] = signature["alpha"]
    strategies = list(signature.get("distillation") or [])
    augmentation = signature.get("augmentation")
    hparams["distillation"] = " + ".join(s.get("class", "?") for s in strategies) or None
    hparams["augmentation"] = augmentation.get("class") if augmentation else None
    for config in strategies + ([augmentation] if augmentation else []):
        for key, value in config.items():
            if key != "class" and (value is None or isinstance(value, (bool, str, numbers.Real))):
                hparams[f"{config.get('class', '?')}.{key}"] = value
        if config.get("class") == "KD" and "temperature" in config:
            hparams["temperature"] = config["temperature"]
    hparams.update(extra)
    return {key: _scalar(value) for key, value in hparams.items()}


class CalibrationTensorBoard(keras.callbacks.Callback):
    """Writes the validation reliability diagram each epoch, then the test metrics and hyperparameters.

    The diagram comes from `metric.bin_statistics()` at `on_epoch_end`: Keras
    resets the compiled metrics before validation and runs validation before
    `on_epoch_end`, so at that moment the metric holds the validation set's
    statistics (on JAX too, whose metric state is synced back after
    validation). The callback checks this each epoch: the metric's result
    must equal the epoch's `val_<metric name>` log, else it raises. Epochs
    without validation (`validation_freq`) are skipped.

    Args:
        log_dir: The run's TensorBoard folder (e.g. `<run>/logs/tensorboard`); files go to
            `<log_dir>/calibration/`.
        metric: The `ExpectedCalibrationError` (or `OverconfidenceError`) object passed to `compile(metrics=...)`.
        title: Diagram title, e.g. `keras_calikd.training.report.run_title(results)`; the epoch is appended.
        every: Write a diagram every `every` epochs (counted from epoch 1).
        dpi: Resolution of the image (the diagram is 4.6 x 5.6 inches).
        write: Whether this process writes; default: only the chief of a multi-process job
            (`keras_calikd.training.distribution.is_chief()`). Every process reads the metric's statistics at
            the end of each epoch all the same: under `tf.distribute` with several workers that read sums the
            workers' statistics, a step all of them take together.

    Example:

    ```python
    ece = ck.metrics.ExpectedCalibrationError(15, from_logits=True)
    model.compile(optimizer="sgd", loss=..., metrics=["accuracy", ece])
    board = CalibrationTensorBoard("runs/x/logs/tensorboard", ece, title="vgg13 → MobileNetV2\\nKD + mixup")
    model.fit(train, validation_data=validation, epochs=240, callbacks=[board])
    board.write_test_metrics(results, step=240)
    board.write_hparams(hparams_from_results(results, signature))
    board.close()
    ```
    """

    def __init__(self, log_dir: str, metric, title: Optional[str] = None, every: int = 1, dpi: int = 100,
                 write: Optional[bool] = None):
        super().__init__()
        if write is None:
            from keras_calikd.training import distribution

            write = distribution.is_chief()
        self.write = bool(write)
        if not callable(getattr(metric, "bin_statistics", None)):
            raise ValueError(f"CalibrationTensorBoard needs the compiled ExpectedCalibrationError (or "
                             f"OverconfidenceError) object, got {type(metric).__name__}.")
        if int(every) != every or every < 1:
            raise ValueError(f"CalibrationTensorBoard: `every` must be a positive integer, got {every!r}.")
        self.log_dir = os.path.join(log_dir, SUBFOLDER)
        self.metric = metric
        self.title = title
        self.every = int(every)
        self.dpi = int(dpi)
        self._writer = None

    @property
    def writer(self):
        """The summary writer of `<log_dir>/calibration` (created on first use)."""
        if self._writer is None:
            tf = _tf()
            with tf.device("/cpu:0"):
                self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def _check_validation_statistics(self, logs: Mapping) -> None:
        key = f"val_{self.metric.name}"
        logged = float(np.asarray(logs[key]))
        held = float(keras.ops.convert_to_numpy(self.metric.result()))
        if not math.isclose(held, logged, rel_tol=1e-5, abs_tol=1e-7):
            raise ValueError(
                f"CalibrationTensorBoard: the metric holds {self.metric.name}={held:.6f} but validation logged "
                f"{key}={logged:.6f}; pass the metric object given to compile(metrics=[...]), whose statistics are "
                "the validation ones at the end of an epoch."
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if f"val_{self.metric.name}" not in logs or (epoch + 1) % self.every:
            return
        self._check_validation_statistics(logs)
        statistics = self.metric.bin_statistics()
        if self.write:
            self.write_diagram(statistics, step=epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def write_diagram(self, statistics: dict, step: int, tag: str = IMAGE_TAG) -> np.ndarray:
        """Writes one reliability diagram as an image at `step` (the 0-based epoch, as Keras' epoch scalars).

        Returns:
            The RGBA image written.
        """
        from keras_calikd.metrics.reliability import reliability_image

        suffix = f"validation, epoch {step + 1}"
        title = f"{self.title}, {suffix}" if self.title else suffix
        image = reliability_image(statistics, title=title, dpi=self.dpi)
        tf = _tf()
        with tf.device("/cpu:0"), self.writer.as_default():
            tf.summary.image(tag, image[None], step=step,
                             description=f"Reliability diagram of the validation set ({len(statistics['count'])} "
                                         "bins), from the compiled calibration metric after validation.")
        self.writer.flush()
        return image

    def write_test_metrics(self, results: Mapping, step: Optional[int] = None) -> dict:
        """Writes the final test metrics as scalars `test/<key>` (the HParams dashboard's metric columns).

        Args:
            results: The run's results (`accuracy`, `ece_<bins>`, `oe_<bins>`, `nll`, `brier`).
            step: Step of the scalars (default: `results["epochs"]`, else 0).

        Returns:
            The scalars written, tag -> value (computed but not written where `write` is False).
        """
        scalars = test_metrics(results)
        if not scalars:
            raise ValueError("write_test_metrics: the results hold none of accuracy, ece_<bins>, oe_<bins>, nll, "
                             "brier.")
        if not self.write:
            return scalars
        step = int(results.get("epochs", 0) if step is None else step)
        tf = _tf()
        with tf.device("/cpu:0"), self.writer.as_default():
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value, step=step)
        self.writer.flush()
        return scalars

    def write_hparams(self, hparams: Mapping, trial_id: Optional[str] = None) -> dict:
        """Writes the run's hyperparameters through the HParams plugin (one session per run).

        The session's metrics are the scalars of the same folder: the test metrics of
        `write_test_metrics`. No experiment-wide configuration is written: each run
        folder would hold its own and the dashboard would pick one arbitrarily; it
        infers the columns from all sessions instead.

        Args:
            hparams: Name -> value (bool, int, float or str; None and others are written as strings),
                e.g. `hparams_from_results(results, signature)`.
            trial_id: The session's name (default: `hparams["name"]` when given).

        Returns:
            The hyperparameters as written (or as they would be, where `write` is False).
        """
        from tensorboard.plugins.hparams import api as hp

        if not hparams:
            raise ValueError("write_hparams: no hyperparameters given.")
        values = {str(k): _scalar(v) for k, v in hparams.items()}
        trial_id = trial_id if trial_id is not None else (values.get("name") if isinstance(values.get("name"), str)
                                                           else None)
        if not self.write:
            return values
        tf = _tf()
        with tf.device("/cpu:0"), self.writer.as_default():
            hp.hparams(values, trial_id=trial_id)
        self.writer.flush()
        return values

    def close(self) -> None:
        """Flushes and closes the event file (a later write opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
