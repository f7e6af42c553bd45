"""The `Distiller`: a frozen teacher, a trained student, a distillation term and an augmentation term."""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Sequence

import keras
from keras import ops

from keras_calikd import augmentations as augmentations_lib
from keras_calikd import checks
from keras_calikd import distillations as distillations_lib
from keras_calikd import distiller_adapter as adapter
from keras_calikd.contract import FEATURES, IMAGE_KEY, TRAINING_SET, split_inputs
from keras_calikd.distillations.base import Batch, ModelOutputs
from keras_calikd.models import input_normalization
from keras_calikd.steps import DistillationStep, creation_scope, num_replicas


class StepLosses(NamedTuple):
    """The losses of one training step and the student's clean logits (for the compiled metrics)."""

    loss: Any
    distillation: Any
    augmentation: Any
    student_logits: Any


def _as_keywords(method, args, kwargs) -> dict:
    """`kwargs` with the positional `args` given after `(x, y)` named as `method`'s signature names them.

    `fit` and `evaluate` check and complete some of Keras' arguments
    (callbacks, validation data, sample weights) by name; positional ones
    (`fit(x, y, 64, 10)`) are named first, so that they get the same treatment.
    """
    names = [name for name, parameter in inspect.signature(method).parameters.items()
             if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD][2:]  # after x and y
    if len(args) > len(names):
        raise TypeError(f"{method.__name__}() takes at most {len(names) + 2} positional arguments after self "
                        f"(x, y, {', '.join(names)}); got {len(args) + 2}.")
    keywords = dict(kwargs)
    for name, value in zip(names, args):
        if name in keywords:
            raise TypeError(f"{method.__name__}() got multiple values for argument {name!r}.")
        keywords[name] = value
    return keywords


class _EpochCounter(keras.callbacks.Callback):
    """Tells the Distiller which epoch of `fit` is running (strategies read it as `Batch.epoch`)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.training_epoch.assign(epoch)


@keras.saving.register_keras_serializable(package="keras_calikd")
class Distiller(DistillationStep, keras.Model):
    """Distils a calibrated student from a frozen, possibly uncalibrated teacher.

    Per training step, on a batch `(x, y)`:

    1. the teacher (frozen, `training=False`, outputs under stop-gradient) and
       the student both see the clean batch `x`, and every distillation
       strategy computes its loss from their outputs; the distillation term
       is the sum of the strategies' losses times their `weight`;
    2. the augmentation strategy turns `x` into an augmented batch that only
       the student sees, and computes the augmentation loss on it;
    3. `loss = alpha * sources * L_distill + (1 - alpha) * L_aug` (plus the
       student's regularisation losses), where `sources` is 2 for a batch
       mixed from two images (mixup, CutMix), the paper's Eq. 12, and 1
       otherwise. With `alpha=None` the terms are not balanced:
       `loss = sources * L_distill + L_aug`, the form of the CRD code base
       whose RKD and CRD baselines the paper reports (`1 x CE + 0.8 x CRD`).

    The student runs twice per step (clean and augmented batch), or once when
    the augmentation is `"none"`. Strategies declare what they need (penultimate
    features, sample indices, the training set's labels) and the Distiller
    provides exactly that: features come from the same forward pass as the
    logits, indices from inputs given as `{"image": images, "index": indices}`,
    the training labels through `adapt` (done by `fit` itself for NumPy data).

    Labels are integer class ids `(batch,)` or `(batch, 1)`, or one-hot rows
    `(batch, num_classes)` (read as the class of their 1). Images go to the
    models as they come: the zoo's models built with `normalization=` take
    raw pixels and normalise them themselves.

    Evaluation (`evaluate`, validation during `fit`) runs the student on clean
    data with cross-entropy as the loss and the compiled metrics; `predict` and
    `call` return the student's logits. The losses `loss`, `distillation_loss`
    and `augmentation_loss` are logged during training.

    Args:
        teacher: A built `keras.Model` returning logits. It is frozen
            (`teacher.trainable = False`).
        student: A built `keras.Model` returning logits, with the teacher's
            input shape and number of classes.
        distillation: A registered name (`"kd"`, `"rkd"`, `"crd"`, ...), a
            `Distillation` instance, a `keras.distillation` loss (e.g.
            `keras.distillation.LogitsDistillation(temperature=4.0)`, see
            `ck.distillations.KerasLoss`), or a list of them whose weighted
            losses are summed.
        augmentation: A registered name (`"none"`, `"mixup"`, `"cutmix"`,
            `"cutout"`, ...) or an `Augmentation` instance.
        alpha: Weight of the distillation term, in `[0, 1]`; the augmentation
            term gets `1 - alpha`. The paper uses 0.5. `None`: both terms
            with weight 1 (the strategies' own weights still apply).
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
        alpha: float | None = 0.5,
        feature_layer: str = "features",
        input_shape: Sequence[int] | None = None,
        name: str = "distiller",
        **kwargs,
    ):
        checks.backend_supported(DistillationStep)
        super().__init__(name=name, **kwargs)
        checks.teacher_and_student(teacher, student)
        self.alpha = None if alpha is None else checks.fraction("Distiller", "alpha", alpha)
        specs = list(distillation) if isinstance(distillation, (list, tuple)) else [distillation]
        if not specs:
            raise ValueError("`distillation` must name at least one distillation strategy.")
        self.distillations = [distillations_lib.get(d) for d in specs]
        self.augmentation = augmentations_lib.get(augmentation)
        self.requirements = checks.requirements(self.distillations)
        for distillation in self.distillations:
            distillation.check_models(teacher, student, feature_layer)

        teacher.trainable = False
        self.teacher, self.student = teacher, student
        self.feature_layer = feature_layer
        self._requested_input_shape = None if input_shape is None else tuple(input_shape)
        if FEATURES in self.requirements:
            self._teacher_forward = adapter.with_features(teacher, feature_layer, "teacher")
            self._student_forward = adapter.with_features(student, feature_layer, "student")
        else:
            self._teacher_forward, self._student_forward = teacher, student

        # Training logs `loss` from this tracker; evaluation logs Keras' own `loss` (the compute_loss result).
        self.training_loss_tracker = keras.metrics.Mean(name="training_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.augmentation_loss_tracker = keras.metrics.Mean(name="augmentation_loss")
        self._step_logs_training = None  # set while a step updates the compiled metrics
        self.training_epoch = keras.Variable(0, dtype="int32", trainable=False, name="training_epoch",
                                             aggregation="only_first_replica")

        shape = adapter.common_input_shape(teacher, student, self._requested_input_shape)
        if shape is not None:
            self.build((None,) + shape)

    # ------------------------------------------------------------------ construction

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape[IMAGE_KEY]
        self.image_shape = tuple(input_shape)[1:]  # drop the batch dimension
        num_classes, feature_dims = adapter.model_outputs(
            {"teacher": self._teacher_forward, "student": self._student_forward}, self.image_shape,
            FEATURES in self.requirements)
        self.num_classes = num_classes
        for distillation in self.distillations:
            if not distillation.built:
                distillation.build(num_classes=num_classes, teacher_feature_dim=feature_dims["teacher"],
                                   student_feature_dim=feature_dims["student"])
        if not self.augmentation.built:
            self.augmentation.build((None,) + self.image_shape, num_classes=num_classes,
                                    input_normalization=input_normalization(self.student))
        self.built = True

    def adapt(self, labels) -> None:
        """Hands the training set's labels, ordered by dataset index, to the strategies that draw on it.

        CRD sizes its memory banks to the training set and draws negatives
        from other classes with them. `fit` does this itself for NumPy inputs;
        call it before `fit` on a `tf.data` pipeline.

        Args:
            labels: Class ids (or one-hot rows), `labels[i]` being the label of
                the sample with dataset index `i`.
        """
        if not self.built:
            raise ValueError("Build the Distiller (fit it or pass `input_shape=`) before adapting it.")
        labels = checks.class_ids(labels, self.num_classes, where="Training labels")
        with creation_scope(self):
            for distillation in self.distillations:
                if TRAINING_SET in distillation.requires:
                    distillation.adapt(labels)

    def compile(self, optimizer="sgd", loss=None, **kwargs):
        """Configures training; `loss` is fixed: the strategies define the training loss, evaluation uses CE.

        Args:
            optimizer: The student's optimizer.
            loss: Must be left out.
            **kwargs: `metrics`, `jit_compile`, `steps_per_execution`, ... as
                for `keras.Model.compile`. Metrics are computed on the
                student's logits of the clean batch: a metric created with
                `from_logits=False` is refused.
        """
        if loss is not None:
            raise ValueError(
                "Distiller.compile() takes no `loss`: training minimises alpha * distillation + (1 - alpha) * "
                "augmentation loss, set by the Distiller's strategies, and evaluation reports cross-entropy."
            )
        checks.metrics_read_logits(kwargs.get("metrics"), kwargs.get("weighted_metrics"))
        kwargs["jit_compile"] = checks.jit_compile_for(self.augmentation, kwargs.get("jit_compile", "auto"))
        super().compile(optimizer=optimizer, loss=None, **kwargs)

    def compile_from_config(self, config):
        """Restores `compile()` from a saved model's compile config (`keras.models.load_model`)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, after checking the data and giving the strategies what they need.

        NumPy arrays are checked whole (image shape, dtype and finiteness;
        labels: integer ids in range or one-hot rows) and `tf.data` pipelines
        batch by batch as they are read, so that a wrong input fails with a
        `ValueError` saying what is wrong instead of training on it (a batch
        that fails its check mid-epoch ends `fit` with that `ValueError`). Strategies
        that draw on the training set are adapted from NumPy data here.
        """
        kwargs = _as_keywords(super().fit, args, kwargs)
        x, y = adapter.fit_data(self, x, y, kwargs)
        kwargs["validation_data"] = adapter.validation_data(self, kwargs.get("validation_data"))
        adapter.ready_to_train(self, x)
        if self.built:
            with creation_scope(self):
                self.prepare_to_fit()
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [_EpochCounter()]
        with adapter.data_check_errors():
            return super().fit(x, y, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate` of the student on clean data, after checking the data like `fit` does."""
        x, y = adapter.evaluation_data(self, x, y)
        with adapter.data_check_errors():
            return super().evaluate(x, y, **_as_keywords(super().evaluate, args, kwargs))

    # ------------------------------------------------------------------ forward passes

    @staticmethod
    def _as_outputs(outputs) -> ModelOutputs:
        """A forward pass's logits (and features), as float32."""
        if isinstance(outputs, (list, tuple)):
            return ModelOutputs(ops.cast(outputs[0], "float32"), ops.cast(outputs[1], "float32"))
        return ModelOutputs(ops.cast(outputs, "float32"))

    def _outputs(self, forward, images, training):
        return self._as_outputs(forward(images, training=training))

    def _two_student_passes(self, images, augmented_images, training):
        """The student on the clean batch (logits and, where needed, features), then its logits on the augmented
        batch: two calls, each normalising with its own batch statistics."""
        student = self._outputs(self._student_forward, images, training=training)
        return student, ops.cast(self.student(augmented_images, training=training), "float32")

    def call(self, inputs, training=False):
        images, _ = split_inputs(inputs)
        return self.student(images, training=training)

    # ------------------------------------------------------------------ the backend-neutral step

    def compute_step_losses(self, data, training=True) -> StepLosses:
        """The losses of one distillation step, in `keras.ops`; shared by every backend's `train_step`.

        Reads and writes variables statefully (model statistics, seeds,
        strategy state); each backend's step decides how that state is held.
        """
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        images, indices = split_inputs(x)
        if not self.built:  # a step called directly on a Distiller that nothing has built yet
            self.build(images.shape)
        adapter.step_inputs(self, images, indices, y)
        images = ops.cast(images, "float32")
        labels = adapter.label_ids(y, self.num_classes)
        batch = Batch(labels=labels, indices=None if indices is None else ops.reshape(ops.cast(indices, "int32"), (-1,)),
                      epoch=self.training_epoch.value)

        teacher = self._outputs(self._teacher_forward, images, training=False)
        teacher = ModelOutputs(*(None if t is None else ops.stop_gradient(t) for t in teacher))
        augmented = self.augmentation.augment(images, self.augmentation.select_labels(labels, teacher.logits))
        if self.augmentation.transforms_images:  # each backend's step runs the two passes its own way
            student, augmented_logits = self.student_passes(images, augmented.images, training)
        else:
            student = self._outputs(self._student_forward, images, training=training)
            augmented_logits = student.logits
        distillation = sum(d.weight * d.compute_loss(teacher, student, batch, training=training)
                           for d in self.distillations)
        augmentation = self.augmentation.loss(augmented, augmented_logits)

        distillation = augmented.sources * distillation
        if self.alpha is None:
            loss = distillation + augmentation
        else:
            loss = self.alpha * distillation + (1.0 - self.alpha) * augmentation
        loss = loss + self._regularization()
        return StepLosses(loss=loss, distillation=distillation, augmentation=augmentation,
                          student_logits=student.logits)

    def _regularization(self):
        """The sum of the student's regularisation losses (0.0 when it has none)."""
        terms = self.student.losses
        return ops.sum(ops.stack([ops.cast(r, "float32") for r in terms])) if terms else 0.0

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The evaluation loss: the student's cross-entropy on clean data, plus its regularisation losses.

        Keras' `test_step` calls this; training uses `compute_step_losses`.
        Like Keras' own losses, each replica returns its share (the loss divided
        by the number of replicas); the step multiplies it back.
        """
        labels = adapter.label_ids(y, self.num_classes)
        cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, ops.cast(y_pred, "float32"),
                                                                     from_logits=True)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(cross_entropy))
            loss = ops.sum(cross_entropy * weight) / ops.maximum(ops.sum(weight), 1e-12) + self._regularization()
        else:
            loss = ops.mean(cross_entropy) + self._regularization()
        return loss / num_replicas()

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates the compiled metrics on the student's logits; returns the evaluation logs.

        The training-only losses (the objective, `distillation_loss`,
        `augmentation_loss`) have no evaluation value and are left out.
        """
        return self._update_compiled_metrics(x, y, y_pred, sample_weight, training=False)

    def update_train_metrics(self, data, step: StepLosses):
        """Updates the loss trackers and the compiled metrics after a step; returns the training logs."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        batch_size = ops.shape(step.student_logits)[0]
        self.distillation_loss_tracker.update_state(step.distillation, sample_weight=batch_size)
        self.augmentation_loss_tracker.update_state(step.augmentation, sample_weight=batch_size)
        self.training_loss_tracker.update_state(step.loss, sample_weight=batch_size)
        return self._update_compiled_metrics(x, y, step.student_logits, None, training=True)

    def _update_compiled_metrics(self, x, y, y_pred, sample_weight, training: bool) -> dict:
        # Keras' compute_metrics returns get_metrics_result(), here inside a traced step, where the
        # trackers' counts cannot be read: the step says which logs it returns.
        self._step_logs_training = training
        try:
            return super().compute_metrics(x, adapter.label_ids(y, self.num_classes), y_pred,
                                           sample_weight=sample_weight)
        finally:
            self._step_logs_training = None

    def get_metrics_result(self):
        """The metrics' values as logs: the training logs after training steps, else the evaluation logs.

        `fit` and `evaluate` read these at the end of an epoch (across replicas
        under a distribution), so they hold exactly the keys the steps return:
        `loss` is the training objective after training steps (with
        `distillation_loss` and `augmentation_loss`), the student's
        cross-entropy after evaluation steps. `evaluate` resets the metrics
        first, so the two never mix.
        """
        training = self._step_logs_training
        if training is None:
            training = bool(ops.convert_to_numpy(self.training_loss_tracker.count) > 0)
        return self._logs(training)

    def _logs(self, training: bool) -> dict:
        logs = super().get_metrics_result()
        objective = logs.pop(self.training_loss_tracker.name)
        if training:
            logs["loss"] = objective
        else:
            for tracker in (self.distillation_loss_tracker, self.augmentation_loss_tracker):
                logs.pop(tracker.name)
        return logs

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
