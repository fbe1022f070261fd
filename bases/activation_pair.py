"""AF-KAN's activation-pair basis (Ta et al. 2025, arXiv 2503.06112).

On the phase grid of :mod:`bases.relu_kan` (``G + k`` windows ``[s_i, e_i]``), each window gives

    x1 = act(x - s_i),   x2 = act(e_i - x),   F_i(x) = f(x1, x2)

with ``act`` from :data:`ACTIVATIONS` and the function type ``f`` from :data:`FUNCTION_TYPES`:
quad1 ``(x1 x2)^2``, quad2 ``x1 x2 + x1^2 + x2^2``, sum ``x1 + x2``, prod ``x1 x2``, sum_prod
``x1 + x2 + x1 x2``, cubic1 ``(x1 + x2)(x1^2 + x2^2)``, cubic2 ``(x1 x2)^3``. ReLU with quad1 is the
ReLU-KAN bump without its normalising constant. The features are raw (unnormalised); AF-KAN's
feature normalisation belongs to :class:`kan.AFKANLayer`.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .relu_kan import PhaseBasis


def sigmoid(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """The logistic function as ``(1 + tanh(x / 2)) / 2``: within 2e-7 absolute of ``jax.nn.sigmoid`` in
    float32 (it rounds to 0 below x ~ -17, where the logistic is under 1e-7, so not for log-probabilities),
    but XLA on CPU expands ``jax.nn.sigmoid``'s logistic op into a code path ~8x slower than its
    vectorised tanh (1024 x 128 x 6 elements: 7.4 ms vs 0.95 ms on 2 cores, with another job running)."""
    return 0.5 + 0.5 * jnp.tanh(0.5 * x)


def silu(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """SiLU ``x * sigmoid(x)`` through :func:`sigmoid`'s tanh form (4x faster than ``jax.nn.silu``
    on CPU, equal to it within 2e-6 absolute on [-100, 100])."""
    return x * sigmoid(x)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "silu": silu,
    "gelu": partial(jax.nn.gelu, approximate=False),
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "softplus": jax.nn.softplus,
    "sigmoid": sigmoid,
    "tanh": jnp.tanh,
    "leaky_relu": partial(jax.nn.leaky_relu, negative_slope=0.01),
}

# FLOPs per call; relu, sigmoid, silu, tanh, gelu from Yu et al. 2024, the rest estimated alike.
ACTIVATION_FLOPS: dict[str, int] = {
    "relu": 1, "silu": 5, "gelu": 14, "elu": 5, "selu": 6, "softplus": 5, "sigmoid": 4, "tanh": 6,
    "leaky_relu": 2,
}

FUNCTION_TYPES: dict[str, Callable[[Array, Array], Array]] = {
    "quad1": lambda a, b: (a * b) ** 2,
    "quad2": lambda a, b: a * b + a * a + b * b,
    "sum": lambda a, b: a + b,
    "prod": lambda a, b: a * b,
    "sum_prod": lambda a, b: a + b + a * b,
    "cubic1": lambda a, b: (a + b) * (a * a + b * b),
    "cubic2": lambda a, b: (a * b) ** 3,
}

# FLOPs of f(x1, x2) per window.
_FUNCTION_FLOPS = {"quad1": 2, "quad2": 5, "sum": 1, "prod": 1, "sum_prod": 3, "cubic1": 5, "cubic2": 3}


def get_activation(name: str) -> Callable[[Array], Array]:
    """The activation called ``name``; ValueError listing the valid names otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid names: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


def get_function_type(name: str) -> Callable[[Array, Array], Array]:
    """The AF-KAN function type called ``name``; ValueError listing the valid names otherwise."""
    if name not in FUNCTION_TYPES:
        raise ValueError(f"unknown function type {name!r}; valid names: {', '.join(FUNCTION_TYPES)}")
    return FUNCTION_TYPES[name]


@partial(jax.checkpoint, static_argnums=(0, 1))
def _pair_features(activation: str, function_type: str, x: Array, start: Array, end: Array) -> Array:
    """``f(act(x - s), act(e - x))`` for ``x`` ``(..., d, 1)``; rematerialised: the backward pass rebuilds
    the activations from ``x`` instead of keeping several ``(..., d, k)`` intermediates (with the tanh-form
    SiLU: AF-KAN layer 128 -> 128, batch 1024, fwd+bwd from 7.2-7.5x to 5.8-6.5x an MLP layer's time on
    2 idle CPU cores, ``benchmarks.layers``)."""
    act = ACTIVATIONS[activation]
    return FUNCTION_TYPES[function_type](act(x - start), act(end - x))


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def pair_feature_stats(activation: str, function_type: str, x: Float[Array, "... d"],
                       start: Float[Array, "p k"], end: Float[Array, "p k"], weights: Float[Array, " k"],
                       ) -> tuple[Array, Array, Array, Array]:
    """Per-input reductions of the activation-pair features over their ``k`` functions, each ``(..., d)``:
    ``(F @ weights, sum F, min F, max F)``, ``F = f(act(x - s), act(e - x))``.

    A custom JVP: the tangent of ``F`` is ``F_u (dx - ds) + F_w (de - dx)`` with the two partials
    ``F_u = f_1 act'(x - s)``, ``F_w = f_2 act'(e - x)`` taken by forward mode (so any activation and
    function type), reduced straight to the four ``(..., d)`` tangents; reverse mode transposes it, and
    forward mode / Hessians work. At ties of ``min`` / ``max`` the tangent is the mean over the tied
    functions of the same input, as for ``jnp.min``."""
    return _reductions(_pair_features(activation, function_type, x[..., None], start, end), weights)


def _reductions(feats: Array, weights: Array) -> tuple[Array, Array, Array, Array]:
    return jnp.sum(feats * weights, -1), jnp.sum(feats, -1), jnp.min(feats, -1), jnp.max(feats, -1)


@pair_feature_stats.defjvp
def _stats_jvp(activation, function_type, primals, tangents):
    x, start, end, weights = primals
    dx, d_start, d_end, d_weights = tangents
    act, fn = ACTIVATIONS[activation], FUNCTION_TYPES[function_type]
    u, w = x[..., None] - start, end - x[..., None]
    a, da = jax.jvp(act, (u,), (jnp.ones_like(u),))
    b, db = jax.jvp(act, (w,), (jnp.ones_like(w),))
    feats, f_a = jax.jvp(lambda a: fn(a, b), (a,), (jnp.ones_like(a),))
    f_b = jax.jvp(lambda b: fn(a, b), (b,), (jnp.ones_like(b),))[1]
    d_feats = f_a * da * (dx[..., None] - d_start) + f_b * db * (d_end - dx[..., None])
    out = _reductions(feats, weights)
    lo, hi = out[2], out[3]
    at_lo, at_hi = feats == lo[..., None], feats == hi[..., None]
    d_lo = jnp.sum(jnp.where(at_lo, d_feats, 0.0), -1) / jnp.sum(at_lo, -1).astype(x.dtype)
    d_hi = jnp.sum(jnp.where(at_hi, d_feats, 0.0), -1) / jnp.sum(at_hi, -1).astype(x.dtype)
    return out, (jnp.sum(d_feats * weights + feats * d_weights, -1), jnp.sum(d_feats, -1), d_lo, d_hi)


class ActivationPair(PhaseBasis):
    """AF-KAN features ``(..., d) -> (..., d, grid_size + order)`` (see the module docstring).

    Published defaults: ``grid_size = order = 3``, ``activation="silu"``, ``function_type="quad1"``
    on the grid ``[0, 1]`` with trainable points shared by all inputs (``trainable=True, shared=True``).
    """

    activation: str = eqx.field(static=True)
    function_type: str = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        grid_size: int = 3,
        order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        activation: str = "silu",
        function_type: str = "quad1",
        trainable: bool = False,
        shared: bool = False,
    ):
        get_activation(activation)
        get_function_type(function_type)
        self.activation, self.function_type = activation, function_type
        self._set_points(in_features, grid_size, order, grid_range, trainable, shared, "ActivationPair")

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d k"]:
        x, start, end = self._inputs(x, "ActivationPair")
        return _pair_features(self.activation, self.function_type, x, start, end)

    def _fresh(self, in_features: int) -> "ActivationPair":
        return ActivationPair(in_features, self.grid_size, self.order, activation=self.activation,
                              function_type=self.function_type, trainable=self.trainable,
                              shared=self.shared)

    def flops_per_input(self) -> int:
        per_window = 2 + 2 * ACTIVATION_FLOPS[self.activation] + _FUNCTION_FLOPS[self.function_type]
        return per_window * self.num_functions
