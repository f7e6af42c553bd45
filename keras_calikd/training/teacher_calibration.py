"""Calibrate the teacher first: a post-hoc calibration map of a model, as a model (Guo et al., 2017;
Kull et al., 2019)."""

from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np

from keras_calikd import checks
from keras_calikd.contract import split_inputs
from keras_calikd.distiller_adapter import declared_input_shape
from keras_calikd.training.evaluation import collect_logits
from keras_calikd.training.posthoc import CalibrationFit, CalibrationWarning, fit_calibration

SCALING_LAYER = "temperature_scaling"
VECTOR_LAYER, MATRIX_LAYER, LOG_PROBABILITIES_LAYER = "vector_scaling", "matrix_scaling", "log_probabilities"


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
    logits = _logits_output(model, "temperature_scaled")
    scaling = keras.layers.Rescaling(1.0 / temperature, name=SCALING_LAYER)
    return keras.Model(model.inputs[0], scaling(logits), name=name or f"{model.name}_temperature_scaled")


def _logits_output(model, owner: str):
    """The logits tensor of a functional model with one input and one output (refusing anything else)."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"{owner}: `model` must be a keras.Model returning logits, got {type(model).__name__}.")
    if declared_input_shape(model) is None:
        raise ValueError(f"{owner}: {model.name!r} declares no input (a subclassed model). Wrap it in a functional "
                         "model first: `inputs = keras.Input(image_shape); keras.Model(inputs, model(inputs))`.")
    if len(model.outputs) != 1:
        raise ValueError(f"{owner}: the model must return one tensor of logits; {model.name!r} returns "
                         f"{len(model.outputs)}.")
    return model.outputs[0]


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
    scaled, fit = calibrate(model, data, labels, method="temperature", batch_size=batch_size, name=name)
    return scaled, fit.parameters["temperature"]


def _held_out_logits(model, data, labels, batch_size, owner):
    batch_size = checks.integer(owner, "batch_size", batch_size)
    logits, held_out_labels = _logits_and_labels(model, data, labels, batch_size)
    if logits.ndim != 2:
        raise ValueError(f"{owner}: the model must return (batch, num_classes) logits, got shape {logits.shape}.")
    if len(held_out_labels) != len(logits):
        raise ValueError(f"{owner}: {len(logits)} held-out predictions but {len(held_out_labels)} labels; give "
                         "class ids of shape (batch,) with each batch.")
    return logits, checks.class_ids(held_out_labels, logits.shape[1], where="The held-out labels")


def calibrated_model(model, fit: CalibrationFit, name: Optional[str] = None):
    """A functional model sharing `model`'s layers whose logits go through the fitted map `fit`.

    Built-in Keras layers only, so the model saves and loads without custom
    objects: `Rescaling(1 / T)` (`"temperature_scaling"`), `Rescaling(w, b)`
    (`"vector_scaling"`), or `Activation("log_softmax")` then a `Dense` layer
    holding `W` and `b` (`"matrix_scaling"`). See `temperature_scaled` for
    the models it takes.
    """
    import keras

    if fit.method == "temperature":
        return temperature_scaled(model, fit.parameters["temperature"], name=name)
    outputs = _logits_output(model, "calibrated_model")
    if fit.method == "vector":
        scaled = keras.layers.Rescaling(np.asarray(fit.parameters["scale"]).tolist(),
                                        offset=np.asarray(fit.parameters["bias"]).tolist(), name=VECTOR_LAYER)(outputs)
    else:
        weights = np.asarray(fit.parameters["weights"], np.float32)
        matrix = keras.layers.Dense(len(weights), name=MATRIX_LAYER, dtype="float32")
        scaled = matrix(keras.layers.Activation("log_softmax", name=LOG_PROBABILITIES_LAYER)(outputs))
        matrix.set_weights([weights.T, np.asarray(fit.parameters["bias"], np.float32)])
    return keras.Model(model.inputs[0], scaled, name=name or f"{model.name}_{fit.method}_scaled")


def calibrate(model, data, labels=None, *, method: str = "temperature", batch_size: int = 256,
              name: Optional[str] = None, **options) -> Tuple[object, CalibrationFit]:
    """Fits a post-hoc calibration map to `model` on held-out data; returns the calibrated model and the fit.

    `calibrate_temperature`'s sibling for every map of
    `keras_calikd.training.posthoc.fit_calibration`: `"temperature"`
    (`logits / T`), `"vector"` (`w * logits + b`) or `"matrix"` (Dirichlet
    calibration, `W @ log_softmax(logits) + b`, with off-diagonal and
    intercept regularisation). The map is fitted by minimising the NLL of the
    held-out labels; the calibrated model (`calibrated_model`) can be passed
    to `Distiller` as the teacher and saves/loads as a plain Keras model.
    Temperature scaling keeps every prediction's argmax; vector and matrix
    scaling may change some. A fit that should not be trusted (a temperature
    on its search bound, a fit that did not converge, a map that does not
    lower the held-out NLL) raises a `CalibrationWarning` and lists it in
    `fit.warnings`.

    Args:
        model: A built functional `keras.Model` returning logits.
        data, labels: Held-out data, as for `calibrate_temperature`.
        method: `"temperature"`, `"vector"` or `"matrix"`.
        batch_size: Batch size of the forward passes over NumPy `data`.
        name: Name of the calibrated model.
        **options: For `fit_calibration` (`off_diagonal_penalty`, `bias_penalty`, `max_iterations`).

    Returns:
        `(calibrated_model, fit)`, `fit` a `CalibrationFit` (parameters, NLL before and after, warnings).

    Example:

    ```python
    from keras_calikd.training.teacher_calibration import calibrate

    calibrated, fit = calibrate(teacher, heldout_images, heldout_labels, method="matrix")
    distiller = ck.Distiller(calibrated, student, distillation="kd", augmentation="mixup")
    ```

    Reference:
        Guo et al., "On Calibration of Modern Neural Networks", ICML 2017;
        Kull et al., "Beyond temperature scaling: Obtaining well-calibrated
        multiclass probabilities with Dirichlet calibration", NeurIPS 2019.
    """
    logits, held_out_labels = _held_out_logits(model, data, labels, batch_size, "calibrate")
    fit = fit_calibration(logits, held_out_labels, method, **options)
    for message in fit.warnings:
        warnings.warn(message, CalibrationWarning, stacklevel=2)
    return calibrated_model(model, fit, name=name), fit
