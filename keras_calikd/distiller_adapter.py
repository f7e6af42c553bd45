"""The Distiller's adapter: what it is given, checked and made into what its step and strategies need.

- Models: the input shape both models take, their classes and feature sizes
  (`common_input_shape`, `model_outputs`), and the forward pass that returns
  logits and penultimate features together (`with_features`).
- Data: NumPy arrays are checked whole and their labels made class ids
  (`fit_data`, `validation_data`, `evaluation_data`); `tf.data` pipelines
  are wrapped so that each batch is checked as it is read; strategies that
  draw on the training set are adapted from NumPy labels; a step's tensors are
  checked when it is traced (`step_inputs`) and its labels made int32 ids
  (`label_ids`).

The validators these use are `keras_calikd.checks`; the input keys are
`keras_calikd.contract`'s.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import ops

from keras_calikd import checks
from keras_calikd.contract import IMAGE_KEY, INDEX_KEY, INDICES, split_inputs

# ---------------------------------------------------------------- the teacher and the student


def declared_input_shape(model):
    """The per-sample input shape a functional or Sequential model declares, or `None`."""
    inputs = getattr(model, "inputs", None)  # subclassed models declare none
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def common_input_shape(teacher, student, requested):
    """The per-sample input shape both models take (or `requested`), checking that they agree."""
    known = {role: s for role, s in (("teacher", declared_input_shape(teacher)),
                                     ("student", declared_input_shape(student))) if s is not None}
    if len(known) == 2 and known["teacher"] != known["student"]:
        raise ValueError(f"The teacher takes inputs of shape {known['teacher']} but the student takes "
                         f"{known['student']}; both must see the same images.")
    shape = next(iter(known.values()), None)
    if requested is not None and shape is not None and requested != shape:
        raise ValueError(f"`input_shape={requested}` does not match the models' input shape {shape}.")
    return shape if shape is not None else requested


def with_features(model, layer_name: str, role: str):
    """A model sharing `model`'s layers that returns `[logits, features]` in one forward pass."""
    if declared_input_shape(model) is None:
        raise ValueError(
            f"The distillation strategy needs the {role}'s penultimate features, but the {role} is not a "
            "functional keras.Model with one input. Build it with `keras_calikd.models` or with the "
            f"functional API and a layer named {layer_name!r} that outputs the pooled features."
        )
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        raise ValueError(
            f"The distillation strategy needs the {role}'s penultimate features, but the {role} "
            f"{model.name!r} has no layer named {layer_name!r}. Name the layer that outputs the pooled "
            "features (the classifier's input) that way, or pass `feature_layer=` to the Distiller."
        ) from None
    if len(layer.output.shape) != 2:
        raise ValueError(f"The {role}'s feature layer {layer_name!r} must output a (batch, dim) tensor, "
                         f"got shape {tuple(layer.output.shape)}.")
    return keras.Model(model.inputs[0], [model.outputs[0], layer.output], name=f"{model.name}_with_features")


def model_outputs(forwards, image_shape, with_features_: bool):
    """`(num_classes, {role: feature_dim})` of the teacher's and student's forward passes, checked to agree."""
    symbolic = keras.KerasTensor((None,) + tuple(image_shape))
    num_classes, feature_dims = {}, {}
    for role, forward in forwards.items():
        try:
            outputs = forward.compute_output_spec(symbolic, training=False)
        except Exception as error:  # the model's own message follows
            raise ValueError(f"The {role} cannot be called on inputs of shape {tuple(image_shape)}: {error}") from None
        logits = outputs[0] if with_features_ else outputs
        if not hasattr(logits, "shape") or len(logits.shape) != 2:
            raise ValueError(f"The {role} must return one (batch, num_classes) tensor of logits, got {outputs!r}.")
        num_classes[role] = logits.shape[-1]
        feature_dims[role] = outputs[1].shape[-1] if with_features_ else None
    if num_classes["teacher"] != num_classes["student"]:
        raise ValueError(f"The teacher predicts {num_classes['teacher']} classes but the student predicts "
                         f"{num_classes['student']}; both must share the label space.")
    return num_classes["student"], feature_dims


# ---------------------------------------------------------------- data given to fit, evaluate and the step


def _is_dataset(x) -> bool:
    return hasattr(x, "element_spec") and hasattr(x, "cardinality")


def _array(x):
    """`x` as a NumPy array when it is an in-memory array (NumPy, JAX, TensorFlow), else `None`."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__array__"):
        return np.asarray(x)
    return None


def _check_image_shape(model, shape, where):
    expected = getattr(model, "image_shape", None)
    if expected is not None and None not in tuple(shape[1:]) and tuple(shape[1:]) != tuple(expected):
        raise ValueError(f"The models take images of shape {tuple(expected)} per sample, got {where} of shape "
                         f"{tuple(shape)}. Resize or reshape the input pipeline's images.")


def _arrays(model, x, y, where):
    """Checks in-memory `(x, y)` whole; returns them with labels as int class ids."""
    images, indices = split_inputs(x)
    images = _array(images)
    if images is None:
        return x, y
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(f"The {where} data holds no images (shape {images.shape}); give at least one batch.")
    if not model.built:
        model.build((None,) + images.shape[1:])
    _check_image_shape(model, images.shape, f"{where} images")
    checks.finite_images(images, f"The {where} images")
    if y is None:
        raise ValueError(f"The Distiller needs labels: give `y` with the {where} images.")
    labels = checks.class_ids(y, model.num_classes, where=f"The {where} labels")
    if len(labels) != len(images):
        raise ValueError(f"The {where} data has {len(images)} images but {len(labels)} labels.")
    return x, labels


def _labels_by_index(x, labels):
    """The labels ordered by dataset index, from in-memory inputs (indices given or implied by the order)."""
    _, indices = split_inputs(x)
    indices = _array(indices)
    if indices is None:
        return labels
    indices = indices.reshape(-1).astype(np.int64)
    by_index = np.full(int(indices.max()) + 1, -1, np.int64)
    by_index[indices] = labels
    if np.any(by_index < 0):
        raise ValueError("The dataset indices of the training data leave gaps: index i must be given for every "
                         "i below the largest (0..N-1), as `keras_calikd.data.load(..., with_index=True)` yields.")
    return by_index


def _checked_dataset(model, dataset, where):
    """A `tf.data` pipeline whose batches are checked as they are read (labels, image shape and finiteness)."""
    import tensorflow as tf

    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError(f"The Distiller needs labelled batches: the {where} dataset must yield (inputs, labels).")
    if len(spec) > 2:
        raise ValueError(f"The Distiller does not weight samples: the {where} dataset yields a third element "
                         "(sample weights); yield (inputs, labels) only.")
    if int(dataset.cardinality()) == 0:
        raise ValueError(f"The {where} dataset is empty: it yields no batch (is the split or the slice empty, or "
                         "larger than the data with drop_remainder=True?).")
    image_spec, _ = split_inputs(spec[0])
    checks.image_dtype(image_spec.dtype, f"The {where} images")
    if not model.built and None not in tuple(image_spec.shape[1:]):
        model.build((None,) + tuple(image_spec.shape[1:]))
    _check_image_shape(model, image_spec.shape, f"{where} batches")
    label_shape = tuple(spec[1].shape)
    num_classes = model.num_classes
    one_hot = len(label_shape) == 2 and label_shape[-1] not in (1, None)
    if len(label_shape) > 2 or (one_hot and label_shape[-1] != num_classes):
        raise ValueError(f"The {where} labels have shape {label_shape}: give class ids (batch,) or (batch, 1), or "
                         f"one-hot rows (batch, {num_classes}).")

    def check(x, y):
        images, _ = split_inputs(x)
        conditions = []
        if images.dtype.is_floating:
            conditions.append((tf.reduce_all(tf.math.is_finite(images)),
                               f"keras_calikd: a {where} batch holds NaN or infinite image values; clean the data."))
        if one_hot:
            valid = tf.reduce_all(tf.logical_or(tf.equal(y, 0), tf.equal(y, 1))) & tf.reduce_all(
                tf.equal(tf.reduce_sum(tf.cast(y, tf.float32), axis=-1), 1.0))
            conditions.append((valid, f"keras_calikd: {where} labels of shape (batch, {num_classes}) are read as "
                                      "one-hot rows, but a batch holds a row that is not one-hot."))
        else:
            ids = tf.reshape(y, [-1])
            if ids.dtype.is_floating:
                conditions.append((tf.reduce_all(tf.equal(ids, tf.round(ids))),
                                   f"keras_calikd: {where} labels must be whole class ids; a batch holds a "
                                   "fractional one (labels are never truncated)."))
            in_range = tf.reduce_all((ids >= 0) & (ids < num_classes)) if num_classes else True
            conditions.append((in_range, f"keras_calikd: {where} labels must be class ids in "
                                         f"[0, {num_classes - 1}] for models with {num_classes} classes; a batch "
                                         "holds one outside."))
        asserts = [tf.debugging.Assert(ok, [message]) for ok, message in conditions]
        with tf.control_dependencies(asserts):
            return tf.nest.map_structure(tf.identity, (x, y))

    return dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


@contextlib.contextmanager
def data_check_errors():
    """Raises a data check that failed inside a checked pipeline as the library's `ValueError`.

    The framework reports a failed `tf.debugging.Assert` as its own error
    (TensorFlow's `InvalidArgumentError`, also when JAX reads the pipeline)
    with the check's sentence inside a dump of the graph; the caller of
    `fit`/`evaluate` gets the sentence alone, as a `ValueError`.
    """
    try:
        yield
    except Exception as error:
        sentence = checks.pipeline_check_message(error)
        if sentence is None:
            raise
        raise ValueError(sentence) from None


def fit_data(model, x, y, kwargs):
    """Checks what `Distiller.fit` was given; returns `(x, y)` to train on (labels as ids, pipelines checked)."""
    if kwargs.get("sample_weight") is not None or kwargs.get("class_weight") is not None:
        raise ValueError("The Distiller does not weight training samples: drop `sample_weight`/`class_weight` "
                         "from fit().")
    if _is_dataset(x):
        if y is not None:
            raise ValueError("Give a tf.data dataset that yields (inputs, labels), without `y`.")
        return _checked_dataset(model, x, "training"), None
    x, y = _arrays(model, x, y, "training")
    if isinstance(y, np.ndarray) and not all(d.adapted for d in model.distillations):
        model.adapt(_labels_by_index(x, y))
    return x, y


def validation_data(model, data):
    """`fit`'s `validation_data`, checked like the training data."""
    if data is None:
        return None
    if _is_dataset(data):
        return _checked_dataset(model, data, "validation")
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return tuple(_arrays(model, data[0], data[1], "validation"))
    return data


def evaluation_data(model, x, y):
    """`evaluate`'s data, checked like the training data (labels must fit the models' classes)."""
    if _is_dataset(x):
        return _checked_dataset(model, x, "evaluation"), None
    return _arrays(model, x, y, "evaluation")


def ready_to_train(model, x) -> None:
    """Fails if the strategies need sample indices or training-set labels that were not provided."""
    for distillation in model.distillations:
        if not distillation.adapted:
            raise ValueError(
                f"{type(distillation).__name__} draws on the training set's labels: call "
                "`distiller.adapt(train_labels)` (labels ordered by dataset index) before fit() on a pipeline; "
                "fit() does it itself for NumPy arrays."
            )
    if INDICES in model.requirements:
        spec = x.element_spec[0] if _is_dataset(x) else x
        if not (isinstance(spec, dict) and INDEX_KEY in spec):
            _missing_indices()


def _missing_indices():
    raise ValueError(
        "A distillation strategy needs each sample's dataset index: feed inputs as "
        f'{{"{IMAGE_KEY}": images, "{INDEX_KEY}": indices}} (keras_calikd.data.load(..., with_index=True)).'
    )


def step_inputs(model, images, indices, y) -> None:
    """Static checks of a step's tensors (shapes are known when the step is traced)."""
    if y is None:
        raise ValueError("The Distiller trains on labelled batches: the data must yield (inputs, labels).")
    _check_image_shape(model, images.shape, "a batch")
    if INDICES in model.requirements and indices is None:
        _missing_indices()


def label_ids(y, num_classes):
    """`(batch,)` int32 class ids from labels given as ids `(batch,)`, `(batch, 1)` or one-hot rows."""
    if y is None:
        raise ValueError("The Distiller trains on labelled batches: the data must yield (inputs, labels).")
    shape = tuple(y.shape)
    if len(shape) == 2 and shape[-1] not in (1, None):
        if shape[-1] != num_classes:
            raise ValueError(f"Labels of shape {shape} are neither class ids nor one-hot rows of the models' "
                             f"{num_classes} classes.")
        return ops.cast(ops.argmax(y, axis=-1), "int32")
    if len(shape) > 2:
        raise ValueError(f"Labels must be class ids (batch,) or (batch, 1), or one-hot rows; got shape {shape}.")
    return ops.reshape(ops.cast(y, "int32"), (-1,))
