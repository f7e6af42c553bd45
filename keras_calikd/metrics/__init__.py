"""Calibration metrics (ECE, OE, MCE, adaptive and classwise ECE) and reliability diagrams."""

from keras_calikd.metrics.calibration import CalibrationMetric, ExpectedCalibrationError, OverconfidenceError
from keras_calikd.metrics.calibration_errors import (AdaptiveCalibrationError, ClasswiseCalibrationError,
                                                     MaximumCalibrationError)
from keras_calikd.metrics.reliability import (calibration_errors, plot_reliability_diagram, plot_reliability_grid,
                                              reliability_figure, reliability_grid_figure, reliability_image)

#: The calibration metric classes, configurable through gin and reported by runs.
CALIBRATION_METRICS = (ExpectedCalibrationError, OverconfidenceError, MaximumCalibrationError,
                       AdaptiveCalibrationError, ClasswiseCalibrationError)

__all__ = ["CALIBRATION_METRICS", "AdaptiveCalibrationError", "CalibrationMetric", "ClasswiseCalibrationError",
           "ExpectedCalibrationError", "MaximumCalibrationError", "OverconfidenceError", "calibration_errors",
           "plot_reliability_diagram", "plot_reliability_grid", "reliability_figure", "reliability_grid_figure",
           "reliability_image"]
