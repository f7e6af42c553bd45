"""A run's configuration: which network trains on what, how, and where its folder is; frozen and checked when made.

`Experiment` is the configuration `calikd-train` builds with gin (every
setting is a constructor argument, checked at once); `run()` trains it with an
`ExperimentRunner` (`keras_calikd.training.runner`), whose `RunWriter`
(`keras_calikd.training.run_writer`) is the one place where the run folder is
written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable, Optional, Sequence, Union

import keras
import numpy as np

from keras_calikd import checks, models
from keras_calikd.metrics.calibration import MAX_BINS
from keras_calikd.metrics.reliability import FORMATS as DIAGRAM_FORMATS
from keras_calikd.training import distribution as distribution_lib
from keras_calikd.optimizers import SCHEDULES
from keras_calikd.training import posthoc
from keras_calikd.training.run_folder import is_finished

ROLES = ("teacher", "student", "distilled")
PRECISIONS = ("float32", "mixed_bfloat16")
#: `Experiment.select_by` -> the logged validation metric that picks the best epoch, and whether higher is better.
#: `val_loss` is the network's cross-entropy on the validation split (the zoo's networks add no regularisation
#: loss to it): its NLL. `val_ece` is the ECE at `Experiment.diagram_bins` bins logged each epoch.
SELECT_BY = {"accuracy": ("val_accuracy", True), "nll": ("val_loss", False), "ece": ("val_ece", False)}
OWNER = "Experiment"


class MissingTeacherError(FileNotFoundError):
    """A distillation run's teacher has not been trained (to the end) yet."""


def _config_of(layer) -> dict:
    """A strategy's class and settings, without the names Keras numbers per session."""
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable", "dtype")}
    return {"class": type(layer).__name__, **config}


def _checked_role(role, teacher, distiller) -> str:
    """The run's role, checked against whether it has a teacher and a distiller."""
    if (teacher is None) != (distiller is None):
        raise ValueError(
            "A distillation run needs both `Experiment.teacher` (the teacher run's name) and "
            "`Experiment.distiller` (e.g. `@Distiller`); a teacher or from-scratch run sets neither."
        )
    role = checks.one_of(OWNER, "role", role or ("distilled" if teacher else "student"), ROLES)
    if (role == "distilled") != (teacher is not None):
        raise ValueError(f"role={role!r} does not match teacher={teacher!r}: only distilled runs have a teacher.")
    return role


#: The longest folder name most file systems take (ext4, APFS, NTFS: 255), in bytes of UTF-8.
MAX_FOLDER_NAME_BYTES = 255
#: A bound on a whole run name, leaving room under PATH_MAX (4096) for `runs_dir` and the run's own files.
MAX_RUN_NAME_BYTES = 1024


def _checked_run_name(field: str, value, optional: bool = False) -> Optional[str]:
    """A run name: folder names joined by `/`, inside `runs_dir` (its folder is `<runs_dir>/<name>`)."""
    value = checks.text(OWNER, field, value, optional=optional)
    if value is None:
        return None
    parts = value.split("/")
    bad = (os.path.isabs(value) or value.startswith("~") or "\\" in value
           or any(part in ("", ".", "..") or part.startswith(".") for part in parts))
    if bad:
        raise ValueError(f"{OWNER}: `{field}` must be a run name under RUNS_DIR, folder names joined by '/' (e.g. "
                         f"'cifar100/kd'): no absolute path, no '.', '..' or empty part, no part starting with '.'; "
                         f"got {value!r}.")
    for part in parts:
        if not part.strip() or not part.isprintable():
            raise ValueError(f"{OWNER}: `{field}`'s folder name {part!r} is blank or holds an unprintable character "
                             "(a control or direction character, or only spaces); use visible characters.")
        size = len(part.encode("utf-8"))
        if size > MAX_FOLDER_NAME_BYTES:
            raise ValueError(f"{OWNER}: `{field}`'s folder name {part[:24] + '...'!r} is {size} bytes long (UTF-8); "
                             f"file systems take at most {MAX_FOLDER_NAME_BYTES} bytes per folder name: shorten it "
                             "(or split it into folders with '/').")
    size = len(value.encode("utf-8"))
    if size > MAX_RUN_NAME_BYTES:
        raise ValueError(f"{OWNER}: `{field}` is {size} bytes long (UTF-8); a run name may be at most "
                         f"{MAX_RUN_NAME_BYTES} bytes (the run's files lie below it, and paths are bounded): "
                         "shorten it.")
    return value


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A training run's configuration: frozen, checked when it is made (gin binds it for `calikd-train`).

    Without `teacher`, `model` is trained on its own with cross-entropy (a
    teacher, or a student from scratch). With `teacher` (the name of a
    finished teacher run) and `distiller` (a callable such as the `Distiller`
    class, whose strategies gin configures), `model` is distilled from it.

    The run folder `<runs_dir>/<name>` receives: `run.json` (what the run is,
    where it runs, whether it finished), `checkpoints/` (`state.npz` to
    resume, `best.keras` by `select_by`, `last.keras`),
    `logs/metrics.csv` and `logs/tensorboard/`, `results.json` (accuracy, ECE
    and OE at each of `eval_bins`, NLL, Brier of the best checkpoint on the
    test split; their 95% bootstrap intervals over the test images under
    `intervals`; the `seed`, the `configuration` it shares with runs that
    differ only in their seed, `select_by` and `best_epoch`; its training
    time over every process and how often it was resumed), `reliability.png`,
    `.pdf` and `.svg` (`diagram_formats`) and `saved_model/`. Models are built with
    the data set's normalisation inside, so they take raw pixel images.
    Running the same experiment again resumes from the last completed epoch;
    a finished run is left as it is (once its files are checked against the
    checksums it recorded), more `epochs` continue it, fewer are refused. `run()`
    hands the configuration to an `ExperimentRunner` (`training/runner.py`),
    whose `RunWriter` (`training/run_writer.py`) alone writes the run folder.

    Args:
        name: Run name, folder names joined by `/` (no absolute path, `.`, `..` or
            hidden part); its folder is `<runs_dir>/<name>`, which never holds nor
            sits inside another run's. `calikd-train` uses the gin file's path
            under `gin/`, e.g. `cifar100/vgg13_mobilenetv2_kd_mixup`.
        dataset: A data set name of `keras_calikd.data` (e.g. `"cifar100"`).
        model: A model name of `keras_calikd.models`: the network this run trains.
        role: `"teacher"`, `"student"` (from scratch) or `"distilled"`
            (default: `"distilled"` with a teacher, else `"student"`).
        teacher: Name of the teacher's run; its `checkpoints/best.keras` is loaded.
        distiller: Callable `(teacher=..., student=...) -> Distiller`; needed with `teacher`.
        teacher_calibration_split: Held-out data (a split or slice neither the teacher nor this run trains on)
            on which a post-hoc calibration map is fitted to the teacher before distillation: the student then
            distils from the calibrated teacher. The fit is printed and saved in `results.json`
            (`teacher_calibration`: method, parameters, NLL before and after, warnings; and
            `teacher_temperature` for temperature scaling). `None`: the teacher as it is (the paper).
        teacher_calibration_method: The map fitted on `teacher_calibration_split`: `"temperature"` (the
            default), `"vector"` or `"matrix"` (see `keras_calikd.training.teacher_calibration.calibrate`).
        allow_unfinished_teacher: Distil from a teacher run that has not finished (its best checkpoint so far).
        runs_dir: Folder of all runs.
        epochs, batch_size: Training length and batch size.
        learning_rate, momentum, weight_decay: SGD with coupled L2 weight decay.
        schedule: `"cosine"` (T_max = `epochs`), `"multistep"` or `"constant"`.
        milestones, gamma: For `"multistep"`: epochs at which the rate is multiplied by `gamma`.
        crop_flip: Augment the training images with the paper's standard random crop (zero padding) and
            horizontal flip. `False`: the images as they are.
        train_split, validation_split, test_split: Splits (TFDS slicing allowed,
            e.g. `"train[:10000]"`). Validation picks the best epoch; the final
            metrics are computed on `test_split` with the best checkpoint.
        select_by: What picks the best epoch on `validation_split`: `"accuracy"` (the highest; the paper's and
            the default), `"nll"` (the lowest cross-entropy) or `"ece"` (the lowest ECE at `diagram_bins`
            bins). The first epoch that reaches the best value is kept. `results.json` says which
            (`select_by`); it is part of the run's signature only when not `"accuracy"`.
        eval_batch_size: Batch size of evaluation.
        data_dir: TFDS data folder (default: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        seed: Seeds weight initialisation, strategies and the input pipeline.
        precision: `"float32"` or `"mixed_bfloat16"`.
        jit_compile: Compile the training step with XLA: `True`, `False`, or `"auto"` (Keras' choice: XLA
            on JAX and on TensorFlow with a GPU, a plain TensorFlow graph on a CPU; calikd-benchmark measured
            this to be the faster choice on each, see docs/benchmarks.md).
        eval_bins: Bin counts of the reported ECE/OE (the paper reports 100). The smallest of them is also the
            bin count of the reliability diagrams and of the ECE/OE logged each epoch (`diagram_bins`).
        temperature_scaling_split: Held-out data (a split or slice the run does not train on, e.g.
            `"train[55000:]"` when training on `"train[:5000]"`) on which a post-hoc temperature is fitted to
            the best checkpoint; `results.json` then also reports the scaled model on the test split
            (`temperature_scaled`). `None`: no temperature scaling.
        diagram_formats: Files of the test split's reliability diagram, `reliability.<format>` for each of
            `"png"`, `"pdf"` and `"svg"` named (a PDF or SVG takes a few seconds more to write than the PNG).
        export: Export the best model as a SavedModel at the end.
        verbose: Keras' verbosity: 0, 1 (a progress bar), 2 (one line per epoch), or `"auto"`: a progress
            bar on a terminal, one line per epoch otherwise (logs, CI).
        distribution: Where the run trains: `None` (one device), `"mirrored"` (all devices of this machine)
            or `"multi_worker"` (several processes, each running this same configuration: `TF_CONFIG` on
            TensorFlow, `KERAS_DISTRIBUTION_*` or SLURM on JAX; see docs/scale_out.md). `batch_size` and
            `eval_batch_size` are global batches; with the same seed every form trains the same model. Only the
            chief (process 0) writes into the run folder; the others read the teacher and the data.
        sync_batch_norm: Batch normalisation of the trained network computes its statistics over the global
            batch (`keras_calikd.training.distribution.sync_batch_norm`): on TensorFlow each replica otherwise
            uses its own rows, which matters when they are few. Part of the run's configuration.
        worker_timeout: Seconds a process waits for the others to join at start and to finish at the end (the
            chief evaluates and exports alone); multi-worker runs only.
        heartbeat_timeout: Seconds of silence after which a process is declared lost and the others stop with
            a message saying so; multi-worker runs only.
    """

    name: str
    dataset: str
    model: str
    role: Optional[str] = None
    teacher: Optional[str] = None
    distiller: Optional[Callable] = None
    teacher_calibration_split: Optional[str] = None
    teacher_calibration_method: str = "temperature"
    allow_unfinished_teacher: bool = False
    runs_dir: str = "runs"
    epochs: int = 240
    batch_size: int = 64
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: Sequence[int] = (150, 180)
    gamma: float = 0.1
    train_split: str = "train"
    crop_flip: bool = True
    validation_split: str = "test"
    test_split: str = "test"
    select_by: str = "accuracy"
    eval_batch_size: int = 500
    data_dir: Optional[str] = None
    seed: int = 0
    precision: str = "float32"
    jit_compile: Union[bool, str] = "auto"
    eval_bins: Sequence[int] = (100, 15)
    temperature_scaling_split: Optional[str] = None
    diagram_formats: Sequence[str] = ("png", "pdf", "svg")
    export: bool = True
    verbose: Union[int, str] = "auto"
    distribution: Optional[str] = None
    sync_batch_norm: bool = False
    worker_timeout: float = 600.0
    heartbeat_timeout: float = 60.0

    def __post_init__(self):
        def set_(field, value):
            object.__setattr__(self, field, value)

        set_("role", _checked_role(self.role, self.teacher, self.distiller))
        models.MODELS.get(self.model)  # unknown names fail here, listing the known ones
        set_("name", _checked_run_name("name", self.name))
        set_("teacher", _checked_run_name("teacher", self.teacher, optional=True))
        set_("dataset", checks.text(OWNER, "dataset", self.dataset))
        for split in ("teacher_calibration_split", "temperature_scaling_split"):
            set_(split, checks.text(OWNER, split, getattr(self, split), optional=True))
        set_("teacher_calibration_method", checks.one_of(OWNER, "teacher_calibration_method",
                                                         self.teacher_calibration_method, posthoc.METHODS))
        set_("allow_unfinished_teacher", bool(self.allow_unfinished_teacher))
        for field in ("epochs", "batch_size", "eval_batch_size"):
            set_(field, checks.integer(OWNER, field, getattr(self, field)))
        set_("learning_rate", checks.number(OWNER, "learning_rate", self.learning_rate, low=0.0, low_open=True))
        set_("momentum", checks.fraction(OWNER, "momentum", self.momentum, high_open=True))
        set_("weight_decay", checks.number(OWNER, "weight_decay", self.weight_decay, low=0.0))
        set_("schedule", checks.one_of(OWNER, "schedule", self.schedule, SCHEDULES))
        milestones = tuple(checks.integer(OWNER, "milestones", m) for m in self.milestones)
        if list(milestones) != sorted(set(milestones)):
            raise ValueError(f"{OWNER}: `milestones` must be increasing epochs, got {list(self.milestones)}.")
        set_("milestones", milestones)
        set_("gamma", checks.number(OWNER, "gamma", self.gamma, low=0.0, low_open=True))
        for split in ("train_split", "validation_split", "test_split"):
            set_(split, checks.text(OWNER, split, getattr(self, split)))
        set_("crop_flip", bool(self.crop_flip))
        set_("select_by", checks.one_of(OWNER, "select_by", self.select_by, tuple(SELECT_BY)))
        set_("seed", checks.integer(OWNER, "seed", self.seed, low=0, high=checks.MAX_SEED))
        set_("precision", checks.one_of(OWNER, "precision", self.precision, PRECISIONS))
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError(f"`Experiment.jit_compile` must be True, False or \"auto\", got {self.jit_compile!r}.")
        set_("eval_bins", tuple(checks.integer(OWNER, "eval_bins", b, high=MAX_BINS) for b in self.eval_bins))
        if not self.eval_bins:
            raise ValueError(f"{OWNER}: `eval_bins` must name at least one bin count, e.g. (100, 15).")
        formats = (self.diagram_formats,) if isinstance(self.diagram_formats, str) else tuple(self.diagram_formats)
        if not formats or len(set(formats)) < len(formats):
            raise ValueError(f"{OWNER}: `diagram_formats` must name each of its formats once, at least one of "
                             f"{', '.join(DIAGRAM_FORMATS)}; got {self.diagram_formats!r}.")
        set_("diagram_formats", tuple(checks.one_of(OWNER, "diagram_formats", f, DIAGRAM_FORMATS) for f in formats))
        set_("export", bool(self.export))
        set_("verbose", checks.one_of(OWNER, "verbose", self.verbose, (0, 1, 2, "auto")))
        if self.distribution is not None and self.distribution not in distribution_lib.KINDS:
            checks.one_of(OWNER, "distribution", self.distribution, (None,) + distribution_lib.KINDS)
        if not isinstance(self.sync_batch_norm, bool):
            raise ValueError(f"{OWNER}: `sync_batch_norm` must be True or False, got {self.sync_batch_norm!r}.")
        for field in ("worker_timeout", "heartbeat_timeout"):
            set_(field, checks.number(OWNER, field, getattr(self, field), low=0.0, low_open=True))

    # ------------------------------------------------------------------ derived settings

    @property
    def model_name(self) -> str:
        """The registered name of the network this run trains."""
        return self.model

    @property
    def distiller_factory(self) -> Optional[Callable]:
        """`(teacher=..., student=...) -> Distiller` of a distillation run."""
        return self.distiller

    @property
    def diagram_bins(self) -> int:
        """The bin count of the reliability diagrams and the per-epoch ECE/OE: the smallest of `eval_bins`."""
        return min(self.eval_bins)

    @property
    def output_dir(self) -> str:
        return os.path.join(self.runs_dir, self.name)

    def path(self, *parts) -> str:
        return os.path.join(self.output_dir, *parts)

    def teacher_dir(self) -> str:
        return os.path.join(self.runs_dir, self.teacher)

    def teacher_checkpoint(self) -> str:
        return os.path.join(self.teacher_dir(), "checkpoints", "best.keras")

    def teacher_command(self) -> str:
        command = f"calikd-train --gin {self.teacher}.gin"
        if os.path.normpath(self.runs_dir) != "runs":
            command += f" --gin_param 'RUNS_DIR = \"{self.runs_dir}\"'"
        return command

    def signature(self, trainer) -> dict:
        """The settings that decide this run's training: a resumed run must match them all."""
        signature = dict(dataset=self.dataset, model=self.model, role=self.role, teacher=self.teacher,
                         teacher_calibration_split=self.teacher_calibration_split,
                         batch_size=self.batch_size, learning_rate=self.learning_rate, momentum=self.momentum,
                         weight_decay=self.weight_decay, schedule=self.schedule, milestones=list(self.milestones),
                         gamma=self.gamma, train_split=self.train_split, crop_flip=self.crop_flip,
                         validation_split=self.validation_split,
                         seed=self.seed)
        if self.sync_batch_norm:
            signature.update(sync_batch_norm=True)
        if self.select_by != "accuracy":  # runs from before the choice existed resume: they picked by accuracy
            signature.update(select_by=self.select_by)
        if self.teacher_calibration_split and self.teacher_calibration_method != "temperature":
            signature.update(teacher_calibration_method=self.teacher_calibration_method)
        if self.teacher is not None:
            signature.update(alpha=trainer.alpha, distillation=[_config_of(d) for d in trainer.distillations],
                             augmentation=_config_of(trainer.augmentation))
        return json.loads(json.dumps(signature))  # as run.json stores it

    def configuration(self, signature: dict) -> str:
        """What identifies the run apart from its seed: `results.json`'s `configuration`, by which reports group seeds.

        The first 16 hex digits of the SHA-256 of the run's `signature` without its seed, with the settings of
        its length and its measurement (`epochs`, `precision`, `test_split`): runs that differ only in their
        seed share it; any other difference (a setting, the teacher run, the strategies' settings) separates
        them.

        Args:
            signature: `signature(trainer)`.
        """
        identity = {k: v for k, v in signature.items() if k != "seed"}
        identity.update(epochs=self.epochs, precision=self.precision, test_split=self.test_split)
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def checkpoint_monitor(self) -> tuple:
        """`(logged validation metric, whether higher is better)` that picks the best epoch (`select_by`)."""
        return SELECT_BY[self.select_by]

    def provenance(self) -> dict:
        return {"backend": keras.backend.backend(), "keras": keras.__version__, "precision": self.precision}

    # ------------------------------------------------------------------ checks before training

    def check(self, data=None, cluster=None) -> None:
        """What can fail before training and writes nothing: the teacher run, the data set and its splits.

        Args:
            data: `keras_calikd.data`, to check the splits (prepared when missing); `None`: the teacher only.
            cluster: The `Cluster` the run trains on (batch sizes and the validation split must split evenly
                over its replicas); default one device.
        """
        if self.teacher is not None:
            if not os.path.isfile(self.teacher_checkpoint()):
                raise MissingTeacherError(f"The teacher checkpoint {self.teacher_checkpoint()} does not exist. "
                                          f"Train the teacher first:\n    {self.teacher_command()}")
            if not self.allow_unfinished_teacher and not is_finished(self.teacher_dir()):
                raise MissingTeacherError(
                    f"The teacher run {self.teacher_dir()} has not finished (it was stopped before its last epoch). "
                    f"Finish it with the same command:\n    {self.teacher_command()}\nor set "
                    "`Experiment.allow_unfinished_teacher = True` to distil from its best checkpoint so far."
                )
        if data is not None:
            self._check_splits(data, cluster or distribution_lib.Cluster())

    def _check_splits(self, data, cluster) -> None:
        """The splits exist, are not empty, and the training split holds at least one batch.

        On several replicas the batch sizes and the validation split must
        split evenly over them, so that every replica computes on the same
        number of rows in every step.
        """
        keys = ("train_split", "validation_split", "test_split") + tuple(
            key for key in ("temperature_scaling_split", "teacher_calibration_split") if getattr(self, key))
        for key in keys:
            try:
                size = data.read(self.dataset, getattr(self, key), data_dir=self.data_dir).num_examples
            except data.SliceOutOfRangeError as error:
                raise ValueError(f"{OWNER}: `{key}` = {error.split!r} asks for more images than the {error.base} "
                                 f"split of {self.dataset} holds ({error.num_examples}); {error.within}.") from None
            if size < 1:
                raise ValueError(f"{OWNER}: `{key}` {getattr(self, key)!r} of {self.dataset} holds no example.")
            if key == "train_split" and size < self.batch_size:
                raise ValueError(f"{OWNER}: `batch_size` ({self.batch_size}) is larger than the training split "
                                 f"{self.train_split!r} ({size} examples); lower it or use more data.")
            if key == "validation_split" and size % cluster.num_replicas:
                raise ValueError(
                    f"{OWNER}: the validation split {self.validation_split!r} holds {size} examples, which do not "
                    f"split evenly over the {cluster.num_replicas} replicas ({cluster.description}); "
                    f"use a slice whose size is a multiple of {cluster.num_replicas}, e.g. "
                    f"'{self.validation_split.split('[')[0]}[:{size - size % cluster.num_replicas}]'.")
        cluster.check_batch_size(self.batch_size, "Experiment.batch_size")
        cluster.check_batch_size(self.eval_batch_size, "Experiment.eval_batch_size")

    # ------------------------------------------------------------------ the run

    def run(self, config_text: Optional[str] = None, operative_config: Optional[Callable[[], str]] = None) -> dict:
        """Trains (or resumes) the run, evaluates the best checkpoint and exports it; returns the results.

        In a multi-worker run every process calls this with the same
        configuration. They train together; the chief (process 0) alone
        writes the run folder, evaluates and exports, and returns the
        results; the others return `{"name", "process_index",
        "num_processes"}` once training is done.

        Args:
            config_text: The run's configuration as text (e.g. gin's), saved as `config.gin`.
            operative_config: Called after training; its text is saved as `operative_config.gin`.
        """
        from keras_calikd.training.runner import ExperimentRunner

        return ExperimentRunner(self).run(config_text, operative_config)


def summarize(results: dict) -> str:
    """One line of a run's results (for a process other than the chief of a multi-worker run: what it did)."""
    if "accuracy" not in results and "process_index" in results:
        return (f"{results['name']}: trained as process {results['process_index']} of {results['num_processes']}; "
                "the chief (process 0) evaluates the run and writes its folder.")
    bins = sorted((int(k.split("_")[1]) for k in results if k.startswith("ece_")), reverse=True)
    parts = [f"accuracy {100 * results['accuracy']:.2f}%"]
    parts += [f"ECE@{b} {results[f'ece_{b}']:.4f} OE@{b} {results[f'oe_{b}']:.4f}" for b in bins]
    parts += [f"NLL {results['nll']:.4f}", f"Brier {results['brier']:.4f}"]
    if np.isfinite(results.get("train_seconds", float("nan"))):
        parts.append(f"{results['train_seconds']:.0f}s")
    return f"{results['name']}: " + ", ".join(parts)
