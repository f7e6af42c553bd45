"""Wiring tests of the Distiller: what each part is fed, checked through the public step (`train_on_batch`, `fit`).

Each part has its own reference tests; these check the joints, on both backends (the TensorFlow and the JAX step
thread the state differently): which labels reach the augmentation loss, which logits reach the training
metrics, which layer's output reaches the feature strategies, which epoch reaches `Batch.epoch`, and that the
update is the gradient of the logged loss. The models are linear and BN-free, so their outputs are computed
here in NumPy from their weights, and a learning rate of 0 keeps them fixed through a step.
"""

import keras
import numpy as np
from keras import ops

import keras_calikd as ck
from keras_calikd.augmentations import Augmentation, AugmentedBatch
from tiny import dense_model

K = 4  # classes
SHAPE = (3, 3, 1)


def to_np(x):
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def linear(model, layer, inputs):
    """`inputs @ kernel + bias` of a Dense layer of `model`, in float64."""
    kernel, bias = (to_np(w) for w in model.get_layer(layer).weights)
    return inputs @ kernel + bias


def dense_logits(model, x):
    """Logits of a `tiny.dense_model` (flatten + dense)."""
    return linear(model, "logits", x.reshape(len(x), -1))


def layered_model(name, width=5, seed=0):
    """Flatten -> Dense "features" -> Dense "hidden" (the layer before the logits) -> Dense "logits", all linear.

    "features" and "hidden" have the same width, so that the wrong one would reach a strategy without a shape error.
    """
    inputs = keras.Input(SHAPE)
    features = keras.layers.Dense(width, name="features")(keras.layers.Flatten()(inputs))
    hidden = keras.layers.Dense(width, name="hidden")(features)
    model = keras.Model(inputs, keras.layers.Dense(K, name="logits")(hidden), name=name)
    rng = np.random.default_rng(seed)
    for layer in ("features", "hidden", "logits"):
        kernel, bias = model.get_layer(layer).weights
        kernel.assign(rng.normal(size=kernel.shape).astype("float32"))
        bias.assign(rng.normal(size=bias.shape).astype("float32"))
    return model


def layer_outputs(model, x):
    """The outputs of the "features" and "hidden" layers and the logits of a `layered_model`, in NumPy."""
    features = linear(model, "features", x.reshape(len(x), -1))
    hidden = linear(model, "hidden", features)
    return {"features": features, "hidden": hidden, "logits": linear(model, "logits", hidden)}


class Shift(Augmentation):
    """Adds 1 to every image; partners are the batch reversed, lam 0.7, two sources. Labels come from the base
    class's `select_labels`, so `label_source` applies as for the registered strategies."""

    def augment(self, images, labels):
        return AugmentedBatch(images=images + 1.0, labels=labels, partner_labels=ops.flip(labels, 0),
                              lam=ops.convert_to_tensor(0.7), sources=ops.convert_to_tensor(2.0))


def shift_cross_entropy(logits, labels):
    """Shift's loss from its definition: 0.7 CE at `labels` + 0.3 CE at the reversed `labels`, batch mean."""
    log_p, rows = log_softmax(logits), np.arange(len(labels))
    return np.mean(-0.7 * log_p[rows, labels] - 0.3 * log_p[rows, labels[::-1]])


def cross_entropy(logits, labels):
    return -log_softmax(logits)[np.arange(len(labels)), labels].mean()


def frozen(distiller, learning_rate=0.0, **kwargs):
    """Compiled with plain SGD; a learning rate of 0 keeps the student as it is."""
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate), **kwargs)
    return distiller


def teacher_and_wrong_labels(rng, n=8):
    """A linear teacher, images, and ground-truth labels that differ from the teacher's argmax on every image."""
    keras.utils.set_random_seed(3)
    teacher = dense_model(K, SHAPE, name="teacher")
    x = rng.normal(size=(n,) + SHAPE).astype("float32")
    teacher_labels = dense_logits(teacher, x).argmax(1)
    y = ((teacher_labels + 1 + rng.integers(0, K - 1, n)) % K).astype("int32")
    assert np.all(y != teacher_labels)
    return teacher, x, y, teacher_labels


# ---------------------------------------------------------------- labels and logits

def reference_calibration(probs, labels, num_bins):
    """ECE and OE (the paper's Eq. 14 and 15): equal-width bins of the top-class confidence."""
    confidence, correct = probs.max(1), (probs.argmax(1) == labels).astype(float)
    bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
    ece = oe = 0.0
    for b in range(num_bins):
        members = bins == b
        if members.any():
            share, conf, acc = members.mean(), confidence[members].mean(), correct[members].mean()
            ece += share * abs(acc - conf)
            oe += share * conf * max(conf - acc, 0.0)
    return ece, oe


def test_metrics_get_the_students_clean_logits_and_the_augmentation_loss_the_teachers_labels(rng):
    """Training metrics: the student's logits on the clean images, against the ground truth; the augmentation
    loss (label_source="teacher"): the teacher's argmax on the clean images."""
    teacher, x, y, teacher_labels = teacher_and_wrong_labels(rng, n=24)
    keras.utils.set_random_seed(5)
    student = dense_model(K, SHAPE, name="student")
    distiller = frozen(ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=2.0),
                                    augmentation=Shift(label_source="teacher"), alpha=0.5),
                       metrics=["accuracy", ck.metrics.ExpectedCalibrationError(5, from_logits=True),
                                ck.metrics.OverconfidenceError(5, from_logits=True)])
    # Three batches of 8: the metrics accumulate over the epoch.
    history = distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history

    def expected(logits, labels):
        probs = np.exp(log_softmax(logits))
        ece, oe = reference_calibration(probs, labels, 5)
        return {"accuracy": (probs.argmax(1) == labels).mean(), "ece": ece, "oe": oe}

    clean = expected(dense_logits(student, x), y)
    for key, value in clean.items():
        np.testing.assert_allclose(history[key][0], value, rtol=1e-5, atol=1e-6, err_msg=key)
    # Discriminating: the augmented logits, or the teacher's labels, would give other values.
    for logits, labels in ((dense_logits(student, x + 1.0), y), (dense_logits(student, x), teacher_labels)):
        other = expected(logits, labels)
        assert any(abs(other[key] - clean[key]) > 1e-3 for key in clean)
    assert clean["accuracy"] not in (0.0, 1.0)

    # The augmentation loss: the student on the shifted images, at the teacher's argmax on the clean images
    # (label_source="teacher"); each batch's partners are that batch reversed.
    def augmentation_loss(labels):
        batches = [slice(0, 8), slice(8, 16), slice(16, 24)]
        shifted = dense_logits(student, x + 1.0)
        return np.mean([shift_cross_entropy(shifted[rows], labels[rows]) for rows in batches])

    expected_loss = augmentation_loss(teacher_labels)
    np.testing.assert_allclose(history["augmentation_loss"][0], expected_loss, rtol=1e-5)
    # Discriminating: the ground truth, the student's argmax, or the teacher's argmax on the shifted images.
    for labels in (y, dense_logits(student, x).argmax(1), dense_logits(teacher, x + 1.0).argmax(1)):
        assert abs(augmentation_loss(labels) - expected_loss) > 1e-3  # 50 times the tolerance


def test_the_step_applies_the_gradient_of_the_logged_loss(rng):
    """One SGD step moves the student's weights by -lr times the gradient of alpha * 2 * KD + (1 - alpha) * CE,
    derived by hand for the linear student: the update is taken of the whole loss, both passes included."""
    keras.utils.set_random_seed(7)
    teacher, student = dense_model(K, SHAPE, name="teacher"), dense_model(K, SHAPE, name="student")
    distiller = frozen(ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=2.0),
                                    augmentation=Shift(), alpha=0.3), learning_rate=0.5)
    x = rng.normal(size=(6,) + SHAPE).astype("float32")
    y = np.array([0, 1, 2, 3, 0, 2], "int32")
    kernel, bias = (to_np(w) for w in student.get_layer("logits").weights)
    flat, shifted = x.reshape(6, -1), (x + 1.0).reshape(6, -1)
    t, batch = 2.0, len(y)
    p_teacher = np.exp(log_softmax(dense_logits(teacher, x) / t))
    p_student = np.exp(log_softmax((flat @ kernel + bias) / t))
    p_shifted = np.exp(log_softmax(shifted @ kernel + bias))
    # d/dz of T^2 * mean over (batch, classes) of KL(p_teacher || p_student) at temperature T
    kd_grad = t * (p_student - p_teacher) / (batch * K)
    # d/dz of the batch mean of 0.7 CE(labels) + 0.3 CE(reversed labels)
    targets = 0.7 * np.eye(K)[y] + 0.3 * np.eye(K)[y[::-1]]
    ce_grad = (p_shifted - targets) / batch
    grad_kernel = 0.3 * 2 * flat.T @ kd_grad + 0.7 * shifted.T @ ce_grad
    grad_bias = 0.3 * 2 * kd_grad.sum(0) + 0.7 * ce_grad.sum(0)
    distiller.train_on_batch(x, y)
    new_kernel, new_bias = (to_np(w) for w in student.get_layer("logits").weights)
    np.testing.assert_allclose(new_kernel, kernel - 0.5 * grad_kernel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - 0.5 * grad_bias, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- features

def huber(a, b):
    d = np.abs(a - b)
    return np.where(d < 1.0, 0.5 * d * d, d - 0.5).mean()


def reference_rkd(student, teacher, distance_weight=25.0, angle_weight=50.0):
    """RKD (Park et al., 2019): smooth-L1 between the mean-normalised pairwise distances and between the cosines
    of the angles at every anchor (a zero difference vector gives a zero cosine), each averaged over all entries."""
    def distances(e):
        d = np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))
        return d / d[d > 0].mean()

    def angles(e):
        v = e[None, :, :] - e[:, None, :]  # [j, i] = e_i - e_j
        norms = np.linalg.norm(v, axis=-1, keepdims=True)
        unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
        return np.einsum("jid,jkd->jik", unit, unit)

    return (distance_weight * huber(distances(student), distances(teacher))
            + angle_weight * huber(angles(student), angles(teacher)))


def test_rkd_gets_the_features_layers_output_not_the_layer_before_the_logits(rng):
    teacher, student = layered_model("teacher", seed=1), layered_model("student", seed=2)
    distiller = frozen(ck.Distiller(teacher, student, distillation="rkd", augmentation="none", alpha=0.5))
    x = rng.normal(size=(6,) + SHAPE).astype("float32")
    y = np.array([0, 1, 2, 3, 0, 1], "int32")
    logs = distiller.train_on_batch(x, y, return_dict=True)
    teacher_out, student_out = layer_outputs(teacher, x), layer_outputs(student, x)
    expected = reference_rkd(student_out["features"], teacher_out["features"])
    np.testing.assert_allclose(logs["distillation_loss"], expected, rtol=1e-4)
    assert abs(reference_rkd(student_out["hidden"], teacher_out["hidden"]) - expected) > 1e-2 * expected
    np.testing.assert_allclose(logs["augmentation_loss"], cross_entropy(student_out["logits"], y), rtol=1e-5)


def unit_rows(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_crd_memory_moves_towards_the_heads_of_the_features_layer_at_the_batchs_indices(rng):
    """After one step, bank rows at the batch's dataset indices are normalize(m * row + (1 - m) * embedding),
    the embedding being the L2-normalised head of the "features" layer's output; the other rows stay."""
    n, momentum = 12, 0.5
    teacher, student = layered_model("teacher", seed=1), layered_model("student", seed=2)
    crd = ck.distillations.CRD(num_samples=n, embedding_dim=3, num_negatives=4, momentum=momentum, seed=0)
    distiller = frozen(ck.Distiller(teacher, student, distillation=crd, augmentation="none", alpha=0.5))
    x = rng.normal(size=(5,) + SHAPE).astype("float32")
    y = np.array([0, 1, 2, 3, 0], "int32")
    indices = np.array([9, 2, 7, 0, 4], "int32")
    banks = {"student": to_np(crd.student_memory), "teacher": to_np(crd.teacher_memory)}
    heads = {"student": crd.student_embedding, "teacher": crd.teacher_embedding}
    kernels = {side: tuple(to_np(w) for w in head.weights) for side, head in heads.items()}
    distiller.train_on_batch({"image": x, "index": indices}, y)

    rest = np.setdiff1d(np.arange(n), indices)
    for side, model in (("student", student), ("teacher", teacher)):
        kernel, bias = kernels[side]
        outputs = layer_outputs(model, x)
        embedding = unit_rows(outputs["features"] @ kernel + bias)
        expected = unit_rows(momentum * banks[side][indices] + (1 - momentum) * embedding)
        after = to_np(crd.student_memory if side == "student" else crd.teacher_memory)
        np.testing.assert_allclose(after[indices], expected, rtol=1e-5, atol=1e-6, err_msg=side)
        np.testing.assert_array_equal(after[rest], banks[side][rest])
        wrong = unit_rows(momentum * banks[side][indices] + (1 - momentum) * unit_rows(outputs["hidden"] @ kernel
                                                                                       + bias))
        assert np.abs(wrong - expected).max() > 1e-2


# ---------------------------------------------------------------- DKD: logits, ground truth and the epoch

def reference_dkd(teacher_logits, student_logits, labels, alpha, beta, t):
    """DKD (Zhao et al., 2022) before its warm-up: alpha * TCKD + beta * NCKD at temperature t, times t^2.

    TCKD: KL between the binary (target, rest) distributions; NCKD: KL between the softmaxes over the non-target
    classes; each summed over its classes and averaged over the batch."""
    rows = np.arange(len(labels))
    terms = []
    for z in (teacher_logits / t, student_logits / t):
        p = np.exp(log_softmax(z))
        binary = np.stack([p[rows, labels], 1.0 - p[rows, labels]], axis=1)
        others = np.stack([np.delete(z[i], labels[i]) for i in rows])
        terms.append((binary, np.exp(log_softmax(others))))
    (bt, nt), (bs, ns) = terms
    tckd = (bt * np.log(bt / bs)).sum(1).mean()
    nckd = (nt * np.log(nt / ns)).sum(1).mean()
    return (alpha * tckd + beta * nckd) * t * t


def test_dkd_gets_logits_ground_truth_and_the_epoch_of_a_fit_resumed_at_an_initial_epoch(rng):
    teacher, x, y, teacher_labels = teacher_and_wrong_labels(rng, n=8)
    student = dense_model(K, SHAPE, name="student")
    dkd = ck.distillations.DKD(alpha=1.0, beta=8.0, temperature=2.0, warmup=4)
    distiller = frozen(ck.Distiller(teacher, student, distillation=dkd,
                                    augmentation=ck.augmentations.Identity(label_source="teacher"), alpha=0.5))
    # Epochs 2 and 3 (0-based 1 and 2) of a fit resumed after epoch 1: warm-up factors 2/4 and 3/4.
    history = distiller.fit(x, y, batch_size=8, epochs=3, initial_epoch=1, verbose=0).history
    zt, zs = dense_logits(teacher, x), dense_logits(student, x)
    raw = reference_dkd(zt, zs, y, 1.0, 8.0, 2.0)
    np.testing.assert_allclose(history["distillation_loss"], [raw * 2 / 4, raw * 3 / 4], rtol=1e-4)
    assert abs(reference_dkd(zt, zs, teacher_labels, 1.0, 8.0, 2.0) - raw) > 1e-2 * raw  # the teacher's labels
    # The identity augmentation reuses the clean pass: cross-entropy at the teacher's argmax (label_source).
    np.testing.assert_allclose(history["augmentation_loss"], [cross_entropy(zs, teacher_labels)] * 2, rtol=1e-5)
    assert abs(cross_entropy(zs, y) - cross_entropy(zs, teacher_labels)) > 1e-2
