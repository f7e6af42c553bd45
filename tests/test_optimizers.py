"""The paper's optimiser and schedules against NumPy references written from PyTorch's definitions.

- SGD: PyTorch's algorithm with dampening 0: `d = g + wd * w`; `b = mu * b + d`
  (`b = d` on the first step); `d = d + mu * b` with Nesterov, else `d = b`;
  `w = w - lr * d`. Run over several steps with a learning rate that drops by
  x0.1 mid-run, where Keras' own velocity form (`v = mu * v - lr * g`) differs.
- CosineAnnealingLR: `lr * (1 + cos(pi * epoch / t_max)) / 2` (minimum rate 0).
- MultiStepLR: `lr * gamma ** (number of milestones <= epoch)`.
- The epoch of optimiser step `k` (0-based) is `floor(k / steps_per_epoch)`.
"""

import contextlib
import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from keras_calikd.training import SGD, EpochSchedule


def pytorch_sgd(weights, gradients, rates, momentum, l2, nesterov):
    """Weights after each step of PyTorch's SGD (dampening 0); `gradients[t]` is a list, one per weight."""
    weights = [np.array(w, np.float64) for w in weights]
    buffers = [None] * len(weights)
    history = []
    for step_gradients, lr in zip(gradients, rates):
        for i, g in enumerate(step_gradients):
            d = np.asarray(g, np.float64) + l2 * weights[i]
            if momentum:
                buffers[i] = d if buffers[i] is None else momentum * buffers[i] + d
                d = d + momentum * buffers[i] if nesterov else buffers[i]
            weights[i] = weights[i] - lr * d
        history.append([w.copy() for w in weights])
    return history


def dropping_rate():
    """0.5 for the first 4 steps (epochs 0, 1), then 0.05: MultiStepLR with milestone epoch 2, 2 steps per epoch."""
    return EpochSchedule(0.5, steps_per_epoch=2, kind="multistep", milestones=(2,), gamma=0.1)


RATES = [0.5] * 4 + [0.05] * 4


def problem(rng, steps=len(RATES)):
    weights = [rng.normal(size=(3,)), rng.normal(size=(2, 2))]
    gradients = [[rng.normal(size=w.shape) for w in weights] for _ in range(steps)]
    return weights, gradients


def variables(weights):
    return [keras.Variable(w.astype("float32")) for w in weights]


def stepper(optimizer, params):
    """`step(gradients)`: one optimiser step as the Distiller's training step takes it.

    On TensorFlow `optimizer.apply`; on JAX the compiled `stateless_apply`, with the
    new values written back to the variables afterwards.
    """
    optimizer.build(params)

    def as_tensors(gradients):  # in each variable's dtype
        return [ops.convert_to_tensor(np.asarray(g), p.dtype) for g, p in zip(gradients, params)]

    if keras.backend.backend() != "jax":
        return lambda gradients: optimizer.apply(as_tensors(gradients), params)
    import jax

    stateless_apply = jax.jit(optimizer.stateless_apply)

    def step(gradients):
        new_params, new_state = stateless_apply([v.value for v in optimizer.variables], as_tensors(gradients),
                                                [p.value for p in params])
        for variable, value in zip(list(params) + list(optimizer.variables), list(new_params) + list(new_state)):
            variable.assign(value)

    return step


def to_np(x):
    return np.asarray(ops.convert_to_numpy(x), np.float64)


@pytest.mark.parametrize("momentum, nesterov, l2", [(0.9, False, 0.1), (0.9, True, 0.1), (0.0, False, 0.1),
                                                    (0.9, False, 0.0), (0.5, True, 0.0)])
def test_sgd_follows_pytorch_through_a_rate_drop(rng, momentum, nesterov, l2):
    weights, gradients = problem(rng)
    params = variables(weights)
    optimizer = SGD(dropping_rate(), momentum=momentum, nesterov=nesterov, l2_weight_decay=l2)
    expected = pytorch_sgd(weights, gradients, RATES, momentum, l2, nesterov)
    step = stepper(optimizer, params)
    for t, step_gradients in enumerate(gradients):
        step(step_gradients)
        for param, want in zip(params, expected[t]):
            np.testing.assert_allclose(to_np(param), want, rtol=1e-5, atol=1e-6, err_msg=f"step {t}")
    assert int(optimizer.iterations) == len(RATES)


def test_keras_velocity_form_is_not_pytorch_after_a_drop(rng):
    """The reference is sharp enough to tell the two momentum forms apart (they differ only after the drop)."""
    weights, gradients = problem(rng)
    pytorch = pytorch_sgd(weights, gradients, RATES, 0.9, 0.0, False)
    w, v = weights[0].copy(), np.zeros(3)
    for step, (g, lr) in enumerate(zip(gradients, RATES)):
        v = 0.9 * v - lr * g[0]
        w = w + v
        same = np.allclose(w, pytorch[step][0], rtol=1e-5, atol=1e-6)
        assert same == (step < 4)


def test_l2_is_coupled_through_momentum_not_decoupled(rng):
    """With zero gradients only the decay moves the weights: coupled L2 accumulates in the momentum buffer."""
    w0 = rng.normal(size=(4,))
    param = keras.Variable(w0.astype("float32"))
    optimizer = SGD(0.1, momentum=0.9, l2_weight_decay=0.5)
    w, b = w0.copy(), np.zeros(4)
    step = stepper(optimizer, [param])
    for _ in range(3):
        step([np.zeros(4)])
        b = 0.9 * b + 0.5 * w
        w = w - 0.1 * b
    np.testing.assert_allclose(to_np(param), w, rtol=1e-5)
    decoupled = w0 * (1 - 0.1 * 0.5) ** 3  # Keras' weight_decay: w -= lr * wd * w, outside the momentum
    assert np.abs(to_np(param) - decoupled).max() > 0.05 * np.abs(w0).max()


def test_loss_scale_optimizer_unscales_before_the_step(rng):
    weights, gradients = problem(rng)
    params = variables(weights)
    optimizer = keras.optimizers.LossScaleOptimizer(SGD(dropping_rate(), momentum=0.9, l2_weight_decay=0.1),
                                                    initial_scale=1024.0)
    expected = pytorch_sgd(weights, gradients, RATES, 0.9, 0.1, False)
    step = stepper(optimizer, params)
    for step_gradients in gradients:
        scale = float(optimizer.scale_loss(1.0))
        step([scale * g for g in step_gradients])
    for param, want in zip(params, expected[-1]):
        np.testing.assert_allclose(to_np(param), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_compiled_fit_follows_pytorch(rng, policy):
    """A linear least-squares model trained by `fit` in a compiled (XLA) step; the gradient is analytic."""
    keras.config.set_dtype_policy(policy)
    x = rng.normal(size=(6, 3))
    target = rng.normal(size=(6, 2))
    w0 = rng.normal(size=(3, 2))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, use_bias=False)])
    model.layers[0].kernel.assign(w0.astype("float32"))
    optimizer = SGD(EpochSchedule(0.2, steps_per_epoch=1, kind="multistep", milestones=(2,)), momentum=0.9,
                    nesterov=True, l2_weight_decay=0.05)
    if policy == "mixed_float16":  # a scale whose scaled gradients fit in float16, so that no step is skipped
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=128.0)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=True)
    model.fit(x.astype("float32"), target.astype("float32"), batch_size=6, epochs=4, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 4

    w, b = w0.copy(), None
    for lr in (0.2, 0.2, 0.02, 0.02):
        g = 2.0 * x.T @ (x @ w - target) / target.size  # d/dw of the mean of (xw - t)^2 over all 6 x 2 entries
        d = g + 0.05 * w
        b = d if b is None else 0.9 * b + d
        w = w - lr * (d + 0.9 * b)
    tolerance = dict(rtol=1e-5, atol=1e-6) if policy == "float32" else dict(rtol=5e-3, atol=2e-3)
    np.testing.assert_allclose(to_np(model.layers[0].kernel), w, **tolerance)


def float64_scope():
    """Where float64 variables are float64: always on TensorFlow; on JAX only with 64-bit types switched on."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def test_float64_variables_are_updated_in_float64(rng):
    """The update is computed in the variable's dtype, not in Keras' default float32."""
    weights, gradients = problem(rng, steps=3)
    with float64_scope():
        params = [keras.Variable(w, dtype="float64") for w in weights]
        optimizer = SGD(0.5, momentum=0.9, nesterov=True, l2_weight_decay=0.1)  # 0.5: the same in float32
        step = stepper(optimizer, params)
        for step_gradients in gradients:
            step(step_gradients)
        assert all(keras.backend.standardize_dtype(p.dtype) == "float64" for p in params)
        got = [np.asarray(ops.convert_to_numpy(p)) for p in params]
    expected = pytorch_sgd(weights, gradients, [0.5] * 3, 0.9, 0.1, True)[-1]
    for param, want in zip(got, expected):
        assert param.dtype == np.float64
        np.testing.assert_allclose(param, want, rtol=1e-13, atol=1e-15)


def test_float16_variables_are_updated_in_float16():
    """Each operation in float16 (PyTorch's half-precision SGD), with the constants converted to float16 as
    Keras converts a Python float, not first to a float32 tensor.

    `l2_weight_decay` and `momentum` lie just above the midpoint of two float16 numbers: rounded to float16
    directly they go up; rounded to float32 first they fall on the midpoint and go to the even neighbour below.
    The rate is Keras' float32 learning-rate variable cast to float16.
    """
    l2, momentum, lr = 0.0625 * (1 + 2 ** -11 + 2 ** -40), 0.5 + 2 ** -12 + 2 ** -40, 0.1
    assert np.float16(l2) != np.float16(np.float32(l2)) and np.float16(momentum) != np.float16(np.float32(momentum))
    rng = np.random.default_rng(5)
    w = rng.normal(size=64).astype("float16")
    gradients = [rng.normal(size=64).astype("float16") for _ in range(3)]
    param = keras.Variable(w, dtype="float16")
    optimizer = SGD(lr, momentum=momentum, nesterov=True, l2_weight_decay=l2)
    l2_16, mu_16 = (np.asarray(ops.convert_to_numpy(ops.convert_to_tensor(c, "float16"))) for c in (l2, momentum))
    lr_16 = np.float16(np.float32(lr))
    b = None
    for g in gradients:
        optimizer.apply([ops.convert_to_tensor(g, "float16")], [param])
        d = g + l2_16 * w
        b = d if b is None else mu_16 * b + d
        w = w - lr_16 * (d + mu_16 * b)
        assert w.dtype == np.float16
        np.testing.assert_array_equal(np.asarray(ops.convert_to_numpy(param)), w)


def test_sgd_defaults():
    config = SGD().get_config()
    assert (config["name"], config["learning_rate"], config["momentum"], config["nesterov"],
            config["l2_weight_decay"], config["weight_decay"]) == ("sgd", pytest.approx(0.01), 0.0, False, 0.0, None)


def test_sgd_config_round_trip():
    optimizer = SGD(EpochSchedule(0.1, steps_per_epoch=7, kind="multistep", milestones=(3, 5), gamma=0.2),
                    momentum=0.9, nesterov=True, l2_weight_decay=5e-4, clipnorm=2.0)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert type(clone) is SGD and clone.get_config() == optimizer.get_config()
    assert (clone.momentum, clone.nesterov, clone.l2_weight_decay, clone.clipnorm) == (0.9, True, 5e-4, 2.0)
    schedule = keras.saving.deserialize_keras_object(clone.get_config()["learning_rate"])
    assert isinstance(schedule, EpochSchedule) and schedule.milestones == (3, 5) and schedule.gamma == 0.2
    wrapped = keras.optimizers.LossScaleOptimizer(SGD(0.1, momentum=0.9, l2_weight_decay=1e-4))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(wrapped))
    assert type(clone.inner_optimizer) is SGD and clone.inner_optimizer.l2_weight_decay == 1e-4


def test_sgd_rejects_negative_l2():
    with pytest.raises(ValueError, match="l2_weight_decay"):
        SGD(0.1, l2_weight_decay=-1e-4)


# ---------------------------------------------------------------- schedules

def cosine_annealing(lr, t_max, epoch):
    return lr * (1 + math.cos(math.pi * epoch / t_max)) / 2


def multistep(lr, milestones, gamma, epoch):
    return lr * gamma ** sum(1 for m in milestones if m <= epoch)


def rates(schedule, steps):
    return [float(schedule(ops.convert_to_tensor(step, "int32"))) for step in range(steps)]


def test_cosine_schedule_is_cosine_annealing_per_epoch():
    schedule = EpochSchedule(0.2, steps_per_epoch=3, kind="cosine", t_max=4)
    expected = [cosine_annealing(0.2, 4, step // 3) for step in range(16)]
    np.testing.assert_allclose(rates(schedule, 16), expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose([schedule.epoch_rate(e) for e in range(6)],
                               [cosine_annealing(0.2, 4, e) for e in range(6)], rtol=1e-12, atol=1e-15)
    assert schedule.epoch_rate(0) == 0.2 and abs(schedule.epoch_rate(4)) < 1e-15


def test_multistep_schedule_drops_exactly_at_the_milestone_epoch():
    schedule = EpochSchedule(0.4, steps_per_epoch=3, kind="multistep", milestones=(2, 4), gamma=0.1)
    expected = [multistep(0.4, (2, 4), 0.1, step // 3) for step in range(16)]
    got = rates(schedule, 16)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[5] == pytest.approx(0.4) and got[6] == pytest.approx(0.04)  # step 6 is the first of epoch 2
    assert got[11] == pytest.approx(0.04) and got[12] == pytest.approx(0.004)
    np.testing.assert_allclose([schedule.epoch_rate(e) for e in range(6)],
                               [multistep(0.4, (2, 4), 0.1, e) for e in range(6)], rtol=1e-12)


def test_multistep_without_milestones_and_constant_schedule():
    for kind in ("multistep", "constant"):
        schedule = EpochSchedule(0.3, steps_per_epoch=2, kind=kind, milestones=(), t_max=1)
        np.testing.assert_allclose(rates(schedule, 5), [0.3] * 5, rtol=1e-6)
        assert [schedule.epoch_rate(e) for e in range(3)] == [0.3] * 3
    constant = EpochSchedule(0.3, steps_per_epoch=2, kind="constant", milestones=(1,), gamma=0.5, t_max=1)
    np.testing.assert_allclose(rates(constant, 5), [0.3] * 5, rtol=1e-6)
    assert constant.epoch_rate(4) == 0.3


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "linear"}, "Unknown learning-rate schedule 'linear'"),
    ({"learning_rate": 0.0}, "learning rate must be > 0"),
    ({"steps_per_epoch": 0}, "steps_per_epoch"),
    ({"steps_per_epoch": 2.5}, "steps_per_epoch"),
    ({"t_max": 0}, "t_max"),
])
def test_schedule_rejects_bad_arguments(kwargs, message):
    arguments = dict(learning_rate=0.1, steps_per_epoch=2, kind="cosine", t_max=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        EpochSchedule(**arguments)


def test_schedule_accepts_edge_arguments():
    """The smallest valid values are accepted: one step per epoch, t_max 1, and t_max unused off cosine."""
    assert EpochSchedule(1e-9, steps_per_epoch=1, kind="cosine", t_max=1).epoch_rate(1) == pytest.approx(0.0)
    assert EpochSchedule(0.1, steps_per_epoch=1, kind="multistep", t_max=0, milestones=(1,)).epoch_rate(1) \
        == pytest.approx(0.01)


def test_schedule_defaults_are_the_papers():
    """Cosine annealing over t_max = 240 epochs unless told otherwise (the paper's CIFAR schedule)."""
    schedule = EpochSchedule(0.1, steps_per_epoch=2)
    assert (schedule.kind, schedule.t_max, schedule.milestones, schedule.gamma) == ("cosine", 240, (), 0.1)
    assert schedule.epoch_rate(120) == pytest.approx(0.05) and float(schedule(240)) == pytest.approx(0.05)


@pytest.mark.parametrize("kind, expected", [("cosine", 0.3 * (1 + math.cos(math.pi * 683 / 1000)) / 2),
                                             ("multistep", 0.3 * 0.1), ("constant", 0.3)])
def test_schedule_rate_is_float32_whatever_the_default_types(kind, expected):
    """Step 2049 of 3 per epoch is epoch 683 (float16 has no 2049), with floatx float16 and with 64-bit types."""
    schedule = EpochSchedule(0.3, steps_per_epoch=3, kind=kind, t_max=1000, milestones=(683,))
    with float64_scope():
        rates = [schedule(ops.convert_to_tensor(2049, "int32"))]
    keras.config.set_floatx("float16")
    rates.append(schedule(ops.convert_to_tensor(2049, "int32")))
    for rate in rates:
        assert keras.backend.standardize_dtype(rate.dtype) == "float32"
        np.testing.assert_allclose(float(rate), expected, rtol=1e-5)


def test_schedule_config_round_trip():
    schedule = EpochSchedule(0.05, steps_per_epoch=11, kind="multistep", t_max=9, milestones=(150, 180), gamma=0.2)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(clone) is EpochSchedule and clone.get_config() == schedule.get_config()
    assert clone.get_config() == {"learning_rate": 0.05, "steps_per_epoch": 11, "kind": "multistep", "t_max": 9,
                                  "milestones": [150, 180], "gamma": 0.2}
    assert ck.training.EpochSchedule is EpochSchedule and ck.training.SGD is SGD
