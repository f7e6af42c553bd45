"""SavedModel (and TFLite) export of a trained model, checked against the Keras model before it is kept."""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from keras_calikd.quiet import import_tensorflow
from keras_calikd.files import atomic_path, claim_output

EXPORT_MARKER = "export.json"  # written into every exported folder: the folder is this tool's to replace
TFLITE_FILE = "model.tflite"


class ExportMismatchError(RuntimeError):
    """The exported artifact does not reproduce the Keras model's outputs."""


def _serving_model(model: keras.Model) -> keras.Model:
    """`model` behind a uint8 image input, returning `{"logits", "probabilities"}` (float32)."""
    inputs = keras.Input(model.input_shape[1:], dtype="uint8", name="images")
    logits = keras.ops.cast(model(keras.ops.cast(inputs, "float32"), training=False), "float32")
    return keras.Model(inputs, {"logits": logits, "probabilities": keras.ops.softmax(logits)}, name="serving")


def probe_images(shape, count: int = 8, seed: int = 0) -> np.ndarray:
    """Deterministic uint8 images of `shape` (H, W, C) spanning the pixel range, for checking an export."""
    return np.random.default_rng(seed).integers(0, 256, size=(count,) + tuple(shape), dtype=np.uint8)


def _max_difference(reference, outputs) -> float:
    return float(np.max(np.abs(np.asarray(reference, np.float64) - np.asarray(outputs, np.float64))))


def export_saved_model(model: keras.Model, path: str, overwrite: bool = False, tflite: bool = False,
                       tolerance: float = 1e-3, source: str | None = None) -> dict:
    """Exports `model` as a TensorFlow SavedModel that runs without Keras or keras_calikd, and checks it.

    The signature `serving_default(images)` takes raw `uint8` images
    `(batch, H, W, C)` (the zoo's models normalise their input themselves, so
    the SavedModel, the `.keras` file and a TFLite conversion all take the
    same images) and returns `{"logits", "probabilities"}` (float32). Works
    on the TensorFlow and the JAX backend (TensorFlow must be installed).

    Before the folder is kept, the exported signature (and the TFLite model,
    with `tflite=True`) runs on a few probe images and must match the Keras
    model's logits within `tolerance` (times the logits' scale); otherwise
    `ExportMismatchError` is raised and nothing is left at `path`. The folder
    is written atomically and marked as this tool's output (`export.json`,
    which also records the measured differences).

    Args:
        model: A `keras.Model` returning logits (e.g. `distiller.student`).
        path: Output folder: new, or an earlier export (replaced with `overwrite=True`).
        overwrite: Replace an earlier export at `path`.
        tflite: Also convert to TFLite (`model.tflite` inside the folder).
        tolerance: Largest accepted logit difference, relative to the largest logit (at least 1).
        source: Where the model comes from (recorded in `export.json`).

    Returns:
        The contents of `export.json`: `max_logit_difference` per artifact, shapes, versions.

    Raises:
        keras_calikd.files.OutputExistsError: `path` holds something that may not be replaced.
        ExportMismatchError: an artifact does not reproduce the model.

    Example:

    ```python
    report = export_saved_model(distiller.student, "exported/kd_mixup", tflite=True)
    served = tf.saved_model.load("exported/kd_mixup")
    served.signatures["serving_default"](images=uint8_batch)["probabilities"]
    ```
    """
    claim_output(path, EXPORT_MARKER, overwrite)
    tf = import_tensorflow()

    serving = _serving_model(model)
    images = probe_images(model.input_shape[1:])
    reference = np.asarray(keras.ops.convert_to_numpy(model(images.astype("float32"), training=False)), np.float64)
    scale = max(1.0, float(np.max(np.abs(reference))))
    archive = keras.export.ExportArchive()
    archive.track(serving)
    archive.add_endpoint("serving_default", serving.__call__, input_signature=[
        tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.uint8, name="images")])
    with atomic_path(path) as temporary:
        archive.write_out(temporary, verbose=False)
        served = tf.saved_model.load(temporary).signatures["serving_default"]
        differences = {"saved_model": _max_difference(reference, served(images=tf.constant(images))["logits"])}
        if tflite:
            differences["tflite"] = _write_tflite(temporary, images, reference)
        report = {"max_logit_difference": differences, "tolerance": tolerance * scale, "source": source,
                  "input": {"shape": list(model.input_shape[1:]), "dtype": "uint8"},
                  "outputs": ["logits", "probabilities"], "keras": keras.__version__,
                  "backend": keras.backend.backend(), "tensorflow": tf.__version__}
        bad = {name: value for name, value in differences.items() if not value <= tolerance * scale}
        if bad:
            raise ExportMismatchError(
                f"The export of {source or model.name} does not reproduce the model: largest logit differences "
                f"{bad} exceed {tolerance * scale:.2g}. Nothing was written to {path}."
            )
        with open(os.path.join(temporary, EXPORT_MARKER), "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    return report


def _write_tflite(saved_model: str, images: np.ndarray, reference: np.ndarray) -> float:
    """Converts the SavedModel to `model.tflite` beside it; returns its largest logit difference."""
    tf = import_tensorflow()

    converted = tf.lite.TFLiteConverter.from_saved_model(saved_model).convert()
    file = os.path.join(saved_model, TFLITE_FILE)
    with open(file, "wb") as f:
        f.write(converted)
    interpreter = tf.lite.Interpreter(model_path=file)
    runner = interpreter.get_signature_runner("serving_default")
    return _max_difference(reference, runner(images=images)["logits"])
