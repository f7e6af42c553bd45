"""The Distiller's training step on the TensorFlow backend: a `GradientTape` around the shared losses."""

import tensorflow as tf


class TensorFlowDistillationStep:
    """`train_step(data)` for `keras.Model` on TensorFlow; works under `tf.distribute` strategies."""

    supported = True

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

    def _compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The evaluation loss as this replica's share, the contract of Keras' `compute_loss` under `tf.distribute`.

        Keras' `test_step` multiplies the loss by the number of replicas before
        averaging it over them; the Distiller's `compute_loss` returns the whole
        mean, so it is scaled here (a no-op on one replica).
        """
        loss = super()._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return loss / tf.distribute.get_strategy().num_replicas_in_sync

    def _get_metrics_result_or_logs(self, logs):
        """The epoch's logs, from the metrics' state summed over all replicas.

        Keras reads the metrics at the end of an epoch (and of an
        evaluation) only when the step's logs carry the metrics' own names;
        the Distiller's training logs name its objective `loss`, so Keras
        would keep the last step's logs, each replica's metrics averaged,
        which is not the epoch's value for non-linear metrics such as ECE.
        Here every log is read from the metric state of the whole global
        batch, as on one device.
        """
        if self.distribute_strategy.num_replicas_in_sync == 1 or not isinstance(logs, dict):
            return super()._get_metrics_result_or_logs(logs)
        results = self.get_metrics_result()
        training = self.training_loss_tracker.name in results and self.distillation_loss_tracker.name in logs
        return {key: results.get(self.training_loss_tracker.name if training and key == "loss" else key, value)
                for key, value in logs.items()}

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
