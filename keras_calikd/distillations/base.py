"""The contract every distillation strategy follows."""

from __future__ import annotations

from typing import Any, NamedTuple

import keras

from keras_calikd import checks
from keras_calikd.contract import FEATURES, INDICES, KNOWN_REQUIREMENTS, LABELS, TRAINING_SET
from keras_calikd.registry import Registry


class ModelOutputs(NamedTuple):
    """What one forward pass of the teacher or the student gives a strategy.

    Attributes:
        logits: `(batch, num_classes)` float32 logits.
        features: `(batch, dim)` float32 penultimate features, or `None` when no
            strategy of the Distiller requires `"features"`.
    """

    logits: Any
    features: Any = None


class Batch(NamedTuple):
    """The labelled clean batch of a training step, and where training stands.

    Attributes:
        labels: `(batch,)` int32 ground-truth class ids.
        indices: `(batch,)` int32 dataset indices, or `None` when no strategy
            requires `"indices"`.
        epoch: Scalar int32: the 0-based epoch of `fit` this step belongs to
            (0 outside `fit`), for strategies whose loss follows training
            progress (e.g. a warm-up).
    """

    labels: Any
    indices: Any = None
    epoch: Any = 0


class Distillation(keras.layers.Layer):
    """Base class of distillation strategies: one loss between teacher and student on the clean batch.

    Contract for subclasses (the Distiller relies on nothing else and never
    inspects a strategy's type):

    - `requires`: a frozenset naming what the strategy reads besides logits,
      from `{"features", "indices", "training_set", "labels"}`. The Distiller
      provides exactly these: penultimate features from the same forward pass
      as the logits; the samples' dataset indices; once before training, the
      training set's labels by index through `adapt(labels)`; and always the
      batch's labels and epoch (`Batch`), which a strategy reading them
      declares as `"labels"` for other trainers' sake.
    - How reports show it (`keras_calikd.training.methods`): `label`, its name
      in tables and figures (e.g. `"KD"`; the class name when empty);
      `table_position`, its place among the distillations in a table's
      columns (the paper's order: KD 0, RKD 1, CRD 2; `None`: after those with
      a place); `color`, the colour of its points in figures (a Matplotlib
      colour; `None`: a spare one).
    - `build(num_classes, teacher_feature_dim, student_feature_dim)`: create
      variables (trainable heads are trained with the student; non-trainable
      state such as memory banks travels with the model state on every
      backend). Called once by the Distiller; feature dims are `None` when the
      strategy does not require features.
    - `adapt(labels)`: only for `"training_set"`; receives the training
      labels (NumPy ints ordered by dataset index) before the first step.
      `adapted` says whether the strategy has what it needs (a strategy
      restored from a saved model may have it in its weights already).
    - `check_models(teacher, student, feature_layer)`: called by the
      Distiller at construction with its models and feature layer name, so
      that a strategy that cannot work with them fails there (no-op by default).
    - `compute_loss(teacher, student, batch, training)`: the scalar float32
      loss, written in `keras.ops`, *before* weighting: the Distiller
      multiplies it by `weight`. The teacher's outputs arrive under
      stop-gradient. State updates (e.g. memory banks) happen here with
      `Variable.assign`, only when `training` is true.
    - Registration: `@DISTILLATIONS.register("name")` makes the class
      available by name, in gin files and in saved models.

    Args:
        weight: Multiplier of this strategy's loss inside the distillation
            term, applied by the Distiller.
        name: Layer name.
    """

    requires = frozenset()
    label = ""  # how reports name the strategy, e.g. "KD"
    table_position = None  # its place among the distillations in a report's columns
    color = None  # its colour in a report's figures

    def __init__(self, weight: float = 1.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight = checks.number(type(self).__name__, "weight", weight, low=0.0)

    def build(self, num_classes=None, teacher_feature_dim=None, student_feature_dim=None):
        self.num_classes = num_classes

    def check_models(self, teacher, student, feature_layer: str) -> None:
        """Fails, with what to change, when the strategy cannot work with these models (nothing to check here)."""

    def compute_loss(self, teacher: ModelOutputs, student: ModelOutputs, batch: Batch, training: bool = True):
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss().")

    @property
    def adapted(self) -> bool:
        """Whether the strategy has what it needs from the training set (always, when it needs nothing)."""
        return TRAINING_SET not in self.requires

    def adapt(self, labels) -> None:
        """Receives the training set's labels (NumPy ints, by dataset index); only for `"training_set"`."""
        raise NotImplementedError(f"{type(self).__name__} does not draw on the training set.")

    def call(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is used through compute_loss(), not called as a layer.")

    def get_config(self):
        config = super().get_config()
        config["weight"] = self.weight
        return config


DISTILLATIONS = Registry("distillation strategy", base=Distillation, serializable=True)

# The requirement names are the contract's (`keras_calikd.contract`); strategies may import them from here.
__all__ = ["DISTILLATIONS", "FEATURES", "INDICES", "KNOWN_REQUIREMENTS", "TRAINING_SET", "Batch", "Distillation",
           "ModelOutputs"]
