"""The contract every distillation strategy follows."""

from __future__ import annotations

from typing import Any, NamedTuple

import keras

from keras_calikd.registry import Registry

DISTILLATIONS = Registry("distillation strategy")

# What a strategy may ask the Distiller for, besides the logits it always gets.
FEATURES = "features"  # penultimate (pooled) features of teacher and student, same forward pass as the logits
INDICES = "indices"  # each sample's index in the training set (the input pipeline's `with_index=True`)
DATASET_LABELS = "dataset_labels"  # the labels of the whole training set, given once before training
KNOWN_REQUIREMENTS = frozenset({FEATURES, INDICES, DATASET_LABELS})


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
    """The labelled clean batch of a training step.

    Attributes:
        labels: `(batch,)` int32 ground-truth class ids.
        indices: `(batch,)` int32 dataset indices, or `None` when no strategy
            requires `"indices"`.
    """

    labels: Any
    indices: Any = None


class Distillation(keras.layers.Layer):
    """Base class of distillation strategies: one loss between teacher and student on the clean batch.

    Contract for subclasses:

    - `requires`: a frozenset naming what the strategy reads besides logits,
      from `{"features", "indices", "dataset_labels"}`. The Distiller provides
      exactly these (penultimate features from the same forward pass as the
      logits; the samples' dataset indices; the training set's labels, handed
      to `set_dataset_labels(labels)` through `Distiller.set_dataset_labels`)
      and nothing else; it never inspects a strategy's type.
    - `label`: the strategy's name in reports and tables (e.g. `"KD"`).
    - `build(num_classes, teacher_feature_dim, student_feature_dim)`: create
      variables (trainable heads are trained with the student; non-trainable
      state such as memory banks travels with the model state on every
      backend). Called once by the Distiller; feature dims are `None` when the
      strategy does not require features.
    - `compute_loss(teacher, student, batch, training)`: a scalar float32 loss
      written in `keras.ops`, already multiplied by `weight`. The teacher's
      outputs arrive under stop-gradient. State updates (e.g. memory banks)
      happen here with `Variable.assign`, only when `training` is true.

    Args:
        weight: Multiplier of this strategy's loss inside the distillation term.
        name: Layer name.
    """

    requires = frozenset()
    label = ""  # how reports name the strategy, e.g. "KD"

    def __init__(self, weight: float = 1.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        weight = float(weight)
        if weight < 0:
            raise ValueError(f"{type(self).__name__}: `weight` must be >= 0, got {weight}.")
        self.weight = weight

    def build(self, num_classes=None, teacher_feature_dim=None, student_feature_dim=None):
        self.num_classes = num_classes

    def compute_loss(self, teacher: ModelOutputs, student: ModelOutputs, batch: Batch, training: bool = True):
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss().")

    def set_dataset_labels(self, labels) -> None:
        """Receives the training set's labels (NumPy ints, by dataset index); only for `"dataset_labels"`."""
        raise NotImplementedError(f"{type(self).__name__} does not require the dataset labels.")

    def call(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is used through compute_loss(), not called as a layer.")

    def get_config(self):
        config = super().get_config()
        config["weight"] = self.weight
        return config
