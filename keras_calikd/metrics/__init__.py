"""Calibration metrics (`ExpectedCalibrationError`, `OverconfidenceError`) and reliability diagrams."""

from keras_calikd.metrics.calibration import CalibrationMetric, ExpectedCalibrationError, OverconfidenceError
from keras_calikd.metrics.reliability import plot_reliability_diagram, plot_reliability_grid

#: The calibration metric classes, configurable through gin and reported by runs.
CALIBRATION_METRICS = (ExpectedCalibrationError, OverconfidenceError)

__all__ = ["CALIBRATION_METRICS", "CalibrationMetric", "ExpectedCalibrationError", "OverconfidenceError", "plot_reliability_diagram",
           "plot_reliability_grid"]
