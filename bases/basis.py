"""The shared basis-function interface.

A basis maps inputs ``(..., d)`` to features ``(..., d, k)``: ``k`` univariate functions evaluated on
every input coordinate. Layers (``kan.KANLayer`` and friends) combine the features into outputs; the
basis also knows what init, plotting, symbolic fitting and fair comparisons need to ask of it.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .buffers import trainable_filter

# Quadrature nodes for expectations under x ~ N(0, 1). A dense trapezoid rule rather than
# Gauss-Hermite: spline and ReLU features have kinks, which Gauss-Hermite integrates poorly.
_QUAD_X = np.linspace(-8.0, 8.0, 4001)
_QUAD_W = np.exp(-0.5 * _QUAD_X**2) / np.sqrt(2.0 * np.pi) * (_QUAD_X[1] - _QUAD_X[0])
_QUAD_W[[0, -1]] *= 0.5


def check_last_dim(x: Array, expected: int, who: str) -> None:
    """Raise a ValueError naming ``who`` unless ``x`` has shape ``(..., expected)`` (a TypeError for
    a non-array such as a Python list: models are jitted, convert with ``jnp.asarray`` first)."""
    if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
        raise TypeError(f"{who}: expected a JAX or NumPy array of shape (..., {expected}), got "
                        f"{type(x).__name__}; convert it with jnp.asarray(x) first")
    if x.ndim == 0 or x.shape[-1] != expected:
        raise ValueError(
            f"{who}: expected input of shape (..., {expected}), got shape {tuple(x.shape)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{who}: expected a floating-point input, got dtype {x.dtype}")


def merge_last_two(a: Float[Array, "... d k"]) -> Float[Array, "... dk"]:
    """``(..., d, k) -> (..., d * k)``, the feature axes of every input side by side. Unlike
    ``reshape(..., -1)`` it also works when a leading axis is empty (a batch of no rows), where the
    size of ``-1`` cannot be inferred."""
    return a.reshape(a.shape[:-2] + (a.shape[-2] * a.shape[-1],))


_QUAD_CHUNK = 64  # quadrature points per step: peak memory is one chunk of fn's output, not 4001


@eqx.filter_jit
def _expectation(fn: Any, num_inputs: int) -> Array:
    n_chunks = -(-_QUAD_X.size // _QUAD_CHUNK)
    pad = n_chunks * _QUAD_CHUNK - _QUAD_X.size
    xs = jnp.asarray(np.pad(_QUAD_X, (0, pad)), jnp.float32).reshape(n_chunks, _QUAD_CHUNK)
    ws = jnp.asarray(np.pad(_QUAD_W, (0, pad)), jnp.float32).reshape(n_chunks, _QUAD_CHUNK)

    def values(x_chunk: Array) -> Array:
        return fn(jnp.broadcast_to(x_chunk[:, None], (x_chunk.size, num_inputs)))

    out = jax.eval_shape(values, xs[0])

    def body(acc: Array, inputs: tuple[Array, Array]) -> tuple[Array, None]:
        x_chunk, w_chunk = inputs
        return acc + jnp.tensordot(w_chunk.astype(out.dtype), values(x_chunk), axes=1), None

    total, _ = jax.lax.scan(body, jnp.zeros(out.shape[1:], out.dtype), (xs, ws))
    return total


def gaussian_expectation(fn: Any, num_inputs: int) -> Float[Array, "..."]:
    """E[fn(x)] for x ~ N(0, 1) per coordinate, by dense quadrature (4001 points on [-8, 8], streamed
    in chunks of 64 so memory stays at one chunk of ``fn``'s output; compiled once per ``fn``).

    ``fn`` maps ``(n, num_inputs)`` to ``(n, ...)``; the result has shape ``(...)``.
    """
    return _expectation(fn, num_inputs)


class Basis(eqx.Module):
    """A family of ``num_functions`` univariate functions, evaluated per input coordinate.

    Subclasses implement ``__call__``, ``num_functions``, ``domain`` and ``flops_per_input`` and
    declare ``in_features: int = eqx.field(static=True)``. Everything else has a generic default.
    """

    in_features: eqx.AbstractVar[int]

    @property
    @abc.abstractmethod
    def num_functions(self) -> int:
        """Number ``k`` of features per input coordinate."""

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d k"]:
        """Features of every input coordinate: ``(..., d) -> (..., d, k)``."""

    @abc.abstractmethod
    def domain(self) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """Per-input interval ``(lo, hi)`` on which the basis is meant to be used (plots, fits)."""

    @abc.abstractmethod
    def flops_per_input(self) -> int:
        """Floating-point operations to evaluate all ``k`` features of one input coordinate."""

    # ----- generic defaults -------------------------------------------------------------------
    def gaussian_second_moment(self) -> Float[Array, "d k k"]:
        """``M[d] = E[F(x) F(x)^T]`` for x ~ N(0, 1), per input coordinate (for variance-preserving
        init). Computed by quadrature when called; call it once at init, not per step."""
        return gaussian_expectation(_OuterProduct(self), self.in_features)

    def gaussian_second_moment_trace(self) -> Float[Array, " d"]:
        """``E[sum_k F_k(x)^2]`` for x ~ N(0, 1), per input coordinate."""
        return gaussian_expectation(_SquaredNorm(self), self.in_features)

    def evaluate_dense(
        self, num: int = 201
    ) -> tuple[Float[Array, "num d"], Float[Array, "num d k"]]:
        """Features on ``num`` evenly spaced points of each input's domain (for plots and fits)."""
        lo, hi = self.domain()
        t = jnp.linspace(0.0, 1.0, num)[:, None]
        xs = lo[None, :] + t * (hi - lo)[None, :]
        return xs, self(xs)

    def params_per_input(self) -> float:
        """Trainable parameters of the basis itself per input coordinate (0 for fixed bases)."""
        params, _ = eqx.partition(self, trainable_filter(self))
        total = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
        return total / self.in_features

    def update_grid(self, x: Float[Array, "n d"], grid_eps: float = 0.02) -> "Basis":
        """A basis adapted to samples ``x`` (for grid-based bases); fixed bases return ``self``."""
        del x, grid_eps
        return self

    def select_inputs(self, indices: Int[Array, " m"]) -> "Basis":
        """The same basis restricted to the input coordinates ``indices`` (used by pruning)."""
        raise NotImplementedError(f"{type(self).__name__} does not support select_inputs")


class _OuterProduct(eqx.Module):
    basis: Basis

    def __call__(self, xs: Array) -> Array:
        feats = self.basis(xs)
        return jnp.einsum("ndk,ndl->ndkl", feats, feats)


class _SquaredNorm(eqx.Module):
    basis: Basis

    def __call__(self, xs: Array) -> Array:
        return jnp.sum(self.basis(xs) ** 2, axis=-1)
