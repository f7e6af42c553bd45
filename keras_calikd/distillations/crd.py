"""Contrastive representation distillation with memory banks and NCE (Tian et al., 2020)."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from keras_calikd import checks
from keras_calikd.distillations.base import DISTILLATIONS, FEATURES, INDICES, TRAINING_SET, Distillation
from keras_calikd.seeds import SavedSeedState
from keras_calikd.steps import all_gather, per_sample

NEGATIVE_SAMPLING = ("uniform", "other_classes")
_EPS = 1e-7


def _l2_normalize(x):
    return x / ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1, keepdims=True), 1e-24))


class MemoryBanks(keras.layers.Layer):
    """CRD's training-set-sized state: one embedding per training sample and side, and the NCE constants.

    A layer of its own so that it can be built when the training set's size is
    known: at the strategy's `build` when `num_samples` was given, else at
    `adapt`. With other-class negatives it also holds the training labels'
    class-sorted index table.

    Args:
        embedding_dim: Size of each stored embedding.
        other_classes: Whether to hold the class-sorted index table.
        seed: Seed of the banks' uniform initialisation.
    """

    def __init__(self, embedding_dim: int, other_classes: bool, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim, self.other_classes, self.seed = embedding_dim, other_classes, seed

    def build(self, num_samples, num_classes=None):
        self.num_samples = int(num_samples)
        bound = 1.0 / np.sqrt(self.embedding_dim / 3.0)
        seed = None if self.seed is None else int(self.seed)

        def state(name, shape, dtype="float32", initializer="zeros"):
            return self.add_weight(shape=shape, dtype=dtype, trainable=False, name=name, initializer=initializer,
                                   aggregation="only_first_replica")

        def bank(name, offset):
            return state(name, (self.num_samples, self.embedding_dim), initializer=keras.initializers.RandomUniform(
                -bound, bound, seed=None if seed is None else seed + offset))

        self.student = bank("student_memory", 1)
        self.teacher = bank("teacher_memory", 2)
        # NCE normalisation constants of the student- and teacher-anchored scores; 0 until the first batch.
        self.normalizers = state("normalizers", (2,))
        if self.other_classes:
            self.indices_by_class = state("indices_by_class", (self.num_samples,), "int32")
            self.class_start = state("class_start", (int(num_classes),), "int32")
            self.class_size = state("class_size", (int(num_classes),), "int32")


@DISTILLATIONS.register("crd")
class CRD(SavedSeedState, Distillation):
    """Contrasts each student embedding with its teacher embedding against K negatives from memory banks.

    Student and teacher penultimate features go through trainable linear heads
    to `embedding_dim` dimensions and are L2-normalised. Two non-trainable
    memory banks of shape `(num_samples, embedding_dim)`, one per side, hold an
    embedding for every training sample. For each sample `i` of the batch, the
    positive is bank row `i` and the negatives are `num_negatives` rows drawn
    at random; the scores `exp(<bank row, embedding> / temperature)` are
    divided by a normalisation constant fixed from the first batch and scored
    with the NCE loss, in both directions (teacher embedding against the
    student bank and student embedding against the teacher bank). After the
    loss, bank rows of the batch move towards the new embeddings with
    `momentum` and are renormalised.

    The heads are trained with the student but are not part of it (export
    `distiller.student`). The Distiller feeds the samples' dataset indices,
    which the input pipeline yields with `with_index=True`. Shapes are static,
    so the step compiles with XLA; under several replicas the bank updates
    gather every replica's rows first, so all replicas hold the same banks.

    The banks are sized to the training set: give `num_samples`, or let the
    Distiller hand the strategy the training labels (`Distiller.adapt`, done
    by `fit` itself for NumPy inputs and by the experiment runner).

    Args:
        num_samples: Size N of the training set (rows of each memory bank), or
            `None` to take it from the training labels given to `adapt`.
        embedding_dim: Embedding size; 128 in the CRD paper.
        num_negatives: K negatives per sample; 16384 in the CRD paper.
        temperature: NCE temperature; 0.07.
        momentum: Memory update momentum; 0.5.
        negatives: `"uniform"` (over the whole training set) or
            `"other_classes"` (samples of other classes, drawn without
            replacement when the class leaves at least K of them, with
            replacement otherwise, as the CRD authors' code draws them; uses
            the training labels).
        weight: Multiplier of the loss; 0.8 in the CRD paper.
        seed: Seed of the bank initialisation and of the negative sampling.

    Example:

    ```python
    crd = ck.distillations.CRD(num_negatives=4096, negatives="other_classes")
    distiller = ck.Distiller(teacher, student, distillation=crd, augmentation="mixup")
    distiller.adapt(train_labels)                     # labels by dataset index
    distiller.fit(ck.data.load("cifar100", "train", 64, with_index=True), epochs=240)
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 4.5 and Table 5; Tian et al., "Contrastive
        Representation Distillation", ICLR 2020.
    """

    label = "CRD"
    table_position = 2
    color = "#55a868"

    def __init__(self, num_samples: int | None = None, embedding_dim: int = 128, num_negatives: int = 16384,
                 temperature: float = 0.07, momentum: float = 0.5, negatives: str = "uniform",
                 weight: float = 0.8, seed=None, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.num_samples = None if num_samples is None else checks.integer("CRD", "num_samples", num_samples)
        self.embedding_dim = checks.integer("CRD", "embedding_dim", embedding_dim)
        self.num_negatives = checks.integer("CRD", "num_negatives", num_negatives)
        self.temperature = checks.number("CRD", "temperature", temperature, low=0.0, low_open=True)
        self.momentum = checks.fraction("CRD", "momentum", momentum, high_open=True)
        self.negatives = checks.one_of("CRD", "negatives", negatives, NEGATIVE_SAMPLING)
        self.seed = checks.seed("CRD", seed)
        # The training set's labels are needed to size the banks when `num_samples` is not given, and to draw
        # negatives from other classes.
        needs_training_set = self.num_samples is None or negatives == "other_classes"
        self.requires = frozenset({FEATURES, INDICES} | ({TRAINING_SET} if needs_training_set else set()))
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.student_embedding = keras.layers.Dense(self.embedding_dim, dtype="float32", name="student_embedding")
        self.teacher_embedding = keras.layers.Dense(self.embedding_dim, dtype="float32", name="teacher_embedding")
        self.memory = MemoryBanks(self.embedding_dim, negatives == "other_classes", seed, name="memory")

    def build(self, num_classes=None, teacher_feature_dim=None, student_feature_dim=None):
        super().build(num_classes, teacher_feature_dim, student_feature_dim)
        self.student_embedding.build((None, student_feature_dim))
        self.teacher_embedding.build((None, teacher_feature_dim))
        if self.num_samples is not None:
            self.memory.build(self.num_samples, num_classes)

    @property
    def student_memory(self):
        """The student-side memory bank `(num_samples, embedding_dim)`."""
        return self.memory.student

    @property
    def teacher_memory(self):
        """The teacher-side memory bank `(num_samples, embedding_dim)`."""
        return self.memory.teacher

    @property
    def adapted(self) -> bool:
        """Whether the banks exist and, for other-class negatives, hold the training labels' index table."""
        if not self.memory.built:
            return False
        if self.negatives == "uniform":
            return True
        return int(np.sum(ops.convert_to_numpy(self.memory.class_size))) == self.num_samples

    def adapt(self, labels) -> None:
        """Sizes the memory banks to the training set and stores its labels (by dataset index).

        Args:
            labels: The training labels, `labels[i]` being the class of the sample with index `i`.
        """
        labels = np.asarray(labels).reshape(-1)
        if self.num_samples is not None and labels.shape[0] != self.num_samples:
            raise ValueError(f"CRD: got {labels.shape[0]} training labels for num_samples={self.num_samples}.")
        if self.num_samples is None:
            self.num_samples = int(labels.shape[0])
        if not self.memory.built:
            self.memory.build(self.num_samples, self.num_classes)
        if self.negatives == "uniform":
            return
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"CRD: training labels must be in [0, {self.num_classes - 1}].")
        size = np.bincount(labels, minlength=self.num_classes)
        if np.any(self.num_samples - size[size > 0] < 1):
            raise ValueError("CRD: every class needs samples of other classes to draw negatives from.")
        self.memory.indices_by_class.assign(np.argsort(labels, kind="stable").astype("int32"))
        self.memory.class_start.assign((np.cumsum(size) - size).astype("int32"))
        self.memory.class_size.assign(size.astype("int32"))

    def _draw_negatives(self, labels, batch_size):
        # Drawn for the global batch and sliced, so that any number of replicas draws what one device does.
        if self.negatives == "uniform":
            return per_sample(lambda size: keras.random.randint(
                (size, self.num_negatives), 0, self.num_samples, dtype="int32", seed=self.seed_generator), batch_size)
        # Other classes, positions in the class-sorted table outside the sample's own class block.
        start = ops.take(self.memory.class_start.value, labels)[:, None]
        size = ops.take(self.memory.class_size.value, labels)[:, None]
        eligible = self.num_samples - size
        u = per_sample(lambda size: keras.random.uniform((size, self.num_negatives), seed=self.seed_generator),
                       batch_size)
        with_replacement = ops.minimum(ops.cast(ops.floor(u * ops.cast(eligible, "float32")), "int32"), eligible - 1)
        with_replacement = ops.where(with_replacement < start, with_replacement, with_replacement + size)
        if self.num_negatives <= self.num_samples:
            # Without replacement, as the reference code draws them when a class has enough negatives: random
            # keys over the table, the own class masked out, the K largest keys' positions; a row whose class
            # leaves fewer than K negatives falls back to drawing with replacement (the reference does too).
            keys = per_sample(lambda size: keras.random.uniform((size, self.num_samples), seed=self.seed_generator),
                              batch_size)
            position = ops.arange(self.num_samples, dtype="int32")[None, :]
            own_class = ops.logical_and(position >= start, position < start + size)
            _, chosen = ops.top_k(ops.where(own_class, -1.0, keys), self.num_negatives, sorted=False)
            chosen = ops.where(eligible >= self.num_negatives, ops.cast(chosen, "int32"), with_replacement)
        else:
            chosen = with_replacement
        return ops.take(self.memory.indices_by_class.value, chosen)

    def _contrast_loss(self, scores):
        """NCE loss of `(B, 1 + K)` normalised scores, positive first; summed over samples, divided by B."""
        noise = self.num_negatives / self.num_samples  # K * Pn with uniform noise Pn = 1 / N
        positive, negative = scores[:, 0], scores[:, 1:]
        log_d1 = ops.log(positive / (positive + noise + _EPS))
        log_d0 = ops.log(noise / (negative + noise + _EPS))
        return -(ops.sum(log_d1) + ops.sum(log_d0)) / ops.cast(ops.shape(scores)[0], "float32")

    def compute_loss(self, teacher, student, batch, training=True):
        v_student = _l2_normalize(self.student_embedding(student.features))
        v_teacher = _l2_normalize(self.teacher_embedding(teacher.features))
        indices = batch.indices
        batch_size = ops.shape(indices)[0]
        contrast = ops.concatenate([indices[:, None], self._draw_negatives(batch.labels, batch_size)], axis=1)
        student_rows = ops.stop_gradient(ops.take(self.student_memory.value, contrast, axis=0))  # (B, 1 + K, D)
        teacher_rows = ops.stop_gradient(ops.take(self.teacher_memory.value, contrast, axis=0))
        teacher_scores = ops.exp(ops.einsum("bkd,bd->bk", student_rows, v_teacher) / self.temperature)
        student_scores = ops.exp(ops.einsum("bkd,bd->bk", teacher_rows, v_student) / self.temperature)

        # Normalisation constants: fixed once, from the first batch (mean score times N, over all replicas).
        first_batch = ops.stack([ops.mean(student_scores), ops.mean(teacher_scores)])
        first_batch = ops.mean(all_gather(ops.stop_gradient(first_batch)[None, :]), axis=0) * self.num_samples
        normalizers = ops.where(self.memory.normalizers.value > 0, self.memory.normalizers.value, first_batch)
        loss = self._contrast_loss(student_scores / normalizers[0]) + self._contrast_loss(
            teacher_scores / normalizers[1])

        if training:
            self.memory.normalizers.assign(normalizers)
            all_indices = all_gather(indices)
            for memory, embedding in ((self.student_memory, v_student), (self.teacher_memory, v_teacher)):
                embedding = all_gather(ops.stop_gradient(embedding))
                rows = ops.take(memory.value, all_indices, axis=0) * self.momentum + embedding * (1.0 - self.momentum)
                memory.assign(ops.scatter_update(memory.value, all_indices[:, None], _l2_normalize(rows)))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(num_samples=self.num_samples, embedding_dim=self.embedding_dim,
                      num_negatives=self.num_negatives, temperature=self.temperature, momentum=self.momentum,
                      negatives=self.negatives, seed=self.seed)
        return config
