"""Augmentation strategies: exact where they are exact, statistical where they are random."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats

from keras_calikd import augmentations
from keras_calikd.augmentations import sampling
from tiny import repeated


def batch(rng, n=32, size=32, channels=3):
    images = rng.uniform(0.5, 1.5, size=(n, size, size, channels)).astype("float32")  # never 0
    return ops.convert_to_tensor(images), ops.arange(n, dtype="int32")  # label i == index i reveals the permutation


def to_np(x):
    return ops.convert_to_numpy(x)


def test_mixup_pixels_are_the_convex_combination(rng):
    images, labels = batch(rng)
    out = augmentations.MixUp(alpha=0.4, seed=1).augment(images, labels)
    lam, perm, x = float(out.lam), to_np(out.partner_labels), to_np(images)
    assert sorted(perm.tolist()) == list(range(32))  # a permutation of the batch
    np.testing.assert_allclose(to_np(out.images), lam * x + (1 - lam) * x[perm], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(to_np(out.labels), np.arange(32))
    assert float(out.sources) == 2.0


def test_beta_one_one_is_uniform():
    draws = to_np(sampling.beta((40000,), 1.0, 1.0, keras.random.SeedGenerator(3)))
    np.testing.assert_allclose(np.quantile(draws, [0.1, 0.25, 0.5, 0.75, 0.9]), [0.1, 0.25, 0.5, 0.75, 0.9], atol=0.01)


@pytest.mark.parametrize("a, b", [(0.4, 2.0), (3.0, 0.7), (2.0, 5.0)])
def test_beta_sampler_follows_beta_with_unequal_parameters(a, b):
    """Kolmogorov-Smirnov against Beta(a, b), below and above 1: with a == b a wrong gamma sampler cancels out."""
    # 400,000 draws: enough to tell apart a squeeze constant or an acceptance test slightly off (measured on a
    # NumPy copy of the sampler: KS p-values of 1e-8 to 1e-32 for Beta(2, 5) and Beta(3, 0.7)).
    draws = to_np(sampling.beta((400000,), a, b, keras.random.SeedGenerator(11)))
    assert stats.kstest(draws, stats.beta(a, b).cdf).pvalue > 1e-4


@pytest.mark.parametrize("concentration", [0.4, 1.0, 3.0])
def test_gamma_variates_are_marsaglia_and_tsangs_on_the_samplers_own_proposals(concentration):
    """Exact, where the tests above are statistical: given the normal and uniform proposals it draws, the sampler
    returns log(d * v) of the first proposal that Marsaglia and Tsang's test accepts, times U**(1/k) below 1."""
    shape, tiny = (512,), np.finfo(np.float32).tiny
    got = to_np(sampling._log_gamma_variate(shape, concentration, keras.random.SeedGenerator(5)))
    seeds = keras.random.SeedGenerator(5)  # the same draws, in the sampler's order: normals, uniforms, boost
    proposals = (sampling.PROPOSALS,) + shape
    x = to_np(keras.random.normal(proposals, seed=seeds)).astype(np.float64)
    u = to_np(keras.random.uniform(proposals, minval=tiny, maxval=1.0, seed=seeds)).astype(np.float64)
    k = concentration if concentration >= 1.0 else concentration + 1.0  # Gamma(k) = Gamma(k + 1) U**(1/k), k < 1
    d = k - 1.0 / 3.0
    v = (1.0 + x / np.sqrt(9.0 * d)) ** 3
    with np.errstate(invalid="ignore", divide="ignore"):
        accepted = (v > 0) & (np.log(u) < 0.5 * x ** 2 + d - d * v + d * np.log(v))
    assert accepted.any(axis=0).all()
    gamma = d * v[np.argmax(accepted, axis=0), np.arange(shape[0])]
    if concentration < 1.0:
        gamma *= to_np(keras.random.uniform(shape, minval=tiny, maxval=1.0, seed=seeds)).astype(np.float64) ** (
            1.0 / concentration)
    np.testing.assert_allclose(got, np.log(gamma), rtol=1e-5, atol=2e-5)


def test_cutmix_pastes_one_box_whose_area_matches_lambda(rng):
    images, labels = batch(rng)
    x = to_np(images)
    for seed in range(5):
        out = augmentations.CutMix(probability=1.0, seed=seed).augment(images, labels)
        mixed, perm, lam = to_np(out.images), to_np(out.partner_labels), float(out.lam)
        changed = np.any(mixed != x, axis=-1)  # (B, H, W)
        box = changed[perm != np.arange(32)][0]
        rows, cols = np.nonzero(box)
        if rows.size:  # the region is a full rectangle
            assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        np.testing.assert_allclose(1.0 - box.sum() / (32 * 32), lam, atol=1e-6)
        # Inside the box every image holds its partner's pixels, outside its own.
        np.testing.assert_array_equal(mixed[:, box], x[perm][:, box])
        np.testing.assert_array_equal(mixed[:, ~box], x[:, ~box])
        assert float(out.sources) == 2.0


def test_cutmix_not_applied_is_the_clean_batch(rng):
    images, labels = batch(rng)
    out = augmentations.CutMix(probability=0.0, seed=0).augment(images, labels)
    np.testing.assert_array_equal(to_np(out.images), to_np(images))
    assert float(out.lam) == 1.0 and float(out.sources) == 1.0


def test_cutmix_is_applied_to_about_half_of_the_batches(rng):
    images, _ = batch(rng, n=4, size=8)
    sources = repeated(augmentations.CutMix(seed=11), to_np(images), 200)[2]
    assert set(np.unique(sources)) == {1.0, 2.0}
    assert 0.36 < np.mean(sources == 2.0) < 0.64  # Binomial(200, 0.5): 4 standard deviations


def test_cutout_zeroes_a_clipped_square_per_image(rng):
    images, labels = batch(rng, n=64)
    out = augmentations.Cutout(size=16, seed=5).augment(images, labels)
    holes = to_np(out.images) == 0
    np.testing.assert_array_equal(holes, np.repeat(holes[..., :1], 3, axis=-1))  # same pixels in every channel
    areas = holes[..., 0].sum(axis=(1, 2))
    assert areas.max() == 16 * 16 and np.all(areas <= 256) and np.all(areas > 0)
    for hole in holes[..., 0]:
        rows, cols = np.nonzero(hole)
        assert hole[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        if hole.sum() == 256:
            assert rows.max() - rows.min() == 15 and cols.max() - cols.min() == 15
    assert float(out.lam) == 1.0 and float(out.sources) == 1.0
    np.testing.assert_array_equal(to_np(out.partner_labels), to_np(labels))


def test_cutout_options(rng):
    images, labels = batch(rng, n=8)
    out = augmentations.Cutout(size=4, num_holes=3, fill_value=-1.0, seed=2).augment(images, labels)
    filled = (to_np(out.images) == -1.0)[..., 0].sum(axis=(1, 2))
    assert np.all(filled <= 3 * 16) and np.all(filled > 0)


@pytest.mark.parametrize("strategy", [augmentations.MixUp(seed=1), augmentations.CutMix(probability=1.0, seed=1),
                                      augmentations.Cutout(size=4, seed=1)])
@pytest.mark.parametrize("floatx", ["float32", "float16"])
def test_augmented_images_keep_the_dtype_and_the_rest_is_float32(rng, strategy, floatx):
    images, labels = batch(rng, n=4, size=8)
    keras.config.set_floatx(floatx)  # the images keep theirs, lam and sources stay float32, whatever floatx
    out = strategy.augment(ops.cast(images, "float16"), labels)
    assert keras.backend.standardize_dtype(out.images.dtype) == "float16"
    for value in (out.lam, out.sources):
        assert keras.backend.standardize_dtype(ops.convert_to_tensor(value).dtype) == "float32"


def test_identity_returns_the_clean_batch(rng):
    images, labels = batch(rng, n=4)
    identity = augmentations.Identity()
    out = identity.augment(images, labels)
    assert out.images is images and not identity.transforms_images


def test_teacher_label_source_uses_teacher_argmax():
    teacher_logits = ops.convert_to_tensor(np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 1.0]], "float32"))
    labels = ops.convert_to_tensor(np.array([2, 2], "int32"))
    selected = augmentations.MixUp(label_source="teacher").select_labels(labels, teacher_logits)
    np.testing.assert_array_equal(to_np(selected), [1, 0])
    assert keras.backend.standardize_dtype(selected.dtype) == "int32"
    assert augmentations.MixUp().select_labels(labels, teacher_logits) is labels


@pytest.mark.parametrize("floatx", ["float32", "float16"])  # float16: logits of floatx, computed in float32
def test_mixed_cross_entropy_matches_reference(rng, floatx):
    keras.config.set_floatx(floatx)
    logits = rng.normal(scale=3.0, size=(6, 4)).astype(floatx)
    y, y2, lam = np.array([0, 1, 2, 3, 0, 1]), np.array([1, 1, 0, 2, 3, 3]), 0.3
    z = logits.astype("float64")
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected = np.mean(-lam * log_p[np.arange(6), y] - (1 - lam) * log_p[np.arange(6), y2])
    got = augmentations.mixed_cross_entropy(ops.convert_to_tensor(logits), ops.convert_to_tensor(y, "int32"),
                                            ops.convert_to_tensor(y2, "int32"), lam)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_mixup_default_alpha_is_the_papers():
    assert augmentations.MixUp().alpha == 0.4


def test_mixup_lam_and_sources_are_float32_whatever_floatx(rng):
    images, labels = batch(rng, n=4, size=4)
    keras.config.set_floatx("float16")
    out = augmentations.MixUp(seed=2).augment(images, labels)
    assert keras.backend.standardize_dtype(out.lam.dtype) == "float32"
    assert keras.backend.standardize_dtype(out.sources.dtype) == "float32" and float(out.sources) == 2.0


MEAN_STD = (np.array([0.25, 0.5, 0.75], "float32"), np.ones(3, "float32"))


@pytest.mark.parametrize("fill_value, normalization, expected", [
    ("mean", MEAN_STD, MEAN_STD[0]),  # as the Distiller builds it, with the student's (mean, std): the mean colour
    (-2.0, MEAN_STD, -2.0),           # a number goes into every channel, normalisation or not
    ("mean", None, 0.0),              # no normalisation: zero
])
def test_built_cutout_fills_its_holes(rng, fill_value, normalization, expected):
    """On 6x10 images, with holes as large as their shorter side."""
    _, labels = batch(rng, n=8, size=8)
    images = ops.convert_to_tensor(rng.uniform(1.0, 2.0, (8, 6, 10, 3)).astype("float32"))  # never a fill value
    cutout = augmentations.Cutout(size=6, fill_value=fill_value, seed=3)
    cutout.build((None, 6, 10, 3), 10, normalization)
    recorded = cutout.input_normalization  # the base's record (a tuple Keras tracks as its own kind)
    assert cutout.num_classes == 10
    assert recorded is None if normalization is None else np.array_equal(recorded, normalization)
    out = to_np(cutout.augment(images, labels).images)
    holes = (out != to_np(images)).any(axis=-1)
    assert holes.any()
    np.testing.assert_array_equal(out[holes], np.broadcast_to(expected, (holes.sum(), 3)))


def test_cutout_holes_may_not_exceed_the_shorter_side():
    with pytest.raises(ValueError, match=r"`size` \(7\) is larger than the 6x10 images"):
        augmentations.Cutout(size=7).build((None, 6, 10, 3), 10, None)


def test_cutout_same_seed_same_holes(rng):
    images, labels = batch(rng, n=8, size=8)
    first, second = (to_np(augmentations.Cutout(size=4, seed=9).augment(images, labels).images) for _ in range(2))
    np.testing.assert_array_equal(first, second)


def test_cutout_defaults_are_the_papers():
    cutout = augmentations.Cutout()
    assert (cutout.size, cutout.num_holes, cutout.fill_value) == (16, 1, "mean")


@pytest.mark.parametrize("strategy, arguments, message", [
    (augmentations.MixUp, dict(alpha=0), "MixUp: `alpha` must be > 0, got 0.0."),
    (augmentations.CutMix, dict(alpha=0), "CutMix: `alpha` must be > 0, got 0.0."),
    (augmentations.CutMix, dict(probability=1.5), "CutMix: `probability` must be in [0, 1], got 1.5."),
    (augmentations.CutMix, dict(label_source="teachers"),
     "CutMix: `label_source` must be one of 'ground_truth', 'teacher', got 'teachers'."),
    (augmentations.Cutout, dict(size=0), "Cutout: `size` must be a positive integer, got 0."),
    (augmentations.Cutout, dict(num_holes=1.5), "Cutout: `num_holes` must be an integer >= 1, got 1.5."),
    (augmentations.Cutout, dict(fill_value="grey"), "Cutout: `fill_value` must be a finite number, got 'grey'."),
    (augmentations.GridMask, dict(fill_mode="random"),
     "GridMask: `fill_mode` must be one of 'constant', 'gaussian_noise', got 'random'."),
    (augmentations.FourierMix, dict(decay_power=0), "FourierMix: `decay_power` must be > 0, got 0.0."),
    (augmentations.AugMix, dict(chain_depth=0), "AugMix: `chain_depth` must be a positive integer, got 0."),
    (augmentations.RandAugment, dict(value_range=(1, 0)),
     "RandAugment: `value_range` must be a pair (low, high) with low < high, got (1, 0)."),
])
def test_bad_argument_messages_name_the_class_and_the_argument(strategy, arguments, message):
    with pytest.raises(ValueError) as error:
        strategy(**arguments)
    assert str(error.value) == message


def test_same_seed_same_augmentation(rng):
    images, labels = batch(rng, n=8)
    first = augmentations.CutMix(probability=1.0, seed=9).augment(images, labels)
    second = augmentations.CutMix(probability=1.0, seed=9).augment(images, labels)
    np.testing.assert_array_equal(to_np(first.images), to_np(second.images))


def test_cutmix_defaults_are_the_papers():
    cutmix = augmentations.CutMix()
    assert (cutmix.alpha, cutmix.probability, cutmix.label_source) == (1.0, 0.5, "ground_truth")


def test_cutmix_lambda_is_the_uncovered_fraction_exactly_whatever_floatx(rng):
    """On 64x64 images, boxes of more than 2048 pixels: counted exactly, not in floatx float16."""
    keras.config.set_floatx("float16")
    images = ops.convert_to_tensor(rng.uniform(0.5, 1.5, (4, 64, 64, 1)).astype("float32"))  # no two pixels equal
    labels = ops.arange(4, dtype="int32")
    cutmix = augmentations.CutMix(probability=1.0, seed=3)
    areas = []
    for _ in range(8):
        out = cutmix.augment(images, labels)
        np.testing.assert_array_equal(to_np(out.labels), to_np(labels))
        moved = to_np(out.partner_labels) != to_np(labels)  # rows whose partner is another image
        changed = (to_np(out.images) != to_np(images))[..., 0].sum(axis=(1, 2))
        area = int(changed[moved].max()) if moved.any() else 0
        assert keras.backend.standardize_dtype(ops.convert_to_tensor(out.lam).dtype) == "float32"
        assert float(out.lam) == 1.0 - area / 4096
        areas.append(area)
    assert max(areas) > 2048


def test_layer_arguments_survive_the_config_round_trip():
    mixup = augmentations.MixUp(alpha=0.3, seed=4, name="mix", dtype="float16", label_source="teacher")
    again = augmentations.MixUp.from_config(mixup.get_config())
    assert (again.alpha, again.seed, again.name, again.label_source) == (0.3, 4, "mix", "teacher")
    assert again.dtype_policy.name == "float16"


@pytest.mark.parametrize("floatx", ["float32", "float16"])  # float16: logits of floatx, computed in float32
def test_the_loss_of_soft_targets_is_their_cross_entropy(rng, floatx):
    keras.config.set_floatx(floatx)
    logits = rng.normal(size=(5, 3)).astype(floatx)
    targets = rng.dirichlet(np.ones(3), size=5).astype("float32")
    z = logits.astype("float64")
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    augmented = augmentations.AugmentedBatch(images=None, labels=None, partner_labels=None, lam=None, sources=None,
                                             targets=ops.convert_to_tensor(targets))
    got = augmentations.Identity().loss(augmented, ops.convert_to_tensor(logits))
    np.testing.assert_allclose(float(got), np.mean(-(targets * log_p).sum(axis=1)), rtol=1e-6)


@pytest.mark.parametrize("name, arguments", [("mixup", {}), ("cutmix", {"probability": 1.0}),
                                                   ("cutout", {"size": 4})])
def test_a_built_augmentation_called_as_a_layer_augments_the_batch(rng, name, arguments):
    x, y = batch(rng, n=4, size=8)
    called, direct = (augmentations.AUGMENTATIONS.get(name)(seed=5, **arguments) for _ in range(2))
    for strategy in (called, direct):
        strategy.build(x.shape, 4, None)
    by_call, by_augment = called(x, y), direct.augment(x, y)
    for field in ("images", "labels", "partner_labels", "lam", "sources"):
        np.testing.assert_array_equal(to_np(getattr(by_call, field)), to_np(getattr(by_augment, field)), err_msg=field)
    assert not np.array_equal(to_np(by_call.images), to_np(x))  # the batch was augmented
