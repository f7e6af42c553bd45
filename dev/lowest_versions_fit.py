"""A small Distiller fit, save and load on the current backend: the smoke test of dev/lowest_versions.sh."""

import os
import sys
import tempfile

import numpy as np

import keras_calikd as ck


def main() -> int:
    import keras

    import keras_calikd.data  # tensorflow-datasets' builders

    assert keras_calikd.data.info("fashion_mnist").num_classes == 10
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 16, 16, 1)).astype("float32")
    labels = rng.integers(0, 10, 64).astype("int32")
    teacher, student = (ck.models.get("resnet8", 10, input_shape=(16, 16, 1), normalization=((128.0,), (64.0,)))
                        for _ in range(2))
    for distillation, augmentation in (("kd", "mixup"), ("crd", "cutmix")):
        distiller = ck.Distiller(teacher, student, distillation=distillation, augmentation=augmentation)
        distiller.compile(optimizer=ck.training.SGD(0.05, momentum=0.9), jit_compile=True,
                          metrics=["accuracy", ck.metrics.ExpectedCalibrationError(from_logits=True)])
        inputs = {"image": images, "index": np.arange(64, dtype="int32")}
        history = distiller.fit(inputs, labels, batch_size=32, epochs=2, verbose=0).history
        assert np.isfinite(history["loss"]).all(), history
        path = os.path.join(tempfile.mkdtemp(), "distiller.keras")
        distiller.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded.predict(images[:8], verbose=0), distiller.predict(images[:8], verbose=0),
                                   rtol=1e-5, atol=1e-5)
        print(f"{keras.backend.backend()}: keras {keras.__version__}, {distillation} + {augmentation}: "
              f"loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f}, saved and loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
