"""`steps_per_execution`: k steps per execution of the compiled step train exactly as k executions of one step."""

import keras
import numpy as np

import keras_calikd as ck
from tiny import blobs, tiny_cnn


def fitted(steps_per_execution):
    """Two epochs of 5 steps each (batches of 8): executions of 3 + 2 steps per epoch when k is 3.

    The strategies carry state from step to step: mixup's seed, CRD's memory banks (which rows a step writes
    follows the sample indices) and DKD's warm-up, which follows the epoch counter.
    """
    keras.utils.set_random_seed(0)
    x, y = blobs(40)
    distiller = ck.Distiller(tiny_cnn(name="t"), tiny_cnn(name="s"), augmentation=ck.augmentations.MixUp(seed=1),
                             distillation=[ck.distillations.CRD(embedding_dim=4, num_negatives=8, seed=2),
                                           ck.distillations.DKD(warmup=2)])
    distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), jit_compile="auto",
                      steps_per_execution=steps_per_execution)
    history = distiller.fit({"image": x, "index": np.arange(40, dtype="int32")}, y, batch_size=8, epochs=2,
                            shuffle=False, verbose=0).history
    return history, [np.asarray(v.value) for v in distiller.variables], distiller


def test_k_steps_per_execution_train_like_one():
    history, variables, distiller = fitted(1)
    k_history, k_variables, k_distiller = fitted(3)
    assert int(k_distiller.training_epoch.value) == int(distiller.training_epoch.value) == 1
    for key in history:
        np.testing.assert_allclose(k_history[key], history[key], rtol=1e-5, err_msg=key)
    names = [v.path for v in distiller.variables]
    assert any("memory" in name or "bank" in name for name in names)  # CRD's banks are among them
    for name, a, b in zip(names, k_variables, variables):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
