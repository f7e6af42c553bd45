"""Calibration metrics (ECE, OE, MCE, adaptive and classwise ECE), reliability diagrams, and their uncertainty."""

from keras_calikd.metrics.calibration import CalibrationMetric, ExpectedCalibrationError, OverconfidenceError
from keras_calikd.metrics.calibration_errors import (AdaptiveCalibrationError, ClasswiseCalibrationError,
                                                     MaximumCalibrationError)
from keras_calikd.metrics.reliability import (calibration_errors, plot_reliability_diagram, plot_reliability_grid,
                                              reliability_figure, reliability_grid_figure, reliability_image)
from keras_calikd.metrics.student_t import student_t_cdf, student_t_quantile
from keras_calikd.metrics.uncertainty import (BootstrapResult, Estimate, Interval, SeedSummary, bootstrap_intervals,
                                              paired_differences, resolvable_difference, summarize_seeds, verdict)

#: The calibration metric classes, configurable through gin and reported by runs.
CALIBRATION_METRICS = (ExpectedCalibrationError, OverconfidenceError, MaximumCalibrationError,
                       AdaptiveCalibrationError, ClasswiseCalibrationError)

__all__ = ["CALIBRATION_METRICS", "AdaptiveCalibrationError", "BootstrapResult", "CalibrationMetric",
           "ClasswiseCalibrationError", "Estimate", "ExpectedCalibrationError", "Interval", "MaximumCalibrationError",
           "OverconfidenceError", "SeedSummary", "bootstrap_intervals", "calibration_errors", "paired_differences",
           "plot_reliability_diagram", "plot_reliability_grid", "reliability_figure", "reliability_grid_figure",
           "reliability_image", "resolvable_difference", "student_t_cdf", "student_t_quantile", "summarize_seeds",
           "verdict"]
