"""`keras.distillation` both ways: each library's loss through the other's Distiller gives its own Distiller's value.

On one batch, `keras.distillation.Distiller.compute_loss` with
`student_loss_weight=0` is its distillation term alone, and
`ck.Distiller.compute_step_losses` with no augmentation gives its own.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_calikd as ck
from tiny import tiny_cnn

LogitsDistillation, FeatureDistillation = keras.distillation.LogitsDistillation, keras.distillation.FeatureDistillation


@pytest.fixture
def models_and_batch():
    keras.utils.set_random_seed(3)
    teacher, student = (tiny_cnn(4, (3, 3, 1), name=name, batch_norm=False) for name in ("teacher", "student"))
    images = np.random.default_rng(0).normal(size=(6, 3, 3, 1)).astype("float32") * 3
    return teacher, student, images, np.arange(6) % 4


def keras_distillation_term(teacher, student, loss, images, labels):
    distiller = keras.distillation.Distiller(teacher, student, distillation_losses=loss, student_loss_weight=0.0)
    distiller.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return float(distiller.compute_loss(images, labels, student(images), training=False))


def ck_distillation_term(teacher, student, distillation, images, labels):
    distiller = ck.Distiller(teacher, student, distillation=distillation, augmentation="none", alpha=1.0)
    return float(distiller.compute_step_losses((ops.convert_to_tensor(images), labels), training=False).distillation)


@pytest.mark.parametrize("loss", [LogitsDistillation(temperature=4.0),
                                  LogitsDistillation(temperature=2.0, loss="mse"),
                                  FeatureDistillation(loss="mse", teacher_layer_name="features",
                                                      student_layer_name="features")],
                         ids=["kl", "mse", "features"])
def test_a_keras_loss_in_ck_distiller_gives_keras_distillers_value(models_and_batch, loss):
    teacher, student, images, labels = models_and_batch
    expected = keras_distillation_term(teacher, student, loss, images, labels)
    assert expected > 1e-3
    np.testing.assert_allclose(ck_distillation_term(teacher, student, loss, images, labels), expected, rtol=1e-5)


@pytest.mark.parametrize("strategy", [ck.distillations.KD(temperature=4.0), ck.distillations.LSKD(weight=2.0)],
                         ids=["kd", "lskd"])
def test_a_ck_strategy_in_keras_distiller_gives_ck_distillers_value(models_and_batch, strategy):
    teacher, student, images, labels = models_and_batch
    expected = ck_distillation_term(teacher, student, strategy, images, labels)
    assert expected > 1e-3
    got = keras_distillation_term(teacher, student, ck.distillations.AsDistillationLoss(strategy), images, labels)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_kd_with_batchmean_is_keras_logits_distillation(models_and_batch):
    teacher, student, images, labels = models_and_batch
    ours = ck_distillation_term(teacher, student, ck.distillations.KD(4.0, reduction="batchmean"), images, labels)
    np.testing.assert_allclose(ours, keras_distillation_term(teacher, student, LogitsDistillation(4.0, keras.losses.KLDivergence()), images,
                                                             labels), rtol=1e-4)  # Keras clips at 1e-7


@pytest.mark.backend_neutral
def test_what_cannot_cross_over_says_why_at_construction(models_and_batch):
    teacher, student, _, _ = models_and_batch
    with pytest.raises(ValueError, match="DKD reads labels beside the logits.*train it with ck.Distiller"):
        ck.distillations.AsDistillationLoss("dkd")
    with pytest.raises(ValueError, match="RKD reads features"):
        ck.distillations.AsDistillationLoss("rkd")
    with pytest.raises(ValueError, match="reads the student's layer 'logits'.*`feature_layer` \\('features'\\)"):
        ck.Distiller(teacher, student, distillation=FeatureDistillation(student_layer_name="logits"))
    with pytest.raises(ValueError, match="In teacher model"):  # Keras' own check, at the same time
        ck.Distiller(teacher, student, feature_layer="nowhere",
                     distillation=FeatureDistillation(teacher_layer_name="nowhere"))


def test_short_fits_each_way_with_mixup_and_calibration_metrics(models_and_batch):
    teacher, student, images, labels = models_and_batch
    images, labels = np.tile(images, (4, 1, 1, 1)), np.tile(labels, 4)
    ece = ck.metrics.ExpectedCalibrationError(num_bins=5, from_logits=True)
    ours = ck.Distiller(teacher, student, distillation=LogitsDistillation(temperature=3.0), augmentation="mixup")
    ours.compile(optimizer=keras.optimizers.SGD(0.1), metrics=[ece])
    logs = ours.fit(images, labels, batch_size=8, epochs=1, verbose=0).history
    assert logs["distillation_loss"][0] > 0 and logs["augmentation_loss"][0] > 0 and 0 <= logs["ece"][0] <= 1
    theirs = keras.distillation.Distiller(teacher, student,
                                          distillation_losses=ck.distillations.AsDistillationLoss("kd"))
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = ops.convert_to_numpy(student.trainable_weights[0])
    logs = theirs.fit(images, labels, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0]) and not np.allclose(before, ops.convert_to_numpy(student.trainable_weights[0]))


@pytest.mark.backend_neutral
def test_both_adapters_survive_a_config_round_trip():
    strategy = ck.distillations.KerasLoss(LogitsDistillation(temperature=2.5, loss="categorical_crossentropy"),
                                          weight=0.5)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(clone.keras_loss) is LogitsDistillation and clone.get_config() == strategy.get_config()
    assert (clone.keras_loss.temperature, clone.weight) == (2.5, 0.5)
    by_name = ck.distillations.get("keras_loss")  # Keras' default temperature, with the KLDivergence class
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(by_name))
    assert clone.keras_loss.temperature == 3.0 and isinstance(clone.keras_loss.loss, keras.losses.KLDivergence)
    loss = ck.distillations.AsDistillationLoss(ck.distillations.KD(temperature=3.0, weight=0.7))
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert again.strategy.get_config() == loss.strategy.get_config()
