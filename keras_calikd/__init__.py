"""keras_calikd: distil a calibrated student from an uncalibrated teacher, in Keras 3.

Public API:

- `Distiller`: the `keras.Model` that trains a student from a frozen teacher.
- `distillations`, `augmentations`: the registered strategies.
- `metrics`: `ExpectedCalibrationError`, `OverconfidenceError`, reliability diagrams.
"""

from keras_calikd import augmentations, distillations, metrics
from keras_calikd.distiller import Distiller
from keras_calikd.registry import Registry

__version__ = "0.1.0"

__all__ = ["Distiller", "Registry", "augmentations", "distillations", "metrics", "__version__"]
