"""Export of a trained model as SavedModel, TFLite, ONNX and LiteRT, each checked against the Keras model.

Every artifact takes the same input, raw `uint8` images `(batch, H, W, C)`
(the zoo's models normalise their input themselves), and returns the logits
and the probabilities (float32). Before the output folder is kept, each
artifact runs on the same probe images as the Keras model in its own runtime
(TensorFlow, the TFLite interpreter, onnxruntime, the LiteRT interpreter),
and its largest absolute logit difference to the Keras model is written
beside it in `export.json` and must be within the tolerance.

What each format needs, checked before any work starts (`check_formats`):

| format | written by | checked with | backends |
| --- | --- | --- | --- |
| `saved_model` | Keras' `ExportArchive` (jax2tf on JAX) | TensorFlow | TensorFlow, JAX |
| `tflite` | `tf.lite.TFLiteConverter` from the SavedModel | `tf.lite.Interpreter` | TensorFlow, JAX |
| `onnx` | Keras' `Model.export(format="onnx")`: tf2onnx on TensorFlow, jax2onnx on JAX | onnxruntime | TensorFlow, JAX |
| `litert` | Keras' `Model.export(format="litert")` | ai-edge-litert's interpreter | TensorFlow (Keras 3.15 writes LiteRT from TensorFlow and PyTorch only) |
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import keras
import numpy as np

from keras_calikd.checks import shortened
from keras_calikd.files import Outputs, atomic_path
from keras_calikd.quiet import import_tensorflow

EXPORT_MARKER = "export.json"  # written into every exported folder: what was checked, with which versions
TOOL = "calikd-export"  # whose output an exported folder is (keras_calikd.files.Outputs)
FORMATS = ("saved_model", "tflite", "onnx", "litert")
ARTIFACTS = {"saved_model": ".", "tflite": "model.tflite", "onnx": "model.onnx", "litert": "model_litert.tflite"}
TFLITE_FILE = ARTIFACTS["tflite"]
OUTPUTS = ("logits", "probabilities")
EXPORT_EXTRA = 'pip install "keras-calikd[export]"'


class ExportMismatchError(RuntimeError):
    """The exported artifact does not reproduce the Keras model's outputs."""


class ExportConversionError(RuntimeError):
    """A converter could not write the model in its format (e.g. an operation it does not support)."""


def _packages(export_format: str, backend: str):
    """`(module, pip package)` pairs `export_format` needs on `backend`, beyond TensorFlow."""
    if export_format == "onnx":
        converter = ("tf2onnx", "tf2onnx") if backend == "tensorflow" else ("jax2onnx", "jax2onnx")
        return [converter, ("onnxruntime", "onnxruntime")]
    if export_format == "litert":
        return [("ai_edge_litert", "ai-edge-litert")]
    return []


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_formats(formats) -> tuple:
    """The requested formats, in order, once each; fails before any work when one cannot be written here.

    Args:
        formats: Format names (a sequence, or one comma-separated string) from `FORMATS`.

    Raises:
        ValueError: an unknown format, a format the Keras backend cannot write, or a missing package (the
            message names the packages to install).
    """
    if isinstance(formats, str):
        formats = formats.split(",")
    formats = tuple(dict.fromkeys(f.strip() for f in formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"Unknown export format {unknown or formats}; give a comma-separated subset of "
                         f"{','.join(FORMATS)}.")
    backend = keras.backend.backend()
    if "litert" in formats and backend != "tensorflow":
        raise ValueError(f"The litert format needs the TensorFlow backend (Keras {keras.__version__} writes LiteRT "
                         f"from TensorFlow and PyTorch only; the backend is {backend!r}): run with "
                         "KERAS_BACKEND=tensorflow, or give tflite, the same flatbuffer format converted from the "
                         "SavedModel, which works on every backend.")
    for export_format in formats:
        missing = [package for module, package in _packages(export_format, backend) if not _installed(module)]
        if missing:
            extra = f" (or {EXPORT_EXTRA}, the TensorFlow backend's)" if backend == "tensorflow" else ""
            raise ValueError(f"The {export_format} format needs {' and '.join(missing)} on the {backend} backend, "
                             f"which {'is' if len(missing) == 1 else 'are'} not installed: pip install "
                             f"{' '.join(missing)}{extra}.")
    return formats


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


def _write_saved_model(serving, folder: str, images):
    """Writes the SavedModel `serving_default(images)` into `folder`; returns its logits on `images`."""
    tf = import_tensorflow()
    archive = keras.export.ExportArchive()
    archive.track(serving)
    archive.add_endpoint("serving_default", serving.__call__, input_signature=[
        tf.TensorSpec((None,) + tuple(serving.input_shape[1:]), tf.uint8, name="images")])
    archive.write_out(folder, verbose=False)
    return tf.saved_model.load(folder).signatures["serving_default"](images=tf.constant(images))["logits"]


def _write_tflite(saved_model: str, file: str, images):
    """Converts the SavedModel to TFLite at `file`; returns the TFLite interpreter's logits on `images`."""
    tf = import_tensorflow()
    with open(file, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())
    return tf.lite.Interpreter(model_path=file).get_signature_runner("serving_default")(images=images)["logits"]


def _name_onnx_outputs(file: str) -> None:
    """Names the ONNX graph's outputs `logits` and `probabilities` (jax2onnx names them after their operations).

    The serving model's outputs are a dict, flattened in key order: logits, then probabilities.
    """
    import onnx

    graph = onnx.load(file)
    names = dict(zip([output.name for output in graph.graph.output], OUTPUTS))
    for node in graph.graph.node:
        node.output[:] = [names.get(name, name) for name in node.output]
        node.input[:] = [names.get(name, name) for name in node.input]
    for output in graph.graph.output:
        output.name = names[output.name]
    onnx.save(graph, file)


def _write_onnx(serving, file: str, images):
    """Keras' ONNX export of `serving` at `file`; returns onnxruntime's logits on `images`."""
    import onnxruntime

    serving.export(file, format="onnx", verbose=False)
    _name_onnx_outputs(file)
    session = onnxruntime.InferenceSession(file, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images})[0]


def _write_litert(serving, file: str, images):
    """Keras' LiteRT export of `serving` at `file`; returns the LiteRT interpreter's logits on `images`."""
    from ai_edge_litert.interpreter import Interpreter

    serving.export(file, format="litert", verbose=False)
    return Interpreter(model_path=file).get_signature_runner("serving_default")(images=images)["logits"]


def _versions(formats) -> dict:
    """The versions of the packages that wrote and checked the artifacts."""
    from importlib.metadata import PackageNotFoundError, version

    tf = import_tensorflow()
    versions = {"keras": keras.__version__, "tensorflow": tf.__version__}
    for export_format in formats:
        for _, package in _packages(export_format, keras.backend.backend()):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                versions[package] = None
    return versions


def export_model(model: keras.Model, path: str, formats=("saved_model",), overwrite: bool = False,
                 tolerance: float = 1e-3, source: str | None = None) -> dict:
    """Exports `model` in `formats` into the folder `path`, each artifact checked against the Keras model.

    The SavedModel (`saved_model`) is the folder itself, with the signature
    `serving_default(images)`; the other artifacts are files in it:
    `model.tflite`, `model.onnx` (input `images`, outputs `logits` and
    `probabilities`) and `model_litert.tflite` (signature `serving_default`).
    All take raw `uint8` images `(batch, H, W, C)`, as the `.keras` file does,
    and return float32 logits and probabilities. Each artifact runs on a few
    probe images in its runtime and must match the Keras model's logits
    within `tolerance` (times the logits' scale); otherwise
    `ExportMismatchError` is raised and nothing is left at `path`. The folder
    is written atomically, with `export.json` (each artifact's largest logit
    difference, the tolerance, the input contract and the versions used), and
    recorded as calikd-export's output (`keras_calikd.files.Outputs`): `path`
    must be new or an earlier export nobody changed since. Which formats work
    on which backend and what they need: see the module's docstring.

    Args:
        model: A `keras.Model` returning logits (e.g. `distiller.student`).
        path: Output folder: new, or an earlier export (replaced with `overwrite=True`).
        formats: A subset of `FORMATS` (or a comma-separated string).
        overwrite: Replace an earlier export at `path`.
        tolerance: Largest accepted logit difference, relative to the largest logit (at least 1).
        source: Where the model comes from (recorded in `export.json`).

    Returns:
        The contents of `export.json`.

    Raises:
        ValueError: a format that cannot be written here (`check_formats`), before anything is done.
        keras_calikd.files.OutputExistsError: `path` holds something that may not be replaced.
        ExportMismatchError: an artifact does not reproduce the model.
        ExportConversionError: a converter could not write the model (nothing is written either).

    Example:

    ```python
    report = export_model(distiller.student, "exported/kd_mixup", formats=("saved_model", "onnx"))
    session = onnxruntime.InferenceSession("exported/kd_mixup/model.onnx")
    session.run(["probabilities"], {"images": uint8_batch})
    ```
    """
    formats = check_formats(formats)
    outputs = Outputs(TOOL, overwrite)
    outputs.claim(path, folder=True)
    with outputs:
        return export_into(model, path, formats, tolerance, source)


def export_into(model: keras.Model, path: str, formats=("saved_model",), tolerance: float = 1e-3,
                source: str | None = None) -> dict:
    """`export_model` without its claim on `path`: for a writer that owns `path` already (a run's `saved_model`,
    or a tool inside its `Outputs` scope, which records the folder)."""
    formats = check_formats(formats)
    serving = _serving_model(model)
    images = probe_images(model.input_shape[1:])
    reference = np.asarray(keras.ops.convert_to_numpy(model(images.astype("float32"), training=False)), np.float64)
    scale = max(1.0, float(np.max(np.abs(reference))))
    serving(images)  # Keras exports only models that have been called
    differences = {}
    with atomic_path(path) as temporary:
        os.makedirs(temporary, exist_ok=True)
        saved_model = temporary if "saved_model" in formats else os.path.join(temporary, "saved_model.tmp")
        if {"saved_model", "tflite"} & set(formats):
            outputs = _write_saved_model(serving, saved_model, images)
            if "saved_model" in formats:
                differences["saved_model"] = _max_difference(reference, outputs)
        writers = {"tflite": lambda file: _write_tflite(saved_model, file, images),
                   "onnx": lambda file: _write_onnx(serving, file, images),
                   "litert": lambda file: _write_litert(serving, file, images)}
        for export_format in formats:
            if export_format == "saved_model":
                continue
            try:
                outputs = writers[export_format](os.path.join(temporary, ARTIFACTS[export_format]))
            except Exception as error:  # the converters' own errors: an operation they lack, a failed check
                raise ExportConversionError(
                    f"The {export_format} export of {source or model.name} failed ({type(error).__name__}: "
                    f"{shortened(str(error).replace(temporary, path), 300)}). Export the other formats without "
                    f"it; nothing was written to {path}."
                ) from error
            differences[export_format] = _max_difference(reference, outputs)
        if saved_model != temporary:
            shutil.rmtree(saved_model, ignore_errors=True)
        report = {"max_logit_difference": differences, "tolerance": tolerance * scale, "source": source,
                  "artifacts": {f: ARTIFACTS[f] for f in formats},
                  "input": {"name": "images", "shape": [None] + list(model.input_shape[1:]), "dtype": "uint8",
                            "values": "raw pixels"},
                  "outputs": list(OUTPUTS), "backend": keras.backend.backend(), **_versions(formats)}
        bad = {name: value for name, value in differences.items() if not value <= tolerance * scale}
        if bad:
            raise ExportMismatchError(
                f"The export of {source or model.name} does not reproduce the model: largest logit differences "
                f"{bad} exceed {tolerance * scale:.2g}. Nothing was written to {path}."
            )
        with open(os.path.join(temporary, EXPORT_MARKER), "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    return report


def export_saved_model(model: keras.Model, path: str, overwrite: bool = False, tflite: bool = False,
                       tolerance: float = 1e-3, source: str | None = None) -> dict:
    """`export_model` with `formats=("saved_model",)`, plus `"tflite"` with `tflite=True`.

    Example:

    ```python
    report = export_saved_model(distiller.student, "exported/kd_mixup", tflite=True)
    served = tf.saved_model.load("exported/kd_mixup")
    served.signatures["serving_default"](images=uint8_batch)["probabilities"]
    ```
    """
    return export_model(model, path, ("saved_model", "tflite") if tflite else ("saved_model",), overwrite=overwrite,
                        tolerance=tolerance, source=source)
