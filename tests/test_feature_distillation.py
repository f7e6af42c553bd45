"""RKD and CRD against NumPy references written from their papers, and their training through the Distiller."""

import re

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from keras_calikd.distillations import CRD, RKD, Batch, ModelOutputs
from tiny import blobs, tiny_cnn


def tensor(x, dtype="float32"):
    return ops.convert_to_tensor(np.asarray(x), dtype)


def huber(a, b):
    d = np.abs(a - b)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()


def reference_rkd(s, t, wd=25.0, wa=50.0):
    def psi_d(e):
        n = len(e)
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(n)] for i in range(n)])
        return d / d[~np.eye(n, dtype=bool)].mean()

    def psi_a(e):
        n = len(e)
        out = np.zeros((n, n, n))
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    a, b = e[i] - e[j], e[k] - e[j]
                    na, nb = np.linalg.norm(a), np.linalg.norm(b)
                    out[i, j, k] = 0.0 if na == 0 or nb == 0 else a @ b / (na * nb)
        return out

    return wd * huber(psi_d(s), psi_d(t)) + wa * huber(psi_a(s), psi_a(t))


@pytest.mark.parametrize("student_scale", [1.0, 0.05])  # 0.05: mean distances below 1
def test_rkd_matches_reference(rng, student_scale):
    s, t = rng.normal(scale=student_scale, size=(6, 5)), rng.normal(scale=3.0, size=(6, 4))  # sizes may differ
    loss = RKD().compute_loss(ModelOutputs(None, tensor(t)), ModelOutputs(None, tensor(s)), Batch(None))
    np.testing.assert_allclose(float(loss), reference_rkd(s, t), rtol=1e-4)
    only_distance = RKD(angle_weight=0.0, weight=2.0).compute_loss(ModelOutputs(None, tensor(t)),
                                                                   ModelOutputs(None, tensor(s)), Batch(None))
    # The strategy's weight is the Distiller's to apply: compute_loss returns the unweighted loss.
    np.testing.assert_allclose(float(only_distance), reference_rkd(s, t, wa=0.0), rtol=1e-4)


def test_rkd_is_zero_for_scaled_teacher_features(rng):
    t = rng.normal(size=(5, 3))
    loss = RKD().compute_loss(ModelOutputs(None, tensor(t)), ModelOutputs(None, tensor(4.0 * t)), Batch(None))
    assert abs(float(loss)) < 1e-4  # distances are normalised by their mean, angles are scale-free


class FixedNegativesCRD(CRD):
    """CRD whose negatives are given by the test."""

    fixed_negatives = None

    def _draw_negatives(self, labels, batch_size):
        return tensor(self.fixed_negatives, "int32")


def numpy_state(crd):
    value = lambda v: np.asarray(ops.convert_to_numpy(v), np.float64)  # noqa: E731
    return (value(crd.student_embedding.kernel), value(crd.student_embedding.bias),
            value(crd.teacher_embedding.kernel), value(crd.teacher_embedding.bias),
            value(crd.student_memory), value(crd.teacher_memory))


def reference_crd(fs, ft, indices, negatives, state, normalizers, n, k, temperature=0.07, momentum=0.5):
    """NCE loss of CRD (both directions) and the updated memory banks, from the CRD paper's description."""
    ws, bs, wt, bt, mem_s, mem_t = state
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    vs, vt = unit(fs @ ws + bs), unit(ft @ wt + bt)
    contrast = np.concatenate([indices[:, None], negatives], axis=1)
    scores_t = np.exp(np.einsum("bkd,bd->bk", mem_s[contrast], vt) / temperature)  # teacher vs student bank
    scores_s = np.exp(np.einsum("bkd,bd->bk", mem_t[contrast], vs) / temperature)  # student vs teacher bank
    if normalizers is None:
        normalizers = (scores_s.mean() * n, scores_t.mean() * n)
    pn = 1.0 / n

    def nce(x):
        pos, neg = x[:, 0], x[:, 1:]
        return -(np.log(pos / (pos + k * pn + 1e-7)).sum() + np.log(k * pn / (neg + k * pn + 1e-7)).sum()) / len(x)

    loss = nce(scores_s / normalizers[0]) + nce(scores_t / normalizers[1])  # before the strategy's weight
    new_s, new_t = mem_s.copy(), mem_t.copy()
    new_s[indices] = unit(mem_s[indices] * momentum + vs * (1 - momentum))
    new_t[indices] = unit(mem_t[indices] * momentum + vt * (1 - momentum))
    return loss, normalizers, new_s, new_t


@pytest.mark.parametrize("n, k", [(40, 7), (100000, 1)])  # K / N = 1e-5: the 1e-7 guard shows in the sums
def test_crd_loss_and_memory_update_match_reference(rng, n, k):
    b = 5
    crd = FixedNegativesCRD(num_samples=n, num_negatives=k, embedding_dim=6, seed=3)
    crd.build(num_classes=3, teacher_feature_dim=4, student_feature_dim=5)
    bound = 1 / np.sqrt(6 / 3)
    memory = np.asarray(ops.convert_to_numpy(crd.student_memory))
    assert memory.shape == (n, 6) and np.abs(memory).max() <= bound and np.abs(memory).max() > 0.5 * bound
    normalizers = None
    for step in range(3):  # the normalisation constant comes from the first batch, then stays
        if step == 2:  # a stored constant is used whatever its size (large scores make it >> 1 in practice)
            normalizers = (0.5, 0.25)
            crd.memory.normalizers.assign(np.array(normalizers, "float32"))
        fs, ft = rng.normal(size=(b, 5)), rng.normal(size=(b, 4))
        indices = rng.choice(n, b, replace=False)
        crd.fixed_negatives = rng.integers(0, n, (b, k))
        state = numpy_state(crd)
        loss = crd.compute_loss(ModelOutputs(None, tensor(ft)), ModelOutputs(None, tensor(fs)),
                                Batch(tensor([0] * b, "int32"), tensor(indices, "int32")), training=True)
        expected, normalizers, new_s, new_t = reference_crd(fs, ft, indices, crd.fixed_negatives, state,
                                                            normalizers, n, k)
        np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
        np.testing.assert_allclose(ops.convert_to_numpy(crd.memory.normalizers), normalizers, rtol=1e-4)
        np.testing.assert_allclose(ops.convert_to_numpy(crd.student_memory), new_s, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ops.convert_to_numpy(crd.teacher_memory), new_t, rtol=1e-5, atol=1e-6)


def test_crd_evaluation_leaves_state_alone(rng):
    crd = CRD(num_samples=20, num_negatives=4, embedding_dim=3)
    crd.build(num_classes=2, teacher_feature_dim=2, student_feature_dim=2)
    before = ops.convert_to_numpy(crd.student_memory).copy()
    crd.compute_loss(ModelOutputs(None, tensor(rng.normal(size=(3, 2)))), ModelOutputs(None, tensor(rng.normal(size=(3, 2)))),
                     Batch(tensor([0, 1, 0], "int32"), tensor([1, 2, 3], "int32")), training=False)
    np.testing.assert_array_equal(before, ops.convert_to_numpy(crd.student_memory))
    assert float(ops.sum(crd.memory.normalizers)) == 0.0


def test_a_distiller_step_out_of_training_leaves_crd_state_alone(rng):
    crd = CRD(num_samples=20, num_negatives=4, embedding_dim=3, seed=0)
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=crd)
    images = {"image": tensor(rng.normal(size=(4, 8, 8, 1))), "index": tensor([1, 2, 3, 4], "int32")}
    before = [ops.convert_to_numpy(bank).copy() for bank in (crd.student_memory, crd.teacher_memory)]
    distiller.compute_step_losses((images, tensor([0, 1, 2, 3], "int32")), training=False)
    for bank, previous in zip((crd.student_memory, crd.teacher_memory), before):
        np.testing.assert_array_equal(ops.convert_to_numpy(bank), previous)
    distiller.compute_step_losses((images, tensor([0, 1, 2, 3], "int32")), training=True)  # which a training step does
    assert not np.array_equal(ops.convert_to_numpy(crd.student_memory), before[0])


def test_crd_negatives_from_other_classes():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2] * 5)
    crd = CRD(num_samples=50, num_negatives=20, negatives="other_classes", seed=0)
    crd.build(num_classes=3, teacher_feature_dim=2, student_feature_dim=2)
    crd.adapt(labels)
    batch_labels = tensor([0, 1, 2, 2], "int32")
    negatives = np.concatenate([ops.convert_to_numpy(crd._draw_negatives(batch_labels, 4)) for _ in range(50)])
    own = np.tile(np.array([0, 1, 2, 2])[:, None], (50, 1))
    assert negatives.min() >= 0 and negatives.max() < 50
    assert not np.any(labels[negatives] == own)  # never the anchor's class
    assert all(len(set(row)) == 20 for row in negatives)  # drawn without replacement
    many = CRD(num_samples=50, num_negatives=32, negatives="other_classes", seed=0)  # class 2 leaves only 30
    many.build(num_classes=3, teacher_feature_dim=2, student_feature_dim=2)
    many.adapt(labels)
    drawn = ops.convert_to_numpy(many._draw_negatives(batch_labels, 4))
    assert not np.any(labels[drawn] == np.array([0, 1, 2, 2])[:, None])
    assert len(set(drawn[0])) == 32 and len(set(drawn[2])) < 32  # class 0 leaves 35: distinct; class 2: repeats
    counts = np.bincount(negatives[0::4].ravel(), minlength=50)  # anchors of class 0: uniform over the 35 others
    eligible = labels != 0
    assert np.all(counts[~eligible] == 0) and counts[eligible].min() > 0
    assert counts[eligible].std() / counts[eligible].mean() < 0.35


def other_classes_crd(num_classes=3, num_negatives=4, **kwargs):
    crd = CRD(num_negatives=num_negatives, negatives="other_classes", seed=0, **kwargs)
    crd.build(num_classes=num_classes, teacher_feature_dim=2, student_feature_dim=2)
    return crd


def test_crd_state_is_named_for_what_it_holds():
    # The paths under which checkpoints and TensorBoard show CRD's weights and memory banks.
    crd = ck.distillations.CRD(num_samples=8, embedding_dim=4, num_negatives=2)
    crd.build(num_classes=2, teacher_feature_dim=3, student_feature_dim=3)
    assert sorted(v.path for v in crd.variables if v.path.startswith("crd/")) == [
        "crd/memory/normalizers", "crd/memory/student_memory", "crd/memory/teacher_memory",
        "crd/student_embedding/bias", "crd/student_embedding/kernel", "crd/teacher_embedding/bias",
        "crd/teacher_embedding/kernel"]


def test_crd_adapt_sizes_the_banks_and_sorts_the_indices_by_class():
    labels = np.random.default_rng(0).integers(0, 3, 200)
    crd = other_classes_crd()
    crd.adapt(labels[:, None])  # (N, 1) labels are read as (N,)
    assert crd.num_samples == 200 and crd.adapted and tuple(crd.student_memory.shape) == (200, 128)
    size = np.bincount(labels, minlength=3)
    np.testing.assert_array_equal(ops.convert_to_numpy(crd.memory.class_size), size)
    np.testing.assert_array_equal(ops.convert_to_numpy(crd.memory.class_start), [0, size[0], size[0] + size[1]])
    # each class's block lists its samples in index order (a stable sort: the same table on every platform)
    expected = np.concatenate([np.flatnonzero(labels == c) for c in range(3)])
    np.testing.assert_array_equal(ops.convert_to_numpy(crd.memory.indices_by_class), expected)
    other_classes_crd(num_classes=2).adapt([0, 0, 1])  # one sample of another class is enough
    absent = other_classes_crd()
    absent.adapt([1, 0, 1, 0])  # a class without samples has an empty block
    np.testing.assert_array_equal(ops.convert_to_numpy(absent.memory.class_size), [2, 2, 0])
    np.testing.assert_array_equal(ops.convert_to_numpy(absent.memory.class_start), [0, 2, 4])


@pytest.mark.parametrize("labels, message, kwargs", [
    ([0, 1, 2, 0, 1, 2], "CRD: got 6 training labels for num_samples=5.", {"num_samples": 5}),
    ([0, 1, -1], "CRD: training labels must be in [0, 2].", {}),
    ([0, 1, 3], "CRD: training labels must be in [0, 2].", {}),
    ([2, 2, 2], "CRD: every class needs samples of other classes to draw negatives from.", {}),
    ([0], "CRD: every class needs samples of other classes to draw negatives from.", {}),
])
def test_crd_adapt_rejects_labels_it_cannot_draw_negatives_from(labels, message, kwargs):
    with pytest.raises(ValueError, match=re.escape(message)):
        other_classes_crd(**kwargs).adapt(np.array(labels))


def test_distiller_adapt_checks_the_labels_against_the_models():
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=CRD(negatives="other_classes"))
    with pytest.raises(ValueError, match=re.escape(
            "Training labels must be class ids in [0, 9] for models with 10 classes; got labels from 0 to 10.")):
        distiller.adapt(np.arange(11))
    with pytest.raises(ValueError, match=re.escape("Training labels of shape (4, 3) are neither class ids")):
        distiller.adapt(np.eye(3)[[0, 1, 2, 0]])
    distiller.adapt(np.eye(10)[np.arange(20) % 10])  # one-hot rows are class ids
    assert distiller.distillations[0].num_samples == 20 and distiller.distillations[0].adapted


@pytest.mark.parametrize("k", [10, 20])  # K > 8 eligible (K <= N = 12: rows fall back; K > N: drawn so throughout)
def test_crd_negatives_drawn_with_replacement_cover_exactly_the_other_classes(k):
    labels = np.array([1, 0, 2] * 4)  # every class leaves 8 negatives
    crd = other_classes_crd(num_negatives=k)
    crd.adapt(labels)
    batch_labels = np.array([0, 1, 2])
    drawn = np.concatenate([ops.convert_to_numpy(crd._draw_negatives(tensor(batch_labels, "int32"), 3))
                            for _ in range(40)]).reshape(40, 3, k)
    for row, label in enumerate(batch_labels):  # 400 or 800 draws from 8 candidates: each one is drawn
        assert set(drawn[:, row].ravel()) == set(np.flatnonzero(labels != label)), label


def test_crd_negatives_are_all_the_other_classes_when_they_leave_exactly_k():
    labels = np.array([1, 0, 2] * 4)
    crd = other_classes_crd(num_negatives=8)  # K = the 8 eligible: drawn without replacement, so each once
    crd.adapt(labels)
    drawn = ops.convert_to_numpy(crd._draw_negatives(tensor([0, 1, 2], "int32"), 3))
    for row, label in enumerate([0, 1, 2]):
        assert sorted(drawn[row]) == list(np.flatnonzero(labels != label)), label


def test_crd_memory_banks_are_seeded_uniform_non_trainable_state_with_stable_names():
    def banks(seed, negatives="other_classes"):
        crd = CRD(num_samples=2000, embedding_dim=12, num_negatives=4, negatives=negatives, seed=seed)
        crd.build(num_classes=3, teacher_feature_dim=2, student_feature_dim=2)
        return crd

    crd, same, other = banks(4), banks(4), banks(5)
    student, teacher = (ops.convert_to_numpy(v) for v in (crd.student_memory, crd.teacher_memory))
    bound = 1.0 / np.sqrt(12 / 3.0)  # uniform over [-1/sqrt(D/3), 1/sqrt(D/3)]: unit expected squared norm
    for bank in (student, teacher):
        assert -bound <= bank.min() < -0.99 * bound and 0.99 * bound < bank.max() <= bound
        assert abs(bank.mean()) < 0.01 and bank.var() == pytest.approx(bound ** 2 / 3, rel=0.02)
    assert not np.allclose(student, teacher)  # each side its own draw
    np.testing.assert_array_equal(student, ops.convert_to_numpy(same.student_memory))  # the seed decides
    np.testing.assert_array_equal(teacher, ops.convert_to_numpy(same.teacher_memory))
    assert not np.allclose(student, ops.convert_to_numpy(other.student_memory))
    expected = {"student_memory": "float32", "teacher_memory": "float32", "normalizers": "float32",
                "indices_by_class": "int32", "class_start": "int32", "class_size": "int32"}
    assert {v.name: v.dtype for v in crd.memory.weights} == expected and crd.memory.trainable_weights == []
    assert {v.aggregation for v in crd.memory.weights} == {"only_first_replica"}
    assert {v.name for v in banks(4, "uniform").memory.weights} == {"student_memory", "teacher_memory", "normalizers"}


def test_crd_declares_what_it_needs_and_keeps_float32_named_heads_under_mixed_precision():
    from keras_calikd.distillations.base import FEATURES, INDICES, TRAINING_SET

    assert CRD(num_samples=10).requires == {FEATURES, INDICES}  # banks sized, uniform negatives: no labels needed
    assert CRD().requires == CRD(num_samples=10, negatives="other_classes").requires == {FEATURES, INDICES,
                                                                                        TRAINING_SET}
    keras.config.set_dtype_policy("mixed_float16")
    try:
        crd = CRD(num_samples=10)
    finally:
        keras.config.set_dtype_policy("float32")
    heads = (crd.student_embedding, crd.teacher_embedding)
    assert [(h.name, h.dtype_policy.name) for h in heads] == [("student_embedding", "float32"),
                                                               ("teacher_embedding", "float32")]


def test_crd_negatives_follow_the_seed():
    def drawn(seed):
        crd = CRD(num_samples=1000, num_negatives=50, seed=seed)
        crd.build(num_classes=2, teacher_feature_dim=2, student_feature_dim=2)
        return ops.convert_to_numpy(crd._draw_negatives(tensor([0] * 8, "int32"), 8))

    np.testing.assert_array_equal(drawn(7), drawn(7))
    assert not np.array_equal(drawn(7), drawn(8))


def test_crd_uniform_negatives_cover_the_set():
    crd = CRD(num_samples=30, num_negatives=20, seed=1)
    crd.build(num_classes=2, teacher_feature_dim=2, student_feature_dim=2)
    negatives = ops.convert_to_numpy(crd._draw_negatives(tensor([0] * 64, "int32"), 64))
    assert negatives.shape == (64, 20) and set(np.unique(negatives)) == set(range(30))


def test_defaults_are_the_papers():
    crd, rkd = CRD(), RKD()
    assert (crd.num_samples, crd.embedding_dim, crd.num_negatives, crd.temperature, crd.momentum, crd.negatives,
            crd.weight, crd.seed) == (None, 128, 16384, 0.07, 0.5, "uniform", 0.8, None)
    assert (rkd.distance_weight, rkd.angle_weight, rkd.weight) == (25.0, 50.0, 1.0)


@pytest.mark.parametrize("strategy, kwargs, message", [
    (CRD, {"num_samples": 0}, "CRD: `num_samples` must be a positive integer, got 0."),
    (CRD, {"num_samples": 2.5}, "CRD: `num_samples` must be an integer >= 1, got 2.5."),
    (CRD, {"embedding_dim": 0}, "CRD: `embedding_dim` must be a positive integer, got 0."),
    (CRD, {"num_negatives": 0}, "CRD: `num_negatives` must be a positive integer, got 0."),
    (CRD, {"temperature": 0.0}, "CRD: `temperature` must be > 0, got 0.0."),
    (CRD, {"momentum": 1.0}, "CRD: `momentum` must be in [0, 1), got 1.0."),
    (CRD, {"momentum": -0.1}, "CRD: `momentum` must be in [0, 1), got -0.1."),
    (CRD, {"negatives": "hard"}, "CRD: `negatives` must be one of 'uniform', 'other_classes', got 'hard'."),
    (RKD, {"distance_weight": -1.0}, "RKD: `distance_weight` must be >= 0, got -1.0."),
    (RKD, {"angle_weight": -1.0}, "RKD: `angle_weight` must be >= 0, got -1.0."),
])
def test_bad_arguments_fail_with_the_whole_message(strategy, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        strategy(**kwargs)


def test_arguments_at_their_bounds_are_accepted():
    crd = CRD(num_samples=1, embedding_dim=1, num_negatives=1, temperature=1e-6, momentum=0.0)
    assert (crd.num_samples, crd.embedding_dim, crd.num_negatives, crd.temperature, crd.momentum) == (
        1, 1, 1, 1e-6, 0.0)
    assert (RKD(distance_weight=0.0, angle_weight=0.0).distance_weight, RKD(distance_weight=0.5).distance_weight,
            RKD(angle_weight=0.5).angle_weight) == (0.0, 0.5, 0.5)


# ---------------------------------------------------------------- through the Distiller

def indexed(x):
    return {"image": x, "index": np.arange(len(x), dtype="int32")}


def test_gradients_reach_student_and_heads_never_teacher():
    x, y = blobs(64)
    teacher, student = tiny_cnn(name="t"), tiny_cnn(width=6, name="s")
    crd = CRD(num_samples=64, num_negatives=16, seed=0)
    distiller = ck.Distiller(teacher, student, distillation=crd, augmentation="none", alpha=1.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    snapshot = lambda variables: [ops.convert_to_numpy(v).copy() for v in variables]  # noqa: E731
    teacher_before, student_before = snapshot(teacher.variables), snapshot(student.trainable_variables)
    heads_before = snapshot(crd.trainable_variables)
    assert len(crd.trainable_variables) == 4 and not any(v.trainable for v in (crd.student_memory, crd.teacher_memory))
    memory_before = snapshot([crd.student_memory])[0]
    distiller.fit(indexed(x), y, batch_size=32, epochs=1, verbose=0)
    for before, after in zip(teacher_before, snapshot(teacher.variables)):
        np.testing.assert_array_equal(before, after)
    assert all(not np.allclose(b, a) for b, a in zip(student_before[:1], snapshot(student.trainable_variables)[:1]))
    assert all(not np.allclose(b, a) for b, a in zip(heads_before, snapshot(crd.trainable_variables)))
    assert not np.allclose(memory_before, snapshot([crd.student_memory])[0])
    assert not {id(v) for v in crd.variables} & {id(v) for v in student.variables}  # heads are not exported


# Each strategy alone takes an XLA step in tests/test_conformance.py; here each feature distiller lowers its loss
# over epochs beside a two-source augmentation (the distillation term then counts twice, Eq. 12).
@pytest.mark.heavy
@pytest.mark.parametrize("strategy, augmentation", [("rkd", "cutmix"), ("crd", "mixup")])
def test_feature_distillation_trains_beside_an_augmentation(strategy, augmentation):
    keras.utils.set_random_seed(1)
    x, y = blobs(256)
    distillation = (RKD() if strategy == "rkd" else CRD(num_samples=256, num_negatives=16, seed=2))
    augmentations = {"mixup": ck.augmentations.MixUp(seed=1), "cutmix": ck.augmentations.CutMix(seed=1),
                     "cutout": ck.augmentations.Cutout(size=4, seed=1), "none": "none"}
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(width=6, name="s"), distillation=distillation,
                             augmentation=augmentations[augmentation], alpha=0.5)
    # XLA on JAX ("auto"); on TensorFlow, where XLA compiles slowly on a CPU, in one case only (the gradients
    # test above compiles CRD).
    xla = True if (strategy, augmentation) == ("rkd", "cutmix") else "auto"
    distiller.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"], jit_compile=xla)
    history = distiller.fit(indexed(x), y, batch_size=32, epochs=8, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    # CRD's first epoch fills the memory banks (random until then), so its loss is compared from the second.
    start = 0 if strategy == "rkd" else 1
    assert history["loss"][-1] < history["loss"][start]


def test_kd_can_be_added_to_crd():
    x, y = blobs(64)
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation="mixup",
                             distillation=[CRD(num_samples=64, num_negatives=8), ck.distillations.KD(weight=0.9)])
    distiller.compile(optimizer="sgd")
    assert np.isfinite(distiller.fit(indexed(x), y, batch_size=32, verbose=0).history["distillation_loss"][0])


def test_missing_indices_and_labels_fail_clearly():
    x, y = blobs(64)
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=CRD(num_samples=64, num_negatives=8))
    distiller.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="dataset index"):
        distiller.fit(x, y, batch_size=32, verbose=0)
    import tensorflow as tf

    other = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"),
                         distillation=CRD(num_samples=64, num_negatives=8, negatives="other_classes"))
    other.compile(optimizer="sgd")
    pipeline = tf.data.Dataset.from_tensor_slices((indexed(x), y)).batch(32)
    with pytest.raises(ValueError, match=r"distiller.adapt\(train_labels\)"):
        other.fit(pipeline, verbose=0)
    other.adapt(y)
    other.fit(pipeline, verbose=0)


