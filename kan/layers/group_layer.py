"""GR-KAN layer of the Kolmogorov-Arnold Transformer (KAT, Yang & Wang 2024, arXiv 2409.10594).

    y = W F(x) + bias,   F = group rational applied per input channel

i.e. "rational per group, then Linear": the KAN edge sum with a ``k = 1`` basis whose coefficients
are shared by a group of input channels, so every edge function ``phi_od(x) = W[o,d] F_{g(d)}(x)``.
A drop-in for ``Linear`` (+ activation) in an MLP block; KAT's block is
``GroupKANLayer(C, 4C, init="identity") -> GroupKANLayer(4C, C, init="swish")``.

Variance-preserving init (KAT): ``W[o,d] ~ N(0, 1 / (in * E[F_d(x)^2]))`` with x ~ N(0, 1), so that
``E[y^2] = 1`` for standard-normal inputs. Bias starts at 0.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from bases import check_last_dim, count_parameters
from bases.init_random import scaled_normal
from bases.rational import Rational


@functools.partial(jax.jit, static_argnums=2)
def _vp_weight(key: PRNGKeyArray, second_moment: Array, out_features: int) -> Array:
    """``(out, in)`` weight with ``W[o,d] ~ N(0, 1 / (in * E[F_d(x)^2]))``."""
    in_features = second_moment.shape[0]
    std = 1.0 / jnp.sqrt(in_features * jnp.maximum(second_moment, 1e-12))
    return scaled_normal(key, (out_features, in_features), 1.0) * std[None, :]


class GroupKANLayer(eqx.Module):
    """``(..., in_features) -> (..., out_features)``: group rational, then a linear map.

    ``num_groups`` defaults to ``min(8, in_features)``; ``init`` names the rational's starting
    function (``bases.rational_init``); ``form`` is the safe denominator ``"A"`` or ``"B"``;
    ``backend`` picks the rational's implementation (``"auto"``, ``"pallas"``, ``"xla"``, ``"jnp"``).
    """

    rational: Rational
    weight: Float[Array, "out in"]
    bias: Optional[Float[Array, " out"]]
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        num_groups: int | None = None,
        init: Any = "identity",
        form: str = "A",
        key: PRNGKeyArray,
        use_bias: bool = True,
        numerator_order: int = 5,
        denominator_order: int = 4,
        backend: str = "auto",
    ):
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"GroupKANLayer: in_features and out_features must be >= 1, got "
                             f"{in_features}, {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.rational = Rational(self.in_features, num_groups, numerator_order, denominator_order,
                                 init=init, form=form, backend=backend)
        second_moment = self.rational.gaussian_second_moment_trace()  # (in,)
        self.weight = _vp_weight(key, second_moment, self.out_features)
        self.bias = jnp.zeros((self.out_features,)) if use_bias else None

    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``key`` is unused (accepted so the layer drops into ``eqx.nn.Sequential``)."""
        del key
        check_last_dim(x, self.in_features, "GroupKANLayer")
        h = self.rational.activation(x)
        y = h @ self.weight.T.astype(h.dtype)
        if self.bias is not None:
            y = y + self.bias.astype(y.dtype)
        return y

    def edge_functions(self, x: Float[Array, "... in"]) -> Float[Array, "... out in"]:
        """Every edge function ``phi_od(x_d) = W[o,d] F(x_d)``."""
        check_last_dim(x, self.in_features, "GroupKANLayer.edge_functions")
        return self.rational.activation(x)[..., None, :] * self.weight

    def num_parameters(self) -> int:
        """Trainable scalars: ``g (m + 1 + n)`` rational coefficients, weight and bias."""
        return count_parameters(self)

    def flops(self) -> int:
        """Forward FLOPs per sample: the rational on every input, then the matmul and bias."""
        matmul = 2 * self.in_features * self.out_features
        bias = self.out_features if self.bias is not None else 0
        return self.in_features * self.rational.flops_per_input() + matmul + bias
