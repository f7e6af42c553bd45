"""The Distiller's training step on the JAX backend: a pure function of the model state.

Every piece of state the shared loss code touches (batch-norm statistics,
random seed states, strategy variables such as memory banks, metric
variables) is read from and written to the `state` tuple through
`keras.StatelessScope`, so the step compiles with `jax.jit` and shards with
`keras.distribution`.
"""

import contextlib

import jax
import keras


def _updated(scope, variables, values):
    """The values of `variables` after `scope`, falling back to `values` for the ones it did not assign."""
    updated = []
    for variable, value in zip(variables, values):
        new_value = scope.get_current_value(variable)
        updated.append(value if new_value is None else new_value)
    return updated


class JAXDistillationStep:
    """`train_step(state, data)` for `keras.Model` on JAX."""

    supported = True

    def prepare_to_fit(self):
        """Nothing to do: Keras builds all state before the first (single) trace of the JAX step."""

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state

        def loss_fn(trainable, non_trainable):
            mapping = list(zip(self.trainable_variables, trainable))
            mapping += list(zip(self.non_trainable_variables, non_trainable))
            with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
                step = self.compute_step_losses(data, training=True)
            with keras.StatelessScope(state_mapping=list(zip(self.optimizer.variables, optimizer_variables))):
                scaled_loss = self.optimizer.scale_loss(step.loss)
            return scaled_loss, (step, _updated(scope, self.non_trainable_variables, non_trainable))

        (_, (step, non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable, non_trainable)
        trainable, optimizer_variables = self.optimizer.stateless_apply(optimizer_variables, grads, trainable)

        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metrics_variables))) as scope:
            logs = self.update_train_metrics(data, step)
        metrics_variables = _updated(scope, self.metrics_variables, metrics_variables)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)


def num_replicas() -> int:
    """1: under `keras.distribution` the step is one SPMD program over the global batch."""
    return 1


def all_gather(x):
    """Identity: under `keras.distribution` the step is one SPMD program over the global batch."""
    return x


def replica_slice(x):
    """Identity: under `keras.distribution` every tensor of the step spans the global batch."""
    return x


def creation_scope(model):
    """No scope is needed on JAX: `keras.distribution` lays out variables wherever they are created."""
    return contextlib.nullcontext()
