"""TensorBoard logs of calibration: validation diagrams per epoch, test scalars and HParams, on every backend."""

import glob
import os

import keras
import numpy as np
import pytest

import keras_calikd as ck
from keras_calikd.training import tensorboard
from tiny import blobs, dense_model


def _events(folder):
    """{tag: [(step, event value)]} of every event file under `folder`, read back with TensorFlow."""
    import tensorflow as tf

    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


def _decoded_image(value):
    import tensorflow as tf

    tensor = tf.make_ndarray(value.tensor)  # [width, height, encoded PNG]
    return tf.io.decode_png(tensor[2]).numpy()


def _reference_statistics(model, x, y, bins):
    """The validation statistics computed here, independently of the callback: a fresh metric over predictions."""
    metric = ck.metrics.ExpectedCalibrationError(bins, from_logits=True)
    metric.update_state(y, model.predict(x, verbose=0, batch_size=len(x)))
    return metric.bin_statistics()


class _Recorder(keras.callbacks.Callback):
    """Records the statistics that the calibration callback sees, and the reference ones, at each epoch end."""

    def __init__(self, metric, x_val, y_val, predictor=None):
        super().__init__()
        self.metric, self.x_val, self.y_val, self.predictor, self.seen = metric, x_val, y_val, predictor, []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((self.metric.bin_statistics(), _reference_statistics(
            self.predictor or self.model, self.x_val, self.y_val, self.metric.num_bins)))


def test_diagrams_test_metrics_and_hparams_are_written_and_read_back(tmp_path):
    import tensorflow as tf

    x, y = blobs(96, num_classes=4, shape=(3, 3, 1), seed=1)
    x_val, y_val = x[64:], y[64:]
    keras.utils.set_random_seed(0)
    model = dense_model()
    ece = ck.metrics.ExpectedCalibrationError(10, from_logits=True)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy", ece])
    log_dir = str(tmp_path / "logs" / "tensorboard")
    board = tensorboard.CalibrationTensorBoard(log_dir, ece, title="vgg13 → MobileNetV2\nKD + mixup", dpi=40)
    recorder = _Recorder(ece, x_val, y_val)
    model.fit(x[:64], y[:64], validation_data=(x_val, y_val), batch_size=16, epochs=2, verbose=0,
              callbacks=[board, recorder])

    # At on_epoch_end the metric holds the validation set's statistics, not the training ones.
    for held, reference in recorder.seen:
        assert held["count"].sum() == len(x_val)
        np.testing.assert_allclose(held["count"], reference["count"])
        np.testing.assert_allclose(held["accuracy"], reference["accuracy"], atol=1e-5)
        np.testing.assert_allclose(held["confidence"], reference["confidence"], atol=1e-4)

    results = {"name": "cifar100/vgg13_mobilenetv2_kd_mixup", "dataset": "cifar100", "role": "distilled",
               "model": "MobileNetV2", "teacher_model": "vgg13", "method": "KD + mixup", "alpha": 0.5,
               "accuracy": 0.66, "ece_100": 0.047, "oe_100": 0.002, "ece_15": 0.04, "oe_15": 0.002, "nll": 1.3,
               "brier": 0.45, "epochs": 2}
    signature = {"learning_rate": 0.01, "batch_size": 64, "seed": 0, "alpha": 0.5,
                 "distillation": [{"class": "KD", "temperature": 50.0, "reduction": "scaled", "weight": 1.0}],
                 "augmentation": {"class": "MixUp", "alpha": 0.4, "label_source": "ground_truth", "seed": None}}
    hparams = tensorboard.hparams_from_results(results, signature)
    assert hparams["temperature"] == 50.0 and hparams["augmentation"] == "MixUp" and hparams["MixUp.alpha"] == 0.4
    assert hparams["teacher"] == "vgg13" and hparams["method"] == "KD + mixup" and hparams["dataset"] == "cifar100"
    scalars = board.write_test_metrics(results)
    board.write_hparams(hparams)
    board.close()

    events = _events(os.path.join(log_dir, "calibration"))
    steps = [step for step, _ in events[tensorboard.IMAGE_TAG]]
    assert steps == [0, 1]
    image = _decoded_image(events[tensorboard.IMAGE_TAG][-1][1])
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.dtype == np.uint8
    assert image.std() > 10  # a drawing, not a blank image
    assert scalars["test/ece_100"] == pytest.approx(0.047)
    for tag in ("test/accuracy", "test/ece_100", "test/oe_100", "test/ece_15", "test/nll", "test/brier"):
        (step, value), = events[tag]
        assert step == 2 and float(tf.make_ndarray(value.tensor)) == pytest.approx(results[tag[5:]], rel=1e-6)

    from tensorboard.plugins.hparams import metadata as hparams_metadata

    (_, session), = events[hparams_metadata.SESSION_START_INFO_TAG]
    info = hparams_metadata.parse_session_start_info_plugin_data(session.metadata.plugin_data.content)
    assert info.group_name == results["name"]
    assert info.hparams["method"].string_value == "KD + mixup"
    assert info.hparams["alpha"].number_value == 0.5
    assert info.hparams["temperature"].number_value == 50.0
    assert info.hparams["model"].string_value == "MobileNetV2"


def test_a_metric_that_is_not_the_compiled_one_is_refused(tmp_path):
    x, y = blobs(48, num_classes=4, shape=(3, 3, 1), seed=2)
    model = dense_model()
    compiled = ck.metrics.ExpectedCalibrationError(10, from_logits=True)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[compiled])
    stranger = ck.metrics.ExpectedCalibrationError(10, from_logits=True)  # never updated: result 0
    board = tensorboard.CalibrationTensorBoard(str(tmp_path), stranger)
    with pytest.raises(ValueError, match="pass the metric object given to compile"):
        model.fit(x[:32], y[:32], validation_data=(x[32:], y[32:]), batch_size=16, epochs=1, verbose=0,
                  callbacks=[board])
    with pytest.raises(ValueError, match="ExpectedCalibrationError"):
        tensorboard.CalibrationTensorBoard(str(tmp_path), "ece")


def test_epochs_without_validation_write_no_diagram(tmp_path):
    x, y = blobs(48, num_classes=4, shape=(3, 3, 1), seed=3)
    model = dense_model()
    ece = ck.metrics.ExpectedCalibrationError(10, from_logits=True)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[ece])
    board = tensorboard.CalibrationTensorBoard(str(tmp_path), ece, dpi=30)
    model.fit(x[:32], y[:32], validation_data=(x[32:], y[32:]), validation_freq=2, batch_size=16, epochs=2,
              verbose=0, callbacks=[board])
    board.close()
    assert [step for step, _ in _events(str(tmp_path / "calibration"))[tensorboard.IMAGE_TAG]] == [1]


def test_hparams_of_a_teacher_and_of_a_baseline_without_alpha():
    teacher = tensorboard.hparams_from_results({"name": "cifar100/teacher_vgg13", "dataset": "cifar100",
                                                "role": "teacher", "model": "vgg13"}, epochs=240)
    assert teacher["method"] == "teacher" and teacher["teacher"] == "none" and teacher["epochs"] == 240
    baseline = tensorboard.hparams_from_results({"role": "distilled", "method": "RKD", "alpha": None,
                                                 "teacher_model": "ResNet50", "model": "vgg8"})
    assert baseline["alpha"] == "none" and baseline["temperature"] == "none"
    assert all(isinstance(v, (bool, int, float, str)) for v in baseline.values())


def test_a_distiller_hands_its_validation_statistics_to_the_callback(tmp_path):
    x, y = blobs(96, num_classes=4, shape=(3, 3, 1), seed=4)
    keras.utils.set_random_seed(1)
    distiller = ck.Distiller(dense_model(name="teacher"), dense_model(name="student"),
                             augmentation=ck.augmentations.MixUp(seed=1))
    ece = ck.metrics.ExpectedCalibrationError(10, from_logits=True)
    distiller.compile(optimizer="sgd", metrics=["accuracy", ece])
    board = tensorboard.CalibrationTensorBoard(str(tmp_path), ece, dpi=30)
    recorder = _Recorder(ece, x[64:], y[64:], predictor=distiller.student)
    distiller.fit(x[:64], y[:64], validation_data=(x[64:], y[64:]), batch_size=16, epochs=1, verbose=0,
                  callbacks=[board, recorder])
    board.close()
    (held, reference), = recorder.seen
    assert held["count"].sum() == 32  # the validation images, not the (mixed) training batches
    np.testing.assert_allclose(held["accuracy"], reference["accuracy"], atol=1e-5)
    assert [step for step, _ in _events(str(tmp_path / "calibration"))[tensorboard.IMAGE_TAG]] == [0]
