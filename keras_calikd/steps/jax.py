"""The Distiller's training step on the JAX backend: a pure function of the model state.

Every piece of state the shared loss code touches (batch-norm statistics,
random seed states, strategy variables such as memory banks, metric
variables) is read from and written to the `state` tuple through
`keras.StatelessScope`, so the step compiles with `jax.jit` and shards with
`keras.distribution`. The student's clean and augmented passes run as one
vmapped call where its state allows (`keras_calikd.steps.fused_passes`).
"""

import contextlib

import jax
import keras

from keras_calikd.steps import fused_passes


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
    #: Run the student's clean and augmented passes as one vmapped call (each of the student's kernels launched
    #: once per step, on both batches) wherever the student's state allows it; `False` runs two calls.
    #: Either way the step's results are the same, to float32 rounding.
    fuse_student_passes = True

    def prepare_to_fit(self):
        """Nothing to do: Keras builds all state before the first (single) trace of the JAX step."""

    def student_passes(self, images, augmented_images, training):
        """The student's outputs on the clean batch and its logits on the augmented batch: one fused call, or two
        calls where `fuse_student_passes` is off or the student's state cannot be carried through one."""
        forward = self._student_forward
        if self.fuse_student_passes:
            plans = self.__dict__.setdefault("_student_pass_plans", {})  # untracked by Keras: plain Python
            if training not in plans:
                plans[training] = fused_passes.plan(forward, *fused_passes.current_values(forward), images,
                                                    training)
                if plans[training].reason:
                    fused_passes.warn_unfused(forward, plans[training].reason)
            if plans[training].reason is None:
                clean, augmented = fused_passes.fused_call(forward, plans[training], images, augmented_images,
                                                           training)
                return self._as_outputs(clean), self._as_outputs(augmented).logits
        return self._two_student_passes(images, augmented_images, training)

    @property
    def student_passes_fused(self):
        """Whether the traced training step ran the student's two passes as one call (`None` before a trace)."""
        if not self.fuse_student_passes:
            return False
        plan = self.__dict__.get("_student_pass_plans", {}).get(True)
        return None if plan is None else plan.reason is None

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
