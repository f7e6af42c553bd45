"""Makes keras_calikd's constructors configurable through gin, on request.

The library imports and works without gin: nothing here runs at import time.
`register_configurables()` (called by `tools/train.py`, or by user code that
wants gin) registers, under the module prefix `ck`:

- every registered strategy class, by class name (`ck.augmentations.MixUp`,
  `ck.distillations.KD`, ...; in gin files `MixUp.alpha = 0.4`);
- every model builder, by function name (`ck.models.MobileNetV2`; in gin
  files `MobileNetV2.stem_stride = 1`), applied when a run builds the model
  by name;
- the `Distiller`, the calibration metrics and the training `Experiment`.

Registry entries are replaced by their gin-configurable versions, so a
strategy created by name (`Distiller.augmentation = "mixup"`) and one created
by reference (`Distiller.augmentation = @MixUp()`) both receive the bound
arguments; the objects built are instances of the original classes. Classes
outside the registries (the `Distiller`, the metrics) are configured where a
gin file references them (`@Distiller()`). Gin binds constructor arguments
only; every default lives in the Python signature.
"""

from __future__ import annotations

_REGISTERED = False


def _registries():
    from keras_calikd.augmentations import AUGMENTATIONS
    from keras_calikd.distillations import DISTILLATIONS
    from keras_calikd.models import MODELS

    return {"ck.augmentations": AUGMENTATIONS, "ck.distillations": DISTILLATIONS, "ck.models": MODELS}


def _classes():
    from keras_calikd import metrics
    from keras_calikd.distiller import Distiller
    from keras_calikd.training.experiment import Experiment

    return {
        "ck": [Distiller],
        "ck.metrics": [metrics.ExpectedCalibrationError, metrics.OverconfidenceError],
        "ck.training": [Experiment],
    }


def register_configurables() -> None:
    """Registers keras_calikd's configurables with gin (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import gin

    for module, registry in _registries().items():
        registry.decorate_entries(lambda name, obj, module=module: gin.external_configurable(obj, module=module))
    for module, classes in _classes().items():
        for cls in classes:
            gin.external_configurable(cls, module=module)
    _REGISTERED = True
