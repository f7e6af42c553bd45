"""The Distiller's training step on the TensorFlow backend: a `GradientTape` around the shared losses."""

import tensorflow as tf


class TensorFlowDistillationStep:
    """`train_step(data)` for `keras.Model` on TensorFlow; works under `tf.distribute` strategies."""

    supported = True

    def student_passes(self, images, augmented_images, training):
        """The student's clean and augmented passes: two calls, one after the other, on TensorFlow.

        The JAX step runs them as one vmapped call. TensorFlow has no counterpart that keeps each batch's
        batch-norm statistics apart and carries the layers' variable assignments through (`tf.vectorized_map`
        does not convert assignments), and on a CPU, where this backend is the faster one, its graph runs each
        operation as it comes, so one call on both batches would not save work; concatenating the batches instead
        would pool the batch statistics over both, another step.
        """
        return self._two_student_passes(images, augmented_images, training)

    def prepare_to_fit(self):
        """Creates the optimizer's and the metrics' variables before the step is traced.

        Variables created inside a `tf.function` make TensorFlow trace it a
        second time; created here, the step is traced once per input shape.
        The Distiller calls this inside its distribution strategy's scope.
        """
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        if not all(getattr(metric, "built", True) for metric in self.metrics):  # only CompileMetrics builds late
            images = tf.zeros((1,) + tuple(self.image_shape))
            self.compute_metrics(images, tf.zeros((1,), tf.int32), self(images))
            self.reset_metrics()

    def train_step(self, data):
        with tf.GradientTape() as tape:
            step = self.compute_step_losses(data, training=True)
            # Gradients are summed over replicas, so each replica contributes its share of the mean.
            loss = step.loss / tf.distribute.get_strategy().num_replicas_in_sync
            loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return self.update_train_metrics(data, step)


def _replicas():
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas() -> int:
    """How many replicas share the global batch (1 outside a multi-replica `tf.distribute` strategy)."""
    context = _replicas()
    return 1 if context is None else context.num_replicas_in_sync


def all_gather(x):
    """`x` concatenated over the replicas of the current `tf.distribute` strategy (itself on one replica)."""
    context = _replicas()
    # The identity places `x` on this replica's device: MultiWorkerMirroredStrategy refuses to gather a
    # tensor without one (such as a batch straight from the distributed iterator).
    return x if context is None else context.all_gather(tf.identity(x), axis=0)


def replica_slice(x):
    """This replica's rows of a tensor that spans the global batch (all of it on one replica)."""
    context = _replicas()
    if context is None:
        return x
    local = tf.shape(x)[0] // context.num_replicas_in_sync
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * local
    return x[start:start + local]


def creation_scope(model):
    """The scope in which `model`'s late variables (optimizer, strategy state) must be created: its strategy's."""
    return model.distribute_strategy.scope()
