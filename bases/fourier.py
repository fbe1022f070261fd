"""Fourier basis (FourierKAN, as collected in All-KAN): ``cos(k w x), sin(k w x)`` for ``k = 1..G``.

No constant term (the layer's bias plays that role). ``frequency`` ``w`` (default 1) sets the base
period ``2 pi / w``; the default plotting domain is one period, ``[-pi / w, pi / w]``.

Only ``cos(w x)`` and ``sin(w x)`` are transcendental: the higher harmonics follow by angle addition,
``cos((k+1) t) = cos(k t) cos t - sin(k t) sin t`` (and likewise for sin), whose rounding error grows
about linearly in ``k`` (a few float32 ulps at ``G = 5``). The derivative is written from the features
themselves (``d/dx cos(k w x) = -k w sin(k w x)``), so the backward costs one multiply per feature.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .basis import Basis, check_last_dim
from .trig import sincos
from .rbf import _check_indices, _compiled_moment, _compiled_trace

_TRIG_FLOPS = 4  # a transcendental counted like a sigmoid (Yu et al. 2024 cost table)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def fourier_features(x: Float[Array, "..."], grid_size: int, frequency: float) -> Float[Array, "... k2"]:
    """``(...) -> (..., 2G)``: ``[cos(w x), ..., cos(G w x), sin(w x), ..., sin(G w x)]`` from one
    ``cos``/``sin`` pair by angle addition.

    Written as one elementwise expression over the feature axis (harmonic ``k`` picked by a select
    at step ``k`` of the recurrence) so XLA emits one loop instead of ``2G`` loops and a
    concatenate. XLA:CPU fuses the first harmonic into that loop (computing it once per feature,
    not per input), so it comes from :func:`bases.trig.sincos` (multiplies and adds, vectorised)
    rather than ``jnp.cos`` / ``jnp.sin``.
    """
    t = x * frequency
    s1, c1 = sincos(t)
    c, s = c1[..., None], s1[..., None]
    k = jnp.arange(1, grid_size + 1)
    ck, sk = c, s
    cos, sin = c, s
    for step in range(2, grid_size + 1):
        ck, sk = ck * c - sk * s, sk * c + ck * s
        cos, sin = jnp.where(k >= step, ck, cos), jnp.where(k >= step, sk, sin)
    return jnp.concatenate([cos, sin], axis=-1)


@fourier_features.defjvp
def _fourier_features_jvp(grid_size, frequency, primals, tangents):
    (x,), (dx,) = primals, tangents
    feats = fourier_features(x, grid_size, frequency)
    k = jnp.arange(1, grid_size + 1, dtype=feats.dtype) * frequency
    cos, sin = feats[..., :grid_size], feats[..., grid_size:]
    slope = jnp.concatenate([-k * sin, k * cos], axis=-1)
    return feats, slope * dx[..., None]


class Fourier(Basis):
    """``2 * grid_size`` features per input: ``(..., d) -> (..., d, 2G)``, ordered
    ``[cos(w x), ..., cos(G w x), sin(w x), ..., sin(G w x)]``."""

    in_features: int = eqx.field(static=True)
    grid_size: int = eqx.field(static=True)
    frequency: float = eqx.field(static=True)

    def __init__(self, in_features: int, grid_size: int = 5, *, frequency: float = 1.0):
        if not isinstance(grid_size, (int, np.integer)) or grid_size < 1:
            raise ValueError(f"Fourier: grid_size must be an integer >= 1, got {grid_size!r}")
        if in_features < 1:
            raise ValueError(f"Fourier: in_features must be >= 1, got {in_features}")
        if not (isinstance(frequency, (int, float)) and math.isfinite(frequency) and frequency > 0):
            raise ValueError(f"Fourier: frequency must be a finite number > 0, got {frequency!r}")
        self.in_features = int(in_features)
        self.grid_size = int(grid_size)
        self.frequency = float(frequency)

    @property
    def num_functions(self) -> int:
        return 2 * self.grid_size

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d k"]:
        check_last_dim(x, self.in_features, "Fourier")
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        return fourier_features(x, self.grid_size, self.frequency)

    def gaussian_second_moment_trace(self) -> Float[Array, " d"]:
        return _compiled_trace(self)

    def gaussian_second_moment(self) -> Float[Array, "d k k"]:
        return _compiled_moment(self)

    def domain(self) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        half = jnp.full((self.in_features,), math.pi / self.frequency, jnp.float32)
        return -half, half

    def flops_per_input(self) -> int:
        return self.grid_size * (1 + 2 * _TRIG_FLOPS)

    def select_inputs(self, indices: Int[Array, " m"]) -> "Fourier":
        idx = _check_indices(indices, self.in_features, "Fourier")
        return Fourier(int(idx.size), self.grid_size, frequency=self.frequency)
