"""SavedModel export of a trained student, with serving signatures from images to logits and probabilities."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from keras_calikd.training.files import atomic_path


def export_saved_model(model: keras.Model, path: str, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None) -> str:
    """Exports `model` as a TensorFlow SavedModel that needs neither Keras nor keras_calikd to run.

    Two signatures, each returning `{"logits", "probabilities"}` (float32):

    - `serving_default(images)`: raw `uint8` images `(batch, H, W, C)` with
      pixel values 0-255; the data set's per-channel normalisation
      (`(x - mean) / std`, with `mean`/`std` in pixel units) is part of the graph.
    - `serve_normalized(images)`: float32 images already normalised as in training.

    The folder is written atomically (no partial SavedModel under `path`).
    Runs on the TensorFlow backend (`tools/export.py` selects it).

    Args:
        model: A `keras.Model` returning logits (e.g. `distiller.student`).
        path: Output folder.
        mean, std: Per-channel normalisation in pixel units; identity if `None`.

    Returns:
        `path`.

    Example:

    ```python
    export_saved_model(distiller.student, "runs/x/saved_model", mean=info.mean, std=info.std)
    served = tf.saved_model.load("runs/x/saved_model")
    served.signatures["serving_default"](images=uint8_batch)["probabilities"]
    ```
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "SavedModel export runs on the TensorFlow backend; use `python tools/export.py` "
            "(it selects KERAS_BACKEND=tensorflow) or set KERAS_BACKEND=tensorflow."
        )
    import tensorflow as tf

    height, width, channels = model.input_shape[1:]
    mean = np.zeros(channels, np.float32) if mean is None else np.asarray(mean, np.float32).reshape(channels)
    std = np.ones(channels, np.float32) if std is None else np.asarray(std, np.float32).reshape(channels)

    def outputs(normalized):
        logits = tf.cast(model(normalized, training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda images: outputs((tf.cast(images, tf.float32) - mean) / std),
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.uint8, name="images")],
    )
    archive.add_endpoint(
        "serve_normalized",
        outputs,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, name="images")],
    )
    with atomic_path(path) as temporary:
        archive.write_out(temporary, verbose=False)
    return path
