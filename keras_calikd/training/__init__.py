"""Training runs: the paper's optimiser and schedules, checkpoints, evaluation, export and experiments."""

from keras_calikd.training.callbacks import NonFiniteLossError, NonFiniteLossGuard
from keras_calikd.training.evaluation import bin_statistics, calibration_report, collect_logits, fit_temperature
from keras_calikd.training.experiment import Experiment, MissingTeacherError, method_label
from keras_calikd.training.optimizers import SGD, EpochSchedule

__all__ = ["SGD", "EpochSchedule", "Experiment", "MissingTeacherError", "NonFiniteLossError", "NonFiniteLossGuard",
           "bin_statistics", "calibration_report", "collect_logits", "fit_temperature", "method_label"]
