"""The keras-cv strategies (GridMask, FourierMix, AugMix, RandAugment): exact where they can be, trained end to end.

On the TensorFlow backend every strategy is checked on its outputs and trained
through `Distiller.fit`. On other backends (the suite also runs with
KERAS_BACKEND=jax) the same tests assert that construction fails with the
backend message. The missing-keras-cv message is checked in a subprocess that
hides keras-cv; the backend message on the TensorFlow run in a JAX subprocess.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
import keras_calikd.augmentations.keras_cv as kcv  # registers the names (a no-op once augmentations imports it)
from keras_calikd.augmentations import soft_cross_entropy
from tiny import tiny_cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ON_TF = keras.backend.backend() == "tensorflow"
HAS_KERAS_CV = importlib.util.find_spec("keras_cv") is not None
needs_keras_cv = pytest.mark.skipif(
    not HAS_KERAS_CV, reason='keras-cv is not installed: pip install "keras-calikd[keras-cv]" (CI installs it)')

NAMES = {"gridmask": kcv.GridMask, "fouriermix": kcv.FourierMix, "augmix": kcv.AugMix, "randaugment": kcv.RandAugment}
BACKEND_MESSAGE = r"only train on the TensorFlow backend.*KERAS_BACKEND=tensorflow"
INSTALL_MESSAGE = r'keras-cv is not installed\. Install the extra: pip install "keras-calikd\[keras-cv\]"'
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)  # any normalisation: the strategies must undo exactly this one


def construct(factory, *args, **kwargs):
    """`factory(...)` (a strategy class, or `augmentations.get`) on the TensorFlow backend; elsewhere asserts that
    construction fails with the backend message and returns None (the calling test then ends there)."""
    if ON_TF:
        return factory(*args, **kwargs)
    with pytest.raises(RuntimeError, match=BACKEND_MESSAGE):
        factory(*args, **kwargs)
    return None


def normalised(rng, n=8, size=16, channels=3, mean=MEAN, std=STD):
    """Random pixels in [0, 1], normalised per channel, and the pixels."""
    pixels = rng.uniform(0.0, 1.0, size=(n, size, size, channels)).astype("float32")
    return ((pixels - np.float32(mean[:channels])) / np.float32(std[:channels])).astype("float32"), pixels


def to_np(x):
    return ops.convert_to_numpy(x)


def run_python(code, backend, timeout=120):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


# ---------------------------------------------------------------- registration, missing keras-cv, backend


def test_names_are_registered_and_refuse_xla():
    for name, cls in NAMES.items():
        assert name in ck.augmentations.AUGMENTATIONS
        assert ck.augmentations.AUGMENTATIONS.get(name).__name__ == cls.__name__  # gin may have wrapped the entry
        assert issubclass(cls, ck.augmentations.Augmentation)
        assert cls.xla_compatible is False and cls.transforms_images is True


def test_without_keras_cv_the_library_imports_and_construction_says_what_to_install():
    # A JAX subprocess (quick to start): first with keras-cv hidden by a finder inserted before anything is
    # imported (the install check comes before the backend check, so the message is the same on TensorFlow),
    # then with keras-cv visible again, when the backend is what is missing.
    if importlib.util.find_spec("jax") is None:
        pytest.fail("These messages are checked in a JAX subprocess: install jax (the `test` extra has it).")
    result = run_python(f"""
        import sys

        class HideKerasCV:
            def find_spec(self, name, path=None, target=None):
                if name == "keras_cv" or name.startswith("keras_cv."):
                    raise ImportError("No module named 'keras_cv' (hidden by the test)")
                return None

        hide = HideKerasCV()
        sys.meta_path.insert(0, hide)
        import keras_calikd
        import keras_calikd.augmentations.keras_cv  # a no-op once keras_calikd.augmentations imports it

        def construct_all(error_type, tag):
            for name in {sorted(NAMES)!r}:
                try:
                    keras_calikd.augmentations.get(name)
                except error_type as error:
                    print(tag, name, error)
                else:
                    print("CONSTRUCTED", name)

        construct_all(ImportError, "INSTALL")
        sys.meta_path.remove(hide)
        construct_all((RuntimeError, ImportError), "BACKEND")  # ImportError: keras-cv really is missing
        print("KERAS_CV_IMPORTED", "keras_cv" in sys.modules)
    """, "jax")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CONSTRUCTED" not in result.stdout, result.stdout
    install = [line for line in result.stdout.splitlines() if line.startswith("INSTALL")]
    assert len(install) == len(NAMES), result.stdout
    for line in install:
        assert "wraps a keras-cv layer, but keras-cv is not installed" in line, line
        assert 'pip install "keras-calikd[keras-cv]"' in line, line
    if HAS_KERAS_CV:
        backend = [line for line in result.stdout.splitlines() if line.startswith("BACKEND")]
        assert len(backend) == len(NAMES), result.stdout
        for line in backend:
            assert "the Keras backend is 'jax'" in line and "KERAS_BACKEND=tensorflow" in line, line
    assert "KERAS_CV_IMPORTED False" in result.stdout  # nothing imports keras-cv before it can be used


def test_on_this_backend_construction_works_or_says_to_use_tensorflow():
    if not HAS_KERAS_CV:
        with pytest.raises(ImportError, match=INSTALL_MESSAGE):
            kcv.GridMask()
        return
    for name, cls in NAMES.items():
        strategy = construct(ck.augmentations.get, name)
        assert (type(strategy) is cls) if ON_TF else (strategy is None)


@pytest.mark.parametrize("cls,kwargs,message", [
    (kcv.GridMask, {"ratio_factor": 1.5}, r"`ratio_factor` must be in \[0.0, 1.0\]"),
    (kcv.GridMask, {"ratio_factor": (0.6, 0.2)}, r"`ratio_factor` must be a number or a pair \(lo, hi\)"),
    (kcv.GridMask, {"rotation_factor": -0.1}, r"`rotation_factor` must be in \[0.0, inf\]"),
    (kcv.GridMask, {"fill_mode": "random"}, r"`fill_mode` must be one of \('constant', 'gaussian_noise'\)"),
    (kcv.GridMask, {"fill_value": float("nan")}, r"`fill_value` must be a finite number"),
    (kcv.FourierMix, {"alpha": 0.0}, r"`alpha` must be in \(0.0, inf\]"),
    (kcv.FourierMix, {"decay_power": -1}, r"`decay_power` must be in \(0.0, inf\]"),
    (kcv.AugMix, {"severity": 0.0}, r"`severity` must be in \[0.01, 1.0\]"),
    (kcv.AugMix, {"num_chains": 0}, r"`num_chains` must be an integer >= 1"),
    (kcv.AugMix, {"chain_depth": (3, 1)}, r"`chain_depth` must be a pair \(lo, hi\) with lo <= hi"),
    (kcv.AugMix, {"chain_depth": 1.5}, r"`chain_depth` must be an integer >= 1"),
    (kcv.AugMix, {"mean": MEAN}, r"give both `mean` and `std`"),
    (kcv.AugMix, {"mean": MEAN, "std": (0.2, 0.0, 0.2)}, r"`std` must be positive"),
    (kcv.RandAugment, {"magnitude": 1.5}, r"`magnitude` must be in \[0.0, 1.0\]"),
    (kcv.RandAugment, {"rate": -0.5}, r"`rate` must be in \[0.0, 1.0\]"),
    (kcv.RandAugment, {"augmentations_per_image": 0}, r"`augmentations_per_image` must be an integer >= 1"),
    (kcv.RandAugment, {"geometric": "yes"}, r"`geometric` must be True or False"),
    (kcv.RandAugment, {"label_source": "teachers"}, r"`label_source` must be one of"),
])
def test_arguments_are_checked_at_construction(cls, kwargs, message):
    # The checks come before keras-cv is loaded: same message on every backend, with or without keras-cv.
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


# ---------------------------------------------------------------- what each strategy does

@needs_keras_cv
def test_gridmask_masks_part_of_each_image_and_keeps_the_rest(rng):
    images, _ = normalised(rng, n=16, size=32)
    labels = np.arange(16, dtype="int32")
    fractions = {}
    for ratio in (0.2, 0.7):
        keras.utils.set_random_seed(0)
        strategy = construct(kcv.GridMask, ratio_factor=(ratio, ratio), fill_value=-7.5, seed=3)
        if strategy is None:
            return
        out = strategy.augment(ops.convert_to_tensor(images), ops.convert_to_tensor(labels))
        masked = to_np(out.images)
        assert masked.shape == images.shape and masked.dtype == np.float32
        filled = np.all(masked == -7.5, axis=-1)  # (B, H, W): every channel of a masked pixel is the fill
        kept = np.all(masked == images, axis=-1)
        assert np.all(filled ^ kept)  # each pixel is either masked or exactly the input
        fractions[ratio] = filled.mean(axis=(1, 2))
        np.testing.assert_array_equal(to_np(out.labels), labels)
        np.testing.assert_array_equal(to_np(out.partner_labels), labels)
        assert float(out.lam) == 1.0 and float(out.sources) == 1.0 and out.targets is None
    assert np.all(fractions[0.7] > 0) and np.all(fractions[0.7] < 1)  # every image is partly masked
    assert 0.0 < fractions[0.2].mean() < 0.15 and 0.2 < fractions[0.7].mean() < 0.8  # about ratio ** 2 of it
    # Loss: plain cross-entropy with the image's own label.
    logits = rng.normal(size=(16, 16)).astype("float32")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(float(strategy.loss(out, ops.convert_to_tensor(logits))),
                               -log_probs[np.arange(16), labels].mean(), rtol=1e-5)


@needs_keras_cv
def test_gridmask_gaussian_noise_fills_part_of_the_image(rng):
    images, _ = normalised(rng, n=8, size=16)
    strategy = construct(kcv.GridMask, ratio_factor=(0.6, 0.6), fill_mode="gaussian_noise", seed=1)
    if strategy is None:
        return
    masked = to_np(strategy.augment(ops.convert_to_tensor(images), ops.zeros((8,), "int32")).images)
    changed = masked != images
    assert masked.shape == images.shape and np.isfinite(masked).all()
    assert np.array_equal(changed.any(-1), changed.all(-1))  # a pixel is masked in every channel or in none
    assert 0.05 < changed.mean() < 0.9
    noise = masked[changed]
    assert abs(noise.mean()) < 0.2 and 0.8 < noise.std() < 1.2  # standard normal fill


@needs_keras_cv
def test_fouriermix_targets_mix_the_own_label_and_the_partner_label_by_their_pixel_shares(rng):
    n, size, num_classes = 12, 16, 12
    images, _ = normalised(rng, n=n, size=size)
    labels = np.arange(n, dtype="int32")  # label i is image i: the targets name each image's partner
    keras.utils.set_random_seed(1)
    strategy = construct(kcv.FourierMix, alpha=1.0, seed=2)
    if strategy is None:
        return
    strategy.build((None, size, size, 3), num_classes=num_classes)
    out = strategy.augment(ops.convert_to_tensor(images), ops.convert_to_tensor(labels))
    mixed, targets = to_np(out.images), to_np(out.targets)
    assert mixed.shape == images.shape and mixed.dtype == np.float32
    assert targets.shape == (n, num_classes) and targets.dtype == np.float32
    assert float(out.sources) == 2.0
    np.testing.assert_array_equal(to_np(out.labels), labels)
    assert np.all(targets >= 0)
    np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-6)
    two_labels = 0
    for i in range(n):
        support = np.flatnonzero(targets[i] > 0)
        assert i in support and len(support) <= 2, targets[i]
        own = np.all(mixed[i] == images[i], axis=-1)  # (H, W)
        if len(support) == 2:
            two_labels += 1
            partner = int(support[support != i][0])
            from_partner = np.all(mixed[i] == images[partner], axis=-1)
            assert np.all(own ^ from_partner)  # every pixel is the image's own or its partner's
        else:
            assert own.all() or np.allclose(targets[i, i], 1.0)
        # The own label's weight is the share of own pixels (keras-cv keeps round(lam * H * W) of them).
        assert abs(targets[i, i] - own.mean()) <= 0.5 / size ** 2 + 1e-6
    assert two_labels >= n // 2  # images are mixed (a partner is the image itself with probability 1 / n)


@needs_keras_cv
def test_fouriermix_uses_the_labels_it_is_given_and_needs_num_classes(rng):
    images, _ = normalised(rng, n=4, size=8)
    strategy = construct(kcv.FourierMix, label_source="teacher", seed=0)
    if strategy is None:
        return
    with pytest.raises(ValueError, match="build it first"):
        strategy.augment(ops.convert_to_tensor(images), ops.zeros((4,), "int32"))
    strategy.build((None, 8, 8, 3), num_classes=5)
    # With label_source="teacher" the Distiller passes the teacher's argmax: here every image is class 3.
    teacher_logits = ops.convert_to_tensor(np.eye(5, dtype="float32")[[3, 3, 3, 3]])
    chosen = strategy.select_labels(ops.convert_to_tensor([0, 1, 2, 4], "int32"), teacher_logits)
    targets = to_np(strategy.augment(ops.convert_to_tensor(images), chosen).targets)
    np.testing.assert_allclose(targets, np.eye(5, dtype="float32")[[3, 3, 3, 3]], atol=1e-6)


@needs_keras_cv
def test_soft_target_loss_is_numpy_cross_entropy(rng):
    images, _ = normalised(rng, n=8, size=8)
    strategy = construct(kcv.FourierMix, seed=5)
    if strategy is None:
        return
    strategy.build((None, 8, 8, 3), num_classes=6)
    out = strategy.augment(ops.convert_to_tensor(images), ops.convert_to_tensor(rng.integers(0, 6, 8), "int32"))
    logits = rng.normal(size=(8, 6)).astype("float32") * 3
    targets = to_np(out.targets)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected = -(targets * log_probs).sum(-1).mean()
    np.testing.assert_allclose(float(strategy.loss(out, ops.convert_to_tensor(logits))), expected, rtol=1e-5)
    np.testing.assert_allclose(float(soft_cross_entropy(ops.convert_to_tensor(logits), out.targets)), expected,
                               rtol=1e-5)


@needs_keras_cv
@pytest.mark.parametrize("cls", [kcv.AugMix, kcv.RandAugment], ids=["augmix", "randaugment"])
@pytest.mark.parametrize("channels", [3, 1], ids=["rgb", "grey"])
def test_pixel_strategies_keep_shape_and_value_range(rng, cls, channels):
    mean, std = MEAN[:channels], STD[:channels]
    images, pixels = normalised(rng, n=6, size=16, channels=channels)
    keras.utils.set_random_seed(2)
    # RandAugment traces its whole policy once per augmentation: one per image keeps the grey case quick.
    extra = {"augmentations_per_image": 1} if cls is kcv.RandAugment and channels == 1 else {}
    strategy = construct(cls, mean=mean, std=std, seed=4, **extra)
    if strategy is None:
        return
    strategy.build((None, 16, 16, channels), num_classes=10)
    labels = np.arange(6, dtype="int32")
    out = strategy.augment(ops.convert_to_tensor(images), ops.convert_to_tensor(labels))
    augmented = to_np(out.images)
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    back = augmented * np.float32(std) + np.float32(mean)  # the output is normalised like the input
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5
    assert np.mean(np.abs(back - pixels) > 1e-3) > 0.2  # the images did change
    np.testing.assert_array_equal(to_np(out.labels), labels)
    assert float(out.sources) == 1.0 and out.targets is None


@needs_keras_cv
@pytest.mark.parametrize("cls", [kcv.AugMix, kcv.RandAugment], ids=["augmix", "randaugment"])
def test_pixel_strategies_refuse_a_normalisation_that_does_not_fit_the_images(rng, cls):
    images, _ = normalised(rng, n=2, size=8)  # normalised with MEAN/STD, so far outside [0, 1]
    strategy = construct(cls, seed=0)  # no mean/std: images are taken to be in [0, 1]
    if strategy is None:
        return
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"fall outside \[0, 1\]. Pass the per-channel `mean`"):
        strategy.augment(ops.convert_to_tensor(images), ops.zeros((2,), "int32"))
    wrong_channels = construct(cls, mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ValueError, match=r"`mean` has 2 values but the images have 3 channels"):
        wrong_channels.build((None, 8, 8, 3), num_classes=10)


@needs_keras_cv
@pytest.mark.parametrize("name", ["augmix", "fouriermix", "gridmask"])
def test_under_xla_the_layers_fail_to_compile(rng, name):
    # Why the classes say xla_compatible = False: keras-cv's kernels (image transforms, gamma sampling) have no
    # XLA version. If this starts failing, the layer compiles: revisit the flag. RandAugment fails the same way
    # (its equalize op's HistogramFixedWidth), but its graph takes ~10 s to try, so it is not repeated here.
    kwargs = {"mean": MEAN, "std": STD} if name == "augmix" else {}
    strategy = construct(NAMES[name], seed=0, **kwargs)
    if strategy is None:
        return
    import tensorflow as tf

    strategy.build((None, 8, 8, 3), num_classes=4)
    images, _ = normalised(rng, n=4, size=8)
    step = tf.function(lambda x, y: strategy.augment(x, y).images, jit_compile=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)xla|unsupported|compile"):
        step(tf.constant(images), tf.constant([0, 1, 2, 3]))


@needs_keras_cv
@pytest.mark.parametrize("name", sorted(NAMES))
def test_config_round_trip(name):
    cls = NAMES[name]
    kwargs = {
        "gridmask": dict(ratio_factor=(0.3, 0.6), rotation_factor=0.2, fill_value=-1.0),
        "fouriermix": dict(alpha=1.0, decay_power=2.0),
        "augmix": dict(severity=(0.2, 0.5), chain_depth=2, mean=MEAN, std=STD),
        "randaugment": dict(magnitude=0.3, geometric=False, mean=MEAN, std=STD),
    }[name]
    strategy = construct(cls, label_source="teacher", seed=9, **kwargs)
    if strategy is None:
        return
    config = strategy.get_config()
    assert config["label_source"] == "teacher" and config["seed"] == 9
    for key, value in kwargs.items():
        assert config[key] == (list(value) if isinstance(value, tuple) else value), key
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(clone) is cls and clone.get_config() == config


# ---------------------------------------------------------------- training through the Distiller


@needs_keras_cv
@pytest.mark.parametrize("name", sorted(NAMES))
def test_trains_through_the_distiller_without_xla(rng, name):
    kwargs = {"mean": MEAN, "std": STD} if name in ("augmix", "randaugment") else {}
    if name == "randaugment":
        kwargs["augmentations_per_image"] = 1  # a smaller graph to trace
    if name == "fouriermix":
        kwargs["label_source"] = "teacher"
    strategy = construct(NAMES[name], seed=1, **kwargs)
    if strategy is None:
        return
    images, _ = normalised(rng, n=32, size=8)
    labels = rng.integers(0, 10, 32).astype("int32")
    distiller = ck.Distiller(tiny_cnn(input_shape=(8, 8, 3), name="t"), tiny_cnn(input_shape=(8, 8, 3), name="s"),
                             augmentation=strategy)
    with pytest.raises(ValueError, match=f"{type(strategy).__name__} cannot run inside a compiled \\(XLA\\) step"):
        distiller.compile(optimizer="sgd", jit_compile=True)
    distiller.compile(optimizer=keras.optimizers.SGD(0.05))  # jit_compile="auto" is turned off
    assert distiller.jit_compile is False
    history = distiller.fit(images, labels, batch_size=16, epochs=1, verbose=0).history
    for key in ("loss", "distillation_loss", "augmentation_loss"):
        assert np.isfinite(history[key][0]) and history[key][0] > 0, (key, history)


# ---------------------------------------------------------------- gin


@needs_keras_cv
def test_gin_binds_the_options_and_the_experiment_files_parse():
    import gin

    from keras_calikd.gin_support import register_configurables

    register_configurables()
    try:
        with gin.unlock_config():
            gin.clear_config()
            gin.parse_config("""
                GridMask.ratio_factor = (0.3, 0.6)
                GridMask.fill_value = -1.5
                FourierMix.alpha = 1.0
                AugMix.num_chains = 2
                AugMix.mean = (0.5, 0.4, 0.3)
                AugMix.std = (0.25, 0.2, 0.3)
                RandAugment.magnitude = 0.2
                RandAugment.seed = 7
            """)
        expected = {"gridmask": {"ratio_factor": [0.3, 0.6], "fill_value": -1.5}, "fouriermix": {"alpha": 1.0},
                    "augmix": {"num_chains": 2, "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3]},
                    "randaugment": {"magnitude": 0.2, "seed": 7}}
        for name, values in expected.items():
            strategy = construct(ck.augmentations.get, name)
            if strategy is None:
                continue
            assert isinstance(strategy, NAMES[name])
            config = strategy.get_config()
            assert {key: config[key] for key in values} == values, name

        for name, cls in (("gridmask", kcv.GridMask), ("fouriermix", kcv.FourierMix)):
            cwd = os.getcwd()
            os.chdir(os.path.join(ROOT, "gin"))  # includes are relative to gin/, as tools/train.py reads them
            try:
                with gin.unlock_config():
                    gin.clear_config()
                    gin.parse_config_file(os.path.join(ROOT, "gin", f"cifar100_kd_{name}.gin"))
            finally:
                os.chdir(cwd)
            assert gin.query_parameter("Distiller.augmentation") == name
            assert gin.query_parameter("Distiller.distillation") == "kd"
            strategy = construct(ck.augmentations.get, name)
            if strategy is not None:
                assert type(strategy) is cls
    finally:
        with gin.unlock_config():
            gin.clear_config()
