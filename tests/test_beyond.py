"""Beyond the paper: DKD, logit-standardised KD, label smoothing and focal loss.

Each strategy is checked against a NumPy reference written from its paper's
definition (float64), through the Distiller (by name, every augmentation, XLA
fit), through gin, and through `get_config`.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from keras_calikd.augmentations import FocalLoss, LabelSmoothing
from keras_calikd.distillations import DKD, KD, LSKD, Batch, ModelOutputs
from tiny import blobs, dense_model, tiny_cnn


def tensor(x, dtype="float32"):
    return ops.convert_to_tensor(np.asarray(x).astype(dtype))


def outputs(logits):
    return ModelOutputs(tensor(logits))


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def kl_rows(p, q):
    """KL(p || q) per row of two probability tables (0 log 0 = 0)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0)
    return terms.sum(axis=1)


# ---------------------------------------------------------------- NumPy references, from the papers

def reference_dkd(teacher, student, labels, alpha, beta, temperature, epoch_from_one, warmup):
    """Zhao et al. 2022: alpha * TCKD + beta * NCKD, each KL * T^2 averaged over the batch, times the warm-up.

    The binary distributions are (p_t, 1 - p_t); the non-target ones are p_k / (1 - p_t) over k != t. The
    warm-up factor is min(epoch / warmup, 1) with epochs counted from 1, as in the authors' training loop.
    """
    p_t = softmax(np.asarray(teacher, np.float64) / temperature)
    p_s = softmax(np.asarray(student, np.float64) / temperature)
    rows = np.arange(len(labels))
    others = np.ones_like(p_t, dtype=bool)
    others[rows, labels] = False
    o_t, o_s = p_t[others].reshape(len(labels), -1), p_s[others].reshape(len(labels), -1)
    # 1 - p_t written as the sum of the other classes' probabilities (exact when p_t rounds to 1).
    b_t = np.stack([p_t[rows, labels], o_t.sum(axis=1)], axis=1)
    b_s = np.stack([p_s[rows, labels], o_s.sum(axis=1)], axis=1)
    n_t, n_s = o_t / b_t[:, 1:], o_s / b_s[:, 1:]
    tckd = kl_rows(b_t, b_s).mean() * temperature ** 2
    nckd = kl_rows(n_t, n_s).mean() * temperature ** 2
    factor = 1.0 if warmup == 0 else min(epoch_from_one / warmup, 1.0)
    return factor * (alpha * tckd + beta * nckd)


def reference_lskd(teacher, student, temperature):
    """Sun et al. 2024, Algorithm 1: z-score each row (mean, population std), softmax(Z / T), batch-mean KL * T^2."""
    def z_score(z):
        z = np.asarray(z, np.float64)
        return (z - z.mean(axis=1, keepdims=True)) / z.std(axis=1, keepdims=True)

    p_t, p_s = softmax(z_score(teacher) / temperature), softmax(z_score(student) / temperature)
    return kl_rows(p_t, p_s).mean() * temperature ** 2


def reference_label_smoothing(logits, labels, epsilon):
    """Cross-entropy with targets (1 - eps) one_hot + eps / K (Szegedy et al. 2016)."""
    k = logits.shape[1]
    targets = (1 - epsilon) * np.eye(k)[labels] + epsilon / k
    return -(targets * np.log(softmax(np.asarray(logits, np.float64)))).sum(axis=1).mean()


def reference_focal(logits, labels, gamma):
    """-(1 - p_y)^gamma log p_y averaged over the batch (Lin et al. 2017; Mukhoti et al. 2020)."""
    p = softmax(np.asarray(logits, np.float64))[np.arange(len(labels)), labels]
    return (-(1 - p) ** gamma * np.log(p)).mean()


# ---------------------------------------------------------------- losses against the references

def test_dkd_matches_reference(rng):
    for temperature in (1.0, 4.0):
        for epoch, warmup in [(0, 20), (4, 20), (19, 20), (35, 20), (0, 0), (3, 1)]:
            teacher, student = rng.normal(scale=4.0, size=(2, 12, 7))
            labels = rng.integers(0, 7, 12)
            dkd = DKD(alpha=1.5, beta=8.0, temperature=temperature, warmup=warmup)
            loss = dkd.compute_loss(outputs(teacher), outputs(student),
                                    Batch(labels=tensor(labels, "int32"), epoch=tensor(epoch, "int32")))
            # Our epochs count from 0, the reference's from 1: epoch e here is epoch e + 1 there.
            expected = reference_dkd(teacher, student, labels, 1.5, 8.0, temperature, epoch + 1, warmup)
            np.testing.assert_allclose(float(loss), expected, rtol=2e-5, err_msg=f"T={temperature}, epoch={epoch}")


def test_dkd_warmup_factor_and_extreme_logits(rng):
    dkd = DKD(warmup=20)
    factors = [float(dkd.warmup_factor(tensor(e, "int32"))) for e in (0, 1, 18, 19, 20, 100)]
    np.testing.assert_allclose(factors, [1 / 20, 2 / 20, 19 / 20, 1.0, 1.0, 1.0], rtol=1e-6)
    # A certain teacher (p_t = 1 in float32): the terms stay finite and match the float64 reference.
    teacher = rng.normal(size=(6, 5)) + 60.0 * np.eye(5)[[0, 1, 2, 3, 4, 0]]
    student = rng.normal(scale=3.0, size=(6, 5))
    labels = np.array([0, 1, 2, 3, 4, 1])
    loss = DKD(temperature=1.0, warmup=0).compute_loss(outputs(teacher), outputs(student),
                                                      Batch(labels=tensor(labels, "int32")))
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(loss), reference_dkd(teacher, student, labels, 1.0, 8.0, 1.0, 1, 0),
                               rtol=1e-4)


def test_dkd_decomposes_kd(rng):
    """The paper's identity KD = TCKD + (1 - p_t^T) NCKD, per sample, checked on one-sample batches."""
    for _ in range(3):
        teacher, student = rng.normal(scale=3.0, size=(2, 1, 6))
        label = int(rng.integers(0, 6))
        p_target = softmax(teacher / 2.0)[0, label]
        dkd = DKD(alpha=1.0, beta=1.0 - p_target, temperature=2.0, warmup=0)
        kd = KD(temperature=2.0, reduction="batchmean")
        batch = Batch(labels=tensor([label], "int32"))
        np.testing.assert_allclose(float(dkd.compute_loss(outputs(teacher), outputs(student), batch)),
                                   float(kd.compute_loss(outputs(teacher), outputs(student), batch)), rtol=1e-4)


def test_lskd_matches_reference(rng):
    for temperature in (1.0, 2.0, 4.0):
        teacher = rng.normal(loc=3.0, scale=6.0, size=(10, 9))
        student = rng.normal(scale=0.5, size=(10, 9))
        loss = LSKD(temperature=temperature).compute_loss(outputs(teacher), outputs(student), Batch(None))
        np.testing.assert_allclose(float(loss), reference_lskd(teacher, student, temperature), rtol=1e-4)


def test_lskd_ignores_logit_shift_and_scale_but_kd_does_not(rng):
    teacher, student = rng.normal(size=(2, 8, 5))
    base = float(LSKD().compute_loss(outputs(teacher), outputs(student), Batch(None)))
    moved = float(LSKD().compute_loss(outputs(7.0 * teacher - 3.0), outputs(0.2 * student + 11.0), Batch(None)))
    np.testing.assert_allclose(moved, base, rtol=1e-4)
    kd = KD(temperature=2.0, reduction="batchmean")
    assert abs(float(kd.compute_loss(outputs(7.0 * teacher - 3.0), outputs(student), Batch(None)))
               - float(kd.compute_loss(outputs(teacher), outputs(student), Batch(None)))) > 0.1
    # A row of equal logits standardises to zeros (uniform), not NaN.
    flat = float(LSKD().compute_loss(outputs(np.ones((2, 5))), outputs(student[:2]), Batch(None)))
    assert np.isfinite(flat)


def test_label_smoothing_targets_and_loss(rng):
    for epsilon in (0.0, 0.1, 0.4):
        logits, labels = rng.normal(scale=3.0, size=(9, 6)), rng.integers(0, 6, 9)
        smoothing = LabelSmoothing(epsilon=epsilon)
        smoothing.build((None, 4, 4, 1), num_classes=6)
        augmented = smoothing.augment(ops.ones((9, 4, 4, 1)), tensor(labels, "int32"))
        targets = ops.convert_to_numpy(augmented.targets)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(targets[np.arange(9), labels], 1 - epsilon + epsilon / 6, rtol=1e-6)
        np.testing.assert_allclose(float(smoothing.loss(augmented, tensor(logits))),
                                   reference_label_smoothing(logits, labels, epsilon), rtol=1e-5)
    with pytest.raises(ValueError, match="number of classes"):
        LabelSmoothing().augment(ops.ones((2, 4, 4, 1)), tensor([0, 1], "int32"))  # never built


def test_focal_loss_matches_reference(rng):
    for gamma in (0.0, 0.5, 1.0, 3.0):
        logits, labels = rng.normal(scale=3.0, size=(11, 4)), rng.integers(0, 4, 11)
        focal = FocalLoss(gamma=gamma)
        augmented = focal.augment(ops.ones((11, 2, 2, 1)), tensor(labels, "int32"))
        np.testing.assert_allclose(float(focal.loss(augmented, tensor(logits))),
                                   reference_focal(logits, labels, gamma), rtol=1e-5)
        # A certain, correct prediction (p_y = 1 in float32) has a finite loss.
        certain = tensor([[80.0, 0.0, 0.0, 0.0]])
        assert np.isfinite(float(focal.loss(focal.augment(ops.ones((1, 2, 2, 1)), tensor([0], "int32")), certain)))


# ---------------------------------------------------------------- through the Distiller

@pytest.mark.parametrize("augmentation", ["label_smoothing", "focal"])
def test_calibration_baselines_are_the_augmentation_term_of_the_step(rng, augmentation):
    teacher, student = dense_model(name="t"), dense_model(name="s")
    distiller = ck.Distiller(teacher, student, distillation="kd", augmentation=augmentation, alpha=0.5)
    x = rng.normal(size=(8, 3, 3, 1)).astype("float32")
    y = (np.arange(8) % 4).astype("int32")
    step = distiller.compute_step_losses((tensor(x), tensor(y, "int32")))
    logits = np.asarray(student.predict(x, verbose=0), np.float64)  # the clean pass is reused: same logits
    expected = (reference_label_smoothing(logits, y, 0.1) if augmentation == "label_smoothing"
                else reference_focal(logits, y, 3.0))
    np.testing.assert_allclose(float(step.augmentation), expected, rtol=1e-5)
    np.testing.assert_allclose(float(step.loss), 0.5 * float(step.distillation) + 0.5 * expected, rtol=1e-5)
    assert not distiller.augmentation.transforms_images


AUGMENTATIONS = {"none": "", "mixup": " + mixup", "cutmix": " + CutMix", "cutout": " + cutout",
                 "label_smoothing": " + label smoothing", "focal": " + focal"}


@pytest.mark.parametrize("augmentation", sorted(AUGMENTATIONS))
def test_logit_distillers_combine_with_every_augmentation(rng, augmentation):
    chosen = ck.augmentations.Cutout(size=4) if augmentation == "cutout" else augmentation  # 8x8 images
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=["dkd", "lskd"],
                             augmentation=chosen)
    x, y = blobs(8)
    batch = Batch(labels=tensor(y, "int32"))
    teacher = outputs(distiller.teacher(x, training=False))
    student = outputs(distiller.student(x, training=True))  # batch statistics, as in the training step
    terms = [float(d.compute_loss(teacher, student, batch)) for d in distiller.distillations]
    step = distiller.compute_step_losses((tensor(x), tensor(y, "int32")))
    assert np.isfinite(float(step.loss)) and min(terms) > 0
    # Eq. 12: the clean-batch term counts once per source (2 for mixup; CutMix applies with probability 0.5).
    sources = {"mixup": [2.0], "cutmix": [1.0, 2.0]}.get(augmentation, [1.0])
    ratio = float(step.distillation) / sum(terms)
    assert min(abs(ratio - s) for s in sources) < 1e-4, (ratio, sources)
    assert ck.training.method_label(distiller) == "DKD + LSKD" + AUGMENTATIONS[augmentation]


def test_dkd_warmup_follows_the_epochs_of_a_compiled_fit(rng):
    """With a frozen student (learning rate 0) the DKD term grows as 1/20, 2/20, 3/20 over three epochs."""
    x = rng.normal(size=(32, 3, 3, 1)).astype("float32")
    y = (np.arange(32) % 4).astype("int32")
    distiller = ck.Distiller(dense_model(name="t"), dense_model(name="s"), distillation="dkd")
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=True)
    losses = distiller.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False).history["distillation_loss"]
    np.testing.assert_allclose(np.array(losses) / losses[0], [1.0, 2.0, 3.0], rtol=1e-4)


# ---------------------------------------------------------------- serialisation (gin and each strategy's config:
# tests/test_conformance.py)

def test_distiller_config_round_trip_with_the_new_strategies():
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=[DKD(beta=4.0), LSKD(weight=2.0)],
                             augmentation=FocalLoss(gamma=2.0))
    clone = ck.Distiller.from_config(distiller.get_config())
    assert [type(d) for d in clone.distillations] == [DKD, LSKD] and clone.distillations[0].beta == 4.0
    assert clone.augmentation.gamma == 2.0 and clone.get_config() == distiller.get_config()


def test_bad_arguments_fail_at_construction():
    for make, message in [
        (lambda: DKD(alpha=-1.0), "DKD: `alpha` must be >= 0"),
        (lambda: DKD(beta=float("nan")), "DKD: `beta` must be a finite number"),
        (lambda: DKD(temperature=0.0), "DKD: `temperature` must be > 0"),
        (lambda: DKD(warmup=-1), "DKD: `warmup` must be an integer >= 0"),
        (lambda: DKD(warmup=2.5), "DKD: `warmup`"),
        (lambda: LSKD(temperature=-2.0), "LSKD: `temperature` must be > 0"),
        (lambda: LSKD(reduction="sum"), "LSKD: `reduction` must be one of"),
        (lambda: LabelSmoothing(epsilon=1.0), r"LabelSmoothing: `epsilon` must be in \[0, 1\)"),
        (lambda: LabelSmoothing(epsilon=-0.1), "LabelSmoothing: `epsilon`"),
        (lambda: FocalLoss(gamma=-1.0), "FocalLoss: `gamma` must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            make()


def test_dkd_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        ck.Distiller(dense_model(1, name="t"), dense_model(1, name="s"), distillation="dkd")
