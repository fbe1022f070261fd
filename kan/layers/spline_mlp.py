"""Model kinds the counters need that ``kan`` does not define as whole networks.

- :class:`LayerStack`: layers applied in turn (GR-KAN, AF-KAN and S-KAN networks are stacks of their
  layers; the nonlinearity lives inside each layer, so nothing sits between them).
- :class:`SplineActivation` and :class:`SplineMLP`: the ablation of Yu et al. 2024 ("KAN or MLP: A Fairer
  Comparison"), an MLP whose fixed activation is replaced by a learnable B-spline activation per
  hidden channel, ``a_c(x) = w_c silu(x) + sum_k c_{c,k} B_k(x)`` (same edge function as a KAN edge,
  but one per neuron instead of one per edge).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from bases import BSpline, check_last_dim, count_parameters

SILU_FLOPS = 5  # Yu et al. 2024's activation costs: relu 1, sigmoid 4, silu 5, tanh 6, gelu 14


class LayerStack(eqx.Module):
    """``(..., in) -> (..., out)``: ``layers`` applied in turn. Every layer must map ``(..., i) -> (..., o)``
    and have ``num_parameters()`` / ``flops()`` (all layer kinds of :mod:`kan.layers` do)."""

    layers: tuple[Any, ...]

    def __init__(self, layers: Sequence[Any]):
        layers = tuple(layers)
        if not layers:
            raise ValueError("LayerStack: needs at least one layer")
        for i, layer in enumerate(layers):
            if not callable(layer) or not hasattr(layer, "flops"):
                raise TypeError(f"LayerStack: layer {i} ({type(layer).__name__}) must be callable with a "
                                "flops() method")
        self.layers = layers

    @property
    def widths(self) -> tuple[int, ...]:
        """Sizes ``(in, hidden..., out)``."""
        return (self.layers[0].in_features,) + tuple(layer.out_features for layer in self.layers)

    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``key`` is unused (accepted for ``eqx.nn.Sequential``)."""
        del key
        for layer in self.layers:
            x = layer(x)
        return x

    def num_parameters(self) -> int:
        """Trainable scalars of all layers (buffers excluded)."""
        return count_parameters(self)

    def flops(self) -> int:
        """Forward FLOPs per sample: the sum of the layers' ``flops()``."""
        return sum(int(layer.flops()) for layer in self.layers)


class SplineActivation(eqx.Module):
    """Learnable per-channel activation ``(..., d) -> (..., d)``: ``w_c silu(x_c) + sum_k c_{c,k} B_k(x_c)``.

    Init: ``w = 1``, ``c = 0`` (the activation starts as SiLU, the MLP baseline's neighbour).
    """

    basis: BSpline
    coef: Float[Array, "d k"]
    base_weight: Float[Array, " d"]
    in_features: int = eqx.field(static=True)

    def __init__(self, in_features: int, grid_size: int = 5, order: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0)):
        self.in_features = int(in_features)
        self.basis = BSpline(self.in_features, grid_size, order, grid_range)
        self.coef = jnp.zeros((self.in_features, self.basis.num_functions))
        self.base_weight = jnp.ones((self.in_features,))

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        check_last_dim(x, self.in_features, "SplineActivation")
        return self.base_weight * jax.nn.silu(x) + jnp.sum(self.basis(x) * self.coef, axis=-1)

    def num_parameters(self) -> int:
        """``d (G + k) + d``: spline coefficients and the SiLU weight of every channel."""
        return count_parameters(self)

    def flops(self) -> int:
        """Per sample: basis, SiLU (5), its weight (1), and ``k`` multiply-adds per channel."""
        k = self.basis.num_functions
        return self.in_features * (self.basis.flops_per_input() + SILU_FLOPS + 1 + 2 * k)


class SplineMLP(eqx.Module):
    """MLP ``(..., w0) -> (..., w-1)`` with a :class:`SplineActivation` after every hidden Linear.

    Weights: ``N(0, 1 / fan_in)`` scaled by ``1 / E[silu(z)^2] ~ 2.8`` after the first layer, like the
    variance-preserving init of :class:`kan.MLP`; biases 0.
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]
    activations: tuple[SplineActivation, ...]

    def __init__(self, widths: Sequence[int], *, key: PRNGKeyArray, grid_size: int = 5, order: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0)):
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"SplineMLP: widths must list >= 2 positive sizes, got {widths}")
        keys = jax.random.split(key, len(widths) - 1)
        silu_moment = 0.3557  # E[silu(z)^2], z ~ N(0, 1)
        self.weights = tuple(
            jax.random.normal(k, (o, i)) * np.sqrt((1.0 if n == 0 else 1.0 / silu_moment) / i)
            for n, (i, o, k) in enumerate(zip(widths[:-1], widths[1:], keys)))
        self.biases = tuple(jnp.zeros((o,)) for o in widths[1:])
        self.activations = tuple(SplineActivation(w, grid_size, order, grid_range) for w in widths[1:-1])

    @property
    def widths(self) -> tuple[int, ...]:
        """Sizes ``(in, hidden..., out)``."""
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``key`` is unused."""
        del key
        check_last_dim(x, self.weights[0].shape[1], "SplineMLP")
        for n, (w, b) in enumerate(zip(self.weights, self.biases)):
            if n > 0:
                x = self.activations[n - 1](x)
            x = x @ w.T + b
        return x

    def num_parameters(self) -> int:
        """Weights, biases and the activations' coefficients."""
        return count_parameters(self)

    def flops(self) -> int:
        """Per sample: ``2 i o + o`` per Linear plus every activation's ``flops()``."""
        widths = self.widths
        linear = sum(2 * i * o + o for i, o in zip(widths[:-1], widths[1:]))
        return linear + sum(a.flops() for a in self.activations)
