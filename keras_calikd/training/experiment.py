"""One experiment run: train a teacher, a student from scratch, or a distilled student, and evaluate it."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from typing import Callable, Optional, Sequence, Union

import keras
import numpy as np

from keras_calikd import checks, models
from keras_calikd.distillations.base import INDICES, TRAINING_SET
from keras_calikd.metrics import ExpectedCalibrationError, OverconfidenceError, plot_reliability_diagram
from keras_calikd.metrics.reliability import FORMATS as DIAGRAM_FORMATS
from keras_calikd.training import callbacks as callbacks_lib
from keras_calikd.training import checkpoint
from keras_calikd.training import distribution as distribution_lib
from keras_calikd.training import posthoc
from keras_calikd.training.evaluation import bin_statistics, calibration_report, collect_logits, load_model
from keras_calikd.training.export import export_saved_model
from keras_calikd.training.files import check_writable, write_json, write_text
from keras_calikd.training.optimizers import SCHEDULES, SGD, EpochSchedule
from keras_calikd.training.report import run_title
from keras_calikd.training.run_folder import RunFolder, RunMismatchError, is_finished
from keras_calikd.training.teacher_calibration import calibrate
from keras_calikd.training.tensorboard import CalibrationTensorBoard, hparams_from_results

ROLES = ("teacher", "student", "distilled")
PRECISIONS = ("float32", "mixed_bfloat16")
OWNER = "Experiment"


class MissingTeacherError(FileNotFoundError):
    """A distillation run's teacher has not been trained (to the end) yet."""


def method_label(distiller) -> str:
    """A short label of a distilled run's method, e.g. `"KD + mixup"`, `"CRD"` (the report's column)."""
    parts = [d.label or type(d).__name__ for d in distiller.distillations if d.weight > 0]
    if distiller.augmentation.transforms_images or distiller.augmentation.label:
        parts.append(distiller.augmentation.label or type(distiller.augmentation).__name__)
    return " + ".join(parts)


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


class Experiment:
    """A training run configured by constructor arguments (bound with gin by `calikd-train`).

    Without `teacher`, `model` is trained on its own with cross-entropy (a
    teacher, or a student from scratch). With `teacher` (the name of a
    finished teacher run) and `distiller` (a callable such as the `Distiller`
    class, whose strategies gin configures), `model` is distilled from it.

    The run folder `<runs_dir>/<name>` receives: `run.json` (what the run is,
    where it runs, whether it finished), `checkpoints/` (`state.npz` to
    resume, `best.keras` by validation accuracy, `last.keras`),
    `logs/metrics.csv` and `logs/tensorboard/`, `results.json` (accuracy, ECE
    and OE at each of `eval_bins`, NLL, Brier of the best checkpoint on the
    test split), `reliability.png`, `.pdf` and `.svg` (`diagram_formats`) and `saved_model/`. Models are built with
    the data set's normalisation inside, so they take raw pixel images.
    Running the same experiment again resumes from the last completed epoch;
    a finished run is left as it is, and more `epochs` continue it.

    Args:
        name: Run name; its folder is `<runs_dir>/<name>`. `calikd-train` uses
            the gin file's path under `gin/`, e.g. `cifar100/vgg13_mobilenetv2_kd_mixup`.
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
        eval_batch_size: Batch size of evaluation.
        data_dir: TFDS data folder (default: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        seed: Seeds weight initialisation, strategies and the input pipeline.
        precision: `"float32"` or `"mixed_bfloat16"`.
        jit_compile: Compile the training step with XLA: `True`, `False`, or `"auto"` (Keras' choice: XLA
            on JAX and on TensorFlow with a GPU, a plain TensorFlow graph on a CPU; calikd-benchmark measured
            this to be the faster choice on each, see docs/benchmarks.md).
        eval_bins: Bin counts of the reported ECE/OE (the paper reports 100).
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

    def __init__(
        self,
        name: str,
        dataset: str,
        model: str,
        role: Optional[str] = None,
        teacher: Optional[str] = None,
        distiller: Optional[Callable] = None,
        teacher_calibration_split: Optional[str] = None,
        teacher_calibration_method: str = "temperature",
        allow_unfinished_teacher: bool = False,
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
        crop_flip: bool = True,
        validation_split: str = "test",
        test_split: str = "test",
        eval_batch_size: int = 500,
        data_dir: Optional[str] = None,
        seed: int = 0,
        precision: str = "float32",
        jit_compile: Union[bool, str] = "auto",
        eval_bins: Sequence[int] = (100, 15),
        temperature_scaling_split: Optional[str] = None,
        diagram_formats: Sequence[str] = ("png", "pdf", "svg"),
        export: bool = True,
        verbose: Union[int, str] = "auto",
        distribution: Optional[str] = None,
        sync_batch_norm: bool = False,
        worker_timeout: float = 600.0,
        heartbeat_timeout: float = 60.0,
    ):
        role = _checked_role(role, teacher, distiller)
        models.MODELS.get(model)  # unknown names fail here, listing the known ones
        self.name, self.dataset = checks.text(OWNER, "name", name), checks.text(OWNER, "dataset", dataset)
        self.model_name, self.role = model, role
        self.teacher, self.distiller_factory = teacher, distiller
        self.teacher_calibration_split = checks.text(OWNER, "teacher_calibration_split", teacher_calibration_split,
                                                     optional=True)
        self.teacher_calibration_method = checks.one_of(OWNER, "teacher_calibration_method",
                                                        teacher_calibration_method, posthoc.METHODS)
        self.allow_unfinished_teacher = bool(allow_unfinished_teacher)
        self.runs_dir, self.data_dir = runs_dir, data_dir
        self.epochs = checks.integer(OWNER, "epochs", epochs)
        self.batch_size = checks.integer(OWNER, "batch_size", batch_size)
        self.eval_batch_size = checks.integer(OWNER, "eval_batch_size", eval_batch_size)
        self.learning_rate = checks.number(OWNER, "learning_rate", learning_rate, low=0.0, low_open=True)
        self.momentum = checks.fraction(OWNER, "momentum", momentum, high_open=True)
        self.weight_decay = checks.number(OWNER, "weight_decay", weight_decay, low=0.0)
        self.schedule = checks.one_of(OWNER, "schedule", schedule, SCHEDULES)
        self.milestones = tuple(checks.integer(OWNER, "milestones", m) for m in milestones)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"{OWNER}: `milestones` must be increasing epochs, got {list(milestones)}.")
        self.gamma = checks.number(OWNER, "gamma", gamma, low=0.0, low_open=True)
        self.train_split = checks.text(OWNER, "train_split", train_split)
        self.crop_flip = bool(crop_flip)
        self.validation_split = checks.text(OWNER, "validation_split", validation_split)
        self.test_split = checks.text(OWNER, "test_split", test_split)
        self.seed = checks.integer(OWNER, "seed", seed, low=0)
        self.precision = checks.one_of(OWNER, "precision", precision, PRECISIONS)
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"`Experiment.jit_compile` must be True, False or \"auto\", got {jit_compile!r}.")
        self.jit_compile = jit_compile
        self.eval_bins = tuple(checks.integer(OWNER, "eval_bins", b) for b in eval_bins)
        if not self.eval_bins:
            raise ValueError(f"{OWNER}: `eval_bins` must name at least one bin count, e.g. (100, 15).")
        self.temperature_scaling_split = checks.text(OWNER, "temperature_scaling_split", temperature_scaling_split,
                                                     optional=True)
        formats = (diagram_formats,) if isinstance(diagram_formats, str) else tuple(diagram_formats)
        if not formats or len(set(formats)) < len(formats):
            raise ValueError(f"{OWNER}: `diagram_formats` must name each of its formats once, at least one of "
                             f"{', '.join(DIAGRAM_FORMATS)}; got {diagram_formats!r}.")
        self.diagram_formats = tuple(checks.one_of(OWNER, "diagram_formats", f, DIAGRAM_FORMATS) for f in formats)
        self.export = bool(export)
        self.verbose = checks.one_of(OWNER, "verbose", verbose, (0, 1, 2, "auto"))
        if distribution is not None and distribution not in distribution_lib.KINDS:
            checks.one_of(OWNER, "distribution", distribution, (None,) + distribution_lib.KINDS)
        self.distribution = distribution
        if not isinstance(sync_batch_norm, bool):
            raise ValueError(f"{OWNER}: `sync_batch_norm` must be True or False, got {sync_batch_norm!r}.")
        self.sync_batch_norm = sync_batch_norm
        self.worker_timeout = checks.number(OWNER, "worker_timeout", worker_timeout, low=0.0, low_open=True)
        self.heartbeat_timeout = checks.number(OWNER, "heartbeat_timeout", heartbeat_timeout, low=0.0,
                                               low_open=True)
        self.cluster = distribution_lib.Cluster()  # until run() sets the distribution up

    # ------------------------------------------------------------------ paths

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

    # ------------------------------------------------------------------ checks before training

    def check(self, data=None) -> None:
        """Everything that can fail before training: teacher run, output folder, data set and splits."""
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
        if self.cluster.is_chief:  # the other processes of a multi-worker run write nothing into the run folder
            check_writable(self.output_dir)
        if data is not None:
            self._check_splits(data)

    def _check_splits(self, data) -> None:
        """The splits exist, are not empty, and the training split holds at least one batch.

        On several replicas the batch sizes and the validation split must
        split evenly over them, so that every replica computes on the same
        number of rows in every step.
        """
        keys = ("train_split", "validation_split", "test_split") + tuple(
            key for key in ("temperature_scaling_split", "teacher_calibration_split") if getattr(self, key))
        for key in keys:
            size = data.read(self.dataset, getattr(self, key), data_dir=self.data_dir).num_examples
            if size < 1:
                raise ValueError(f"{OWNER}: `{key}` {getattr(self, key)!r} of {self.dataset} holds no example.")
            if key == "train_split" and size < self.batch_size:
                raise ValueError(f"{OWNER}: `batch_size` ({self.batch_size}) is larger than the training split "
                                 f"{self.train_split!r} ({size} examples); lower it or use more data.")
            if key == "validation_split" and size % self.cluster.num_replicas:
                raise ValueError(
                    f"{OWNER}: the validation split {self.validation_split!r} holds {size} examples, which do not "
                    f"split evenly over the {self.cluster.num_replicas} replicas ({self.cluster.description}); "
                    f"use a slice whose size is a multiple of {self.cluster.num_replicas}, e.g. "
                    f"'{self.validation_split.split('[')[0]}[:{size - size % self.cluster.num_replicas}]'.")
        self.cluster.check_batch_size(self.batch_size, "Experiment.batch_size")
        self.cluster.check_batch_size(self.eval_batch_size, "Experiment.eval_batch_size")

    # ------------------------------------------------------------------ the run

    def signature(self, trainer) -> dict:
        """The settings that decide this run's training: a resumed run must match them all."""
        signature = dict(dataset=self.dataset, model=self.model_name, role=self.role, teacher=self.teacher,
                         teacher_calibration_split=self.teacher_calibration_split,
                         batch_size=self.batch_size, learning_rate=self.learning_rate, momentum=self.momentum,
                         weight_decay=self.weight_decay, schedule=self.schedule, milestones=list(self.milestones),
                         gamma=self.gamma, train_split=self.train_split, crop_flip=self.crop_flip,
                         validation_split=self.validation_split,
                         seed=self.seed)
        if self.sync_batch_norm:
            signature.update(sync_batch_norm=True)
        if self.teacher_calibration_split and self.teacher_calibration_method != "temperature":
            signature.update(teacher_calibration_method=self.teacher_calibration_method)
        if self.teacher is not None:
            signature.update(alpha=trainer.alpha, distillation=[_config_of(d) for d in trainer.distillations],
                             augmentation=_config_of(trainer.augmentation))
        return json.loads(json.dumps(signature))  # as run.json stores it

    def provenance(self) -> dict:
        return {"backend": keras.backend.backend(), "keras": keras.__version__, "precision": self.precision}

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
        # First: the runtimes fix their devices and collectives before they compute anything.
        self.cluster = cluster = distribution_lib.setup(self.distribution, timeout=self.worker_timeout,
                                                        heartbeat_timeout=self.heartbeat_timeout)
        import keras_calikd.data as data  # the input pipelines import TensorFlow

        if cluster.is_chief:
            self.check(data)  # prepares missing data before the others read it
        cluster.barrier()
        if not cluster.is_chief:
            self.check(data)
        with RunFolder(self.output_dir) if cluster.is_chief else contextlib.nullcontext() as folder:
            keras.config.set_dtype_policy(self.precision)
            keras.utils.set_random_seed(self.seed)
            with cluster.scope():
                setup = self._build(data)
            plan = cluster.broadcast_json(self._plan(folder, setup) if cluster.is_chief else None)
            if plan["status"] == "refused":
                if cluster.is_chief:
                    raise self._refusal
                raise RuntimeError(f"{cluster.description}: the chief (process 0) refused to run "
                                   f"{self.name}: {plan['message']}")
            if plan["status"] == "finished":
                print(f"{self.name} finished its {self.epochs} epochs already; nothing to do.")
                if not cluster.is_chief:
                    return self._not_the_chief()
                with open(self.path("results.json")) as f:
                    return json.load(f)
            if cluster.is_chief:
                if folder.finished_epochs() is not None:  # more epochs: the run is not finished until they are done
                    folder.mark_finished(folder.finished_epochs(), finished=False)
                if config_text is not None:
                    write_text(self.path("config.gin"), config_text)
            results = self._train_and_evaluate(data, setup, plan)
            if not cluster.is_chief:
                return results
            with cluster.local():
                if operative_config is not None:
                    write_text(self.path("operative_config.gin"), operative_config())
                if self.export:
                    export_saved_model(load_model(self.path("checkpoints", "best.keras")), self.path("saved_model"),
                                       overwrite=True, source=self.path("checkpoints", "best.keras"))
            folder.mark_finished(self.epochs)
        return results

    def _plan(self, folder, setup) -> dict:
        """The chief's decision, shared with every process: refuse, report a finished run, or train from an epoch.

        On a refusal the chief keeps the exception (`_refusal`) and raises it
        once the others know.
        """
        try:
            folder.check_resumable(self.signature(setup["trainer"]), self.provenance())
        except RunMismatchError as error:
            self._refusal = error
            return {"status": "refused", "message": str(error)}
        if folder.finished_epochs() == self.epochs and os.path.isfile(self.path("results.json")):
            return {"status": "finished"}
        state_path = self.path("checkpoints", "state.npz")
        if not checkpoint.exists(state_path):
            return {"status": "train", "initial_epoch": 0, "history": [], "best": None}
        arrays, metadata = checkpoint.read_state(state_path)
        self._resumed_arrays = arrays
        return {"status": "train", "initial_epoch": metadata["epoch"], "history": metadata["history"],
                "best": metadata["best"], "arrays": [[key, list(value.shape), value.dtype.str]
                                                     for key, value in sorted(arrays.items())]}

    def _not_the_chief(self) -> dict:
        return {"name": self.name, "process_index": self.cluster.process_index,
                "num_processes": self.cluster.num_processes}

    def _build(self, data) -> dict:
        """The network, the trainer (itself or a Distiller) and what the report says of the method."""
        info = data.info(self.dataset, self.data_dir)
        network = models.get(self.model_name, num_classes=info.num_classes, input_shape=info.image_shape,
                             normalization=info.normalization)
        if self.sync_batch_norm:
            distribution_lib.sync_batch_norm(network)
        if self.cluster.is_chief:
            check_writable(self.output_dir, needed_bytes=8 * 4 * network.count_params() + 2**20)
        if self.teacher is None:
            return {"info": info, "network": network, "trainer": network, "requirements": frozenset(),
                    "description": {}}
        teacher = load_model(self.teacher_checkpoint())
        description = dict(teacher=self.teacher, teacher_model=self._teacher_model(teacher))
        if self.teacher_calibration_split:
            held_out = data.load(self.dataset, self.teacher_calibration_split, self.eval_batch_size, training=False,
                                 data_dir=self.data_dir)
            with warnings.catch_warnings():  # printed and saved below
                warnings.simplefilter("ignore", posthoc.CalibrationWarning)
                teacher, fit = calibrate(teacher, held_out, method=self.teacher_calibration_method)
            description["teacher_calibration"] = fit.summary()
            if fit.method == "temperature":
                description["teacher_temperature"] = fit.parameters["temperature"]
                print(f"The teacher's temperature, fitted on {self.teacher_calibration_split}: "
                      f"{description['teacher_temperature']:.4f}.")
            else:
                print(f"The teacher's {fit.method} scaling, fitted on {self.teacher_calibration_split}: held-out "
                      f"NLL {fit.nll_before:.4f} -> {fit.nll_after:.4f}.")
            for message in fit.warnings:
                print(f"warning: the teacher's calibration: {message}")
        trainer = self.distiller_factory(teacher=teacher, student=network)
        if TRAINING_SET in trainer.requirements:
            trainer.adapt(self._split_labels(data))
        method = method_label(trainer)
        description.update(method=f"{method} (calibrated teacher)" if self.teacher_calibration_split else method,
                           alpha=trainer.alpha)
        return {"info": info, "network": network, "trainer": trainer, "requirements": trainer.requirements,
                "description": description}

    def _compile(self, trainer, steps_per_epoch: int):
        """Compiles the trainer with the paper's optimiser; returns its ECE metric (for TensorBoard)."""
        schedule = EpochSchedule(self.learning_rate, steps_per_epoch, self.schedule, t_max=self.epochs,
                                 milestones=self.milestones, gamma=self.gamma)
        optimizer = SGD(schedule, momentum=self.momentum, l2_weight_decay=self.weight_decay)
        ece = ExpectedCalibrationError(15, from_logits=True)
        metrics = ["accuracy", ece, OverconfidenceError(15, from_logits=True)]
        loss = None if self.teacher is not None else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        trainer.compile(optimizer=optimizer, metrics=metrics, jit_compile=self.jit_compile,
                        **({"loss": loss} if loss is not None else {}))
        trainer.optimizer.build(trainer.trainable_variables)
        return ece

    def _describe(self, setup) -> dict:
        """What figures and TensorBoard say of this run: its name, role, models, method and data set."""
        return dict(setup["description"], name=self.name, dataset=self.dataset, role=self.role,
                    model=self.model_name)

    def _train_and_evaluate(self, data, setup, plan) -> dict:
        from keras_calikd.training.input import epoch_batches

        cluster = self.cluster
        trainer, network = setup["trainer"], setup["network"]
        split = data.read(self.dataset, self.train_split, data_dir=self.data_dir)
        steps_per_epoch = split.num_examples // self.batch_size
        with cluster.scope():
            ece = self._compile(trainer, steps_per_epoch)
        state_path = self.path("checkpoints", "state.npz")
        initial_epoch, history, best = plan["initial_epoch"], plan["history"], plan["best"]
        if "arrays" in plan:  # the chief read the state; every process takes the same values
            arrays = getattr(self, "_resumed_arrays", None) if cluster.is_chief else {
                key: np.zeros(shape, np.dtype(dtype)) for key, shape, dtype in plan["arrays"]}
            keys = [key for key, _, _ in plan["arrays"]]
            arrays = dict(zip(keys, cluster.broadcast_arrays([arrays[key] for key in keys])))
            checkpoint.restore_state(trainer, arrays, state_path)
            self._resumed_arrays = None
            if cluster.is_chief:
                print(f"Resuming {self.name} after epoch {initial_epoch} from {state_path}.")
        saver = callbacks_lib.ExperimentCheckpoint(
            state_path=state_path, best_path=self.path("checkpoints", "best.keras"),
            last_path=self.path("checkpoints", "last.keras"), csv_path=self.path("logs", "metrics.csv"),
            export_model=network, history=history, best=best, extra_state=lambda: {"name": self.name},
            write=cluster.is_chief)
        saver.rewrite_log()  # a kill between the state and the log: the log follows the state
        board = CalibrationTensorBoard(self.path("logs", "tensorboard"), ece, title=run_title(self._describe(setup)),
                                       write=cluster.is_chief)
        started = time.time()
        if initial_epoch < self.epochs:
            # Epoch e's batches depend on (seed, e) only: a resumed run sees what an uninterrupted one does, and
            # every process of a multi-worker run builds the same global batches and keeps its part of them.
            train = cluster.shard(epoch_batches(split, self.batch_size, seed=self.seed, first_epoch=initial_epoch,
                                                num_epochs=self.epochs - initial_epoch,
                                                with_index=INDICES in setup["requirements"],
                                                crop_flip=self.crop_flip))
            validation = cluster.shard(data.load(self.dataset, self.validation_split, self.eval_batch_size,
                                                 training=False, data_dir=self.data_dir))
            callbacks = [callbacks_lib.NonFiniteLossGuard(saver.describe_last), saver, board]
            if cluster.is_chief:
                callbacks.insert(2, keras.callbacks.TensorBoard(self.path("logs", "tensorboard"), write_graph=False))
            import tensorflow as tf  # the input pipelines are tf.data on every backend

            try:
                trainer.fit(train, validation_data=validation, epochs=self.epochs, initial_epoch=initial_epoch,
                            steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                            verbose=self._verbosity() if cluster.is_chief else 0,
                            shuffle=False)  # the epoch-keyed pipeline shuffles
            except tf.errors.DataLossError as error:  # a prepared file damaged after the run started: name it
                raise split.corruption_error(error) from None
            except Exception as error:  # noqa: BLE001 - a lost process of the job is named, anything else re-raised
                done = saver.history[-1]["epoch"] if saver.history else None
                lost = cluster.worker_lost(error, resume=f"after epoch {done}" if done else "from the start")
                if lost is None:
                    raise
                raise lost from None
        if not cluster.is_chief:
            return self._not_the_chief()
        with cluster.local():
            results = self.evaluate(data, setup["description"])
        results.update(train_seconds=round(time.time() - started, 1), best_epoch=saver.best_epoch,
                       epochs=self.epochs)
        write_json(self.path("results.json"), results)
        board.write_test_metrics(results, step=self.epochs)
        board.write_hparams(hparams_from_results(results, self.signature(trainer), epochs=self.epochs))
        board.close()
        return results

    def _verbosity(self) -> int:
        if self.verbose != "auto":
            return self.verbose
        return 1 if sys.stdout.isatty() else 2

    def _teacher_model(self, teacher) -> str:
        """The teacher's architecture name, from its run's results when there are any."""
        results = os.path.join(self.teacher_dir(), "results.json")
        if os.path.isfile(results):
            with open(results) as f:
                return json.load(f).get("model", teacher.name)
        return teacher.name

    def _split_labels(self, data) -> np.ndarray:
        """The training split's labels, ordered by the indices the pipeline gives (stored order)."""
        split = data.read(self.dataset, self.train_split, data_dir=self.data_dir)
        return np.concatenate([labels for _, labels, _ in split.examples.batch(4096).as_numpy_iterator()])

    def evaluate(self, data, description=None) -> dict:
        """Metrics of the best checkpoint on the test split, and its reliability diagram (15 bins)."""
        best = load_model(self.path("checkpoints", "best.keras"))
        test = data.load(self.dataset, self.test_split, self.eval_batch_size, training=False, data_dir=self.data_dir)
        logits, labels = collect_logits(best, test)
        results = calibration_report(logits, labels, bins=self.eval_bins)
        results.update(description or {})
        results.update(name=self.name, dataset=self.dataset, role=self.role, model=self.model_name,
                       test_split=self.test_split)
        statistics = bin_statistics(logits, labels, 15)
        results["reliability_15"] = {k: v.tolist() for k, v in statistics.items()}
        plot_reliability_diagram(statistics, self.path(f"reliability.{self.diagram_formats[0]}"),
                                 title=run_title(results), formats=self.diagram_formats[1:])
        if self.temperature_scaling_split:
            held_out = data.load(self.dataset, self.temperature_scaling_split, self.eval_batch_size, training=False,
                                 data_dir=self.data_dir)
            fit = posthoc.fit_calibration(*collect_logits(best, held_out))
            temperature = fit.parameters["temperature"]
            results["temperature_scaled"] = dict(calibration_report(logits / temperature, labels, self.eval_bins),
                                                 temperature=temperature, fitted_on=self.temperature_scaling_split,
                                                 warnings=fit.warnings)
            for message in fit.warnings:
                print(f"warning: {self.name}: {message}")
        return results


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
