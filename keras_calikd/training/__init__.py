"""Training runs: the paper's optimiser and schedules, run folders, checkpoints, evaluation, export, experiments."""

from keras_calikd.training import distribution
from keras_calikd.training.callbacks import NonFiniteLossError, NonFiniteLossGuard
from keras_calikd.training.distribution import Cluster, WorkerLostError, sync_batch_norm
from keras_calikd.training.evaluation import (bin_statistics, calibration_report, collect_logits, evaluate_models,
                                              fit_temperature, load_model)
from keras_calikd.training.experiment import Experiment, MissingTeacherError
from keras_calikd.training.export import export_saved_model
from keras_calikd.training.methods import method_label
from keras_calikd.optimizers import SGD, EpochSchedule
from keras_calikd.training.posthoc import CalibrationFit, CalibrationWarning, fit_calibration
from keras_calikd.training.run_folder import RunFolder, RunInUseError, RunMismatchError
from keras_calikd.training.teacher_calibration import (calibrate, calibrate_temperature, calibrated_model,
                                                       temperature_scaled)

__all__ = ["SGD", "Cluster", "EpochSchedule", "WorkerLostError", "distribution", "sync_batch_norm", "Experiment",
           "MissingTeacherError", "NonFiniteLossError", "NonFiniteLossGuard",
           "RunFolder", "RunInUseError", "RunMismatchError", "CalibrationFit", "CalibrationWarning", "bin_statistics",
           "calibrate", "calibrate_temperature", "calibrated_model", "calibration_report", "collect_logits",
           "evaluate_models", "export_saved_model", "fit_calibration", "fit_temperature", "load_model",
           "method_label", "temperature_scaled"]
