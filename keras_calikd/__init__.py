"""keras_calikd: distil a calibrated student from an uncalibrated teacher, in Keras 3.

Public API:

- `Distiller`: the `keras.Model` that trains a student from a frozen teacher.
- `distillations`, `augmentations`: the registered strategies.
- `metrics`: `ExpectedCalibrationError`, `OverconfidenceError`, reliability diagrams.
- `models`: the CIFAR model zoo of the paper, by name.
- `training`: the paper's optimiser and schedules (defined in `optimizers`), checkpoints, evaluation, export,
  experiments.
- `data`: TFDS input pipelines (imported on first use: the only part that imports TensorFlow).
"""

import importlib

from keras_calikd.quiet import import_frameworks

import_frameworks()

# `optimizers` too: its SGD and schedule are registered Keras serializables, which `keras.models.load_model`
# of a saved Distiller finds only once they are imported.
from keras_calikd import augmentations, distillations, metrics, models, optimizers  # noqa: E402
from keras_calikd.distiller import Distiller  # noqa: E402
from keras_calikd.registry import Registry  # noqa: E402

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("data", "training")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"keras_calikd.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_calikd' has no attribute {name!r}")


__all__ = ["Distiller", "Registry", "augmentations", "data", "distillations", "metrics", "models", "training",
           "__version__"]
