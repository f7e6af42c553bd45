"""The Distiller: construction checks, the step's loss, frozen teacher, fit/evaluate/predict, serialization."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from keras_calikd.augmentations import Augmentation, AugmentedBatch
from tiny import blobs, dense_model, tiny_cnn, zoo_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compiled(distiller, **kwargs):
    """Compiled as Keras' "auto" does: XLA on JAX, a plain graph on TensorFlow (whose XLA compiles slowly on
    a CPU; `test_fit_lowers_the_loss_and_keeps_the_teacher` also trains under XLA on TensorFlow)."""
    kwargs.setdefault("jit_compile", "auto")
    distiller.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      metrics=["accuracy", ck.metrics.ExpectedCalibrationError(from_logits=True),
                               ck.metrics.OverconfidenceError(from_logits=True)], **kwargs)
    return distiller


# ---------------------------------------------------------------- construction checks

def test_alpha_must_be_in_unit_interval():
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"^Distiller: `alpha` must be in \[0, 1\], got {alpha}\.$"):
            ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), alpha=alpha)


def test_class_count_mismatch():
    with pytest.raises(ValueError, match="teacher predicts 10 classes but the student predicts 5"):
        ck.Distiller(tiny_cnn(10, name="t"), tiny_cnn(5, name="s"))


def test_input_shape_mismatch():
    with pytest.raises(ValueError, match=r"teacher takes inputs of shape \(8, 8, 1\) but the student takes \(8, 8, 3\)"):
        ck.Distiller(tiny_cnn(input_shape=(8, 8, 1), name="t"), tiny_cnn(input_shape=(8, 8, 3), name="s"))


def test_models_and_strategies_are_checked():
    with pytest.raises(TypeError, match="keras.Model"):
        ck.Distiller("vgg13", tiny_cnn(name="s"))
    with pytest.raises(ValueError, match="Unknown augmentation strategy 'mixpu'. Known names: .*mixup"):
        ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation="mixpu")
    with pytest.raises(ValueError, match="Unknown distillation strategy"):
        ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=["kd", "kdd"])


def test_compile_defaults_to_sgd_and_passes_jit_compile_on_as_keras_resolves_it():
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))
    distiller.compile()
    assert isinstance(distiller.optimizer, keras.optimizers.SGD)
    assert distiller.jit_compile is (keras.backend.backend() == "jax")  # "auto": XLA on JAX, not on a CPU TF
    for given in (True, False):
        distiller.compile(optimizer="sgd", jit_compile=given)
        assert distiller.jit_compile is given


def test_the_augmentation_is_built_with_the_class_count_and_the_students_input_normalisation():
    mean, std = np.array([0.5, 0.4, 0.3], "float32"), np.array([0.2, 0.25, 0.3], "float32")
    teacher = zoo_tiny(7, input_shape=(8, 8, 3), name="t")
    student = zoo_tiny(7, input_shape=(8, 8, 3), name="s", normalization=(mean, std))
    distiller = ck.Distiller(teacher, student, augmentation=ck.augmentations.Cutout(size=2))
    assert distiller.name == "distiller" and distiller.augmentation.num_classes == 7
    np.testing.assert_array_equal(distiller.augmentation.input_normalization[0], mean)
    np.testing.assert_array_equal(distiller.augmentation.input_normalization[1], std)


def test_compile_rejects_a_loss():
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))
    with pytest.raises(ValueError, match="takes no `loss`"):
        distiller.compile(optimizer="sgd", loss="mse")


def test_teacher_is_frozen_and_call_runs_the_student(rng):
    teacher, student = tiny_cnn(name="t"), tiny_cnn(name="s")
    distiller = ck.Distiller(teacher, student)
    assert not teacher.trainable
    teacher_ids = {id(v) for v in teacher.variables}
    assert teacher_ids.isdisjoint(id(v) for v in distiller.trainable_variables)
    assert {id(v) for v in student.trainable_variables} <= {id(v) for v in distiller.trainable_variables}
    x = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(distiller(x)), ops.convert_to_numpy(student(x)), rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(distiller({"image": x})), ops.convert_to_numpy(student(x)),
                               rtol=1e-6)
    # the training flag reaches the student (batch statistics), also when `call` is called as a function
    in_training = ops.convert_to_numpy(student(x, training=True))
    assert not np.allclose(in_training, ops.convert_to_numpy(student(x)), rtol=1e-3)
    np.testing.assert_allclose(ops.convert_to_numpy(distiller(x, training=True)), in_training, rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(distiller.call(x, training=True)), in_training, rtol=1e-6)


# ---------------------------------------------------------------- the step's loss

class ShiftAugmentation(Augmentation):
    """Deterministic two-source augmentation for testing: x + 1, partner = reversed batch, lam = 0.7."""

    def augment(self, images, labels):
        return AugmentedBatch(images=images + 1.0, labels=labels, partner_labels=ops.flip(labels, 0),
                              lam=ops.convert_to_tensor(0.7), sources=ops.convert_to_tensor(2.0))


class ShiftWithPlainLoss(ShiftAugmentation):
    """ShiftAugmentation whose loss (the mean logit) is computed in the type of the logits it is given."""

    def loss(self, augmented, logits):
        return ops.mean(logits)


def np_log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def np_scaled_kd(teacher_logits, student_logits, t):
    """The paper's scaled KD: KL(teacher || student) at temperature t, mean over batch and classes, times t^2."""
    log_pt, log_ps = np_log_softmax(teacher_logits / t), np_log_softmax(student_logits / t)
    return (np.exp(log_pt) * (log_pt - log_ps)).mean() * t * t


def np_shift_cross_entropy(logits, labels):
    """ShiftAugmentation's loss: 0.7 x CE at the labels + 0.3 x CE at the reversed labels, batch mean."""
    log_p, rows = np_log_softmax(logits), np.arange(len(labels))
    return np.mean(-0.7 * log_p[rows, labels] - 0.3 * log_p[rows, labels[::-1]])


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, None])
def test_step_loss_matches_reference(rng, alpha):
    teacher, student = dense_model(name="t"), dense_model(name="s")
    distiller = ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=3.0),
                             augmentation=ShiftAugmentation(), alpha=alpha)
    x = rng.normal(size=(6, 3, 3, 1)).astype("float32")
    y = np.array([0, 1, 2, 3, 0, 1], "int32")
    step = distiller.compute_step_losses((ops.convert_to_tensor(x), ops.convert_to_tensor(y)), training=True)

    zt, zs, za = (np.asarray(m.predict(v, verbose=0), np.float64) for m, v in
                  ((teacher, x), (student, x), (student, x + 1.0)))
    kd, ce = np_scaled_kd(zt, zs, 3.0), np_shift_cross_entropy(za, y)
    np.testing.assert_allclose(float(step.distillation), 2 * kd, rtol=1e-4)  # Eq. 12: both sources
    np.testing.assert_allclose(float(step.augmentation), ce, rtol=1e-5)
    expected = 2 * kd + ce if alpha is None else alpha * 2 * kd + (1 - alpha) * ce  # None: unbalanced terms
    np.testing.assert_allclose(float(step.loss), expected, rtol=1e-4)


def test_epoch_losses_are_per_sample_means_over_uneven_batches(rng):
    """The logged losses of an epoch weigh each step's loss by its batch size (batches of 16, 16 and 8 here)."""
    teacher, student = dense_model(name="t"), dense_model(name="s")
    distiller = ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=3.0),
                             augmentation=ShiftAugmentation(), alpha=0.4)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))  # the models stay as they are: known step losses
    x = rng.normal(size=(40, 3, 3, 1)).astype("float32")
    x[32:] *= 4.0  # the last, smaller batch has larger losses, so that weighing it like the others shows
    y = (np.arange(40) % 4).astype("int32")
    history = distiller.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history

    zt, zs, za = (np.asarray(m.predict(v, verbose=0), np.float64) for m, v in
                  ((teacher, x), (student, x), (student, x + 1.0)))
    steps = []
    for rows in (slice(0, 16), slice(16, 32), slice(32, 40)):
        kd = 2 * np_scaled_kd(zt[rows], zs[rows], 3.0)  # two sources
        ce = np_shift_cross_entropy(za[rows], y[rows])  # the partners reversed within each batch
        steps.append((kd, ce, 0.4 * kd + 0.6 * ce))
    steps, sizes = np.array(steps), np.array([16, 16, 8])
    per_sample = (steps * sizes[:, None]).sum(0) / 40
    assert not np.allclose(per_sample, steps.mean(0), rtol=1e-2)  # the two means differ here
    for key, expected in zip(("distillation_loss", "augmentation_loss", "loss"), per_sample):
        assert history[key][0] == pytest.approx(expected, rel=1e-4), key


@pytest.mark.parametrize("floatx", ["float32", "float16"])
@pytest.mark.parametrize("distillation", ["kd", "rkd", "kd+features"])
def test_float16_logits_and_features_enter_the_losses_as_float32(rng, distillation, floatx):
    """Under mixed precision the models' float16 outputs are cast to float32 before any loss is computed (also
    when Keras' floatx, its default float type, is float16)."""
    keras.config.set_dtype_policy("mixed_float16")
    keras.config.set_floatx(floatx)
    try:
        teacher, student = tiny_cnn(name="t"), tiny_cnn(name="s")  # float16 logits and features
        kd = ck.distillations.KD(temperature=4.0)
        strategy = {"kd": kd, "rkd": "rkd",  # logits alone; features alone
                    "kd+features": [kd, ck.distillations.RKD(weight=0.0)]}[distillation]  # logits and features
        distiller = ck.Distiller(teacher, student, distillation=strategy, augmentation=ShiftWithPlainLoss())
        x = rng.normal(size=(6, 8, 8, 1)).astype("float32")
        y = np.arange(6, dtype="int32")
        step = distiller.compute_step_losses((ops.convert_to_tensor(x), ops.convert_to_tensor(y)), training=True)
        zt, zs = teacher(x, training=False), student(x, training=True)
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")
    assert ops.convert_to_numpy(zs).dtype == np.float16
    for name in ("distillation", "augmentation", "loss"):
        assert ops.convert_to_numpy(getattr(step, name)).dtype == np.float32, name
    if distillation != "rkd":  # KD's reference, in float64 from the float16 logits
        kd = np_scaled_kd(*(np.asarray(ops.convert_to_numpy(z), np.float64) for z in (zt, zs)), 4.0)
        # Two sources. The loss is a small difference of terms of order T**2 = 16, summed in float32: its absolute
        # error is about 3e-7 (1e-4 relative for the loss of 0.003 a CI run drew); float16's epsilon is 1e-3.
        np.testing.assert_allclose(float(step.distillation), 2 * kd, rtol=1e-4, atol=1e-6)


def test_images_enter_the_step_as_float32_whatever_floatx(rng):
    """The step casts the images and the regularisation to float32, not to Keras' default float type (float16 here
    would round them)."""
    inputs = keras.Input((3, 3, 1))
    logits = keras.layers.Dense(4, kernel_regularizer=keras.regularizers.L2(10.0), name="logits")
    teacher, student = dense_model(name="t"), keras.Model(inputs, logits(keras.layers.Flatten()(inputs)))  # float32
    logits.kernel.assign(rng.normal(size=(9, 4)).astype("float32"))  # a penalty of about 360 that float16 rounds
    distiller = ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=4.0), augmentation="none")
    x = rng.normal(size=(6, 3, 3, 1)).astype("float32")  # values that float16 cannot hold
    y = np.arange(6, dtype="int32") % 4
    keras.config.set_floatx("float16")
    try:
        step = distiller.compute_step_losses((ops.convert_to_tensor(x), ops.convert_to_tensor(y)), training=True)
    finally:
        keras.config.set_floatx("float32")
    zt, zs = (np.asarray(ops.convert_to_numpy(m(x)), np.float64) for m in (teacher, student))
    kd = np_scaled_kd(zt, zs, 4.0)
    cross_entropy = -np_log_softmax(zs)[np.arange(6), y].mean()
    regularisation = 10.0 * np.sum(np.asarray(ops.convert_to_numpy(logits.kernel), np.float64) ** 2)
    np.testing.assert_allclose(float(step.distillation), kd, rtol=1e-5)
    np.testing.assert_allclose(float(step.loss), 0.5 * kd + 0.5 * cross_entropy + regularisation, rtol=1e-5)


def test_several_weighted_distillations_add_up(rng):
    teacher, student = dense_model(name="t"), dense_model(name="s")
    x = ops.convert_to_tensor(rng.normal(size=(5, 3, 3, 1)).astype("float32"))
    y = ops.convert_to_tensor(np.arange(5, dtype="int32") % 4)
    one = ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=2.0), alpha=1.0)
    two = ck.Distiller(teacher, student, alpha=1.0, distillation=[ck.distillations.KD(temperature=2.0),
                                                                   ck.distillations.KD(temperature=2.0, weight=0.5)])
    np.testing.assert_allclose(float(two.compute_step_losses((x, y)).loss),
                               1.5 * float(one.compute_step_losses((x, y)).loss), rtol=1e-5)


class CountingStudent(keras.Model):
    """A subclassed student that counts its forward passes (run eagerly)."""

    def __init__(self):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(10)
        self.calls = 0

    def call(self, x, training=False):
        self.calls += 1
        return self.dense(self.flatten(x))


# One strategy that keeps the images and one that transforms them: the step branches on that alone
# (test_student_passes.py goes through every registered strategy on JAX).
@pytest.mark.parametrize("augmentation, passes", [("none", 1), ("mixup", 2)])
def test_student_runs_once_or_twice_per_step(augmentation, passes):
    student = CountingStudent()
    distiller = ck.Distiller(tiny_cnn(name="t"), student, augmentation=augmentation)  # shape from the teacher
    compiled(distiller, run_eagerly=True, jit_compile=False)
    x, y = blobs(64)
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)  # the first fit also traces the model symbolically
    student.calls = 0
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    # On JAX one call of the student runs both passes (vmapped over the two batches; tests/test_student_passes.py).
    assert student.calls == (1 if keras.backend.backend() == "jax" else passes) * 4


def test_subclassed_models_need_an_input_shape():
    class Teacher(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.dense = keras.layers.Dense(10)

        def call(self, x, training=False):
            return self.dense(self.flatten(x))

    distiller = ck.Distiller(Teacher(), CountingStudent(), input_shape=(8, 8, 1))
    assert distiller.num_classes == 10 and distiller.built
    lazy = ck.Distiller(Teacher(), CountingStudent())  # built by fit from the first batch
    compiled(lazy)
    x, y = blobs(32)
    lazy.fit(x, y, batch_size=16, verbose=0)
    assert lazy.image_shape == (8, 8, 1)
    from_dict = ck.Distiller(Teacher(), CountingStudent())  # as Keras builds it from dict inputs
    from_dict.build({"image": (None, 8, 8, 1), "index": (None,)})
    assert from_dict.image_shape == (8, 8, 1) and from_dict.num_classes == 10
    stepped = ck.Distiller(Teacher(), CountingStudent())  # built by a step called before anything else
    assert np.isfinite(float(stepped.compute_step_losses((ops.convert_to_tensor(x), ops.convert_to_tensor(y))).loss))
    assert stepped.image_shape == (8, 8, 1) and stepped.num_classes == 10


def test_features_are_required_from_functional_models():
    class Plain(keras.Model):
        def call(self, x):
            return x

    class NeedsFeatures(ck.distillations.Distillation):
        requires = frozenset({"features"})

        def compute_loss(self, teacher, student, batch, training=True):
            return ops.mean(teacher.features) * 0.0

    for teacher_layer, role, name in (("features", "teacher", "t"), ("pooled", "student", "s")):  # whose layer is missing
        inputs = keras.Input((8, 8, 1))
        pooled = keras.layers.GlobalAveragePooling2D(name=teacher_layer)(inputs)
        teacher = keras.Model(inputs, keras.layers.Dense(10)(pooled), name="t")
        with pytest.raises(ValueError, match=rf"^The distillation strategy needs the {role}'s penultimate features, "
                                             rf"but the {role} '{name}' has no layer named 'pooled'\."):
            ck.Distiller(teacher, tiny_cnn(name="s"), distillation=NeedsFeatures(), feature_layer="pooled")
    with pytest.raises(ValueError, match="^The distillation strategy needs the student's penultimate features, but "
                                         "the student is not a functional keras.Model with one input"):
        ck.Distiller(tiny_cnn(name="t"), CountingStudent(), distillation=NeedsFeatures(), input_shape=(8, 8, 1))
    named = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=NeedsFeatures(), trainable=False)
    assert named.get_config()["feature_layer"] == "features" and named.trainable is False  # Keras' kwargs pass on
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(width=6, name="s"), distillation=NeedsFeatures())
    assert (distiller.distillations[0].built, distiller.num_classes) == (True, 10)


def test_wrong_inputs_fail_with_clear_messages():
    distiller = compiled(ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s")))
    x, y = blobs(32)
    with pytest.raises(ValueError, match=r"take images of shape \(8, 8, 1\)"):
        distiller.fit(np.zeros((32, 9, 9, 1), "float32"), y, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        distiller.fit(np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        distiller.fit(x, y, sample_weight=np.ones(32), batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="not one-hot"):
        distiller.fit(x, np.full((32, 10), 0.1, "float32"), batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=r"whole class ids.*3\.7"):
        distiller.fit(x, np.where(np.arange(32) == 0, 3.7, y), batch_size=16, verbose=0)


# ---------------------------------------------------------------- training

# A two-source augmentation under XLA and a one-source one without: every strategy's own XLA step and saving are
# tests/test_conformance.py's, CutMix's loss over epochs test_feature_distillation.py's.
@pytest.mark.heavy
@pytest.mark.parametrize("augmentation", ["mixup", "cutout"])
def test_fit_lowers_the_loss_and_keeps_the_teacher(augmentation):
    keras.utils.set_random_seed(0)
    x, y = blobs(512)
    teacher = tiny_cnn(name="t")
    teacher.compile(optimizer=keras.optimizers.Adam(0.02), loss=keras.losses.SparseCategoricalCrossentropy(True))
    teacher.fit(x, y, batch_size=64, epochs=3, verbose=0)
    teacher_before = [ops.convert_to_numpy(v).copy() for v in teacher.variables]
    student = tiny_cnn(name="s")
    bn_before = ops.convert_to_numpy(student.layers[2].moving_mean).copy()
    distiller = compiled(ck.Distiller(teacher, student, distillation=ck.distillations.KD(temperature=4.0),
                                      augmentation=augmentations_with_seed(augmentation), alpha=0.5),
                         jit_compile=True if augmentation == "mixup" else "auto")  # XLA: the paper's mixup
    seed_before = ops.convert_to_numpy(distiller.augmentation.seed_generator.state).copy()
    history = distiller.fit(x, y, batch_size=64, epochs=4, verbose=0, validation_data=(x, y))
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert {"loss", "distillation_loss", "augmentation_loss", "accuracy", "ece", "oe", "val_loss", "val_accuracy",
            "val_ece", "val_oe"} <= set(history.history)
    assert not {"val_distillation_loss", "val_augmentation_loss"} & set(history.history)
    for before, variable in zip(teacher_before, teacher.variables):
        np.testing.assert_array_equal(before, ops.convert_to_numpy(variable))
    assert not np.allclose(bn_before, ops.convert_to_numpy(student.layers[2].moving_mean))  # BN state flowed back
    assert not np.array_equal(seed_before, ops.convert_to_numpy(distiller.augmentation.seed_generator.state))


def augmentations_with_seed(name):
    strategy = ck.augmentations.get(name)
    options = {k: v for k, v in strategy.get_config().items() if k not in ("name", "trainable", "dtype", "seed")}
    if name == "cutout":
        options["size"] = 4  # the tiny images are 8x8
    return type(strategy)(seed=3, **options)


def test_fit_on_tf_data_with_indices_evaluate_predict_and_callbacks():
    import tensorflow as tf

    x, y = blobs(128)
    dataset = tf.data.Dataset.from_tensor_slices(({"image": x, "index": np.arange(128, dtype="int32")}, y)).batch(32)
    distiller = compiled(ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation="mixup"))
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(sorted(logs))

    distiller.fit(dataset, epochs=2, validation_data=dataset, callbacks=[Record()], verbose=0)
    assert len(seen) == 2 and "val_ece" in seen[0]
    result = distiller.evaluate(dataset, verbose=0, return_dict=True)
    assert set(result) == {"loss", "accuracy", "ece", "oe"} and np.isfinite(result["loss"])
    assert distiller.predict(dataset, verbose=0).shape == (128, 10)
    assert distiller.predict(x, verbose=0).shape == (128, 10)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_evaluation_loss_is_the_weighted_cross_entropy_plus_the_regularisation_in_float32(policy):
    x, y = blobs(64)
    weight = np.random.default_rng(1).uniform(0.0, 2.0, 64).astype("float32")
    keras.utils.set_random_seed(2)  # a student whose accuracy is neither 0 nor 1, so that weighing shows
    keras.config.set_dtype_policy(policy)
    try:
        inputs = keras.Input((8, 8, 1))
        conv = keras.layers.Conv2D(4, 3, kernel_regularizer=keras.regularizers.L2(0.01))
        features = keras.layers.GlobalAveragePooling2D(name="features")(conv(inputs))
        student = keras.Model(inputs, keras.layers.Dense(10, name="logits")(features))  # float16 logits if mixed
        distiller = compiled(ck.Distiller(tiny_cnn(name="t"), student),
                             weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="weighted_accuracy")])
        unweighted = distiller.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)["loss"]
        weighted_logs = distiller.evaluate(x, y, batch_size=64, sample_weight=weight, verbose=0, return_dict=True)
        weighted = weighted_logs["loss"]
        small = distiller.evaluate(x, y, batch_size=64, sample_weight=weight / 1000, verbose=0,  # summing below 1
                                   return_dict=True)["loss"]
        logits = ops.convert_to_numpy(student(x)).astype("float64")
        kernel = ops.convert_to_numpy(conv.kernel).astype("float64")
    finally:
        keras.config.set_dtype_policy("float32")
    cross_entropy = -np_log_softmax(logits)[np.arange(64), y]
    regularisation = 0.01 * np.sum(kernel ** 2)
    assert unweighted == pytest.approx(cross_entropy.mean() + regularisation, rel=1e-5)
    assert weighted == pytest.approx((cross_entropy * weight).sum() / weight.sum() + regularisation, rel=1e-5)
    assert small == pytest.approx(weighted, rel=1e-5)
    # as in Keras, `weighted_metrics` are weighted by the sample weights and `metrics` are not
    correct = np.argmax(logits, axis=1) == y
    assert weighted_logs["weighted_accuracy"] == pytest.approx((correct * weight).sum() / weight.sum(), rel=1e-5)
    assert weighted_logs["accuracy"] == pytest.approx(correct.mean(), rel=1e-5)
    assert weighted_logs["weighted_accuracy"] != pytest.approx(correct.mean(), rel=1e-3)


def test_a_loss_scale_that_changes_during_fit_scales_each_step_by_its_current_value():
    """A dynamic loss scale that doubles after every step: the step must scale the loss by the scale of the
    moment (not the one of the first trace) for the gradients it unscales to be the true ones."""
    x, y = blobs(64)

    def train(optimizer):
        keras.utils.set_random_seed(3)
        distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation=ck.augmentations.MixUp(seed=1))
        distiller.compile(optimizer=optimizer)  # compiled as Keras' "auto" does: XLA on JAX
        distiller.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return [ops.convert_to_numpy(v) for v in distiller.student.trainable_variables]

    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=4.0, dynamic_growth_steps=1)
    got, expected = train(scaled), train(keras.optimizers.SGD(0.1))
    assert float(ops.convert_to_numpy(scaled.dynamic_scale)) == 4.0 * 2 ** 4  # doubled after each of the 4 steps
    for mine, reference in zip(got, expected):  # scaling by powers of 2 is exact
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-7)


def test_same_seed_same_training():
    def run():
        keras.utils.set_random_seed(5)
        x, y = blobs(128)
        distiller = compiled(ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"),
                                          augmentation=ck.augmentations.CutMix(seed=1)))
        return distiller.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False).history["loss"]

    np.testing.assert_allclose(run(), run(), rtol=1e-6)


def test_teacher_label_source_trains():
    x, y = blobs(64)
    distiller = compiled(ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"),
                                      augmentation=ck.augmentations.MixUp(label_source="teacher")))
    assert np.isfinite(distiller.fit(x, y, batch_size=32, verbose=0).history["loss"][0])


# ---------------------------------------------------------------- serialization and gin

def test_config_round_trip():
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), alpha=0.25,
                             distillation=[ck.distillations.KD(temperature=7.0), "kd"],
                             augmentation=ck.augmentations.Cutout(size=4))
    clone = ck.Distiller.from_config(distiller.get_config())
    assert clone.alpha == 0.25 and [d.temperature for d in clone.distillations] == [7.0, 50.0]
    assert isinstance(clone.augmentation, ck.augmentations.Cutout) and clone.augmentation.size == 4
    assert clone.teacher.count_params() == distiller.teacher.count_params() and not clone.teacher.trainable
    assert clone.get_config() == distiller.get_config()
    assert distiller.get_config()["input_shape"] == (8, 8, 1)  # the models' own, none was requested


def test_trained_student_saves_and_reloads(tmp_path):
    x, y = blobs(64)
    distiller = compiled(ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation="cutmix"))
    distiller.fit(x, y, batch_size=32, verbose=0)
    path = str(tmp_path / "student.keras")
    distiller.student.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), distiller.student.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_gin_binds_distiller_and_strategies():
    import gin

    from keras_calikd.gin_support import register_configurables

    register_configurables()
    with gin.unlock_config():
        gin.clear_config()
        gin.parse_config("""
            Distiller.alpha = 0.3
            Distiller.augmentation = "mixup"
            MixUp.alpha = 0.2
            KD.temperature = 4.0
        """)
    try:
        distiller = gin.get_configurable("Distiller")(tiny_cnn(name="t"), tiny_cnn(name="s"))
        assert isinstance(distiller, ck.Distiller)
        assert (distiller.alpha, distiller.augmentation.alpha, distiller.distillations[0].temperature) == (0.3, 0.2, 4.0)
    finally:
        gin.clear_config()


@pytest.mark.backend_neutral  # a JAX process in either pass: tools/run_tests.sh runs it once
def test_training_core_does_not_import_tensorflow_on_jax():
    code = (
        "import sys, numpy as np, keras\n"
        "import keras_calikd as ck\n"
        "from jax._src import xla_bridge\n"  # no device lookup at import: a multi-process job can start after it
        "assert not xla_bridge._backends, 'importing keras_calikd started JAX'\n"
        "sys.path.insert(0, 'tests')\n"
        "from tiny import tiny_cnn, blobs\n"
        "x, y = blobs(32)\n"
        "d = ck.Distiller(tiny_cnn(name='t'), tiny_cnn(name='s'), augmentation='cutmix')\n"
        "d.compile(optimizer='sgd', metrics=[ck.metrics.ExpectedCalibrationError(from_logits=True)], jit_compile=True)\n"
        "d.fit(x, y, batch_size=16, verbose=0)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print('ok')\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_one_trace_per_input_shape_across_epochs_and_fit_calls():
    class CountingDistiller(ck.Distiller):
        traces = 0

        def compute_step_losses(self, data, training=True):
            CountingDistiller.traces += 1  # Python runs only while the step is traced
            return super().compute_step_losses(data, training)

    x, y = blobs(96)
    distiller = compiled(CountingDistiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation="cutmix"))
    distiller.fit(x, y, batch_size=32, epochs=3, verbose=0)
    distiller.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert CountingDistiller.traces == 1
    distiller.fit(x[:80], y[:80], batch_size=32, epochs=1, verbose=0)  # a last batch of 16: one new shape
    assert CountingDistiller.traces == 2


def test_the_optimizer_is_built_once_across_fit_calls():
    class CountingSGD(keras.optimizers.SGD):  # like an optimizer whose build() does not check `built` itself
        builds = 0

        def build(self, variables):
            CountingSGD.builds += 1
            super().build(variables)

    x, y = blobs(64)
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"))
    distiller.compile(optimizer=CountingSGD(0.05, momentum=0.9))
    distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)
    distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)  # built by now: a rebuild would drop its momentum
    assert CountingSGD.builds == 1


@pytest.mark.backend_neutral  # plain TensorFlow, whatever the Keras backend: once, in the TensorFlow pass
def test_the_tensorflow_step_counts_one_replica_outside_a_replica_context():
    import tensorflow as tf

    from keras_calikd.steps import tensorflow as tf_step

    x = np.arange(6.0).reshape(3, 2)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():  # the cross-replica context: no replica context
        assert tf.distribute.get_replica_context() is None
        assert tf_step.num_replicas() == 1
        np.testing.assert_array_equal(tf_step.all_gather(x), x)
        np.testing.assert_array_equal(tf_step.replica_slice(x), x)
