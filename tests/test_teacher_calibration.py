"""Calibrating the teacher first: post-hoc temperature scaling as a model the Distiller can distil from."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from keras_calikd import distiller_adapter
from keras_calikd.training.teacher_calibration import calibrate_temperature, temperature_scaled
from tiny import blobs, dense_model, tiny_cnn


def nll(logits, labels):
    z = np.asarray(logits, np.float64)
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels].mean()


def overconfident_teacher(rng, n=1500, scale=3.0):
    """A linear teacher whose logits are `scale` times those that generated the labels (so T* ~ scale)."""
    teacher = dense_model(name="teacher")
    teacher.set_weights([rng.normal(size=w.shape).astype("float32") for w in teacher.get_weights()])
    images = rng.normal(size=(n, 3, 3, 1)).astype("float32")
    true_logits = np.asarray(teacher.predict(images, verbose=0), np.float64)
    probs = np.exp(true_logits - true_logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    teacher.set_weights([scale * w for w in teacher.get_weights()])
    return teacher, images, labels


def test_scaled_teacher_has_lower_nll_same_argmax_and_the_right_temperature(rng):
    teacher, images, labels = overconfident_teacher(rng)
    before = teacher.predict(images, verbose=0)
    scaled, temperature = calibrate_temperature(teacher, images, labels, batch_size=512)
    after = scaled.predict(images, verbose=0)
    assert 2.5 < temperature < 3.5  # the logits were 3x too sharp
    assert nll(after, labels) < nll(before, labels) - 0.05
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))
    np.testing.assert_allclose(after, before / temperature, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(teacher.predict(images, verbose=0), before)  # the original is untouched


def test_nll_never_rises_even_for_a_calibrated_model(rng):
    teacher, images, labels = overconfident_teacher(rng, n=400, scale=1.0)
    scaled, temperature = calibrate_temperature(teacher, images, labels)
    assert nll(scaled.predict(images, verbose=0), labels) <= nll(teacher.predict(images, verbose=0), labels) + 1e-9
    assert 0.6 < temperature < 1.6


def test_datasets_give_the_numpy_temperature(rng):
    import tensorflow as tf

    teacher, images, labels = overconfident_teacher(rng, n=300)
    _, from_arrays = calibrate_temperature(teacher, images, labels)
    pipeline = tf.data.Dataset.from_tensor_slices(({"image": images, "index": np.arange(300)}, labels)).batch(64)
    _, from_pipeline = calibrate_temperature(teacher, pipeline)
    _, from_batches = calibrate_temperature(teacher, [(images[i:i + 100], labels[i:i + 100]) for i in (0, 100, 200)])
    np.testing.assert_allclose([from_pipeline, from_batches], from_arrays, rtol=1e-5)


def test_scaled_model_keeps_features_and_saves(tmp_path, rng):
    x, y = blobs(64)
    teacher = tiny_cnn(name="teacher")
    scaled, temperature = calibrate_temperature(teacher, x, y)
    assert scaled.get_layer("features") is teacher.get_layer("features")  # shared layers
    with_features = distiller_adapter.with_features(scaled, "features", "teacher")
    logits, features = with_features(x[:4])
    np.testing.assert_allclose(ops.convert_to_numpy(logits), scaled.predict(x[:4], verbose=0), rtol=1e-5, atol=1e-6)
    assert ops.convert_to_numpy(features).shape == (4, 8)
    path = str(tmp_path / "scaled_teacher.keras")
    scaled.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), scaled.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(1.0 / reloaded.get_layer("temperature_scaling").scale, temperature, rtol=1e-6)


@pytest.mark.parametrize("distillation", ["kd", "crd"])
def test_a_distiller_trains_from_the_scaled_teacher(rng, distillation):
    x, y = blobs(64)
    teacher = tiny_cnn(name="teacher")
    scaled, _ = calibrate_temperature(teacher, x[32:], y[32:])
    strategy = ck.distillations.CRD(num_samples=64, num_negatives=8) if distillation == "crd" else "kd"
    distiller = ck.Distiller(scaled, tiny_cnn(name="student"), distillation=strategy)
    distiller.compile(optimizer=keras.optimizers.SGD(0.05))
    inputs = {"image": x, "index": np.arange(64, dtype="int32")} if distillation == "crd" else x
    history = distiller.fit(inputs, y, batch_size=32, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["distillation_loss"][0] != 0
    assert not scaled.trainable and not teacher.get_layer("features").trainable


def test_wrong_inputs_fail_clearly(rng):
    teacher = dense_model(name="teacher")
    x = rng.normal(size=(8, 3, 3, 1)).astype("float32")
    with pytest.raises(ValueError, match="as many held-out images as labels"):
        calibrate_temperature(teacher, x, np.zeros(5, "int32"))
    with pytest.raises(ValueError, match="need their `labels`"):
        calibrate_temperature(teacher, x)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\]"):
        calibrate_temperature(teacher, x, np.full(8, 7))
    with pytest.raises(ValueError, match="temperature"):
        temperature_scaled(teacher, 0.0)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)

        def call(self, inputs):
            return self.dense(keras.ops.reshape(inputs, (-1, 9)))

    with pytest.raises(ValueError, match="Wrap it in a functional model"):
        calibrate_temperature(Subclassed(), x, np.zeros(8, "int32"))
