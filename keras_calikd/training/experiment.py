"""One experiment run: train a teacher, a student from scratch, or a distilled student, and evaluate it."""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Callable, Optional, Sequence, Union

import keras
import numpy as np

from keras_calikd import models
from keras_calikd.distillations.base import DATASET_LABELS, INDICES
from keras_calikd.metrics import ExpectedCalibrationError, OverconfidenceError, plot_reliability_diagram
from keras_calikd.training import callbacks as callbacks_lib
from keras_calikd.training import checkpoint
from keras_calikd.training.evaluation import bin_statistics, calibration_report, collect_logits
from keras_calikd.training.files import check_writable, write_json
from keras_calikd.training.optimizers import SCHEDULES, SGD, EpochSchedule

ROLES = ("teacher", "student", "distilled")
PRECISIONS = ("float32", "mixed_bfloat16")


class MissingTeacherError(FileNotFoundError):
    """A distillation run's teacher has not been trained yet."""


def method_label(distiller) -> str:
    """A short label of a distilled run's method, e.g. `"KD + mixup"`, `"CRD"` (the report's column)."""
    parts = [d.label or type(d).__name__ for d in distiller.distillations if d.weight > 0]
    if distiller.augmentation.transforms_images:
        parts.append(distiller.augmentation.label or type(distiller.augmentation).__name__)
    return " + ".join(parts)


class Experiment:
    """A training run configured by constructor arguments (bound with gin by `tools/train.py`).

    Without `teacher`, `model` is trained on its own with cross-entropy (a
    teacher, or a student from scratch). With `teacher` (the name of a
    finished teacher run) and `distiller` (a callable such as the `Distiller`
    class, whose strategies gin configures), `model` is distilled from it.

    The run folder `<runs_dir>/<name>` receives: `checkpoints/` (`state.npz`
    to resume, `best.keras` by validation accuracy, `last.keras`),
    `logs/metrics.csv` and `logs/tensorboard/`, `results.json` (accuracy, ECE
    and OE at each of `eval_bins`, NLL, Brier of the best checkpoint on the
    test split), `reliability.png` and `saved_model/`. Running the same
    experiment again resumes from the last completed epoch.

    Args:
        name: Run name; its folder is `<runs_dir>/<name>`. `tools/train.py` uses
            the gin file's path under `gin/`, e.g. `cifar100/kd_mixup_vgg13_mobilenetv2`.
        dataset: A data set name of `keras_calikd.data` (e.g. `"cifar100"`).
        model: A model name of `keras_calikd.models`: the network this run trains.
        role: `"teacher"`, `"student"` (from scratch) or `"distilled"`
            (default: `"distilled"` with a teacher, else `"student"`).
        teacher: Name of the teacher's run; its `checkpoints/best.keras` is loaded.
        distiller: Callable `(teacher=..., student=...) -> Distiller`; needed with `teacher`.
        runs_dir: Folder of all runs.
        epochs, batch_size: Training length and batch size.
        learning_rate, momentum, weight_decay: SGD with coupled L2 weight decay.
        schedule: `"cosine"` (T_max = `epochs`), `"multistep"` or `"constant"`.
        milestones, gamma: For `"multistep"`.
        train_split, validation_split, test_split: Splits (TFDS slicing allowed,
            e.g. `"train[:10000]"`). Validation picks the best epoch; the final
            metrics are computed on `test_split` with the best checkpoint.
        eval_batch_size: Batch size of evaluation.
        data_dir: TFDS data folder (default: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        seed: Seeds weight initialisation, strategies and the input pipeline.
        precision: `"float32"` or `"mixed_bfloat16"`.
        jit_compile: Compile the training step with XLA: `True`, `False`, or `"auto"` (Keras' choice: XLA
            on JAX and on TensorFlow with a GPU, a plain TensorFlow graph on a CPU; tools/benchmark.py measured
            this to be the faster choice on each, see docs/benchmarks.md).
        eval_bins: Bin counts of the reported ECE/OE (the paper reports 100).
        export: Export the best model as a SavedModel at the end.
        verbose: Keras progress-bar verbosity.
    """

    def __init__(
        self,
        name: str,
        dataset: str,
        model: str,
        role: Optional[str] = None,
        teacher: Optional[str] = None,
        distiller: Optional[Callable] = None,
        runs_dir: str = "runs",
        epochs: int = 240,
        batch_size: int = 64,
        learning_rate: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        schedule: str = "cosine",
        milestones: Sequence[int] = (150, 180),
        gamma: float = 0.1,
        train_split: str = "train",
        validation_split: str = "test",
        test_split: str = "test",
        eval_batch_size: int = 500,
        data_dir: Optional[str] = None,
        seed: int = 0,
        precision: str = "float32",
        jit_compile: Union[bool, str] = "auto",
        eval_bins: Sequence[int] = (100, 15),
        export: bool = True,
        verbose: int = 1,
    ):
        if (teacher is None) != (distiller is None):
            raise ValueError(
                "A distillation run needs both `Experiment.teacher` (the teacher run's name) and "
                "`Experiment.distiller` (e.g. `@Distiller`); a teacher or from-scratch run sets neither."
            )
        role = role or ("distilled" if teacher else "student")
        if role not in ROLES:
            raise ValueError(f"`Experiment.role` must be one of {ROLES}, got {role!r}.")
        if (role == "distilled") != (teacher is not None):
            raise ValueError(f"role={role!r} does not match teacher={teacher!r}: only distilled runs have a teacher.")
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"`Experiment.{key}` must be a positive integer, got {value!r}.")
        if schedule not in SCHEDULES:
            raise ValueError(f"`Experiment.schedule` must be one of {SCHEDULES}, got {schedule!r}.")
        if precision not in PRECISIONS:
            raise ValueError(f"`Experiment.precision` must be one of {PRECISIONS}, got {precision!r}.")
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"`Experiment.jit_compile` must be True, False or \"auto\", got {jit_compile!r}.")
        if not learning_rate > 0 or weight_decay < 0 or not 0 <= momentum < 1:
            raise ValueError(
                f"Need learning_rate > 0, weight_decay >= 0 and momentum in [0, 1); got {learning_rate}, "
                f"{weight_decay}, {momentum}."
            )
        models.MODELS.get(model)  # unknown names fail here, listing the known ones
        self.name, self.dataset, self.model_name, self.role = name, dataset, model, role
        self.teacher, self.distiller_factory = teacher, distiller
        self.runs_dir = runs_dir
        self.epochs, self.batch_size, self.eval_batch_size = int(epochs), int(batch_size), int(eval_batch_size)
        self.learning_rate, self.momentum, self.weight_decay = float(learning_rate), float(momentum), float(weight_decay)
        self.schedule, self.milestones, self.gamma = schedule, tuple(milestones), float(gamma)
        self.train_split, self.validation_split, self.test_split = train_split, validation_split, test_split
        self.data_dir, self.seed, self.precision = data_dir, int(seed), precision
        self.jit_compile, self.eval_bins, self.export, self.verbose = jit_compile, tuple(eval_bins), export, verbose

    # ------------------------------------------------------------------ paths

    @property
    def output_dir(self) -> str:
        return os.path.join(self.runs_dir, self.name)

    def path(self, *parts) -> str:
        return os.path.join(self.output_dir, *parts)

    def teacher_checkpoint(self) -> str:
        return os.path.join(self.runs_dir, self.teacher, "checkpoints", "best.keras")

    def teacher_command(self) -> str:
        command = f"python tools/train.py --gin gin/{self.teacher}.gin"
        if os.path.normpath(self.runs_dir) != "runs":
            command += f" --gin_param 'RUNS_DIR = \"{self.runs_dir}\"'"
        return command

    # ------------------------------------------------------------------ checks before training

    def check(self) -> None:
        """Everything that can fail before training: teacher checkpoint, output folder, data set."""
        if self.teacher is not None and not os.path.isfile(self.teacher_checkpoint()):
            raise MissingTeacherError(
                f"The teacher checkpoint {self.teacher_checkpoint()} does not exist. Train the teacher first:\n"
                f"    {self.teacher_command()}"
            )
        check_writable(self.output_dir)

    # ------------------------------------------------------------------ the run

    def run(self) -> dict:
        """Trains (or resumes) the run, evaluates the best checkpoint and exports it; returns the results."""
        import keras_calikd.data as data  # the input pipelines import TensorFlow

        self.check()
        keras.config.set_dtype_policy(self.precision)
        keras.utils.set_random_seed(self.seed)
        info = data.info(self.dataset, self.data_dir)

        teacher = None
        if self.teacher is not None:
            teacher = keras.models.load_model(self.teacher_checkpoint(), compile=False)
        network = models.get(self.model_name, num_classes=info.num_classes, input_shape=info.image_shape)
        check_writable(self.output_dir, needed_bytes=8 * 4 * network.count_params() + 2**20)
        if teacher is not None:
            trainer = self.distiller_factory(teacher=teacher, student=network)
            requirements = trainer.requirements
            description = dict(teacher=self.teacher, teacher_model=self._teacher_model(teacher),
                               method=method_label(trainer), alpha=trainer.alpha)
        else:
            trainer, requirements, description = network, frozenset(), {}

        load_train = functools.partial(data.load, self.dataset, self.train_split, self.batch_size, training=True,
                                       data_dir=self.data_dir, with_index=INDICES in requirements, seed=self.seed)
        validation = data.load(self.dataset, self.validation_split, self.eval_batch_size, training=False,
                               data_dir=self.data_dir)
        steps_per_epoch = int(load_train().cardinality())
        if steps_per_epoch < 1:
            raise ValueError(f"The training split {self.train_split!r} has fewer examples than one batch "
                             f"({self.batch_size}).")
        if DATASET_LABELS in requirements:
            trainer.set_dataset_labels(self._split_labels(data))

        schedule = EpochSchedule(self.learning_rate, steps_per_epoch, self.schedule, t_max=self.epochs,
                                 milestones=self.milestones, gamma=self.gamma)
        optimizer = SGD(schedule, momentum=self.momentum, l2_weight_decay=self.weight_decay)
        metrics = ["accuracy", ExpectedCalibrationError(15, from_logits=True),
                   OverconfidenceError(15, from_logits=True)]
        if teacher is not None:
            trainer.compile(optimizer=optimizer, metrics=metrics, jit_compile=self.jit_compile)
        else:
            trainer.compile(optimizer=optimizer, metrics=metrics, jit_compile=self.jit_compile,
                            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        trainer.optimizer.build(trainer.trainable_variables)

        state_path = self.path("checkpoints", "state.npz")
        initial_epoch, history, best = 0, [], None
        if checkpoint.exists(state_path):
            metadata = checkpoint.load_state(state_path, trainer)
            initial_epoch, history, best = metadata["epoch"], metadata["history"], metadata["best"]
            print(f"Resuming {self.name} after epoch {initial_epoch} from {state_path}.")

        saver = callbacks_lib.ExperimentCheckpoint(
            state_path=state_path, best_path=self.path("checkpoints", "best.keras"),
            last_path=self.path("checkpoints", "last.keras"), csv_path=self.path("logs", "metrics.csv"),
            export_model=network, history=history, best=best,
            extra_state=lambda: {"name": self.name, "seed": self.seed},
        )
        callbacks = [callbacks_lib.NonFiniteLossGuard(saver.describe_last), saver,
                     keras.callbacks.TensorBoard(self.path("logs", "tensorboard"), write_graph=False)]
        started = time.time()
        if initial_epoch < self.epochs:
            # Epoch e's batches depend on (seed, e) only: a resumed run sees what an uninterrupted one does.
            train = load_train(first_epoch=initial_epoch, num_epochs=self.epochs - initial_epoch)
            trainer.fit(train, validation_data=validation, epochs=self.epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=self.verbose, shuffle=False)
        results = self.evaluate(data)
        results.update(description)
        results.update(train_seconds=round(time.time() - started, 1), best_epoch=saver.best_epoch,
                       epochs=self.epochs)
        write_json(self.path("results.json"), results)
        if self.export:
            self.export_saved_model(info)
        return results

    def _teacher_model(self, teacher) -> str:
        """The teacher's architecture name, from its run's results when there are any."""
        results = os.path.join(self.runs_dir, self.teacher, "results.json")
        if os.path.isfile(results):
            with open(results) as f:
                return json.load(f).get("model", teacher.name)
        return teacher.name

    def _split_labels(self, data) -> np.ndarray:
        labels = data.load(self.dataset, self.train_split, 4096, training=False, data_dir=self.data_dir)
        return np.concatenate([y for _, y in labels.as_numpy_iterator()])

    def evaluate(self, data) -> dict:
        """Metrics of the best checkpoint on the test split, and its reliability diagram."""
        best = keras.models.load_model(self.path("checkpoints", "best.keras"), compile=False)
        test = data.load(self.dataset, self.test_split, self.eval_batch_size, training=False, data_dir=self.data_dir)
        logits, labels = collect_logits(best, test)
        results = calibration_report(logits, labels, bins=self.eval_bins)
        results.update(name=self.name, dataset=self.dataset, role=self.role, model=self.model_name,
                       test_split=self.test_split)
        statistics = bin_statistics(logits, labels, 15)
        results["reliability_15"] = {k: v.tolist() for k, v in statistics.items()}
        plot_reliability_diagram(statistics, self.path("reliability.png"),
                                 title=f"{self.name} (ECE {results['ece_15']:.3f}, 15 bins)")
        return results

    def export_saved_model(self, info) -> None:
        """Exports the best checkpoint as a SavedModel (in a TensorFlow subprocess when on another backend)."""
        from keras_calikd.training.export import export_saved_model

        mean = [255.0 * m for m in info.mean]
        std = [255.0 * s for s in info.std]
        if keras.backend.backend() == "tensorflow":
            best = keras.models.load_model(self.path("checkpoints", "best.keras"), compile=False)
            export_saved_model(best, self.path("saved_model"), mean=mean, std=std)
            return
        import subprocess
        import sys

        tool = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "export.py")
        command = [sys.executable, os.path.abspath(tool), "--checkpoint", self.path("checkpoints", "best.keras"),
                   "--output", self.path("saved_model"), "--dataset", self.dataset]
        result = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND="tensorflow"), capture_output=True,
                                text=True)
        if result.returncode != 0:
            print(f"SavedModel export skipped (it needs TensorFlow): {result.stderr.strip().splitlines()[-1:]}")


def summarize(results: dict) -> str:
    """One line of a run's results."""
    bins = sorted((int(k.split("_")[1]) for k in results if k.startswith("ece_")), reverse=True)
    parts = [f"accuracy {100 * results['accuracy']:.2f}%"]
    parts += [f"ECE@{b} {results[f'ece_{b}']:.4f} OE@{b} {results[f'oe_{b}']:.4f}" for b in bins]
    parts += [f"NLL {results['nll']:.4f}", f"Brier {results['brier']:.4f}"]
    if math.isfinite(results.get("train_seconds", float("nan"))):
        parts.append(f"{results['train_seconds']:.0f}s")
    return f"{results['name']}: " + ", ".join(parts)
