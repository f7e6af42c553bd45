"""Calibration metrics (`ExpectedCalibrationError`, `OverconfidenceError`) and reliability diagrams."""

from keras_calikd.metrics.calibration import CalibrationMetric, ExpectedCalibrationError, OverconfidenceError
from keras_calikd.metrics.reliability import plot_reliability_diagram, plot_reliability_grid

__all__ = ["CalibrationMetric", "ExpectedCalibrationError", "OverconfidenceError", "plot_reliability_diagram",
           "plot_reliability_grid"]
