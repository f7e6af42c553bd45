"""Calibration metrics (ECE, OE, MCE, adaptive and classwise ECE) and reliability diagrams."""

from keras_calikd.metrics.calibration import CalibrationMetric, ExpectedCalibrationError, OverconfidenceError
from keras_calikd.metrics.calibration_errors import (AdaptiveCalibrationError, ClasswiseCalibrationError,
                                                     MaximumCalibrationError)
from keras_calikd.metrics.reliability import plot_reliability_diagram, plot_reliability_grid

#: The calibration metric classes, configurable through gin and reported by runs.
CALIBRATION_METRICS = (ExpectedCalibrationError, OverconfidenceError, MaximumCalibrationError,
                       AdaptiveCalibrationError, ClasswiseCalibrationError)

__all__ = ["CALIBRATION_METRICS", "AdaptiveCalibrationError", "CalibrationMetric", "ClasswiseCalibrationError",
           "ExpectedCalibrationError", "MaximumCalibrationError", "OverconfidenceError", "plot_reliability_diagram",
           "plot_reliability_grid"]
