"""`keras.distillation` both ways: its losses as distillation strategies, this library's logit strategies as its losses.

`KerasLoss` lets `ck.Distiller` train with a `keras.distillation` loss
(`LogitsDistillation`, `FeatureDistillation` or a user's
`DistillationLoss`), so that it trains beside mixup, CutMix or Cutout and
is measured by the calibration metrics. `AsDistillationLoss` lets
`keras.distillation.Distiller` train with this library's KD or LSKD.

Keras' Distiller hands its losses the teacher's and the student's outputs
and nothing else (no labels, no epoch, no sample indices), so only the
strategies that read logits alone cross over; the others say why at
construction.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_calikd.distillations.base import DISTILLATIONS, FEATURES, Batch, Distillation, ModelOutputs


def _keras_loss(value, owner: str):
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if not isinstance(value, keras.distillation.DistillationLoss):
        raise ValueError(f"{owner}: `loss` must be a keras.distillation loss (e.g. "
                         f"keras.distillation.LogitsDistillation(temperature=4.0)), got {type(value).__name__}.")
    return value


@DISTILLATIONS.register("keras_loss")
class KerasLoss(Distillation):
    """A `keras.distillation` loss as a distillation strategy of `ck.Distiller`.

    `ck.Distiller` wraps a `keras.distillation.DistillationLoss` given as a
    distillation in this class itself. The loss receives the teacher's and
    the student's logits (float32), as `keras.distillation.Distiller` hands
    them its losses, and its value enters the distillation term times
    `weight`. A loss that names layers (`FeatureDistillation`'s
    `teacher_layer_name` and `student_layer_name`) receives instead the
    outputs of the Distiller's feature layer (`feature_layer`, `"features"`
    by default: the pooled penultimate features of the zoo's models), from
    the same forward pass as the logits; each name must be that layer's, or
    `None` for the logits, which fails at the Distiller's construction
    otherwise. A user's `DistillationLoss` must be registered with
    `keras.saving.register_keras_serializable` for the strategy to be saved.

    `KD(temperature=T, reduction="batchmean")` is Keras'
    `LogitsDistillation(temperature=T, loss=keras.losses.KLDivergence())`
    (the KL divergence of the softened distributions times `T**2`), up to
    Keras clipping the probabilities at 1e-7. With its default
    `loss="kl_divergence"`, Keras 3.15's `LogitsDistillation` resolves the
    name to the loss function rather than the `KLDivergence` class it checks
    for, and computes the KL divergence of the clipped scaled logits
    themselves, without softmax or `T**2`; the strategy reproduces whatever
    the loss computes.

    Args:
        loss: A `keras.distillation.DistillationLoss` (or its serialized form).
            `None` (the default, e.g. by name: `distillation="keras_loss"`):
            `LogitsDistillation(temperature=3.0, loss=keras.losses.KLDivergence())`,
            Keras' default temperature with the KL divergence of the softened
            distributions.
        weight: Multiplier of this loss inside the distillation term.

    Example:

    ```python
    ck.Distiller(teacher, student, distillation=keras.distillation.LogitsDistillation(temperature=4.0),
                 augmentation="cutmix")
    ```

    Reference:
        Keras' `keras.distillation` API (Keras 3.12 and later).
    """

    label = "Keras distillation"

    def __init__(self, loss=None, weight: float = 1.0, **kwargs):
        super().__init__(weight=weight, **kwargs)
        if loss is None:
            loss = keras.distillation.LogitsDistillation(temperature=3.0, loss=keras.losses.KLDivergence())
        self.keras_loss = _keras_loss(loss, "KerasLoss")
        self.layer_names = (getattr(self.keras_loss, "teacher_layer_name", None),
                            getattr(self.keras_loss, "student_layer_name", None))
        self.requires = frozenset({FEATURES}) if any(self.layer_names) else frozenset()
        self.label = type(self.keras_loss).__name__

    def check_models(self, teacher, student, feature_layer):
        for role, name in zip(("teacher", "student"), self.layer_names):
            if name is not None and name != feature_layer:
                raise ValueError(
                    f"{self.label} reads the {role}'s layer {name!r}, but the Distiller gives its strategies the "
                    f"outputs of one layer, its `feature_layer` ({feature_layer!r}), beside the logits. Name that "
                    f"layer in the loss, or pass `feature_layer={name!r}` to the Distiller when both models have it."
                )
        self.keras_loss.validate_model_compatibility(teacher, student)

    def compute_loss(self, teacher, student, batch, training=True):
        outputs = [model.features if name else model.logits
                   for model, name in zip((teacher, student), self.layer_names)]
        self.keras_loss.validate_outputs(*outputs)
        return ops.cast(self.keras_loss.compute_loss(*outputs), "float32")

    def get_config(self):
        config = super().get_config()
        config["loss"] = keras.saving.serialize_keras_object(self.keras_loss)
        return config


@keras.saving.register_keras_serializable(package="keras_calikd")
class AsDistillationLoss(keras.distillation.DistillationLoss):
    """One of this library's logit strategies as a loss of `keras.distillation.Distiller`.

    The strategy's loss, times its `weight`, of the teacher's and the
    student's outputs (cast to float32); Keras' Distiller weighs it further
    with its `distillation_loss_weights` and `student_loss_weight`. Only
    strategies that read the logits alone can be used (KD, LSKD): Keras'
    Distiller gives its losses no labels, epoch, features or sample indices,
    so DKD, RKD and CRD are refused here; train them with `ck.Distiller`.

    Args:
        strategy: A registered name (`"kd"`, `"lskd"`) or a `Distillation` instance.

    Example:

    ```python
    distiller = keras.distillation.Distiller(
        teacher, student, distillation_losses=ck.distillations.AsDistillationLoss(ck.distillations.KD(4.0)))
    distiller.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ```
    """

    def __init__(self, strategy="kd"):
        if isinstance(strategy, dict):
            strategy = keras.saving.deserialize_keras_object(strategy)
        strategy = DISTILLATIONS.resolve(strategy)
        if strategy.requires:
            raise ValueError(
                f"{type(strategy).__name__} reads {', '.join(sorted(strategy.requires))} beside the logits, which "
                "keras.distillation.Distiller does not give its losses (only the teacher's and the student's "
                "outputs). Use a logit strategy (kd, lskd) here, or train it with ck.Distiller."
            )
        self.strategy = strategy

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        teacher = ModelOutputs(ops.cast(teacher_outputs, "float32"))
        student = ModelOutputs(ops.cast(student_outputs, "float32"))
        if not self.strategy.built:
            self.strategy.build(num_classes=teacher.logits.shape[-1])
        return self.strategy.weight * self.strategy.compute_loss(teacher, student, Batch(labels=None), training=True)

    def get_config(self):
        return {"strategy": keras.saving.serialize_keras_object(self.strategy)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["AsDistillationLoss", "KerasLoss"]
