"""The per-backend training step of the `Distiller`, picked once, at import, from the Keras backend.

Each backend module holds only what differs between backends: how gradients
are taken and how state is threaded through the step. The loss math is the
Distiller's backend-neutral `compute_step_losses`, written in `keras.ops`.
"""

import keras

BACKEND = keras.backend.backend()
SUPPORTED_BACKENDS = ("tensorflow", "jax")

if BACKEND == "tensorflow":
    from keras_calikd.steps.tensorflow import TensorFlowDistillationStep as DistillationStep
elif BACKEND == "jax":
    from keras_calikd.steps.jax import JAXDistillationStep as DistillationStep
else:

    class DistillationStep:
        """Stands in on backends without a distillation step; the Distiller refuses to be built on them."""

        supported = False


__all__ = ["BACKEND", "SUPPORTED_BACKENDS", "DistillationStep"]
