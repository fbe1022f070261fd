"""Small building blocks for the transformer modules: a dense layer and LayerNorm over ``(..., d)``.

Both accept any leading batch shape (unlike ``eqx.nn.Linear``, which maps one vector), compute in the
dtype of their input (weights are cast to it, so a bf16 activation stream stays bf16 while the stored
weights stay float32), and draw weights with an explicit standard deviation so that the
variance-preserving scales set by the blocks are visible in one place.
"""

from __future__ import annotations

import functools
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from bases import check_last_dim, gaussian_expectation, get_activation
from bases.init_random import scaled_normal


@functools.lru_cache(maxsize=None)
def activation_second_moment(name: str) -> float:
    """``E[act(z)^2]`` for ``z ~ N(0, 1)`` and the activation called ``name`` (``bases.ACTIVATIONS``);
    e.g. 0.4252 for exact GELU, 0.3557 for SiLU."""
    act = get_activation(name)
    return float(gaussian_expectation(lambda xs: act(xs[:, 0]) ** 2, 1))


class Linear(eqx.Module):
    """``(..., in_features) -> (..., out_features)``: ``y = x W^T + b``.

    ``W ~ N(0, std^2)`` with ``std = 1 / sqrt(in_features * input_second_moment)`` unless ``std`` is
    given (``std=0`` gives a zero matrix, e.g. for a classifier head); ``b = 0``.
    """

    weight: Float[Array, "out in"]
    bias: Optional[Float[Array, " out"]]
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)

    def __init__(self, in_features: int, out_features: int, *, key: PRNGKeyArray,
                 std: Optional[float] = None, input_second_moment: float = 1.0, use_bias: bool = True):
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"Linear: in_features and out_features must be >= 1, got {in_features}, {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        if std is None:
            std = 1.0 / np.sqrt(self.in_features * input_second_moment)
        if std < 0:
            raise ValueError(f"Linear: std must be >= 0, got {std}")
        self.weight = scaled_normal(key, (self.out_features, self.in_features), float(std), jnp.float32)
        self.bias = jnp.zeros((self.out_features,), jnp.float32) if use_bias else None

    def __call__(self, x: Float[Array, "... in"]) -> Float[Array, "... out"]:
        check_last_dim(x, self.in_features, "Linear")
        y = x @ self.weight.T.astype(x.dtype)
        if self.bias is not None:
            y = y + self.bias.astype(y.dtype)
        return y


class LayerNorm(eqx.Module):
    """LayerNorm over the last axis of ``(..., d)`` (Ba et al. 2016); statistics in float32, output in
    the dtype of the input. ``weight = 1``, ``bias = 0`` at init."""

    weight: Float[Array, " d"]
    bias: Float[Array, " d"]
    eps: float = eqx.field(static=True)

    def __init__(self, width: int, *, eps: float = 1e-6):
        if int(width) < 1:
            raise ValueError(f"LayerNorm: width must be >= 1, got {width}")
        self.weight = jnp.ones((int(width),), jnp.float32)
        self.bias = jnp.zeros((int(width),), jnp.float32)
        self.eps = float(eps)

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        check_last_dim(x, self.weight.shape[0], "LayerNorm")
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps) * self.weight + self.bias
        return y.astype(x.dtype)
