"""The contract every augmentation strategy follows."""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
from keras import ops

from keras_calikd import checks
from keras_calikd.registry import Registry
from keras_calikd.seeds import SavedSeedState
from keras_calikd.steps import all_gather, replica_slice

LABEL_SOURCES = ("ground_truth", "teacher")


class AugmentedBatch(NamedTuple):
    """An augmented batch and what its loss needs.

    Attributes:
        images: The augmented images, same shape and dtype as the clean ones.
        labels: `(batch,)` int32 labels of the first source of each image.
        partner_labels: `(batch,)` int32 labels of the second source (equal to
            `labels` for single-source augmentations).
        lam: Weight of `labels` in the loss: a scalar or `(batch,)` float32;
            `partner_labels` gets `1 - lam`.
        sources: Scalar float32 number of clean images each augmented image is
            made from (2 for an applied mixup/CutMix, else 1). The distillation
            term on the clean batch is multiplied by it: the paper's Eq. 12
            sums the distillation loss over both sources, and the second source
            is a permutation of the same clean batch.
        targets: Optional `(batch, num_classes)` float32 soft targets, for
            strategies that produce mixed label distributions rather than
            label pairs; when given, the loss is cross-entropy with them and
            `labels`/`partner_labels`/`lam` are not used by the default loss.
    """

    images: Any
    labels: Any
    partner_labels: Any
    lam: Any
    sources: Any
    targets: Any = None


def soft_cross_entropy(logits, targets):
    """Cross-entropy of `logits` with soft `targets` (rows summing to 1), averaged over the batch."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    return ops.mean(-ops.sum(ops.cast(targets, "float32") * log_probs, axis=-1))


def mixed_cross_entropy(logits, labels, partner_labels, lam):
    """`lam * CE(logits, labels) + (1 - lam) * CE(logits, partner_labels)`, averaged over the batch (Eq. 11)."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    nll = -ops.take_along_axis(log_probs, ops.expand_dims(labels, -1), axis=-1)[:, 0]
    partner_nll = -ops.take_along_axis(log_probs, ops.expand_dims(partner_labels, -1), axis=-1)[:, 0]
    return ops.mean(lam * nll + (1.0 - lam) * partner_nll)


class Augmentation(SavedSeedState, keras.layers.Layer):
    """Base class of augmentation strategies: the student's second view of the batch, and its loss.

    Contract for subclasses:

    - `transforms_images`: `False` only for the identity strategy. When it is
      `False` the Distiller reuses the student's clean forward pass for the
      augmentation loss instead of running the student again.
    - How reports show it (`keras_calikd.training.methods`): `label`, its name
      in tables and figures (e.g. `"CutMix"`; the class name when empty,
      except for a strategy that leaves the images alone, which a method's
      name then does not mention, as `"none"`); `table_position`, its place
      among the augmentations in a table's columns (the paper's order:
      cutout 1, mixup 2, CutMix 3; `None`: after those with a place); `marker`,
      the Matplotlib marker of its points in figures (`None`: a spare one).
    - `xla_compatible`: `False` for strategies that cannot run inside a
      compiled (XLA) step; `Distiller.compile` then refuses `jit_compile=True`
      and turns `"auto"` off.
    - `build(input_shape, num_classes, input_normalization)`: called once by
      the Distiller with the images' shape `(None, H, W, C)`, the number of
      classes (for strategies that make soft targets) and the student's input
      normalisation `(mean, std)` per channel, in the units of the images the
      Distiller feeds (pixels, for the zoo's models), or `None` when the
      student takes its images as they come. Options that cannot work with
      the image size fail here.
    - `augment(images, labels)`: returns an `AugmentedBatch`. Written in
      `keras.ops` with `keras.random` and the layer's own `SeedGenerator`, with
      static shapes, so it runs inside a compiled (XLA) step on every backend
      and its random state flows through the model state.
    - `loss(augmented, logits)`: the augmentation loss of the student's logits
      on `augmented.images`. The default is the paper's Eq. 11 (label-weighted
      cross-entropy), which covers single- and two-source strategies, or
      cross-entropy with `augmented.targets` when a strategy gives soft targets.
    - Registration: `@AUGMENTATIONS.register("name")` makes the class
      available by name, in gin files and in saved models.

    Args:
        label_source: Which labels the augmentation loss uses: `"ground_truth"`
            (the paper's Eq. 11) or `"teacher"` (the teacher's argmax on the
            clean images, as the authors' released code did).
        seed: Seed of the strategy's random generator.
        name: Layer name.
    """

    transforms_images = True
    xla_compatible = True
    label = ""  # how reports name the strategy, e.g. "mixup"
    table_position = None  # its place among the augmentations in a report's columns
    marker = None  # its marker in a report's figures

    def __init__(self, label_source: str = "ground_truth", seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_source = checks.one_of(type(self).__name__, "label_source", label_source, LABEL_SOURCES)
        self.seed = checks.seed(type(self).__name__, seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape=None, num_classes=None, input_normalization=None):
        self.num_classes = num_classes
        self.input_normalization = input_normalization

    def build_from_config(self, config):
        """Builds a saved strategy again with the arguments it was built with (`keras.models.load_model`).

        Keras stores the build arguments as they were given, the input
        normalisation's arrays as serialised objects, and passes them back as
        such; here they become arrays again first.
        """
        shapes = dict((config or {}).get("shapes_dict") or {})
        if shapes.get("input_normalization") is not None:
            shapes["input_normalization"] = tuple(
                keras.saving.deserialize_keras_object(part) if isinstance(part, dict) else part
                for part in shapes["input_normalization"])
        if shapes:
            self.build(**shapes)

    def select_labels(self, labels, teacher_logits):
        """The labels the augmentation loss is computed with (ground truth or the teacher's argmax)."""
        if self.label_source == "teacher":
            return ops.cast(ops.argmax(teacher_logits, axis=-1), "int32")
        return labels

    def augment(self, images, labels) -> AugmentedBatch:
        raise NotImplementedError(f"{type(self).__name__} must implement augment().")

    def loss(self, augmented: AugmentedBatch, logits):
        if augmented.targets is not None:
            return soft_cross_entropy(logits, augmented.targets)
        return mixed_cross_entropy(logits, augmented.labels, augmented.partner_labels, augmented.lam)

    def call(self, images, labels):
        return self.augment(images, labels)

    def get_config(self):
        config = super().get_config()
        config.update(label_source=self.label_source, seed=self.seed)
        return config


def config_value(value):
    """An option as the user gave it, in the form a `.keras` file stores it: a pair as a list, a number as it is.

    Strategies that widen a number into a range (`factor=0.3` -> `[0, 0.3]`) keep the argument itself in their
    configuration, so that `get_config()` gives back what the constructor was given.
    """
    return list(value) if isinstance(value, (tuple, list)) else value


AUGMENTATIONS = Registry("augmentation strategy", base=Augmentation, serializable=True)


def single_source(images, labels) -> AugmentedBatch:
    """An `AugmentedBatch` whose images come from one clean image each."""
    one = ops.ones((), "float32")
    return AugmentedBatch(images=images, labels=labels, partner_labels=labels, lam=one, sources=one)


def partners(images, labels, seed_generator):
    """Images and labels of each sample's partner: a uniformly random permutation of the (global) batch.

    Under several replicas the permutation runs over the whole global batch,
    as on one device, and each replica takes its rows.
    """
    all_images, all_labels = all_gather(images), all_gather(labels)
    permutation = keras.random.shuffle(ops.arange(ops.shape(all_labels)[0], dtype="int32"), seed=seed_generator)
    local = replica_slice(permutation)
    return ops.take(all_images, local, axis=0), ops.take(all_labels, local, axis=0)

