"""The per-backend training step of the `Distiller`, picked once, at import, from the Keras backend.

Each backend module holds only what differs between backends: how gradients
are taken, how state is threaded through the step, and how a strategy sees
the rows of every replica (`all_gather`, for state such as memory banks that
all replicas must update alike). The loss math is the
Distiller's backend-neutral `compute_step_losses`, written in `keras.ops`.
"""

import keras

BACKEND = keras.backend.backend()
SUPPORTED_BACKENDS = ("tensorflow", "jax")

if BACKEND == "tensorflow":
    from keras_calikd.steps.tensorflow import TensorFlowDistillationStep as DistillationStep
    from keras_calikd.steps.tensorflow import all_gather
elif BACKEND == "jax":
    from keras_calikd.steps.jax import JAXDistillationStep as DistillationStep
    from keras_calikd.steps.jax import all_gather
else:

    class DistillationStep:
        """Stands in on backends without a distillation step; the Distiller refuses to be built on them."""

        supported = False

    def all_gather(x):
        return x


__all__ = ["BACKEND", "SUPPORTED_BACKENDS", "DistillationStep", "all_gather"]
