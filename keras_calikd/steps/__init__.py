"""The per-backend training step of the `Distiller`, picked once, at import, from the Keras backend.

Each backend module holds only what differs between backends: how gradients
are taken, how state is threaded through the step, and how a strategy sees
the global batch when each replica holds a slice of it (`all_gather`, and
`replica_slice` for the replica's own rows), so that random partners, boxes
and memory-bank updates are the same on any number of replicas. The loss math is the
Distiller's backend-neutral `compute_step_losses`, written in `keras.ops`.
"""

import keras

BACKEND = keras.backend.backend()
SUPPORTED_BACKENDS = ("tensorflow", "jax")

if BACKEND == "tensorflow":
    from keras_calikd.steps.tensorflow import TensorFlowDistillationStep as DistillationStep
    from keras_calikd.steps.tensorflow import all_gather, creation_scope, num_replicas, replica_slice
elif BACKEND == "jax":
    from keras_calikd.steps.jax import JAXDistillationStep as DistillationStep
    from keras_calikd.steps.jax import all_gather, creation_scope, num_replicas, replica_slice
else:

    class DistillationStep:
        """Stands in on backends without a distillation step; the Distiller refuses to be built on them."""

        supported = False

    def all_gather(x):
        return x

    def replica_slice(x):
        return x

    def num_replicas():
        return 1

    def creation_scope(model):
        import contextlib

        return contextlib.nullcontext()


def per_sample(draw, batch_size):
    """Random values for each sample of the local batch, drawn for the global batch and sliced.

    One device and several replicas then draw the same values for the same
    sample, given the same seed state.

    Args:
        draw: Callable `(global_batch_size) -> tensor` whose first axis is the batch.
        batch_size: The local batch size.
    """
    return replica_slice(draw(batch_size * num_replicas()))


__all__ = ["BACKEND", "SUPPORTED_BACKENDS", "DistillationStep", "all_gather", "creation_scope", "num_replicas",
           "per_sample", "replica_slice"]
