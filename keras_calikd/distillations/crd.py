"""Contrastive representation distillation with memory banks and NCE (Tian et al., 2020)."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from keras_calikd.distillations.base import DATASET_LABELS, DISTILLATIONS, FEATURES, INDICES, Distillation
from keras_calikd.steps import all_gather, per_sample

NEGATIVE_SAMPLING = ("uniform", "other_classes")
_EPS = 1e-7


def _l2_normalize(x):
    return x / ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1, keepdims=True), 1e-24))


@keras.saving.register_keras_serializable(package="keras_calikd")
@DISTILLATIONS.register("crd")
class CRD(Distillation):
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

    Args:
        num_samples: Size N of the training set (rows of each memory bank).
        embedding_dim: Embedding size; 128 in the CRD paper.
        num_negatives: K negatives per sample; 16384 in the CRD paper.
        temperature: NCE temperature; 0.07.
        momentum: Memory update momentum; 0.5.
        negatives: `"uniform"` (over the whole training set) or
            `"other_classes"` (uniform over samples of other classes; needs
            the training labels through `Distiller.set_dataset_labels`).
        weight: Multiplier of the loss; 0.8 in the CRD paper.
        seed: Seed of the bank initialisation and of the negative sampling.

    Example:

    ```python
    crd = ck.distillations.CRD(num_samples=50000, num_negatives=4096)
    distiller = ck.Distiller(teacher, student, distillation=crd, augmentation="mixup")
    distiller.fit(ck.data.load("cifar100", "train", 64, with_index=True), epochs=240)
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 4.5 and Table 5; Tian et al., "Contrastive
        Representation Distillation", ICLR 2020.
    """

    label = "CRD"

    def __init__(self, num_samples: int, embedding_dim: int = 128, num_negatives: int = 16384,
                 temperature: float = 0.07, momentum: float = 0.5, negatives: str = "uniform",
                 weight: float = 0.8, seed=None, **kwargs):
        super().__init__(weight=weight, **kwargs)
        for key, value in (("num_samples", num_samples), ("embedding_dim", embedding_dim),
                           ("num_negatives", num_negatives)):
            if int(value) != value or value < 1:
                raise ValueError(f"CRD: `{key}` must be a positive integer, got {value!r}.")
        if num_negatives >= num_samples:
            raise ValueError(
                f"CRD: `num_negatives` ({num_negatives}) must be smaller than `num_samples` ({num_samples}), "
                "the size of the training set."
            )
        if not temperature > 0:
            raise ValueError(f"CRD: `temperature` must be > 0, got {temperature}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"CRD: `momentum` must be in [0, 1), got {momentum}.")
        if negatives not in NEGATIVE_SAMPLING:
            raise ValueError(f"CRD: `negatives` must be one of {NEGATIVE_SAMPLING}, got {negatives!r}.")
        self.num_samples = int(num_samples)
        self.embedding_dim = int(embedding_dim)
        self.num_negatives = int(num_negatives)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.negatives = negatives
        self.seed = seed
        self.requires = frozenset({FEATURES, INDICES} | ({DATASET_LABELS} if negatives == "other_classes" else set()))
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.student_embedding = keras.layers.Dense(self.embedding_dim, dtype="float32", name="student_embedding")
        self.teacher_embedding = keras.layers.Dense(self.embedding_dim, dtype="float32", name="teacher_embedding")

    def build(self, num_classes=None, teacher_feature_dim=None, student_feature_dim=None):
        super().build(num_classes, teacher_feature_dim, student_feature_dim)
        self.student_embedding.build((None, student_feature_dim))
        self.teacher_embedding.build((None, teacher_feature_dim))
        bound = 1.0 / np.sqrt(self.embedding_dim / 3.0)
        seed = None if self.seed is None else int(self.seed)

        def bank(name, offset):
            return self.add_weight(
                shape=(self.num_samples, self.embedding_dim), dtype="float32", trainable=False, name=name,
                initializer=keras.initializers.RandomUniform(-bound, bound, seed=None if seed is None else seed + offset),
                aggregation="only_first_replica",
            )

        self.student_memory = bank("student_memory", 1)
        self.teacher_memory = bank("teacher_memory", 2)
        # NCE normalisation constants of the student- and teacher-anchored scores; 0 until the first batch.
        self.normalizers = self.add_weight(shape=(2,), initializer="zeros", dtype="float32", trainable=False,
                                           name="normalizers", aggregation="only_first_replica")
        if self.negatives == "other_classes":
            classes = int(num_classes)
            int_weight = dict(dtype="int32", trainable=False, initializer="zeros", aggregation="only_first_replica")
            self.indices_by_class = self.add_weight(shape=(self.num_samples,), name="indices_by_class", **int_weight)
            self.class_start = self.add_weight(shape=(classes,), name="class_start", **int_weight)
            self.class_size = self.add_weight(shape=(classes,), name="class_size", **int_weight)

    def set_dataset_labels(self, labels) -> None:
        """Stores the training labels (by dataset index) used to draw negatives from other classes."""
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != self.num_samples:
            raise ValueError(f"CRD: got {labels.shape[0]} dataset labels for num_samples={self.num_samples}.")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"CRD: dataset labels must be in [0, {self.num_classes - 1}].")
        size = np.bincount(labels, minlength=self.num_classes)
        if np.any(self.num_samples - size < 1):
            raise ValueError("CRD: every class needs samples of other classes to draw negatives from.")
        self.indices_by_class.assign(np.argsort(labels, kind="stable").astype("int32"))
        self.class_start.assign((np.cumsum(size) - size).astype("int32"))
        self.class_size.assign(size.astype("int32"))

    def _draw_negatives(self, labels, batch_size):
        # Drawn for the global batch and sliced, so that any number of replicas draws what one device does.
        if self.negatives == "uniform":
            return per_sample(lambda size: keras.random.randint(
                (size, self.num_negatives), 0, self.num_samples, dtype="int32", seed=self.seed_generator), batch_size)
        # Uniform over the other classes: index into the class-sorted table, skipping the sample's own class.
        start = ops.take(self.class_start.value, labels)[:, None]
        size = ops.take(self.class_size.value, labels)[:, None]
        eligible = self.num_samples - size
        u = per_sample(lambda size: keras.random.uniform((size, self.num_negatives), seed=self.seed_generator),
                       batch_size)
        position = ops.minimum(ops.cast(ops.floor(u * ops.cast(eligible, "float32")), "int32"), eligible - 1)
        position = ops.where(position < start, position, position + size)
        return ops.take(self.indices_by_class.value, position)

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
        normalizers = ops.where(self.normalizers.value > 0, self.normalizers.value, first_batch)
        loss = self._contrast_loss(student_scores / normalizers[0]) + self._contrast_loss(
            teacher_scores / normalizers[1])

        if training:
            self.normalizers.assign(normalizers)
            all_indices = all_gather(indices)
            for memory, embedding in ((self.student_memory, v_student), (self.teacher_memory, v_teacher)):
                embedding = all_gather(ops.stop_gradient(embedding))
                rows = ops.take(memory.value, all_indices, axis=0) * self.momentum + embedding * (1.0 - self.momentum)
                memory.assign(ops.scatter_update(memory.value, all_indices[:, None], _l2_normalize(rows)))
        return self.weight * loss

    def get_config(self):
        config = super().get_config()
        config.update(num_samples=self.num_samples, embedding_dim=self.embedding_dim,
                      num_negatives=self.num_negatives, temperature=self.temperature, momentum=self.momentum,
                      negatives=self.negatives, seed=self.seed)
        return config
