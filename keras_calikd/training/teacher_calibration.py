"""Calibrate the teacher first: post-hoc temperature scaling of a model, as a model (Guo et al., 2017)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from keras_calikd import checks
from keras_calikd.contract import split_inputs
from keras_calikd.distiller_adapter import declared_input_shape
from keras_calikd.training.evaluation import collect_logits, fit_temperature

SCALING_LAYER = "temperature_scaling"


def _logits_and_labels(model, data, labels, batch_size):
    """Float64 logits and int labels of `model` on NumPy `(data, labels)` or on a dataset of `(inputs, labels)`."""
    from keras import ops

    if labels is not None:
        images = np.asarray(data)
        labels = np.asarray(labels)
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"calibrate_temperature: give as many held-out images as labels, at least one; got "
                             f"{len(images)} images and {len(labels)} labels.")
        batches = [np.asarray(ops.convert_to_numpy(model(images[i:i + batch_size], training=False)), np.float64)
                   for i in range(0, len(images), batch_size)]
        return np.concatenate(batches), labels
    if hasattr(data, "as_numpy_iterator"):
        return collect_logits(model, data)
    if isinstance(data, np.ndarray):
        raise ValueError("calibrate_temperature: NumPy images need their `labels` (the second argument).")
    logits, all_labels = [], []
    for batch in data:  # any iterable of (inputs, labels) batches
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError("calibrate_temperature: a dataset must yield (inputs, labels) batches.")
        x, y = batch
        x, _ = split_inputs(x)
        logits.append(np.asarray(ops.convert_to_numpy(model(x, training=False)), np.float64))
        all_labels.append(np.asarray(y).reshape(-1))
    if not logits:
        raise ValueError("calibrate_temperature: the held-out dataset yields no batch.")
    return np.concatenate(logits), np.concatenate(all_labels)


def temperature_scaled(model, temperature: float, name: Optional[str] = None):
    """A functional model sharing `model`'s layers whose logits are divided by `temperature`.

    The scaling is a built-in `keras.layers.Rescaling(1 / T)` layer named
    `"temperature_scaling"`, so the model saves and loads without custom
    objects. For a functional model the new model is built on the original's
    graph: every layer stays reachable by name (`"features"` for RKD and CRD).
    A subclassed model (no declared input) is refused: wrap it first,
    `inputs = keras.Input(shape); keras.Model(inputs, model(inputs))`.

    Args:
        model: A built `keras.Model` returning `(batch, num_classes)` logits.
        temperature: `T > 0`.
        name: Name of the new model (default: `<model name>_temperature_scaled`).
    """
    import keras

    temperature = checks.number("temperature_scaled", "temperature", temperature, low=0.0, low_open=True)
    if not isinstance(model, keras.Model):
        raise TypeError(f"temperature_scaled: `model` must be a keras.Model returning logits, got "
                        f"{type(model).__name__}.")
    scaling = keras.layers.Rescaling(1.0 / temperature, name=SCALING_LAYER)
    name = name or f"{model.name}_temperature_scaled"
    shape = declared_input_shape(model)
    if shape is not None:
        if len(model.outputs) != 1:
            raise ValueError(f"temperature_scaled: the model must return one tensor of logits; {model.name!r} "
                             f"returns {len(model.outputs)}.")
        return keras.Model(model.inputs[0], scaling(model.outputs[0]), name=name)
    raise ValueError(f"temperature_scaled: {model.name!r} declares no input (a subclassed model). Wrap it in a "
                     "functional model first: `inputs = keras.Input(image_shape); keras.Model(inputs, model(inputs))`.")


def calibrate_temperature(model, data, labels=None, *, batch_size: int = 256,
                          name: Optional[str] = None) -> Tuple[object, float]:
    """Fits a temperature to `model` on held-out data; returns the temperature-scaled model and `T`.

    Post-hoc temperature scaling: `T` minimises the NLL of `logits / T` on the
    held-out data (`keras_calikd.training.evaluation.fit_temperature`, a
    golden-section search over `[0.05, 20]`), and the returned model divides
    the logits by `T`. Dividing by a positive number keeps every prediction's
    argmax, so accuracy is unchanged; the NLL on the held-out data is at most
    the unscaled one (`T = 1` is among the candidates). Use it to calibrate a
    teacher before distilling from it: the scaled model shares the teacher's
    layers (a layer named `"features"` stays reachable for RKD and CRD), can
    be passed to `Distiller` as the teacher and saves/loads as a plain Keras
    model. Hold out data the teacher was not trained on (a validation split).

    Args:
        model: A built functional `keras.Model` returning logits.
        data: Held-out images as a NumPy array (with `labels`), or a dataset
            yielding `(inputs, labels)` batches (`tf.data`, or any iterable of
            NumPy batches); inputs may be `{"image": ..., "index": ...}` dicts.
        labels: Class ids of the NumPy `data`; `None` for a dataset.
        batch_size: Batch size of the forward passes over NumPy `data`.
        name: Name of the scaled model.

    Returns:
        `(scaled_model, temperature)`.

    Example:

    ```python
    from keras_calikd.training.teacher_calibration import calibrate_temperature

    scaled, temperature = calibrate_temperature(teacher, heldout_images, heldout_labels)
    distiller = ck.Distiller(scaled, student, distillation="kd", augmentation="mixup")
    ```

    Reference:
        Guo et al., "On Calibration of Modern Neural Networks", ICML 2017,
        Sec. 4.2 (temperature scaling).
    """
    batch_size = checks.integer("calibrate_temperature", "batch_size", batch_size)
    logits, held_out_labels = _logits_and_labels(model, data, labels, batch_size)
    if logits.ndim != 2:
        raise ValueError(f"calibrate_temperature: the model must return (batch, num_classes) logits, got shape "
                         f"{logits.shape}.")
    if len(held_out_labels) != len(logits):
        raise ValueError(f"calibrate_temperature: {len(logits)} held-out predictions but {len(held_out_labels)} "
                         "labels; give class ids of shape (batch,) with each batch.")
    held_out_labels = checks.class_ids(held_out_labels, logits.shape[1], where="The held-out labels")
    temperature = fit_temperature(logits, held_out_labels)
    return temperature_scaled(model, temperature, name=name), temperature
