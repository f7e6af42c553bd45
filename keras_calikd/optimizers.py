"""The paper's optimiser: SGD with momentum and L2 weight decay, and per-epoch learning-rate schedules."""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import ops

SCHEDULES = ("cosine", "multistep", "constant")


@keras.saving.register_keras_serializable(package="keras_calikd")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that changes once per epoch, as PyTorch's epoch-stepped schedulers do.

    - `"cosine"`: `lr * (1 + cos(pi * epoch / t_max)) / 2` (CosineAnnealingLR).
    - `"multistep"`: `lr * gamma ** (number of milestones <= epoch)` (MultiStepLR).
    - `"constant"`: `lr`.

    The epoch is `floor(step / steps_per_epoch)`, so the schedule follows the
    optimiser's iteration count and resumes exactly from a checkpoint.

    Args:
        learning_rate: Initial learning rate.
        steps_per_epoch: Optimiser steps in one epoch.
        kind: `"cosine"`, `"multistep"` or `"constant"`.
        t_max: Epochs of the cosine half period (the paper: 240).
        milestones: Epochs at which `"multistep"` multiplies by `gamma` (the paper's TinyImageNet: 150, 180).
        gamma: Multiplier of `"multistep"`.

    Example:

    ```python
    schedule = ck.training.EpochSchedule(0.1, steps_per_epoch=782, kind="cosine", t_max=240)
    optimizer = ck.training.SGD(schedule, momentum=0.9, l2_weight_decay=5e-4)
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 4.2.
    """

    def __init__(self, learning_rate: float, steps_per_epoch: int, kind: str = "cosine", t_max: int = 240,
                 milestones: Sequence[int] = (), gamma: float = 0.1):
        if kind not in SCHEDULES:
            raise ValueError(f"Unknown learning-rate schedule {kind!r}; known: {', '.join(SCHEDULES)}.")
        if not learning_rate > 0:
            raise ValueError(f"The learning rate must be > 0, got {learning_rate}.")
        if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(f"`steps_per_epoch` must be a positive integer, got {steps_per_epoch!r}.")
        if kind == "cosine" and not t_max > 0:
            raise ValueError(f"The cosine schedule needs `t_max` > 0 epochs, got {t_max}.")
        self.learning_rate = float(learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.kind = kind
        self.t_max = int(t_max)
        self.milestones = tuple(int(m) for m in milestones)
        self.gamma = float(gamma)

    def epoch_rate(self, epoch: int) -> float:
        """The learning rate of `epoch` (0-based), in Python."""
        if self.kind == "cosine":
            return self.learning_rate * (1 + math.cos(math.pi * epoch / self.t_max)) / 2
        if self.kind == "multistep":
            return self.learning_rate * self.gamma ** sum(epoch >= m for m in self.milestones)
        return self.learning_rate

    def __call__(self, step):
        epoch = ops.floor(ops.cast(step, "float32") / self.steps_per_epoch)
        if self.kind == "cosine":
            return self.learning_rate * (1 + ops.cos(math.pi * epoch / self.t_max)) / 2
        if self.kind == "multistep":
            passed = sum(ops.cast(epoch >= m, "float32") for m in self.milestones) if self.milestones else 0.0
            return self.learning_rate * ops.power(self.gamma, passed)
        return ops.convert_to_tensor(self.learning_rate, "float32")

    def get_config(self):
        return {"learning_rate": self.learning_rate, "steps_per_epoch": self.steps_per_epoch, "kind": self.kind,
                "t_max": self.t_max, "milestones": list(self.milestones), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="keras_calikd")
class SGD(keras.optimizers.SGD):
    """SGD in PyTorch's form: coupled L2 decay, a momentum buffer of gradients, the rate applied last.

    Per variable `w` with gradient `g`, learning rate `lr`, momentum `mu` and
    `l2_weight_decay` `wd`, each step does what PyTorch's SGD does with
    dampening 0:

    ```
    g = g + wd * w               # coupled L2: the decay goes through momentum
    b = mu * b + g               # momentum buffer (b = g on the first step)
    d = g + mu * b if nesterov else b
    w = w - lr * d
    ```

    Keras' own SGD keeps `v = mu * v - lr * g` instead, with the rate folded
    into the velocity. The two agree while the rate is constant, but after a
    step drop of the schedule Keras' velocity still carries steps of the old
    rate for about `1 / (1 - mu)` iterations; here the new rate applies at
    once, as in the paper's (PyTorch) runs. Keras' `weight_decay` (decoupled,
    outside the momentum) is still accepted, but the paper's decay is the
    coupled `l2_weight_decay`: with momentum 0.9 the two differ by about a
    factor of ten in effective decay. Every trainable variable is decayed, as
    in the reference training scripts.

    Gradient clipping, loss scaling (`keras.mixed_precision`) and gradient
    accumulation act on `g` before the step above, as they act on the
    gradients before PyTorch's `optimizer.step()`.

    Args:
        learning_rate: A float or a schedule.
        momentum: Momentum `mu` (the paper: 0.9).
        nesterov: Nesterov momentum in PyTorch's form (`d = g + mu * b`).
        l2_weight_decay: Coefficient `wd` of the L2 term (the paper: 5e-4; 1e-4 for TinyImageNet).
        **kwargs: Other `keras.optimizers.SGD` arguments.

    Example:

    ```python
    student.compile(optimizer=ck.training.SGD(0.05, momentum=0.9, l2_weight_decay=5e-4), ...)
    ```

    Reference:
        Mishra et al., "Distilling Calibrated Student from an Uncalibrated
        Teacher", Sec. 4.2.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, l2_weight_decay=0.0, name="sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs)
        if l2_weight_decay < 0:
            raise ValueError(f"`l2_weight_decay` must be >= 0, got {l2_weight_decay}.")
        self.l2_weight_decay = float(l2_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        # In the variable's dtype; Python constants are converted directly (a cast would round them to float32
        # first on TensorFlow).
        dtype = variable.dtype
        direction = ops.cast(ops.convert_to_tensor(gradient), dtype)
        if self.l2_weight_decay:
            l2 = ops.convert_to_tensor(self.l2_weight_decay, dtype)
            direction = direction + l2 * ops.convert_to_tensor(variable)
        if self.momentum:
            momentum = ops.convert_to_tensor(self.momentum, dtype)
            buffer = self.momentums[self._get_variable_index(variable)]
            new_buffer = momentum * ops.convert_to_tensor(buffer) + direction
            self.assign(buffer, new_buffer)
            direction = direction + momentum * new_buffer if self.nesterov else new_buffer
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * direction)

    def get_config(self):
        config = super().get_config()
        config["l2_weight_decay"] = self.l2_weight_decay
        return config
