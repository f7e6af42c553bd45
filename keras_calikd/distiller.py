"""The `Distiller`: a frozen teacher, a trained student, a distillation term and an augmentation term."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import keras
import numpy as np
from keras import ops

from keras_calikd import augmentations as augmentations_lib
from keras_calikd import distillations as distillations_lib
from keras_calikd.distillations.base import (DATASET_LABELS, FEATURES, INDICES, KNOWN_REQUIREMENTS, Batch,
                                             ModelOutputs)
from keras_calikd.steps import BACKEND, SUPPORTED_BACKENDS, DistillationStep

IMAGE_KEY = "image"
INDEX_KEY = "index"


class StepLosses(NamedTuple):
    """The losses of one training step and the student's clean logits (for the compiled metrics)."""

    loss: Any
    distillation: Any
    augmentation: Any
    student_logits: Any


def _declared_input_shape(model):
    """The per-sample input shape a functional or Sequential model declares, or `None`."""
    inputs = getattr(model, "inputs", None)  # subclassed models declare none
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def _with_features(model, layer_name: str, role: str):
    """A model sharing `model`'s layers that returns `[logits, features]` in one forward pass."""
    if _declared_input_shape(model) is None:
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
        raise ValueError(
            f"The {role}'s feature layer {layer_name!r} must output a (batch, dim) tensor, "
            f"got shape {tuple(layer.output.shape)}."
        )
    return keras.Model(model.inputs[0], [model.outputs[0], layer.output], name=f"{model.name}_with_features")


@keras.saving.register_keras_serializable(package="keras_calikd")
class Distiller(DistillationStep, keras.Model):
    """Distils a calibrated student from a frozen, possibly uncalibrated teacher.

    Per training step, on a batch `(x, y)`:

    1. the teacher (frozen, `training=False`, outputs under stop-gradient) and
       the student both see the clean batch `x`, and every distillation
       strategy computes its loss from their outputs;
    2. the augmentation strategy turns `x` into an augmented batch that only
       the student sees, and computes the augmentation loss on it;
    3. `loss = alpha * sources * L_distill + (1 - alpha) * L_aug`, where
       `sources` is 2 for a batch mixed from two images (mixup, CutMix), the
       paper's Eq. 12, and 1 otherwise.

    The student runs twice per step (clean and augmented batch), or once when
    the augmentation is `"none"`. Strategies declare what they need (penultimate
    features, sample indices) and the Distiller provides exactly that: features
    come from the same forward pass as the logits, indices from inputs given as
    `{"image": images, "index": indices}`.

    Evaluation (`evaluate`, validation during `fit`) runs the student on clean
    data with cross-entropy as the loss and the compiled metrics; `predict` and
    `call` return the student's logits. The losses `loss`, `distillation_loss`
    and `augmentation_loss` are logged during training.

    Args:
        teacher: A built `keras.Model` returning logits. It is frozen
            (`teacher.trainable = False`).
        student: A built `keras.Model` returning logits, with the teacher's
            input shape and number of classes.
        distillation: A registered name (`"kd"`, ...), a `Distillation`
            instance, or a list of them whose weighted losses are summed.
        augmentation: A registered name (`"none"`, `"mixup"`, `"cutmix"`,
            `"cutout"`, ...) or an `Augmentation` instance.
        alpha: Weight of the distillation term, in `[0, 1]`; the augmentation
            term gets `1 - alpha`. The paper uses 0.5.
        feature_layer: Name of the layer whose output is the penultimate
            (pooled) feature vector, used when a strategy requires features.
        input_shape: Per-sample input shape, needed only when neither model
            declares one (subclassed models); otherwise the models' shape is
            used and checked.
        name: Model name.

    Example:

    ```python
    distiller = ck.Distiller(teacher, student, distillation="kd", augmentation="mixup", alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      metrics=["accuracy", ck.metrics.ExpectedCalibrationError(from_logits=True)])
    distiller.fit(train_ds, validation_data=test_ds, epochs=240)
    distiller.student.save("student.keras")
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 3.2, Eq. 4-6 and 12-13.
    """

    def __init__(
        self,
        teacher: keras.Model,
        student: keras.Model,
        distillation: Any = "kd",
        augmentation: Any = "none",
        alpha: float = 0.5,
        feature_layer: str = "features",
        input_shape: Sequence[int] | None = None,
        name: str = "distiller",
        **kwargs,
    ):
        if not getattr(DistillationStep, "supported", False):
            raise RuntimeError(
                f"The Distiller trains on the {' and '.join(SUPPORTED_BACKENDS)} backends; the Keras backend is "
                f"{BACKEND!r}. Set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax before importing keras."
            )
        super().__init__(name=name, **kwargs)
        for role, model in (("teacher", teacher), ("student", student)):
            if not isinstance(model, keras.Model):
                raise TypeError(f"`{role}` must be a keras.Model returning logits, got {type(model).__name__}.")
        if teacher is student:
            raise ValueError("`teacher` and `student` must be two different models.")
        try:
            alpha = float(alpha)
        except (TypeError, ValueError):
            raise TypeError(f"`alpha` must be a number in [0, 1], got {alpha!r}.") from None
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(
                f"`alpha` must be in [0, 1] (the weight of the distillation term), got {alpha}. "
                "The paper uses 0.5."
            )
        if isinstance(distillation, (list, tuple)):
            if not distillation:
                raise ValueError("`distillation` must name at least one distillation strategy.")
            self.distillations = [distillations_lib.get(d) for d in distillation]
        else:
            self.distillations = [distillations_lib.get(distillation)]
        self.augmentation = augmentations_lib.get(augmentation)
        self.requirements = frozenset().union(*(d.requires for d in self.distillations))
        unknown = self.requirements - KNOWN_REQUIREMENTS
        if unknown:
            raise ValueError(
                f"Distillation strategies require {sorted(unknown)}, which the Distiller cannot provide; "
                f"it provides {sorted(KNOWN_REQUIREMENTS)}."
            )

        teacher.trainable = False
        self.teacher = teacher
        self.student = student
        self.alpha = alpha
        self.feature_layer = feature_layer
        self._requested_input_shape = None if input_shape is None else tuple(input_shape)
        self._dataset_labels_given = False
        if FEATURES in self.requirements:
            self._teacher_forward = _with_features(teacher, feature_layer, "teacher")
            self._student_forward = _with_features(student, feature_layer, "student")
        else:
            self._teacher_forward, self._student_forward = teacher, student

        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.augmentation_loss_tracker = keras.metrics.Mean(name="augmentation_loss")

        shape = self._resolve_input_shape()
        if shape is not None:
            self.build((None,) + shape)

    # ------------------------------------------------------------------ construction

    def _resolve_input_shape(self):
        declared = {role: _declared_input_shape(m) for role, m in (("teacher", self.teacher), ("student", self.student))}
        known = {role: s for role, s in declared.items() if s is not None}
        if len(known) == 2 and known["teacher"] != known["student"]:
            raise ValueError(
                f"The teacher takes inputs of shape {known['teacher']} but the student takes {known['student']}; "
                "both must see the same images."
            )
        shape = next(iter(known.values()), None)
        requested = self._requested_input_shape
        if requested is not None and shape is not None and requested != shape:
            raise ValueError(f"`input_shape={requested}` does not match the models' input shape {shape}.")
        return shape if shape is not None else requested

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape[IMAGE_KEY]
        input_shape = tuple(input_shape)[1:]  # drop the batch dimension
        self.image_shape = input_shape
        symbolic = keras.KerasTensor((None,) + input_shape)
        num_classes = {}
        feature_dims = {}
        for role, forward in (("teacher", self._teacher_forward), ("student", self._student_forward)):
            try:
                outputs = forward.compute_output_spec(symbolic, training=False)
            except Exception as error:  # the model's own message follows
                raise ValueError(f"The {role} cannot be called on inputs of shape {input_shape}: {error}") from None
            logits = outputs[0] if FEATURES in self.requirements else outputs
            if not hasattr(logits, "shape") or len(logits.shape) != 2:
                raise ValueError(
                    f"The {role} must return one (batch, num_classes) tensor of logits, got {outputs!r}."
                )
            num_classes[role] = logits.shape[-1]
            feature_dims[role] = outputs[1].shape[-1] if FEATURES in self.requirements else None
        if num_classes["teacher"] != num_classes["student"]:
            raise ValueError(
                f"The teacher predicts {num_classes['teacher']} classes but the student predicts "
                f"{num_classes['student']}; both must share the label space."
            )
        self.num_classes = num_classes["student"]
        for distillation in self.distillations:
            if not distillation.built:
                distillation.build(
                    num_classes=self.num_classes,
                    teacher_feature_dim=feature_dims["teacher"],
                    student_feature_dim=feature_dims["student"],
                )
        if not self.augmentation.built:
            self.augmentation.build((None,) + input_shape, num_classes=self.num_classes)
        self.built = True

    def set_dataset_labels(self, labels) -> None:
        """Hands the training set's labels, ordered by dataset index, to the strategies that require them.

        Needed before training when a strategy declares `"dataset_labels"`
        (e.g. `CRD(negatives="other_classes")`).
        """
        if not self.built:
            raise ValueError("Build the Distiller (fit it or pass `input_shape=`) before setting dataset labels.")
        for distillation in self.distillations:
            if DATASET_LABELS in distillation.requires:
                distillation.set_dataset_labels(labels)
        self._dataset_labels_given = True

    def compile(self, optimizer="sgd", loss=None, **kwargs):
        """Configures training; `loss` is fixed: the strategies define the training loss, evaluation uses CE.

        Args:
            optimizer: The student's optimizer.
            loss: Must be left out.
            **kwargs: `metrics`, `jit_compile`, `steps_per_execution`, ... as
                for `keras.Model.compile`. Metrics are computed on the
                student's logits of the clean batch.
        """
        if loss is not None:
            raise ValueError(
                "Distiller.compile() takes no `loss`: training minimises alpha * distillation + (1 - alpha) * "
                "augmentation loss, set by the Distiller's strategies, and evaluation reports cross-entropy."
            )
        if not self.augmentation.xla_compatible:
            if kwargs.get("jit_compile") is True:
                raise ValueError(
                    f"The augmentation strategy {type(self.augmentation).__name__} cannot run inside a compiled "
                    "(XLA) step: compile the Distiller with jit_compile=False."
                )
            kwargs["jit_compile"] = False
        super().compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="cross_entropy"),
            **kwargs,
        )

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, after checking what can be checked of the data before training starts.

        NumPy arrays and `tf.data` element specs are checked for image shape
        and dtype, label shape and range, and sample weights, so that a wrong
        input fails with a clear message before the first step is compiled.
        """
        if kwargs.get("sample_weight") is not None or kwargs.get("class_weight") is not None:
            raise ValueError(
                "The Distiller does not weight training samples: drop `sample_weight`/`class_weight` from fit()."
            )
        self._check_data(x, y)
        if self.built:
            self.prepare_to_fit()
        return super().fit(x, y, *args, **kwargs)

    def _check_data(self, x, y):
        element_spec = getattr(x, "element_spec", None)  # a tf.data.Dataset
        if element_spec is not None:
            if not isinstance(element_spec, tuple) or len(element_spec) < 2:
                raise ValueError("The Distiller trains on labelled batches: the dataset must yield (inputs, labels).")
            if len(element_spec) > 2:
                raise ValueError(
                    "The Distiller does not weight training samples: the dataset yields a third element "
                    "(sample weights); yield (inputs, labels) only."
                )
            x, y = element_spec
        if y is None and x is not None and not hasattr(x, "shape") and not isinstance(x, dict):
            return  # a generator or PyDataset: checked at the first step
        if x is not None:
            images, indices = self._split_inputs(x)
            if not self.built and None not in tuple(images.shape[1:]):
                self.build((None,) + tuple(images.shape[1:]))
            self._check_requirements(indices)
        if y is not None and hasattr(y, "shape"):
            if len(y.shape) > 1 and y.shape[-1] != 1:
                raise ValueError(f"Labels must be integer class ids of shape (batch,), got shape {tuple(y.shape)}.")
            if isinstance(y, np.ndarray) and y.size and getattr(self, "num_classes", None):
                low, high = int(y.min()), int(y.max())
                if low < 0 or high >= self.num_classes:
                    raise ValueError(
                        f"Labels must be class ids in [0, {self.num_classes - 1}] for models with "
                        f"{self.num_classes} classes; got labels from {low} to {high}."
                    )

    def _check_requirements(self, indices):
        """Fails if the strategies need sample indices or dataset labels that were not provided."""
        if DATASET_LABELS in self.requirements and not self._dataset_labels_given:
            raise ValueError(
                "A distillation strategy draws on the training set's labels: call "
                "`distiller.set_dataset_labels(train_labels)` (labels ordered by dataset index) before fit()."
            )
        if INDICES in self.requirements and indices is None:
            raise ValueError(
                "A distillation strategy needs each sample's dataset index: feed inputs as "
                f'{{"{IMAGE_KEY}": images, "{INDEX_KEY}": indices}} (keras_calikd.data.load(..., with_index=True)).'
            )

    # ------------------------------------------------------------------ forward passes

    def _split_inputs(self, x):
        """`(images, indices)` from inputs given as images or as `{"image": ..., "index": ...}`."""
        if isinstance(x, dict):
            if IMAGE_KEY not in x:
                raise ValueError(f"Dict inputs must hold the images under {IMAGE_KEY!r}; got keys {sorted(x)}.")
            images, indices = x[IMAGE_KEY], x.get(INDEX_KEY)
        else:
            images, indices = x, None
        expected = getattr(self, "image_shape", None)
        if len(images.shape) > 0 and None not in images.shape[1:] and expected is not None \
                and tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"The models take images of shape {expected} per sample, got a batch of shape "
                f"{tuple(images.shape)}. Resize or reshape the input pipeline's images."
            )
        if not keras.backend.is_float_dtype(images.dtype):
            raise ValueError(
                f"Images must be floating point (normalised), got dtype {images.dtype}. Cast and normalise them "
                "in the input pipeline (the keras_calikd.data pipelines do)."
            )
        return images, indices

    @staticmethod
    def _outputs(forward, images, training):
        outputs = forward(images, training=training)
        if isinstance(outputs, (list, tuple)):
            return ModelOutputs(ops.cast(outputs[0], "float32"), ops.cast(outputs[1], "float32"))
        return ModelOutputs(ops.cast(outputs, "float32"))

    def call(self, inputs, training=False):
        images, _ = self._split_inputs(inputs)
        return self.student(images, training=training)

    # ------------------------------------------------------------------ the backend-neutral step

    def compute_step_losses(self, data, training=True) -> StepLosses:
        """The losses of one distillation step, in `keras.ops`; shared by every backend's `train_step`.

        Reads and writes variables statefully (model statistics, seeds,
        strategy state); each backend's step decides how that state is held.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError(
                "The Distiller does not weight training samples: drop `sample_weight`/`class_weight` from fit()."
            )
        if y is None:
            raise ValueError("The Distiller trains on labelled batches: the data must yield (inputs, labels).")
        images, indices = self._split_inputs(x)
        if not self.built:  # models that declare no input shape, fed by a generator
            self.build(images.shape)
        self._check_requirements(indices)
        if len(y.shape) > 1 and y.shape[-1] != 1:
            raise ValueError(f"Labels must be integer class ids of shape (batch,), got shape {tuple(y.shape)}.")
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        batch = Batch(labels=labels, indices=None if indices is None else ops.reshape(ops.cast(indices, "int32"), (-1,)))

        teacher = self._outputs(self._teacher_forward, images, training=False)
        teacher = ModelOutputs(*(None if t is None else ops.stop_gradient(t) for t in teacher))
        student = self._outputs(self._student_forward, images, training=training)
        distillation = sum(d.compute_loss(teacher, student, batch, training=training) for d in self.distillations)

        augmented = self.augmentation.augment(images, self.augmentation.select_labels(labels, teacher.logits))
        if self.augmentation.transforms_images:
            augmented_logits = ops.cast(self.student(augmented.images, training=training), "float32")
        else:
            augmented_logits = student.logits
        augmentation = self.augmentation.loss(augmented, augmented_logits)

        distillation = augmented.sources * distillation
        loss = self.alpha * distillation + (1.0 - self.alpha) * augmentation
        regularization = self.student.losses
        if regularization:
            loss = loss + ops.sum(ops.stack([ops.cast(r, "float32") for r in regularization]))
        return StepLosses(loss=loss, distillation=distillation, augmentation=augmentation,
                          student_logits=student.logits)

    def update_train_metrics(self, data, step: StepLosses):
        """Updates the loss trackers and the compiled metrics after a step; returns the logs."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        batch_size = ops.shape(step.student_logits)[0]
        self._loss_tracker.update_state(step.loss, sample_weight=batch_size)
        self.distillation_loss_tracker.update_state(step.distillation, sample_weight=batch_size)
        self.augmentation_loss_tracker.update_state(step.augmentation, sample_weight=batch_size)
        return self.compute_metrics(x, y, step.student_logits)

    def test_step(self, *args):
        logs = super().test_step(*args)
        # Training-only trackers carry no evaluation value.
        drop = (self.distillation_loss_tracker.name, self.augmentation_loss_tracker.name)
        if isinstance(logs, tuple):  # JAX: (logs, state)
            return {k: v for k, v in logs[0].items() if k not in drop}, logs[1]
        return {k: v for k, v in logs.items() if k not in drop}

    # ------------------------------------------------------------------ serialization

    def get_config(self):
        return {
            "name": self.name,
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "distillation": [keras.saving.serialize_keras_object(d) for d in self.distillations],
            "augmentation": keras.saving.serialize_keras_object(self.augmentation),
            "alpha": self.alpha,
            "feature_layer": self.feature_layer,
            "input_shape": getattr(self, "image_shape", self._requested_input_shape),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student", "augmentation"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        config["distillation"] = [keras.saving.deserialize_keras_object(d) for d in config["distillation"]]
        return cls(**config)
