"""AF-KAN's per-input feature statistics (:func:`bases.activation_pair.pair_feature_stats`) on two CPU
kernels (``csrc/pair_stats.cc``, built by :mod:`bases.native_build`): the forward in one pass over
``x``, the backward in one pass over ``x`` and the four cotangents.

XLA:CPU compiles the forward and backward into 16 loops, 10 of them over ``(rows, d, K)`` or
``(rows, d)`` arrays (the activations, their partials, the tie masks of ``min`` / ``max``, four
cotangent reductions over the short minor axis ``K``, the window sums over the batch). The kernels
recompute the ``K`` activation pairs of 16 inputs in registers. Forward mode and higher orders run
XLA's :func:`~bases.activation_pair.pair_feature_stats` (:func:`bases.kernel_ad.kernel_op`).

:func:`pair_stats` picks the kernels where :func:`native_usable` says so and is otherwise
``pair_feature_stats`` itself; ``KAN_NATIVE=0`` turns the kernels off.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import native_build
from ..activation_pair import pair_feature_stats
from ..kernel_ad import kernel_op

#: Activations and function types the kernels are compiled for (codes as in the C++ source). Each
#: activation adds ~2 s to the one-time build; AF-KAN's default (silu) and relu are compiled.
ACTIVATION_CODES = {"relu": 0, "silu": 1}
FUNCTION_CODES = {name: code for code, name in enumerate(
    ("quad1", "quad2", "sum", "prod", "sum_prod", "cubic1", "cubic2"))}
MAX_WINDOWS = 16


class Config(NamedTuple):
    activation: str
    function_type: str


def _stacked(cfg: Config, x: Array, start: Array, end: Array, weights: Array) -> Array:
    """``(4, rows, d)``: the four statistics of ``pair_feature_stats``, stacked."""
    return jnp.stack(pair_feature_stats(cfg.activation, cfg.function_type, x, start, end, weights))


def _codes(cfg: Config) -> dict[str, int]:
    return dict(activation_code=ACTIVATION_CODES[cfg.activation], function_code=FUNCTION_CODES[cfg.function_type])


def _forward(cfg: Config, x: Array, start: Array, end: Array, weights: Array) -> Array:
    shape = jax.ShapeDtypeStruct((4,) + x.shape, jnp.float32)
    call = jax.ffi.ffi_call(native_build.PAIR_STATS_FORWARD_TARGET, shape, vmap_method="sequential")
    return call(x, start, end, weights, **_codes(cfg))


def _backward(cfg: Config, x: Array, start: Array, end: Array, weights: Array,
              ct: Array) -> tuple[Array, Array, Array, Array]:
    shapes = tuple(jax.ShapeDtypeStruct(a.shape, jnp.float32) for a in (x, start, end, weights))
    call = jax.ffi.ffi_call(native_build.PAIR_STATS_BACKWARD_TARGET, shapes, vmap_method="sequential")
    return call(x, start, end, weights, ct.astype(jnp.float32), **_codes(cfg))


_op = kernel_op("kan_pair_stats", _forward, _backward, _stacked, num_diff=4)


def native_usable(activation: str, function_type: str, x: Array, start: Array, end: Array,
                  weights: Array) -> bool:
    """Whether the kernels serve these arguments: float32 on the CPU, a compiled activation and function
    type, ``1 <= K <= 16`` windows shared by all inputs or one set per input, a non-empty batch, and the
    kernels available."""
    d = x.shape[-1] if x.ndim else 0
    return (activation in ACTIVATION_CODES and function_type in FUNCTION_CODES
            and all(a.dtype == jnp.float32 for a in (x, start, end, weights))
            and x.ndim >= 1 and x.size > 0 and start.ndim == 2 and start.shape == end.shape
            and start.shape[0] in (1, d) and 1 <= start.shape[1] <= MAX_WINDOWS
            and weights.shape == (start.shape[1],)
            and jax.default_backend() == "cpu" and native_build.available("pair_stats"))


def pair_stats(activation: str, function_type: str, x: Float[Array, "... d"], start: Float[Array, "p k"],
               end: Float[Array, "p k"], weights: Float[Array, " k"]) -> tuple[Array, Array, Array, Array]:
    """``pair_feature_stats(activation, function_type, x, start, end, weights)``, each ``(..., d)``, with
    the forward and reverse passes on the kernels where :func:`native_usable` (under ``vmap`` the kernels
    run once per member)."""
    if not native_usable(activation, function_type, x, start, end, weights):
        return pair_feature_stats(activation, function_type, x, start, end, weights)
    rows = x.reshape(-1, x.shape[-1])
    stacked = _op(Config(activation, function_type), rows, start, end, weights)
    return tuple(s.reshape(x.shape) for s in stacked)
