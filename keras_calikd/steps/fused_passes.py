"""The student's clean and augmented passes as one call on JAX, with the results of two calls in a row.

Two calls of the student launch each of its kernels twice per step. `jax.vmap` over a leading axis that holds
the two batches runs each convolution and matrix product once, on both batches, while every reduction (batch
norm's batch statistics among them) stays within its own batch. What `vmap` does not do is carry the student's
state from the first call into the second. `plan` finds out, once, how each variable the call updates can be
carried, from the traced call itself (its jaxpr), so that it holds for any Keras model:

- batch-norm moving statistics (`keras.layers.BatchNormalization` without renorm, called once per pass, whose
  outputs in training do not read them): the update `m * momentum + s * (1 - momentum)` is affine in `m`. Both
  batches run with `m = 0`, which returns `s_i * (1 - momentum)` exactly, and the two updates are then applied
  in order, `(m0 * momentum + u1) * momentum + u2`: the operations two calls make on the statistics.
- state whose update does not read the images, such as the seed state of a dropout layer: its value after the
  first call comes from a call of which nothing else is used (XLA drops the rest of it), and the second batch
  starts from that value, as the second of two calls does, so it draws the same random numbers.
- anything else (state updated from the images that is not a moving statistic, statistics the outputs read,
  losses added during the call): the two calls run one after the other, and a warning says why, once.
"""

from __future__ import annotations

import collections
import dataclasses
import warnings

import jax
import jax.numpy as jnp
import keras
from jax.extend.core import Literal


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the fused call carries the state that the student's call updates.

    Attributes:
        momentum: `{index: momentum}` of the updated moving statistics, by index in `non_trainable_variables`.
        sequenced: Indices of the updated state that does not depend on the images (seed states).
        reason: Why the passes cannot be fused; `None` when they can.
    """

    momentum: dict
    sequenced: tuple
    reason: str | None = None

    @property
    def updated(self) -> tuple:
        return tuple(sorted(set(self.momentum) | set(self.sequenced)))


class _RecordingScope(keras.StatelessScope):
    """A `StatelessScope` that counts the assignments of each variable."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.assignments = collections.Counter()

    def add_update(self, update):
        self.assignments[id(update[0])] += 1
        super().add_update(update)


def call(forward, trainable, non_trainable, images, training, scope_type=keras.StatelessScope):
    """`forward(images)` on the given variable values: `(outputs, new non-trainable values, updated, scope)`.

    `updated` lists the indices of the non-trainable variables the call assigned. The model is called through
    `__call__` (unlike `Layer.stateless_call`), so that a subclassed model's layers see `training`.
    """
    state = forward.non_trainable_variables
    mapping = list(zip(forward.trainable_variables, trainable)) + list(zip(state, non_trainable))
    with scope_type(state_mapping=mapping, collect_losses=True) as scope:
        initial = [scope.get_current_value(v) for v in state]
        outputs = forward(images, training=training)
    new = [scope.get_current_value(v) for v in state]
    return outputs, new, [j for j, (old, value) in enumerate(zip(initial, new)) if value is not old], scope


def _moving_statistics(forward) -> dict:
    """`{id(variable): momentum}` of the moving statistics whose update the fused call can compose: those of
    Keras' own `BatchNormalization` (its class's `call`, without renorm, whose update is another)."""
    statistics = {}
    for layer in forward._flatten_layers(include_self=False):  # Keras' walk over nested layers and models
        composable = (isinstance(layer, keras.layers.BatchNormalization) and not getattr(layer, "renorm", False)
                      and type(layer).call is keras.layers.BatchNormalization.call)
        if composable:
            for variable in (layer.moving_mean, layer.moving_variance):
                statistics[id(variable)] = float(layer.momentum)
    return statistics


def _dependent(jaxpr, sources) -> list:
    """For each output of `jaxpr`, whether it may depend on the inputs at `sources` (an equation with a
    dependent input counts all its outputs as dependent: an over-estimate, never an under-estimate)."""
    reached = {jaxpr.invars[i] for i in sources}
    for equation in jaxpr.eqns:
        if any(not isinstance(v, Literal) and v in reached for v in equation.invars):
            reached.update(equation.outvars)
    return [not isinstance(v, Literal) and v in reached for v in jaxpr.outvars]


def _spec(x):
    return jax.ShapeDtypeStruct(jnp.shape(x), x.dtype)


def plan(forward, trainable, non_trainable, images, training) -> Plan:
    """Traces `forward` once on abstract values (the shapes of the given values) and decides how its two passes
    can share one call."""
    n_trainable, state = len(trainable), forward.non_trainable_variables
    seen = {}

    def traced(values, images):
        outputs, new, updated, scope = call(forward, values[:n_trainable], values[n_trainable:], images, training,
                                            scope_type=_RecordingScope)
        seen.update(updated=updated, assignments=scope.assignments, losses=len(scope.losses))
        return outputs, [new[j] for j in updated]

    values = [_spec(v) for v in list(trainable) + list(non_trainable)]
    jaxpr = jax.make_jaxpr(traced)(values, _spec(images)).jaxpr
    updated = seen["updated"]
    n_outputs = len(jaxpr.outvars) - len(updated)
    if seen["losses"]:
        return Plan({}, (), f"its call adds {seen['losses']} loss(es) (add_loss or an activity regularizer)")

    statistics, momentum, sequenced = _moving_statistics(forward), {}, []
    from_images = _dependent(jaxpr, [len(values)])
    for position, j in enumerate(updated):
        variable = state[j]
        name = getattr(variable, "path", variable.name)
        if id(variable) in statistics and seen["assignments"][id(variable)] == 1:
            reached = _dependent(jaxpr, [n_trainable + j])
            del reached[n_outputs + position]  # its own new value reads it: the moving average
            if any(reached):
                return Plan({}, (), f"its outputs or other state read the moving statistic {name} in training")
            momentum[j] = statistics[id(variable)]
        elif not from_images[n_outputs + position]:
            sequenced.append(j)
        else:
            return Plan({}, (), f"it updates {name} from the images, and only batch-norm moving statistics "
                                "updated once per call can be composed")
    return Plan(momentum, tuple(sequenced))


def current_values(forward):
    """The values of `forward`'s trainable and non-trainable variables: in the step's `StatelessScope`, the values
    it maps them to (`Variable.value` reads those), else their own."""
    return [v.value for v in forward.trainable_variables], [v.value for v in forward.non_trainable_variables]


def fused_call(forward, plan_: Plan, images, augmented_images, training):
    """The outputs of `forward` on `images` and on `augmented_images` from one vmapped call.

    Runs inside the step's `StatelessScope`: reads the student's variables from it and assigns their values
    after both passes to it.

    Returns:
        `(clean outputs, augmented outputs)`, each as `forward` returns them.
    """
    trainable, state = current_values(forward)
    after_first = None
    if plan_.sequenced:  # the seed states after the clean pass; XLA removes the rest of this call
        _, after_first, _, _ = call(forward, trainable, state, images, training)
    values, axes = [], []
    for j, value in enumerate(state):
        if j in plan_.momentum:
            values.append(jnp.zeros_like(value))
            axes.append(None)
        elif j in plan_.sequenced:
            values.append(jnp.stack([value, after_first[j]]))
            axes.append(0)
        else:
            values.append(value)
            axes.append(None)
    updated = plan_.updated

    def one_pass(values, batch):
        outputs, new, _, _ = call(forward, trainable, values, batch, training)
        return outputs, [new[j] for j in updated]

    outputs, new = jax.vmap(one_pass, in_axes=(axes, 0))(values, jnp.stack([images, augmented_images]))
    for j, value in zip(updated, new):
        if j in plan_.momentum:
            momentum = plan_.momentum[j]
            value = (state[j] * momentum + value[0]) * momentum + value[1]
        else:
            value = value[1]
        forward.non_trainable_variables[j].assign(value)
    return jax.tree_util.tree_map(lambda t: t[0], outputs), jax.tree_util.tree_map(lambda t: t[1], outputs)


def warn_unfused(forward, reason: str) -> None:
    warnings.warn(f"keras_calikd: the student {forward.name!r} runs its clean and augmented passes as two calls "
                  f"on JAX, not as one fused call, because {reason}. The results are the same; the step launches "
                  "the student's kernels twice.", stacklevel=3)
