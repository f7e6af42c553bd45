"""Validators: every check of an argument, a label array or an image array, with its message.

Every check fails early (at construction, or before the first training step)
with a `ValueError`/`TypeError` whose message names the owner, the argument,
what is expected and what was given, e.g.
"KD: `temperature` must be > 0, got 0.0." Checks only check (and return the
value they checked, converted); building models and wrapping input pipelines
is the Distiller's adapter's (`keras_calikd.distiller_adapter`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Optional

import numpy as np

from keras_calikd.contract import KNOWN_REQUIREMENTS


# The first words of every message a check inside a `tf.data` pipeline fails with (`tf.debugging.Assert`): the
# framework raises its own error with the message inside a dump of the graph; `pipeline_check_message` finds it.
PIPELINE_CHECK = "keras_calikd:"


def pipeline_check_message(error: BaseException) -> Optional[str]:
    """The sentence of a data check that failed inside a `tf.data` pipeline, or `None` for any other error.

    Example:

    ```python
    pipeline_check_message(error)  # "training labels must be class ids in [0, 9] for models with 10 classes; ..."
    ```
    """
    text = getattr(error, "message", None) or str(error)
    if not isinstance(text, str) or PIPELINE_CHECK not in text:
        return None
    sentence = text[text.index(PIPELINE_CHECK) + len(PIPELINE_CHECK):].split("\n")[0].strip()
    return " ".join(sentence.strip("[]' \"").split())


def _fail(owner: Optional[str], name: str, expected: str, value: Any):
    where = f"{owner}: `{name}`" if owner else name
    raise ValueError(f"{where} must be {expected}, got {value!r}.")


def number(owner: str, name: str, value: Any, *, low: Optional[float] = None, high: Optional[float] = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a finite float within the given bounds (closed unless `*_open`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        _fail(owner, name, "a finite number", value)
    value = float(value)
    if low is not None and (value <= low if low_open else value < low):
        _fail(owner, name, f"{'>' if low_open else '>='} {low:g}", value)
    if high is not None and (value >= high if high_open else value > high):
        _fail(owner, name, f"{'<' if high_open else '<='} {high:g}", value)
    return value


def fraction(owner: str, name: str, value: Any, *, high_open: bool = False) -> float:
    """`value` as a float in [0, 1] (or [0, 1) with `high_open`)."""
    interval = "[0, 1)" if high_open else "[0, 1]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            0.0 <= float(value) < 1.0 if high_open else 0.0 <= float(value) <= 1.0):
        _fail(owner, name, f"in {interval}", value)
    return float(value)


def integer(owner: Optional[str], name: str, value: Any, *, low: Optional[int] = 1, high: Optional[int] = None,
            optional: bool = False, whole_floats: bool = True) -> Optional[int]:
    """`value` as an int in `[low, high]`: the one integer check of the package.

    Args:
        owner: Who takes the argument (a class or tool), named in the message; `None` for a plain
            function's argument (the message then starts with the argument's name).
        name: The argument's name.
        value: The value to check. A bool is never an integer.
        low, high: Inclusive bounds (`None`: unbounded).
        optional: Accept `None` (returned as it is).
        whole_floats: Accept a float with an integer value (`2.0`); `False`: integers only.

    Example:

    ```python
    integer("Cutout", "size", 16.0)                 # 16
    integer(None, "seed", "0", low=None)           # ValueError: seed must be an integer, got '0'.
    ```
    """
    if value is None and optional:
        return None
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    whole = isinstance(value, numbers.Integral) or (whole_floats and number and float(value).is_integer())
    wanted = "an integer" if low is None else "a positive integer" if low == 1 else f"an integer >= {low}"
    if isinstance(value, bool) or not whole:
        if whole_floats and number and low is not None:  # a fraction: it must be whole (and at least `low`)
            wanted = f"an integer >= {low}"
        _fail(owner, name, wanted + (" or None" if optional else ""), value)
    value = int(value)
    if low is not None and value < low:
        _fail(owner, name, wanted, value)
    if high is not None and value > high:
        _fail(owner, name, f"an integer <= {high}", value)
    return value


#: The largest seed every random generator takes (NumPy's and `keras.utils.set_random_seed`'s limit).
MAX_SEED = 2 ** 32 - 1


def seed(owner: Optional[str], value: Any, name: str = "seed") -> Optional[int]:
    """`value` as a seed: `None` (draw one) or an integer in `[0, 2**32 - 1]`.

    Example:

    ```python
    seed("MixUp", 2**40)       # ValueError: MixUp: `seed` must be an integer <= 4294967295, got 1099511627776.
    ```
    """
    return integer(owner, name, value, low=0, high=MAX_SEED, optional=True, whole_floats=False)
def shortened(message: str, limit: int = 200) -> str:
    """The first line of `message`, at most `limit` characters, cut between words (ending in "...")."""
    line = " ".join((str(message).strip().splitlines() or [""])[0].split())
    if len(line) <= limit:
        return line
    cut = line[:limit - 3]
    return (cut[:cut.rindex(" ")] if " " in cut else cut).rstrip(",;:") + "..."


def text(owner: str, name: str, value: Any, optional: bool = False) -> Optional[str]:
    """`value` if it is a non-empty string (or `None`, with `optional`)."""
    if (value is None and optional) or (isinstance(value, str) and value):
        return value
    _fail(owner, name, "a non-empty string" + (" or None" if optional else ""), value)


def one_of(owner: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    """`value` itself, if it is one of `choices`."""
    choices = tuple(choices)
    if not any(value == choice and type(value) is type(choice) for choice in choices):
        _fail(owner, name, f"one of {', '.join(repr(c) for c in choices)}", value)
    return value


# ---------------------------------------------------------------- data given to the Distiller


def class_ids(labels, num_classes: Optional[int], where: str = "Labels") -> np.ndarray:
    """Integer class ids `(N,)` from NumPy labels given as ids `(N,)`, `(N, 1)` or one-hot rows `(N, C)`.

    Raises `ValueError` for float ids that are not whole numbers, rows that are
    not one-hot, a width that is not the number of classes, and ids outside
    `[0, num_classes)`.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 2:
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(
                f"{where} of shape {labels.shape} are neither class ids nor one-hot rows of the models' "
                f"{num_classes} classes. Give integer ids of shape (batch,) or (batch, 1), or one-hot rows."
            )
        rows_ok = np.all((labels == 0) | (labels == 1), axis=1) & (labels.sum(axis=1) == 1)
        if not np.all(rows_ok):
            row = int(np.argmin(rows_ok))
            raise ValueError(
                f"{where} of shape {labels.shape} are read as one-hot rows, but row {row} is not one-hot: "
                f"{labels[row].tolist()}. "
                "Soft labels are not class ids: train on integer ids (for soft targets use an augmentation "
                "strategy such as label smoothing)."
            )
        return labels.argmax(axis=1).astype(np.int64)
    if labels.ndim != 1:
        raise ValueError(f"{where} must be class ids of shape (batch,) or (batch, 1), or one-hot rows; "
                         f"got shape {labels.shape}.")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)) \
                or np.any(labels != np.round(labels)):
            bad = labels[~(np.isfinite(labels) & (labels == np.round(labels)))][:3] \
                if np.issubdtype(labels.dtype, np.number) else labels[:3]
            raise ValueError(f"{where} must be whole class ids, got values such as {bad.tolist()} "
                             f"(dtype {labels.dtype}). Labels are never truncated; fix the input pipeline.")
    labels = labels.astype(np.int64)
    if labels.size and num_classes is not None:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{where} must be class ids in [0, {num_classes - 1}] for models with {num_classes} classes; "
                f"got labels from {low} to {high}."
            )
    return labels


def image_dtype(dtype, where: str = "Images") -> None:
    """Fails unless `dtype` holds real pixel values: integers (e.g. uint8 0-255) or floating point."""
    dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"{where} have dtype {dtype.name}: give pixel values as integers (e.g. uint8, 0-255) or "
                         "floating point numbers in the same range; the models normalise them.")


def finite_images(images, where: str = "Images") -> None:
    """Fails when NumPy `images` are not real numbers or hold NaN or infinite values."""
    images = np.asarray(images)
    image_dtype(images.dtype, where)
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        count = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
        raise ValueError(f"{where} hold {count} NaN or infinite values; clean the data before training.")


# ---------------------------------------------------------------- the Distiller's models and strategies


def backend_supported(step_class) -> None:
    """Fails on a Keras backend without a distillation step (the Distiller trains on TensorFlow and JAX)."""
    if not getattr(step_class, "supported", False):
        import keras

        raise RuntimeError(
            f"The Distiller trains on the TensorFlow and JAX backends; the Keras backend is "
            f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax before importing keras."
        )


def teacher_and_student(teacher, student) -> None:
    import keras

    for role, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, keras.Model):
            raise TypeError(f"`{role}` must be a keras.Model returning logits, got {type(model).__name__}.")
    if teacher is student:
        raise ValueError("`teacher` and `student` must be two different models.")


def requirements(distillations) -> frozenset:
    """What the strategies need from a step, checked against what the Distiller provides."""
    needed = frozenset().union(*(d.requires for d in distillations))
    unknown = needed - KNOWN_REQUIREMENTS
    if unknown:
        raise ValueError(f"Distillation strategies require {sorted(unknown)}, which the Distiller cannot provide; "
                         f"it provides {sorted(KNOWN_REQUIREMENTS)}.")
    return needed


def metrics_read_logits(*metrics) -> None:
    """Fails for a metric that reads probabilities (`from_logits=False`) among metrics given logits (a Distiller's).

    `metrics` as `compile` takes them: metric objects or names, in lists or dicts, nested.
    """
    pending = list(metrics)
    while pending:
        metric = pending.pop()
        if isinstance(metric, dict):
            pending.extend(metric.values())
        elif isinstance(metric, (list, tuple)):
            pending.extend(metric)
        elif metric is not None and not isinstance(metric, str):
            from_logits = getattr(metric, "from_logits", None)
            if from_logits is None:  # Keras' own metrics keep it among their function's arguments
                from_logits = (getattr(metric, "_fn_kwargs", None) or {}).get("from_logits")
            if from_logits is False:
                raise ValueError(f"The metric {getattr(metric, 'name', metric)!r} reads probabilities "
                                 "(from_logits=False), but the Distiller's outputs are the student's logits: create "
                                 "it with from_logits=True.")


def jit_compile_for(augmentation, jit_compile):
    """The `jit_compile` a Distiller can use with `augmentation` (strategies declare `xla_compatible`)."""
    if augmentation.xla_compatible:
        return jit_compile
    if jit_compile is True:
        raise ValueError(f"The augmentation strategy {type(augmentation).__name__} cannot run inside a compiled "
                         "(XLA) step: compile the Distiller with jit_compile=False.")
    return False
