"""Beta sampling that compiles under XLA on every backend.

TensorFlow's gamma sampler has no XLA kernel, so the mixing coefficients are
drawn here from normal and uniform variates only: Gamma(k) by Marsaglia and
Tsang's squeeze method (with a fixed number of proposals, so shapes stay
static), boosted to shapes below 1 by `Gamma(k) = Gamma(k + 1) * U**(1/k)`,
and `Beta(a, b) = Ga / (Ga + Gb)` computed in log space.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

# Each proposal is accepted with probability > 0.95 for shape >= 1, so all of
# them fail with probability < 0.05**PROPOSALS (about 1e-21).
PROPOSALS = 16


def _log_gamma_variate(shape, concentration: float, seed_generator):
    """`log G` for `G ~ Gamma(concentration, 1)`, as a float32 tensor of `shape`."""
    boosted = concentration if concentration >= 1.0 else concentration + 1.0
    d = boosted - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    proposal_shape = (PROPOSALS,) + tuple(shape)
    x = keras.random.normal(proposal_shape, seed=seed_generator)
    u = keras.random.uniform(proposal_shape, minval=np.finfo(np.float32).tiny, maxval=1.0, seed=seed_generator)
    v = (1.0 + c * x) ** 3
    safe_v = ops.maximum(v, 1e-30)
    accept = ops.logical_and(v > 0, ops.log(u) < 0.5 * x * x + d - d * safe_v + d * ops.log(safe_v))
    first = ops.argmax(ops.cast(accept, "int32"), axis=0)  # first accepted proposal (0 if none)
    log_v = ops.take_along_axis(ops.log(safe_v), ops.expand_dims(first, 0), axis=0)[0]
    log_gamma = np.log(d) + log_v
    if concentration < 1.0:
        boost = keras.random.uniform(tuple(shape), minval=np.finfo(np.float32).tiny, maxval=1.0, seed=seed_generator)
        log_gamma = log_gamma + ops.log(boost) / concentration
    return log_gamma


def beta(shape, a: float, b: float, seed_generator):
    """Draws `Beta(a, b)` variates of `shape` (float32), XLA-compatible on every backend.

    Args:
        shape: Output shape (a tuple; `()` for a scalar).
        a, b: Positive concentrations.
        seed_generator: A `keras.random.SeedGenerator`.
    """
    log_ga = _log_gamma_variate(shape, a, seed_generator)
    log_gb = _log_gamma_variate(shape, b, seed_generator)
    return ops.sigmoid(log_ga - log_gb)
