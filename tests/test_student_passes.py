"""The student's two passes as one vmapped call on JAX: the same training as two calls, or two calls and a warning.

Each test runs the JAX step, compiled, for a few steps twice from the same start, once with the passes fused
and once as two calls (`fuse_student_passes = False`), and compares the losses, the gradients (the optimizer's
momentum buffers, `-lr * gradient` after the first step), the weights and the moving statistics after every
step. TensorFlow keeps two calls (`TensorFlowDistillationStep.student_passes` says why), which the other tests
of the step cover; test_core_pins.py's `test_student_runs_in_training_mode_in_every_step` checks the moving
statistics after both passes against a NumPy reference on both backends.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from tiny import blobs, tiny_cnn

pytestmark = [pytest.mark.jax_pass,
              pytest.mark.skipif(keras.backend.backend() != "jax",
                                 reason="the fused passes are the JAX step's; TensorFlow runs two calls")]
BATCH, STEPS = 8, 3


def state_of(distiller):
    """The JAX step's state: the values of the trainable, non-trainable, optimizer and metric variables."""
    return tuple([v.value for v in variables] for variables in (
        distiller.trainable_variables, distiller.non_trainable_variables, distiller.optimizer.variables,
        distiller.metrics_variables))


def run_steps(make_distiller, fuse: bool, steps: int = STEPS):
    """Per step `(logs, state)` of the compiled JAX `train_step` (state: trainable, non-trainable, optimizer and
    metric variables), from a fresh Distiller made with the same seed."""
    import jax

    keras.utils.set_random_seed(0)
    distiller = make_distiller()
    distiller.fuse_student_passes = fuse
    distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    distiller.optimizer.build(distiller.trainable_variables)
    state = state_of(distiller)
    x, y = blobs(BATCH * steps, shape=(8, 8, 1))
    step, results = jax.jit(distiller.train_step), []
    for i in range(steps):
        logs, state = step(state, (x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]))
        results.append(({k: float(v) for k, v in logs.items()}, jax.tree_util.tree_map(np.asarray, state)))
    return distiller, results


def assert_same_training(make_distiller, fused_expected=True):
    fused, fused_steps = run_steps(make_distiller, True)
    _, separate_steps = run_steps(make_distiller, False)
    assert fused.student_passes_fused is fused_expected
    for (fused_logs, fused_state), (logs, state) in zip(fused_steps, separate_steps):
        assert fused_logs.keys() == logs.keys()
        for key in logs:
            # after the first step the weights differ by float32 rounding (the two passes' gradients add in
            # another order); a small loss (KD's, ~0.01) then moves by ~1e-6 of the cross-entropy's scale
            np.testing.assert_allclose(fused_logs[key], logs[key], rtol=1e-6, atol=2e-6, err_msg=key)
        for part, fused_values, values in zip(("weights", "state", "optimizer", "metrics"), fused_state, state):
            for a, b in zip(fused_values, values):
                if np.issubdtype(b.dtype, np.integer):  # seed states, counters: exactly
                    np.testing.assert_array_equal(a, b, err_msg=part)
                else:
                    # float32 rounding of the array's largest entries (sums over 2B images or over B add in other
                    # orders), or of 0 for a gradient that is 0 but for rounding (a bias before batch norm)
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max() + 1e-7,
                                               err_msg=part)
    return fused


#: Options the tiny 8x8x1 images of `blobs` (normal values, no fixed range) need.
OPTIONS = {"cutout": {"size": 4},  # its default hole is for 32x32 images
           "randaugment": {"value_range": (-3, 3)}, "augmix": {"value_range": (-3, 3)},
           "keras_layer": {"layer": keras.layers.RandomContrast(0.5, value_range=(-3, 3), seed=1)}}


def augmentation(name):
    return ck.augmentations.AUGMENTATIONS.get(name)(**OPTIONS.get(name, {}))


TRANSFORMING = sorted(name for name in ck.augmentations.AUGMENTATIONS
                      if augmentation(name).xla_compatible and augmentation(name).transforms_images)
#: One strategy per way of making the augmented batch: the fused passes only see its images, so the others
#: (AugMix and RandAugment: Keras layers like `keras_layer`'s; FourierMix: keras.ops like GridMask) would repeat
#: the same comparison at 15-35 s each on JAX. They train through the fused step in the conformance suite.
COMPARED = ["cutmix", "cutout", "gridmask", "keras_layer", "mixup"]


def test_every_strategy_runs_on_jax_and_every_transforming_one_is_compared_or_represented():
    # `xla_compatible` may be a property (KerasLayer's strategies: per backend), so instances are asked.
    assert all(augmentation(name).xla_compatible for name in ck.augmentations.AUGMENTATIONS)
    assert set(TRANSFORMING) - set(COMPARED) == {"augmix", "fouriermix", "randaugment"}


@pytest.mark.parametrize("name", COMPARED)
def test_a_fused_step_trains_like_two_passes_with_each_strategy(name):
    """A functional student with batch norm; KD, and with mixup also RKD on the clean pass's features (once:
    RKD doubles the step's compilation time)."""
    def make():
        return ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation=augmentation(name),
                            distillation=["kd", "rkd"] if name == "mixup" else "kd")

    assert_same_training(make)


@pytest.mark.parametrize("name", sorted(name for name in ck.augmentations.AUGMENTATIONS
                                        if not augmentation(name).transforms_images))
def test_strategies_that_keep_the_images_run_the_student_once(name):
    import jax

    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation=name)
    calls = []
    distiller.student_passes = lambda *args: calls.append(args)  # never reached: the clean pass serves both
    distiller.compile(optimizer="sgd")
    distiller.optimizer.build(distiller.trainable_variables)
    jax.eval_shape(distiller.train_step, state_of(distiller), blobs(BATCH))  # traced, not compiled
    assert calls == []


class Shift(ck.augmentations.Augmentation):
    """x + 1 with the same labels: deterministic, so that only the student differs between the tests below."""

    def augment(self, images, labels):
        return ck.augmentations.AugmentedBatch(images=images + 1.0, labels=labels, partner_labels=labels,
                                               lam=ops.convert_to_tensor(1.0), sources=ops.convert_to_tensor(1.0))


class SubclassedStudent(keras.Model):
    """Its batch norm is called without `training`: it learns the mode from the model's call."""

    def __init__(self):
        super().__init__(name="subclassed")
        self.conv = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)
        self.norm = keras.layers.BatchNormalization()
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.logits = keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.logits(self.pool(keras.ops.relu(self.norm(self.conv(x)))))


def sequential_dropout_student():
    """Dropout before batch norm: the statistics depend on the random mask, so the masks must match too."""
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, padding="same"),
                             keras.layers.Dropout(0.5, seed=3), keras.layers.BatchNormalization(momentum=0.9),
                             keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dropout(0.3),
                             keras.layers.Dense(10)], name="sequential")


@pytest.mark.parametrize("student", [SubclassedStudent, sequential_dropout_student])
def test_a_fused_step_trains_like_two_passes_with_any_kind_of_student(student):
    fused = assert_same_training(lambda: ck.Distiller(tiny_cnn(name="t"), student(), augmentation=Shift()))
    plan = fused.__dict__["_student_pass_plans"][True]
    assert len(plan.momentum) == 2 and len(plan.sequenced) == (2 if student is sequential_dropout_student else 0)


class RunningPeak(keras.layers.Layer):
    """Keeps the largest input it has seen: state updated from the images that is no moving statistic."""

    def build(self, input_shape):
        self.peak = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=False):
        if training:
            self.peak.assign(ops.maximum(self.peak, ops.max(x)))
        return x


def peak_student():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalAveragePooling2D()(RunningPeak(name="peak")(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="peaks")


def test_a_student_whose_state_cannot_be_composed_runs_two_calls_and_says_so_once():
    import jax

    distiller = ck.Distiller(tiny_cnn(name="t"), peak_student(), augmentation=Shift())
    distiller.compile(optimizer="sgd")
    distiller.optimizer.build(distiller.trainable_variables)
    passes = []
    two_passes = distiller._two_student_passes
    distiller._two_student_passes = lambda *args: passes.append(len(args)) or two_passes(*args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # traced twice, not compiled
            jax.eval_shape(distiller.train_step, state_of(distiller), blobs(BATCH))
    said = [str(w.message) for w in caught if "fused call" in str(w.message)]
    assert said == ["keras_calikd: the student 'peaks' runs its clean and augmented passes as two calls on JAX, "
                    "not as one fused call, because it updates peak/variable from the images, and only "
                    "batch-norm moving statistics updated once per call can be composed. The results are the "
                    "same; the step launches the student's kernels twice."]
    assert passes == [3, 3] and distiller.student_passes_fused is False


def plan_of(student):
    from keras_calikd.steps import fused_passes

    images = np.zeros((BATCH, 8, 8, 1), "float32")
    return fused_passes.plan(student, *fused_passes.current_values(student), images, training=True)


def test_moving_statistics_compose_only_where_the_update_is_the_plain_moving_average():
    def student(**options):
        inputs = keras.Input((8, 8, 1))
        norm = keras.layers.BatchNormalization(momentum=0.8, **options)
        return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(norm(inputs))))

    fused = plan_of(student())
    assert (fused.reason, fused.momentum, fused.sequenced) == (None, {0: 0.8, 1: 0.8}, ())
    assert "from the images" in plan_of(student(renorm=True)).reason  # renorm's statistics: another update

    inputs = keras.Input((8, 8, 1))
    norm = keras.layers.BatchNormalization()
    twice = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(norm(norm(inputs)))))
    assert "updated once per call" in plan_of(twice).reason  # each pass applies the average twice

    frozen = student()
    frozen.layers[1].trainable = False  # inference mode: nothing to carry
    assert plan_of(frozen) == type(fused)({}, ())


def test_statistics_that_the_outputs_read_are_not_composed():
    inputs = keras.Input((8, 8, 1))
    norm = keras.layers.BatchNormalization()
    x = norm(inputs)
    student = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    original = norm.call

    def reading(x, training=None, mask=None):
        return original(x, training=training, mask=mask) + norm.moving_mean

    norm.call = reading  # the instance's call reads the statistics; its class is still BatchNormalization
    assert "read the moving statistic" in plan_of(student).reason


def test_a_student_that_adds_losses_in_its_call_is_not_fused():
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(10, activity_regularizer="l2")(keras.layers.Flatten()(inputs))
    assert "adds 1 loss(es)" in plan_of(keras.Model(inputs, logits)).reason
