"""The Distiller as a Keras user meets it: save/load that resumes, strategies by name, labels as Keras takes them."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from tiny import blobs, tiny_cnn


def build(distillation="kd", augmentation=None, seed=0):
    keras.utils.set_random_seed(seed)
    augmentation = augmentation or ck.augmentations.MixUp(seed=1)
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), distillation=distillation,
                             augmentation=augmentation)
    distiller.compile(optimizer=ck.training.SGD(0.05, momentum=0.9, l2_weight_decay=5e-4),
                      metrics=["accuracy", ck.metrics.ExpectedCalibrationError(from_logits=True)])
    return distiller


def cross_entropies(logits, labels):
    """Per-sample cross-entropy of `logits` (float64 log-softmax) at the integer `labels`."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(1, keepdims=True)
    return -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(len(z)), labels]


def weights(model):
    return [np.asarray(ops.convert_to_numpy(v)) for v in model.variables]


def test_a_saved_distiller_loads_compiled_and_fit_continues_where_it_stopped(tmp_path):
    x, y = blobs(96)
    uninterrupted = build()
    uninterrupted.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)

    first = build()
    first.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "distiller.keras")
    first.save(path)
    resumed = keras.models.load_model(path)
    assert resumed.compiled and resumed.optimizer is not None
    assert int(ops.convert_to_numpy(resumed.optimizer.iterations)) == 3  # momentum and iteration count restored
    resumed.fit(x, y, batch_size=32, epochs=2, initial_epoch=1, shuffle=False, verbose=0)
    for expected, got in zip(weights(uninterrupted.student), weights(resumed.student)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_crd_by_name_on_a_pipeline_says_what_to_pass():
    import tensorflow as tf

    x, y = blobs(64)
    distiller = build(distillation="crd", augmentation="none")
    pipeline = tf.data.Dataset.from_tensor_slices(({"image": x, "index": np.arange(64, dtype="int32")}, y)).batch(32)
    with pytest.raises(ValueError, match=r"CRD draws on the training set's labels: call `distiller.adapt"):
        distiller.fit(pipeline, verbose=0)
    distiller.adapt(y)
    assert distiller.distillations[0].num_samples == 64
    assert np.isfinite(distiller.fit(pipeline, verbose=0).history["loss"]).all()


@pytest.mark.parametrize("form", ["(batch, 1)", "one-hot"])
def test_labels_as_keras_takes_them_train_like_class_ids(form):
    x, y = blobs(64)
    given = y[:, None] if form == "(batch, 1)" else np.eye(10, dtype="float32")[y]
    reference, other = build(), build()
    reference.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    history = other.fit(x, given, batch_size=32, epochs=1, shuffle=False, verbose=0, validation_data=(x, given))
    for expected, got in zip(weights(reference.student), weights(other.student)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert set(other.evaluate(x, given, verbose=0, return_dict=True)) == {"loss", "accuracy", "ece"}
    assert "val_accuracy" in history.history
    import tensorflow as tf  # a pipeline's labels reach the evaluation step as they are given

    by_ids = other.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    as_given = other.evaluate(tf.data.Dataset.from_tensor_slices((x, given)).batch(32), verbose=0, return_dict=True)
    assert as_given == pytest.approx(by_ids, rel=1e-6)
    piped = build()  # and the training step (arrays' labels are converted by fit before)
    piped.fit(tf.data.Dataset.from_tensor_slices((x, given)).batch(32), epochs=1, shuffle=False, verbose=0)
    for expected, got in zip(weights(reference.student), weights(piped.student)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_evaluation_logs_only_what_evaluation_measures():
    x, y = blobs(64)
    distiller = build()
    history = distiller.fit(x, y, batch_size=32, epochs=1, verbose=0, validation_data=(x, y)).history
    assert {"loss", "distillation_loss", "augmentation_loss", "val_loss"} <= set(history)
    assert not {"val_distillation_loss", "val_augmentation_loss", "training_loss", "val_training_loss"} & set(history)
    cross_entropy = cross_entropies(ops.convert_to_numpy(distiller.student(x)), y).mean()
    result = distiller.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(cross_entropy, rel=1e-4)
    # get_metrics_result() reads the logs of the last steps run: evaluation ones here, training ones after fit
    assert set(distiller.get_metrics_result()) == {"loss", "accuracy", "ece"}
    distiller.fit(x[:1], y[:1], batch_size=1, epochs=1, verbose=0)  # one step of one sample
    assert set(distiller.get_metrics_result()) == {"loss", "distillation_loss", "augmentation_loss", "accuracy", "ece"}


def test_fit_and_evaluate_take_keras_positional_arguments():
    x, y = blobs(64)
    distiller, batches = build(), []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append("train")

        def on_test_batch_end(self, batch, logs=None):
            batches.append("test")

    # Keras' order: fit(x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data, ...)
    history = distiller.fit(x, y, 16, 2, 0, [Count()], 0.0, (x[:32], y[:32])).history
    assert batches == (["train"] * 4 + ["test"] * 2) * 2 and len(history["val_loss"]) == 2  # batches of 16
    with pytest.raises(ValueError, match="does not weight training samples"):
        distiller.fit(x, y, 16, 1, 0, None, 0.0, None, True, None, np.ones(64))
    with pytest.raises(ValueError, match="labels"):  # positional validation data is checked like training data
        distiller.fit(x, y, 16, 1, 0, None, 0.0, (x, y + 10))
    with pytest.raises(TypeError, match="multiple values for argument 'callbacks'"):
        distiller.fit(x, y, 16, 1, 0, [Count()], callbacks=[Count()])
    with pytest.raises(TypeError, match=r"evaluate\(\) takes at most 8 positional arguments after self "
                                        r"\(x, y, batch_size, verbose, sample_weight, steps, callbacks, return_dict\)"):
        distiller.evaluate(x, y, 64, 0, None, None, None, True, "extra")

    # evaluate(x, y, batch_size, verbose, sample_weight, steps, callbacks, return_dict): a weighted mean
    weight = np.random.default_rng(0).uniform(0.0, 2.0, 64).astype("float32")
    batches.clear()
    result = distiller.evaluate(x, y, 64, 0, weight, None, [Count()], True)
    cross_entropy = cross_entropies(ops.convert_to_numpy(distiller.student(x)), y)
    assert batches == ["test"] and set(result) == {"loss", "accuracy", "ece"}
    assert result["loss"] == pytest.approx((cross_entropy * weight).sum() / weight.sum(), rel=1e-4)


def test_strategies_see_the_epoch_of_fit():
    seen = []

    class EpochProbe(ck.distillations.KD):
        def compute_loss(self, teacher, student, batch, training=True):
            seen.append(int(ops.convert_to_numpy(batch.epoch)))
            return super().compute_loss(teacher, student, batch, training) * ops.cast(batch.epoch + 1, "float32")

    x, y = blobs(32)
    distiller = build(distillation=EpochProbe(), augmentation="none")
    epoch = distiller.training_epoch  # state: an int32 count from 0, set once per epoch for every replica
    assert (int(ops.convert_to_numpy(epoch)), epoch.dtype, epoch.trainable, epoch.aggregation, epoch.name) == (
        0, "int32", False, "only_first_replica", "training_epoch")
    assert distiller.compute_step_losses((ops.convert_to_tensor(x), ops.convert_to_tensor(y))) is not None
    assert seen == [0]  # a step before fit sees epoch 0
    seen.clear()
    distiller.compile(optimizer="sgd", jit_compile=False, run_eagerly=True)
    history = distiller.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0).history
    assert seen == [0, 1, 2]
    assert int(ops.convert_to_numpy(distiller.training_epoch)) == 2 and len(history["loss"]) == 3


@pytest.mark.backend_neutral  # its backend is TensorFlow in either pass: tools/run_tests.sh runs it once
def test_tensorflow_distribution_strategies_train_the_distiller():
    if keras.backend.backend() != "tensorflow":
        # tf.distribute strategies are the TensorFlow backend's: this test runs in a TensorFlow-backend pytest.
        this_test = f"{os.path.abspath(__file__)}::test_tensorflow_distribution_strategies_train_the_distiller"
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", this_test],
                              env=dict(os.environ, KERAS_BACKEND="tensorflow"), capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)), timeout=600)
        assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:]
        return
    import tensorflow as tf

    x, y = blobs(64)
    results = {}
    for name, strategy in (("one device", tf.distribute.OneDeviceStrategy("/cpu:0")),
                           ("mirrored, one replica", tf.distribute.MirroredStrategy(["/cpu:0"]))):
        with strategy.scope():
            distiller = build()
        results[name] = distiller.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"]
        with strategy.scope():  # fit inside the scope as well, as Keras allows
            inside = build()
            inside.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    default = build().fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"]
    for name, losses in results.items():
        np.testing.assert_allclose(losses, default, rtol=1e-5, err_msg=name)


