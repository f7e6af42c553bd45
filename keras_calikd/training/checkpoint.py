"""Training-state checkpoints: every variable training needs to continue exactly where it stopped."""

from __future__ import annotations

import io
import json
import os
import zipfile

import keras
import numpy as np

from keras_calikd.distiller import Distiller
from keras_calikd.files import atomic_path


def state_variables(model: keras.Model) -> list:
    """The model's variables that change during training (all but a Distiller's frozen teacher).

    Includes batch-norm statistics, random seed states and strategy state
    such as CRD memory banks.
    """
    frozen = {id(v) for v in model.teacher.variables} if isinstance(model, Distiller) else set()
    return [v for v in model.variables if id(v) not in frozen]


def save_state(path: str, model: keras.Model, metadata: dict) -> None:
    """Writes the model's and its optimizer's variables plus `metadata` (JSON) to `path`, atomically."""
    model_variables = state_variables(model)
    optimizer_variables = list(model.optimizer.variables) if model.optimizer is not None else []
    arrays = {f"model_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model_variables)}
    arrays.update({f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer_variables)})
    header = dict(metadata, variable_paths=[v.path for v in model_variables])
    arrays["metadata"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(buffer.getvalue())


def load_state(path: str, model: keras.Model) -> dict:
    """Restores what `save_state` wrote into `model` (built and compiled); returns the metadata."""
    arrays, metadata = read_state(path)
    restore_state(model, arrays, path)
    return metadata


def read_state(path: str):
    """The arrays and the metadata `save_state` wrote, without touching a model.

    Args:
        path: A training-state file.

    Returns:
        `(arrays, metadata)`: `{"model_<i>" | "optimizer_<i>": np.ndarray}` and the metadata dict.

    Raises:
        ValueError: the file cannot be read.

    Example:

    ```python
    arrays, metadata = read_state("runs/x/checkpoints/state.npz")
    metadata["epoch"]        # the epochs it holds
    ```
    """
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
        metadata = json.loads(arrays.pop("metadata").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"The training checkpoint {path!r} cannot be read ({error}).") from None
    return arrays, metadata


def state_specs(model: keras.Model) -> list:
    """`[(key, shape, dtype)]` of the arrays `save_state` writes for `model`, in the order `restore_state` reads them.

    Example:

    ```python
    specs = state_specs(distiller)     # [("model_0", (3, 3, 1, 8), "float32"), ...]
    ```
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    optimizer_variables = list(model.optimizer.variables) if model.optimizer is not None else []
    return [(f"{prefix}_{i}", tuple(v.shape), keras.backend.standardize_dtype(v.dtype))
            for prefix, variables in (("model", state_variables(model)), ("optimizer", optimizer_variables))
            for i, v in enumerate(variables)]


def restore_state(model: keras.Model, arrays: dict, path: str = "the training checkpoint") -> None:
    """Assigns the arrays of `read_state` to `model`'s state and optimizer variables, checking that they match.

    Args:
        model: The built and compiled model.
        arrays: `{"model_<i>" | "optimizer_<i>": array}` as `read_state` returns them.
        path: Where the arrays come from (named in errors).

    Raises:
        ValueError: the arrays are of another configuration (count or shapes).

    Example:

    ```python
    arrays, metadata = read_state(path)
    restore_state(distiller, arrays, path)
    ```
    """
    model_variables = state_variables(model)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    optimizer_variables = list(model.optimizer.variables) if model.optimizer is not None else []
    saved_model = sum(key.startswith("model_") for key in arrays)
    saved_optimizer = sum(key.startswith("optimizer_") for key in arrays)
    if saved_model != len(model_variables) or saved_optimizer != len(optimizer_variables):
        raise ValueError(
            f"The training checkpoint {path!r} holds {saved_model} model and {saved_optimizer} optimizer variables, "
            f"but this run has {len(model_variables)} and {len(optimizer_variables)}: it was written by a different "
            "configuration. Use another output folder, or delete the checkpoint to start over."
        )
    for prefix, variables in (("model", model_variables), ("optimizer", optimizer_variables)):
        for i, variable in enumerate(variables):
            value = arrays[f"{prefix}_{i}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"The training checkpoint {path!r} does not match this run: variable {variable.path} has shape "
                    f"{tuple(variable.shape)} here and {tuple(value.shape)} in the checkpoint."
                )
    for prefix, variables in (("model", model_variables), ("optimizer", optimizer_variables)):
        for i, variable in enumerate(variables):
            variable.assign(arrays[f"{prefix}_{i}"])


def exists(path: str) -> bool:
    return os.path.isfile(path)
