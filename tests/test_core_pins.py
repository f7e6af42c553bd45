"""Pins on the numerical core: each test states one behaviour from its definition, so that changing it fails.

- The teacher runs in inference mode in every training step (Dropout off,
  BatchNormalization on its moving statistics), whatever its `call` defaults to;
  the student runs in training mode (batch statistics, moving averages updated).
- The student's regularisation losses are part of the training loss.
- Mixup's lambda follows Beta(alpha, alpha).
- Boxes (CutMix, cutout) have uniform centres and are clipped to the image as
  defined: side s at centre c covers rows max(c - s//2, 0) .. min(c + s//2, H) - 1,
  so every row and column, the last ones included, can be covered.
- CRD's memory update: row <- normalize(momentum * row + (1 - momentum) * embedding).
"""

import contextlib

import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats

import keras_calikd as ck
from keras_calikd.augmentations import boxes
from keras_calikd.distillations import CRD, Batch, ModelOutputs
from tiny import dense_model, repeated


def to_np(x):
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def scaled_kd(teacher_logits, student_logits, t):
    """The paper's scaled KD: KL(teacher || student) at temperature t, mean over batch and classes, times t^2."""
    log_pt, log_ps = log_softmax(teacher_logits / t), log_softmax(student_logits / t)
    return (np.exp(log_pt) * (log_pt - log_ps)).mean() * t * t


def cross_entropy(logits, labels):
    return -log_softmax(logits)[np.arange(len(labels)), labels].mean()


def linear_logits(model, x):
    """Logits of a `tiny.dense_model` (flatten + dense), from its weights."""
    kernel, bias = (to_np(w) for w in model.get_layer("logits").weights)
    return x.reshape(len(x), -1) @ kernel + bias


def logged_step(distiller, x, y):
    """The logs of one training step on `(x, y)` (the loss trackers hold that step alone)."""
    distiller.reset_metrics()
    return distiller.train_on_batch(x, y, return_dict=True)


# ---------------------------------------------------------------- the Distiller's step

def dropout_teacher(rng):
    """Flatten, dense, Dropout(0.5), BatchNormalization with non-trivial moving statistics, dense logits."""
    inputs = keras.Input((3, 3, 1))
    hidden = keras.layers.Dense(6, name="hidden")(keras.layers.Flatten()(inputs))
    hidden = keras.layers.Dropout(0.5)(hidden)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(hidden), name="teacher")
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(size=6).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.2, 3.0, size=6).astype("float32"))
    bn.gamma.assign(rng.uniform(0.5, 2.0, size=6).astype("float32"))
    bn.beta.assign(rng.normal(size=6).astype("float32"))
    return model


def inference_logits(teacher, x):
    """The teacher's inference-mode logits: Dropout is the identity, BN uses the moving statistics."""
    w1, b1 = (to_np(w) for w in teacher.get_layer("hidden").weights)
    bn = teacher.get_layer("bn")
    h = x.reshape(len(x), -1) @ w1 + b1
    h = (h - to_np(bn.moving_mean)) / np.sqrt(to_np(bn.moving_variance) + bn.epsilon) * to_np(bn.gamma) \
        + to_np(bn.beta)
    w2, b2 = (to_np(w) for w in teacher.get_layer("logits").weights)
    return h @ w2 + b2


class TrainingByDefault(keras.Model):
    """A subclassed teacher whose `call` runs its model in training mode unless told otherwise."""

    def __init__(self, model):
        super().__init__(name="training_by_default")
        self.model = model

    def call(self, x, training=True):
        return self.model(x, training=training)


@pytest.mark.parametrize("subclassed", [False, True])
def test_teacher_gives_inference_mode_logits_in_every_step(rng, subclassed):
    teacher, student = dropout_teacher(rng), dense_model(name="student")
    distiller = ck.Distiller(TrainingByDefault(teacher) if subclassed else teacher, student,
                             distillation=ck.distillations.KD(temperature=2.0), augmentation="none", alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    x = rng.normal(size=(8, 3, 3, 1)).astype("float32")
    y = np.arange(8, dtype="int32") % 4
    zt = inference_logits(teacher, x)
    for _ in range(3):
        zs = linear_logits(student, x)  # the student's weights before the step
        kd, ce = scaled_kd(zt, zs, 2.0), cross_entropy(zs, y)
        logs = logged_step(distiller, x, y)
        np.testing.assert_allclose(logs["distillation_loss"], kd, rtol=1e-4)
        np.testing.assert_allclose(logs["loss"], 0.5 * kd + 0.5 * ce, rtol=1e-4)
    np.testing.assert_allclose(inference_logits(teacher, x), zt, rtol=1e-6)  # and the teacher stays as it was


def batch_norm_student():
    """Flatten, dense, BatchNormalization, dense logits (no randomness: its training mode is computable)."""
    inputs = keras.Input((3, 3, 1))
    hidden = keras.layers.Dense(6, name="hidden")(keras.layers.Flatten()(inputs))
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(hidden), name="student")


class Shift(ck.augmentations.Augmentation):
    """Adds 1 to every pixel; the labels stay (lam 1): the student's second pass sees other images."""

    def augment(self, images, labels):
        return ck.augmentations.AugmentedBatch(images=images + 1.0, labels=labels, partner_labels=labels,
                                               lam=ops.convert_to_tensor(1.0), sources=ops.convert_to_tensor(1.0))


def training_mode_logits(student, x):
    """A `batch_norm_student`'s logits in training mode (batch statistics), and the batch mean of its BN input."""
    w1, b1 = (to_np(w) for w in student.get_layer("hidden").weights)
    w2, b2 = (to_np(w) for w in student.get_layer("logits").weights)
    bn = student.get_layer("bn")
    h = x.reshape(len(x), -1) @ w1 + b1
    mean, variance = h.mean(0), h.var(0)  # the biased variance normalises
    return ((h - mean) / np.sqrt(variance + bn.epsilon) * to_np(bn.gamma) + to_np(bn.beta)) @ w2 + b2, mean


@pytest.mark.parametrize("augmentation", ["none", "shift"])
def test_student_runs_in_training_mode_in_every_step(rng, augmentation):
    teacher, student = dense_model(name="teacher"), batch_norm_student()
    distiller = ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=2.0),
                             augmentation=Shift() if augmentation == "shift" else "none", alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    x = rng.normal(size=(8, 3, 3, 1)).astype("float32")
    y = np.arange(8, dtype="int32") % 4
    zt, bn = linear_logits(teacher, x), student.get_layer("bn")
    for step in range(3):
        zs, mean = training_mode_logits(student, x)  # from the weights before the step
        augmented, augmented_mean = training_mode_logits(student, x + 1.0) if augmentation == "shift" else (zs, None)
        kd, ce = scaled_kd(zt, zs, 2.0), cross_entropy(augmented, y)
        if step == 0:  # the step's losses are the training-mode ones by default
            np.testing.assert_allclose(float(distiller.compute_step_losses((x, y)).distillation), kd, rtol=1e-4)
        moving_mean = to_np(bn.moving_mean)
        logs = logged_step(distiller, x, y)
        np.testing.assert_allclose(logs["distillation_loss"], kd, rtol=1e-4)
        np.testing.assert_allclose(logs["loss"], 0.5 * kd + 0.5 * ce, rtol=1e-4)
        expected = 0.99 * moving_mean + 0.01 * mean  # the clean pass, then the augmented one
        expected = expected if augmented_mean is None else 0.99 * expected + 0.01 * augmented_mean
        np.testing.assert_allclose(to_np(bn.moving_mean), expected, rtol=1e-4, atol=1e-6)


def test_student_regularisation_is_part_of_the_loss(rng):
    inputs = keras.Input((3, 3, 1))
    features = keras.layers.Flatten(name="features")(inputs)
    logits = keras.layers.Dense(4, name="logits", kernel_regularizer=keras.regularizers.L2(0.3),
                                bias_regularizer=keras.regularizers.L1(0.2),
                                activity_regularizer=keras.regularizers.L2(0.01))(features)
    student = keras.Model(inputs, logits, name="student")
    student.get_layer("logits").kernel.assign(rng.normal(size=(9, 4)).astype("float32"))
    student.get_layer("logits").bias.assign(rng.normal(size=4).astype("float32"))
    teacher = dense_model(name="teacher")
    distiller = ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=3.0),
                             augmentation="none", alpha=0.3)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    x = rng.normal(size=(6, 3, 3, 1)).astype("float32")
    y = np.array([0, 1, 2, 3, 0, 1], "int32")
    for _ in range(2):
        kernel, bias = (to_np(w) for w in student.get_layer("logits").weights)
        zs = linear_logits(student, x)
        # weights' penalties, and the logits' activity penalty (Keras divides it by the batch size)
        regularisation = 0.3 * np.sum(kernel ** 2) + 0.2 * np.sum(np.abs(bias)) + 0.01 * np.sum(zs ** 2) / len(x)
        kd, ce = scaled_kd(linear_logits(teacher, x), zs, 3.0), cross_entropy(zs, y)
        logs = logged_step(distiller, x, y)
        np.testing.assert_allclose([logs["distillation_loss"], logs["augmentation_loss"]], [kd, ce], rtol=1e-4)
        np.testing.assert_allclose(logs["loss"], 0.3 * kd + 0.7 * ce + regularisation, rtol=1e-4)
        assert regularisation > 0.5 * logs["loss"]  # large enough that dropping it cannot pass


# ---------------------------------------------------------------- augmentations, called many times

@pytest.mark.parametrize("alpha", [0.4, 2.0])
def test_mixup_lambda_follows_beta(alpha):
    draws = 600
    lams = repeated(ck.augmentations.MixUp(alpha=alpha, seed=11), np.zeros((2, 1, 1, 1), "float32"), draws)[1]
    beta = stats.beta(alpha, alpha)
    mean, var, excess_kurtosis = (float(m) for m in beta.stats(moments="mvk"))
    assert np.all((lams >= 0) & (lams <= 1)) and len(np.unique(lams)) > 0.99 * draws
    assert abs(lams.mean() - mean) < 4 * np.sqrt(var / draws)
    var_se = var * np.sqrt((excess_kurtosis + 2) / draws)  # standard error of the sample variance
    assert abs(lams.var() - var) < 4 * var_se
    assert stats.kstest(lams, beta.cdf).pvalue > 1e-3
    for other in (0.5 * alpha, 2.0 * alpha):  # the test tells Beta(alpha, alpha) from its neighbours
        assert stats.kstest(lams, stats.beta(other, other).cdf).pvalue < 1e-3


def intervals(half, size):
    """The `[start, stop)` spans of a box of half-side `half` over all centres 0 .. size-1, clipped to the image."""
    return {(max(c - half, 0), min(c + half, size)) for c in range(size)}


def spans(mask):
    """`(rows, cols)` spans `[start, stop)` of a rectangular mask (asserting it is one)."""
    rows, cols = np.nonzero(mask)
    span = (rows.min(), rows.max() + 1), (cols.min(), cols.max() + 1)
    assert mask[span[0][0]:span[0][1], span[1][0]:span[1][1]].all() and mask.sum() == (
        (span[0][1] - span[0][0]) * (span[1][1] - span[1][0]))
    return span


@pytest.mark.parametrize("side", [3, 4])
def test_random_boxes_follow_the_definition(side):
    height, width, n = 8, 6, 3000
    y1, y2, x1, x2 = (to_np(v).astype(int) for v in boxes.random_box(
        ops.full((n,), float(side)), height, width, keras.random.SeedGenerator(4), absolute=True))
    rows, cols = list(zip(y1, y2)), list(zip(x1, x2))
    assert set(rows) == intervals(side // 2, height) and set(cols) == intervals(side // 2, width)
    # Uniform centres: each of the H (W) possible spans (one per centre) turns up n/H (n/W) times.
    for observed, size in ((rows, height), (cols, width)):
        counts = np.array([observed.count(s) for s in intervals(side // 2, size)])
        assert stats.chisquare(counts).pvalue > 1e-3
    # Rows and columns are drawn independently.
    table = np.array([[np.sum((y1 == r[0]) & (y2 == r[1]) & (x1 == c[0]) & (x2 == c[1]))
                       for c in sorted(intervals(side // 2, width))] for r in sorted(intervals(side // 2, height))])
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_relative_box_sides_scale_with_each_image_side():
    height, width = 8, 6
    y1, y2, x1, x2 = (to_np(v).astype(int) for v in boxes.random_box(
        ops.full((500,), 0.55), height, width, keras.random.SeedGenerator(5)))
    assert set(zip(y1, y2)) == intervals(int(0.55 * height) // 2, height)  # side floor(4.4) = 4
    assert set(zip(x1, x2)) == intervals(int(0.55 * width) // 2, width)  # side floor(3.3) = 3


def sixty_four_bit_types():
    """JAX with 64-bit types switched on, where an integer without a dtype is int64; TensorFlow as it is."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


@pytest.mark.parametrize("absolute", [True, False])
def test_random_boxes_are_int32_even_with_64_bit_defaults(absolute):
    extent = ops.full((4,), 3.0 if absolute else 0.5)
    with sixty_four_bit_types():
        corners = boxes.random_box(extent, 8, 6, keras.random.SeedGenerator(3), absolute=absolute)
        assert [keras.backend.standardize_dtype(v.dtype) for v in corners] == ["int32"] * 4


@pytest.mark.parametrize("side", [0, 1])
def test_boxes_of_side_below_two_are_empty_at_every_centre(side):
    """Half side 0: rows max(c, 0) .. min(c, H) - 1, empty for every centre c, the first row's included."""
    y1, y2, x1, x2 = (to_np(v).astype(int) for v in boxes.random_box(
        ops.full((300,), float(side)), 8, 6, keras.random.SeedGenerator(4), absolute=True))
    assert set(zip(y1, y2)) == intervals(0, 8) and set(zip(x1, x2)) == intervals(0, 6)
    assert (y1 == y2).all() and (x1 == x2).all()


def test_box_mask_is_the_half_open_rectangle(rng):
    y1, x1 = rng.integers(0, 5, 20), rng.integers(0, 4, 20)
    y2, x2 = y1 + rng.integers(0, 4, 20), x1 + rng.integers(0, 3, 20)
    mask = to_np(boxes.box_mask(*(ops.convert_to_tensor(v, "int32") for v in (y1, y2, x1, x2)), 7, 5))
    r, c = np.arange(7)[:, None], np.arange(5)[None, :]
    expected = [(r >= a) & (r < b) & (c >= d) & (c < e) for a, b, d, e in zip(y1, y2, x1, x2)]
    np.testing.assert_array_equal(mask, np.array(expected))


def test_cutout_holes_cover_every_row_and_column():
    height, width = 8, 6
    images = np.ones((400, height, width, 1), "float32")
    holes = to_np(ck.augmentations.Cutout(size=4, seed=6).augment(ops.convert_to_tensor(images),
                                                                     ops.zeros((400,), "int32")).images)[..., 0] == 0
    hole_spans = [spans(hole) for hole in holes]
    assert {s[0] for s in hole_spans} == intervals(2, height) and {s[1] for s in hole_spans} == intervals(2, width)
    assert holes.any(axis=(0, 2)).all() and holes.any(axis=(0, 1)).all()  # rows 0 .. 7 and columns 0 .. 5


def test_cutmix_boxes_follow_the_definition():
    """CutMix's boxes over 240 calls (alpha 1, always applied) on 16 x 8 images.

    Image i of the batch is the constant i + 1, so the box is where some image holds another's pixels.
    - Every box is a clipped span of some centre and side, and lambda is the kept fraction of the image.
    - Together the boxes cover every row and every column, the last ones included.
    - The side is floor(sqrt(1 - lam) * H): with 1 - lam uniform, s = floor(H * sqrt(u)) has
      P(s < j) = (j / H)^2, so the half side k = s // 2 has P(k) = ((2k + 2)^2 - (2k)^2) / H^2. A box of
      half side k is left whole by the rows' clipping for H - 2k - 1 of the H centres, and it is seen
      when its width is not 0: with W = H / 2, when k >= 2.
    """
    height, width, batch, calls = 16, 8, 4, 240
    images = np.broadcast_to(np.arange(1, batch + 1, dtype="float32")[:, None, None, None],
                             (batch, height, width, 1)).copy()
    out, lams, _ = repeated(ck.augmentations.CutMix(alpha=1.0, probability=1.0, seed=2), images, calls)
    pasted = np.any(out != images[None], axis=(1, 4))  # (calls, H, W)
    seen = pasted.any(axis=(1, 2))
    assert seen.sum() > 0.8 * calls  # the rest drew an empty box or the identity permutation
    boxes_seen = [spans(mask) for mask in pasted[seen]]

    possible_rows = set().union(*(intervals(half, height) for half in range(height // 2 + 1)))
    possible_cols = set().union(*(intervals(half, width) for half in range(width // 2 + 1)))
    assert {rows for rows, _ in boxes_seen} <= possible_rows and {cols for _, cols in boxes_seen} <= possible_cols
    kept = [1 - (rows[1] - rows[0]) * (cols[1] - cols[0]) / (height * width) for rows, cols in boxes_seen]
    np.testing.assert_allclose(kept, lams[seen], atol=1e-6)

    assert set().union(*(range(*rows) for rows, _ in boxes_seen)) == set(range(height))
    assert set().union(*(range(*cols) for _, cols in boxes_seen)) == set(range(width))

    halves = np.array([(rows[1] - rows[0]) // 2 for rows, _ in boxes_seen if 0 < rows[0] and rows[1] < height])
    k = np.arange(2, height // 2)
    expected = ((2 * k + 2) ** 2 - (2 * k) ** 2) / height ** 2 * (height - 2 * k - 1) / height
    counts = np.array([(halves == half).sum() for half in k])
    assert counts.sum() == len(halves) > 40
    assert stats.chisquare(counts, expected / expected.sum() * counts.sum()).pvalue > 1e-3


# ---------------------------------------------------------------- CRD's memory

@pytest.mark.parametrize("momentum", [0.2, 0.9])
def test_crd_memory_update_uses_momentum_on_the_old_row(rng, momentum):
    crd = CRD(num_samples=12, embedding_dim=3, num_negatives=4, momentum=momentum, weight=1.0, seed=0)
    crd.build(num_classes=2, teacher_feature_dim=3, student_feature_dim=4)
    fs, ft = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    indices = np.array([7, 0, 11, 3, 5])
    old = {"student": to_np(crd.student_memory), "teacher": to_np(crd.teacher_memory)}
    heads = {"student": crd.student_embedding, "teacher": crd.teacher_embedding}
    crd.compute_loss(ModelOutputs(None, ops.convert_to_tensor(ft, "float32")),
                     ModelOutputs(None, ops.convert_to_tensor(fs, "float32")),
                     Batch(ops.convert_to_tensor([0, 1, 0, 1, 0], "int32"), ops.convert_to_tensor(indices, "int32")),
                     training=True)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    for side, features, memory in (("student", fs, crd.student_memory), ("teacher", ft, crd.teacher_memory)):
        kernel, bias = (to_np(w) for w in heads[side].weights)
        embedding = unit(features @ kernel + bias)
        expected = old[side].copy()
        expected[indices] = unit(momentum * old[side][indices] + (1 - momentum) * embedding)
        np.testing.assert_allclose(to_np(memory), expected, rtol=1e-5, atol=1e-6, err_msg=side)
