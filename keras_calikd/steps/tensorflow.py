"""The Distiller's training step on the TensorFlow backend: a `GradientTape` around the shared losses."""

import tensorflow as tf


class TensorFlowDistillationStep:
    """`train_step(data)` for `keras.Model` on TensorFlow; works under `tf.distribute` strategies."""

    supported = True

    def train_step(self, data):
        with tf.GradientTape() as tape:
            step = self.compute_step_losses(data, training=True)
            # Gradients are summed over replicas, so each replica contributes its share of the mean.
            loss = step.loss / tf.distribute.get_strategy().num_replicas_in_sync
            loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return self.update_train_metrics(data, step)


def all_gather(x):
    """`x` concatenated over the replicas of the current `tf.distribute` strategy (itself on one replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x
    return context.all_gather(x, axis=0)
