"""Trains the Distillers of both cases on several logical CPU devices and prints what they learnt as JSON.

    python tests/multi_device_run.py DEVICES

Run in a fresh process: the devices must be configured before the backend starts.
The TensorFlow backend trains under `tf.distribute.MirroredStrategy` and the JAX
backend under `keras.distribution.DataParallel`. `train_cases()` trains the
same cases on this process's one device (the test's reference).
"""

import contextlib
import json
import os
import sys

CASES = ("kd_mixup", "crd_cutmix")


def model(name):
    """A small CNN without batch norm (per-replica batch statistics would differ by design)."""
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name=name)


def build(case):
    import keras

    import keras_calikd as ck

    keras.utils.set_random_seed(0)
    teacher, student = model("teacher"), model("student")
    if case == "kd_mixup":
        distillation, augmentation = ck.distillations.KD(temperature=4.0), ck.augmentations.MixUp(seed=1)
    else:
        distillation = ck.distillations.CRD(num_samples=64, num_negatives=16, seed=2)
        augmentation = ck.augmentations.CutMix(probability=1.0, seed=1)
    distiller = ck.Distiller(teacher, student, distillation=distillation, augmentation=augmentation)
    distiller.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      metrics=["accuracy", ck.metrics.ExpectedCalibrationError(from_logits=True)])
    return distiller


def train(case, scope):
    import keras
    import numpy as np

    from tiny import blobs

    x, y = blobs(64)
    inputs = {"image": x, "index": np.arange(64, dtype="int32")}
    with scope():
        distiller = build(case)
    history = distiller.fit(inputs, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    evaluation = distiller.evaluate(inputs, y, batch_size=16, verbose=0, return_dict=True)
    if keras.backend.backend() == "tensorflow":
        replicas = distiller.distribute_strategy.num_replicas_in_sync
    else:
        import jax

        replicas = jax.device_count()
    memory = []
    if case == "crd_cutmix":
        memory = keras.ops.convert_to_numpy(distiller.distillations[0].student_memory)[:4, 0].tolist()
    return {"history": history, "evaluation": evaluation, "memory": memory, "replicas": replicas}


def train_cases(scope=contextlib.nullcontext) -> dict:
    """`{case: {"history", "evaluation", "memory" (CRD's first rows), "replicas"}}` for every case."""
    return {case: train(case, scope) for case in CASES}


def main(devices: int) -> None:
    if os.environ["KERAS_BACKEND"] == "jax":  # before JAX starts
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
        scope = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)]).scope
    else:
        import jax

        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
        scope = contextlib.nullcontext
    print("RESULT " + json.dumps(train_cases(scope)))


if __name__ == "__main__":
    main(int(sys.argv[1]))
