"""Runs an `Experiment`: sets up its processes, builds its networks, trains or resumes it, evaluates the best checkpoint.

The runner computes; its `RunWriter` (`keras_calikd.training.run_writer`)
writes the run folder and decides what a process other than the chief does
instead, so the steps below read the same on every process of a job:

1. set the processes up (`distribution.setup`) before anything computes;
2. check the teacher run, the data and the splits (the chief first: it may
   prepare the data the others read) and open the run folder;
3. build the network, the trainer and the description of the method (`Setup`);
4. agree on a `ResumePlan` (the chief reads the folder; every process gets it);
5. train from the plan's epoch on batches that depend on (seed, epoch) alone;
6. evaluate the best checkpoint on the test split, write results, export.
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable, NamedTuple, Optional

import keras

from keras_calikd import models
from keras_calikd.contract import INDICES, TRAINING_SET
from keras_calikd.metrics import ExpectedCalibrationError, OverconfidenceError
from keras_calikd.training import callbacks as callbacks_lib
from keras_calikd.training import checkpoint
from keras_calikd.training import distribution as distribution_lib
from keras_calikd.training import posthoc
from keras_calikd.training.evaluation import (bin_statistics, bootstrap_report, calibration_report, collect_logits,
                                              load_model)
from keras_calikd.training.export import export_into
from keras_calikd.training.methods import describe
from keras_calikd.optimizers import SGD, EpochSchedule
from keras_calikd.training.report import run_title
from keras_calikd.training.run_writer import ResumePlan, RunWriter
from keras_calikd.training.teacher_calibration import calibrate
from keras_calikd.training.tensorboard import CalibrationTensorBoard, hparams_from_results


class Setup(NamedTuple):
    """What a run trains, built before the plan is made (the plan checks the trainer's signature).

    Attributes:
        info: The data set's description (`keras_calikd.data.info`).
        network: The network the run trains and exports (raw pixels in, logits out).
        trainer: The network itself, or the Distiller that trains it from the teacher.
        requirements: What the trainer's strategies need from the data (e.g. sample indices).
        description: What results.json says of the run beyond its settings: the teacher and the method.
    """

    info: object
    network: keras.Model
    trainer: keras.Model
    requirements: frozenset
    description: dict


class ExperimentRunner:
    """Trains, evaluates and exports one `Experiment`; see the module's docstring for the steps.

    Args:
        experiment: The run's frozen configuration.
    """

    def __init__(self, experiment):
        self.experiment = experiment

    def run(self, config_text: Optional[str] = None, operative_config: Optional[Callable[[], str]] = None) -> dict:
        """`Experiment.run`: the results on the chief, what it did on any other process."""
        run = self.experiment
        # First: the runtimes fix their devices and collectives before they compute anything.
        cluster = distribution_lib.setup(run.distribution, timeout=run.worker_timeout,
                                         heartbeat_timeout=run.heartbeat_timeout)
        writer = RunWriter.for_process(run, cluster)
        import keras_calikd.data as data  # the input pipelines import TensorFlow

        run.check()
        writer.check_writable()
        writer.in_turn(lambda: run.check(data, cluster))  # the chief first: it prepares missing data
        with writer:
            keras.config.set_dtype_policy(run.precision)
            keras.utils.set_random_seed(run.seed)
            with cluster.scope():
                setup = self.build(data, writer, cluster)
            plan = writer.shared_plan(run.signature(setup.trainer), run.provenance())
            if plan.status == "finished":
                print(f"{run.name} finished its {run.epochs} epochs already; nothing to do.")
                return writer.finished_results()
            results = self.train_and_evaluate(data, setup, plan, writer, cluster, config_text)
            if not writer.writes:
                return results
            with cluster.local():
                writer.finish(operative_config, self._export if run.export else None)
        return results

    def _export(self) -> None:
        best = self.experiment.path("checkpoints", "best.keras")
        export_into(load_model(best), self.experiment.path("saved_model"), source=best)  # the run's own folder

    # ------------------------------------------------------------------ what the run trains

    def build(self, data, writer, cluster) -> Setup:
        """The network, the trainer (the network itself or a Distiller) and what results.json says of the method."""
        run = self.experiment
        info = data.info(run.dataset, run.data_dir)
        network = models.get(run.model, num_classes=info.num_classes, input_shape=info.image_shape,
                             normalization=info.normalization)
        if run.sync_batch_norm:
            distribution_lib.sync_batch_norm(network)
        writer.check_space(network)
        if run.teacher is None:
            return Setup(info, network, network, frozenset(), {})
        teacher = load_model(run.teacher_checkpoint())
        description = dict(teacher=run.teacher, teacher_model=self._teacher_model(teacher))
        if run.teacher_calibration_split:
            held_out = data.load(run.dataset, run.teacher_calibration_split, run.eval_batch_size, training=False,
                                 data_dir=run.data_dir)
            with warnings.catch_warnings():  # printed and saved below
                warnings.simplefilter("ignore", posthoc.CalibrationWarning)
                teacher, fit = calibrate(teacher, held_out, method=run.teacher_calibration_method)
            description["teacher_calibration"] = fit.summary()
            if fit.method == "temperature":
                description["teacher_temperature"] = fit.parameters["temperature"]
                print(f"The teacher's temperature, fitted on {run.teacher_calibration_split}: "
                      f"{description['teacher_temperature']:.4f}.")
            else:
                print(f"The teacher's {fit.method} scaling, fitted on {run.teacher_calibration_split}: held-out "
                      f"NLL {fit.nll_before:.4f} -> {fit.nll_after:.4f}.")
            for message in fit.warnings:
                print(f"warning: the teacher's calibration: {message}")
        trainer = run.distiller(teacher=teacher, student=network)
        if TRAINING_SET in trainer.requirements:
            trainer.adapt(self._split_labels(data))
        description.update(describe(trainer, calibrated_teacher=bool(run.teacher_calibration_split)))
        return Setup(info, network, trainer, trainer.requirements, description)

    def _teacher_model(self, teacher) -> str:
        """The teacher's architecture name, from its run's results when there are any."""
        import json
        import os

        results = os.path.join(self.experiment.teacher_dir(), "results.json")
        if os.path.isfile(results):
            with open(results) as f:
                return json.load(f).get("model", teacher.name)
        return teacher.name

    def _split_labels(self, data):
        """The training split's labels, ordered by the indices the pipeline gives (stored order)."""
        import numpy as np

        run = self.experiment
        split = data.read(run.dataset, run.train_split, data_dir=run.data_dir)
        return np.concatenate([labels for _, labels, _ in split.examples.batch(4096).as_numpy_iterator()])

    def _compile(self, trainer, steps_per_epoch: int):
        """Compiles the trainer with the paper's optimiser; returns its ECE metric (for TensorBoard)."""
        run = self.experiment
        schedule = EpochSchedule(run.learning_rate, steps_per_epoch, run.schedule, t_max=run.epochs,
                                 milestones=run.milestones, gamma=run.gamma)
        optimizer = SGD(schedule, momentum=run.momentum, l2_weight_decay=run.weight_decay)
        ece = ExpectedCalibrationError(run.diagram_bins, from_logits=True)
        metrics = ["accuracy", ece, OverconfidenceError(run.diagram_bins, from_logits=True)]
        loss = None if run.teacher is not None else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        trainer.compile(optimizer=optimizer, metrics=metrics, jit_compile=run.jit_compile,
                        **({"loss": loss} if loss is not None else {}))
        trainer.optimizer.build(trainer.trainable_variables)
        return ece

    def describe(self, setup: Setup) -> dict:
        """What figures and TensorBoard say of this run: its name, role, models, method and data set."""
        run = self.experiment
        return dict(setup.description, name=run.name, dataset=run.dataset, role=run.role, model=run.model)

    # ------------------------------------------------------------------ training and evaluation

    def train_and_evaluate(self, data, setup: Setup, plan: ResumePlan, writer, cluster,
                           config_text: Optional[str] = None) -> dict:
        run = self.experiment
        trainer, network = setup.trainer, setup.network
        split = data.read(run.dataset, run.train_split, data_dir=run.data_dir)
        steps_per_epoch = split.num_examples // run.batch_size
        with cluster.scope():
            ece = self._compile(trainer, steps_per_epoch)
        state_path = run.path("checkpoints", "state.npz")
        if plan.arrays:  # the chief read the state; every process takes the same values
            checkpoint.restore_state(trainer, writer.resumed_arrays(plan), state_path)
            writer.say(f"Resuming {run.name} after epoch {plan.initial_epoch} from {state_path}.")
        monitor, higher_is_better = run.checkpoint_monitor()
        saver = callbacks_lib.ExperimentCheckpoint(
            state_path=state_path, best_path=run.path("checkpoints", "best.keras"), monitor=monitor,
            higher_is_better=higher_is_better,
            last_path=run.path("checkpoints", "last.keras"), csv_path=run.path("logs", "metrics.csv"),
            export_model=network, history=plan.history, best=plan.best, extra_state=lambda: {"name": run.name},
            write=writer.writes, files=plan.files, train_seconds=plan.train_seconds, resumes=plan.resumes)
        writer.begin(config_text)  # the start's first write: everything before could still refuse the run
        saver.rewrite_log()  # a kill between the state and the log: the log follows the state
        board = CalibrationTensorBoard(run.path("logs", "tensorboard"), ece, title=run_title(self.describe(setup)),
                                       write=writer.writes)
        if plan.initial_epoch < run.epochs:
            self._fit(data, setup, plan, split, steps_per_epoch, [saver, board], writer, cluster)
        if not writer.writes:
            return writer.outcome({})
        with cluster.local():
            writer.verify_checkpoints(saver.files)  # the best checkpoint evaluated is the one the run wrote
            results, statistics = self.evaluate(data, setup.description)
            # Every process's training time (the epochs kept), and how often training continued from a state.
            results.update(train_seconds=round(saver.train_seconds, 1), resumes=saver.resumes,
                           best_epoch=saver.best_epoch, epochs=run.epochs, select_by=run.select_by, seed=run.seed,
                           configuration=run.configuration(run.signature(trainer)))
            results = writer.results(results, statistics, title=run_title(results))
        board.write_test_metrics(results, step=run.epochs)
        board.write_hparams(hparams_from_results(results, run.signature(trainer), epochs=run.epochs))
        board.close()
        return results

    def _fit(self, data, setup, plan, split, steps_per_epoch, callbacks, writer, cluster) -> None:
        from keras_calikd.training.input import epoch_batches

        run = self.experiment
        saver, board = callbacks
        # Epoch e's batches depend on (seed, e) only: a resumed run sees what an uninterrupted one does, and
        # every process of a multi-worker run builds the same global batches and keeps its part of them.
        train = cluster.shard(epoch_batches(split, run.batch_size, seed=run.seed, first_epoch=plan.initial_epoch,
                                            num_epochs=run.epochs - plan.initial_epoch,
                                            with_index=INDICES in setup.requirements, crop_flip=run.crop_flip))
        validation = cluster.shard(data.load(run.dataset, run.validation_split, run.eval_batch_size,
                                             training=False, data_dir=run.data_dir))
        callbacks = [callbacks_lib.NonFiniteLossGuard(saver.describe_last), saver, board]
        if writer.writes:
            callbacks.insert(2, keras.callbacks.TensorBoard(run.path("logs", "tensorboard"), write_graph=False))
        import tensorflow as tf  # the input pipelines are tf.data on every backend

        try:
            setup.trainer.fit(train, validation_data=validation, epochs=run.epochs, initial_epoch=plan.initial_epoch,
                              steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                              verbose=self._verbosity() if writer.writes else 0,
                              shuffle=False)  # the epoch-keyed pipeline shuffles
        except tf.errors.DataLossError as error:  # a prepared file damaged after the run started: name it
            raise split.corruption_error(error) from None
        except Exception as error:  # noqa: BLE001 - a lost process of the job is named, anything else re-raised
            done = saver.history[-1]["epoch"] if saver.history else None
            lost = cluster.worker_lost(error, resume=f"after epoch {done}" if done else "from the start")
            if lost is None:
                raise
            raise lost from None

    def _verbosity(self) -> int:
        if self.experiment.verbose != "auto":
            return self.experiment.verbose
        return 1 if sys.stdout.isatty() else 2

    def evaluate(self, data, description=None):
        """Metrics of the best checkpoint on the test split, and its reliability statistics (`diagram_bins`).

        Returns:
            `(results, statistics)`: the results.json dict (without the statistics), and the per-bin
            statistics of the reliability diagram.
        """
        run = self.experiment
        best = load_model(run.path("checkpoints", "best.keras"))
        test = data.load(run.dataset, run.test_split, run.eval_batch_size, training=False, data_dir=run.data_dir)
        logits, labels = collect_logits(best, test)
        results = calibration_report(logits, labels, bins=run.eval_bins)
        results["intervals"] = bootstrap_report(logits, labels, run.eval_bins)
        results.update(description or {})
        results.update(name=run.name, dataset=run.dataset, role=run.role, model=run.model, test_split=run.test_split)
        statistics = bin_statistics(logits, labels, run.diagram_bins)
        if run.temperature_scaling_split:
            held_out = data.load(run.dataset, run.temperature_scaling_split, run.eval_batch_size, training=False,
                                 data_dir=run.data_dir)
            with warnings.catch_warnings():  # printed and saved below
                warnings.simplefilter("ignore", posthoc.CalibrationWarning)
                fit = posthoc.fit_calibration(*collect_logits(best, held_out))
            temperature = fit.parameters["temperature"]
            results["temperature_scaled"] = dict(calibration_report(logits / temperature, labels, run.eval_bins),
                                                 temperature=temperature, fitted_on=run.temperature_scaling_split,
                                                 warnings=fit.warnings,
                                                 intervals=bootstrap_report(logits / temperature, labels,
                                                                            run.eval_bins))
            for message in fit.warnings:
                print(f"warning: {run.name}: {message}")
        return results, statistics
