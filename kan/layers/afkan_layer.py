"""AF-KAN layer (Ta et al. 2025, arXiv 2503.06112): activation-pair features, reduced to one value per
input, then LayerNorm, an activation and a bias-free linear map.

    A = normalise(F(x))            F: bases.ActivationPair, (..., d) -> (..., d, K), K = G + k
    z = reduce(A)                  (..., d)
    y = act(LayerNorm(z)) @ W^T    (..., out)

Reductions (``reduction=``):
- ``"global_attn"``: ``a_d = v . A_d + c``, ``w = softmax_d(a / max(tau, 1))`` over the inputs,
  ``z_d = w_d sum_i A_{d,i}``; ``tau`` is learned and starts at ``sqrt(d)``. With the published defaults
  (trainable start/end points shared by all inputs) a layer has ``out*in + 2*in + 3K + 2`` parameters.
- ``"spatial_attn"``: scores from a depthwise convolution (width 3, zero padded) along the input axis,
  one filter per basis function; ``w = softmax_i(scores / max(tau, 1))`` over the bases,
  ``z_d = sum_i w_{d,i} A_{d,i}``.
- ``"linear"``: ``z_d = v . A_d + c``.

Normalisation (``normalization=``): the published code scales the feature tensor of the *whole batch*
by its L2 norm and then min-max to [0, 1] (the L2 step cancels inside the min-max, so only the
min-max matters). That makes a sample's output depend on the rest of its batch. The default here,
``"per_sample"``, takes the min and max over each sample's own ``(d, K)`` features, so outputs do not
depend on the batch; ``"batch"`` reproduces the published behaviour, ``"none"`` skips the step.

The phase grid spans ``grid_range`` (default ``(-1, 1)``, like the other bases of this package; the
published code uses ``(0, 1)``), with start/end points trained and shared by all inputs by default.

Speed: for ``"global_attn"`` and ``"linear"`` the min-max scaling is applied after the reduction over
the ``K`` functions (both are affine in the features), so the normalised ``(..., d, K)`` tensor is
never formed; the per-input sums, minima and maxima come from
:func:`bases.kernels.pair_stats_native.pair_stats`: on the CPU in float32 (activations relu and
silu) two native kernels, forward and backward each in one pass; elsewhere
:func:`bases.activation_pair.pair_feature_stats`, whose custom JVP reduces the features' tangents
straight to those four values (forward mode and Hessians work; reverse mode is its transpose). Layer 128 -> 128,
batch 1024, fwd+bwd, 2 CPU cores (``benchmarks.layers``): 3.0-3.3x an MLP layer with the kernels
against 4.6-5.2x with XLA's function, and 5.7-6.1x with XLA's autodiff of the same math; XLA memory of
the step 6.7 / 14.2 / 22.7 MiB (52 / 113 / 180 MiB at batch 8192; the kernels' own scratch is ~0.1 MiB).

Init: LayerNorm makes each sample's ``z`` zero-mean, unit-variance over the inputs, so ``W`` is drawn
with ``Var = 1 / (in * E[act(u)^2])``, u ~ N(0, 1), which keeps the output variance near 1.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from bases import ActivationPair, check_last_dim, count_parameters, get_activation
from bases.kernels.pair_stats_native import pair_stats
from bases.init_random import scaled_normal

from .layer import _activation_second_moment

REDUCTIONS = ("global_attn", "spatial_attn", "linear")
NORMALIZATIONS = ("per_sample", "batch", "none")
_EPS = 1e-6
_statistics: list[Callable] = [pair_stats]  # what _reduce_raw calls; swapped by statistics()


@contextlib.contextmanager
def statistics(fn: Callable) -> Iterator[None]:
    """Within the block, layers *traced* compute their feature statistics with ``fn`` (the signature of
    :func:`bases.activation_pair.pair_feature_stats`) instead of :func:`pair_stats`: for benchmarks and
    tests that compare the native kernels with XLA's function (compiled programs keep what they traced)."""
    _statistics.append(fn)
    try:
        yield
    finally:
        _statistics.pop()


def _check_choice(value: str, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ValueError(f"AFKANLayer: unknown {what} {value!r}; valid: {', '.join(valid)}")


class AFKANLayer(eqx.Module):
    """AF-KAN layer ``(..., in_features) -> (..., out_features)`` (see the module docstring)."""

    basis: ActivationPair
    weight: Float[Array, "out in"]
    norm_weight: Float[Array, " in"]
    norm_bias: Float[Array, " in"]
    score_weight: Optional[Float[Array, " k"]]
    score_bias: Optional[Float[Array, ""]]
    conv_weight: Optional[Float[Array, "k 3"]]
    conv_bias: Optional[Float[Array, " k"]]
    temperature: Optional[Float[Array, ""]]
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    reduction: str = eqx.field(static=True)
    normalization: str = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 3,
        order: int = 3,
        *,
        key: PRNGKeyArray,
        activation: str = "silu",
        function_type: str = "quad1",
        reduction: str = "global_attn",
        normalization: str = "per_sample",
        grid_range: tuple[float, float] = (-1.0, 1.0),
        trainable_points: bool = True,
    ):
        _check_choice(reduction, REDUCTIONS, "reduction")
        _check_choice(normalization, NORMALIZATIONS, "normalization")
        act = get_activation(activation)
        if in_features < 2 or out_features < 1:
            raise ValueError(f"AFKANLayer: needs in_features >= 2 (LayerNorm over a single input is "
                             f"constant) and out_features >= 1, got {in_features}, {out_features}")
        self.basis = ActivationPair(in_features, grid_size, order, grid_range, activation=activation,
                                    function_type=function_type, trainable=trainable_points, shared=True)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.reduction, self.normalization, self.activation = reduction, normalization, activation
        k = self.basis.num_functions
        k_w, k_u = jax.random.split(key)
        act_moment = _activation_second_moment(act)  # compiled once per activation, not per layer
        self.weight = scaled_normal(k_w, (out_features, in_features), 1.0 / np.sqrt(in_features * act_moment))
        self.norm_weight, self.norm_bias = jnp.ones((in_features,)), jnp.zeros((in_features,))
        self.score_weight = self.score_bias = self.conv_weight = self.conv_bias = self.temperature = None
        unit = jax.random.uniform(k_u, (k + 1, 4), minval=-1.0, maxval=1.0)  # one draw, sliced below
        if reduction in ("global_attn", "linear"):  # torch-style Linear(K, 1) init
            self.score_weight = unit[:k, 0] / np.sqrt(k)
            self.score_bias = unit[k, 0] / np.sqrt(k)
        if reduction == "spatial_attn":  # depthwise Conv1d(K, K, 3, groups=K): fan-in 3
            self.conv_weight = unit[:k, 1:] / np.sqrt(3)
            self.conv_bias = unit[:k, 0] / np.sqrt(3)
        if reduction != "linear":
            self.temperature = jnp.asarray(np.sqrt(in_features), jnp.float32)

    def normalize(self, feats: Float[Array, "... d k"]) -> Float[Array, "... d k"]:
        """Min-max scaling of the features to [0, 1], per sample or over the whole batch."""
        if self.normalization == "none":
            return feats
        lo, scale = self._min_max_scale(jnp.min(feats, -1), jnp.max(feats, -1))
        return (feats - lo[..., None]) * scale[..., None]

    def _min_max_scale(self, row_lo: Float[Array, "... d"], row_hi: Float[Array, "... d"]) -> tuple[Array, Array]:
        """``lo`` and ``1 / (hi - lo + eps)`` from each input's feature minima and maxima: shaped
        ``(..., 1)`` per sample, scalars over the whole batch (``"none"``: 0 and 1)."""
        if self.normalization == "none":
            return jnp.zeros((), row_lo.dtype), jnp.ones((), row_lo.dtype)
        axes = -1 if self.normalization == "per_sample" else None
        lo = jnp.min(row_lo, axis=axes, keepdims=axes is not None)
        return lo, 1.0 / (jnp.max(row_hi, axis=axes, keepdims=axes is not None) - lo + _EPS)

    def _reduce_raw(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        """:meth:`reduce` of :meth:`normalize` of the features of ``x`` for the reductions affine in the
        features (global attention, linear): each input's features are reduced over ``k`` first
        (:func:`bases.activation_pair.pair_feature_stats`), then the ``(..., d)`` values are scaled."""
        x, start, end = self.basis._inputs(x, "AFKANLayer")
        v = self.score_weight.astype(x.dtype)
        dot, total, row_lo, row_hi = _statistics[-1](self.basis.activation, self.basis.function_type,
                                                     x[..., 0], start, end, v)
        lo, scale = self._min_max_scale(row_lo, row_hi)
        scores = (dot - lo * jnp.sum(v)) * scale + self.score_bias
        if self.reduction == "linear":
            return scores
        weights = jax.nn.softmax(scores / jnp.maximum(self.temperature, 1.0), axis=-1)
        return weights * ((total - self.basis.num_functions * lo) * scale)

    def reduce(self, feats: Float[Array, "... d k"]) -> tuple[Float[Array, "... d"], Optional[Array]]:
        """One value per input from normalised features; also the attention weights (``None`` for
        ``"linear"``): shape ``(..., d)`` for global attention, ``(..., d, k)`` for spatial."""
        if self.reduction == "linear":
            return feats @ self.score_weight + self.score_bias, None
        tau = jnp.maximum(self.temperature, 1.0)
        if self.reduction == "global_attn":
            scores = feats @ self.score_weight + self.score_bias
            weights = jax.nn.softmax(scores / tau, axis=-1)
            return weights * jnp.sum(feats, axis=-1), weights
        padded = jnp.pad(feats, [(0, 0)] * (feats.ndim - 2) + [(1, 1), (0, 0)])
        d = self.in_features
        scores = sum(padded[..., j : j + d, :] * self.conv_weight[:, j] for j in range(3)) + self.conv_bias
        weights = jax.nn.softmax(scores / tau, axis=-1)
        return jnp.sum(weights * feats, axis=-1), weights

    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``key`` is unused (accepted so the layer drops into ``eqx.nn.Sequential``)."""
        del key
        check_last_dim(x, self.in_features, "AFKANLayer")
        if self.reduction == "spatial_attn":
            z, _ = self.reduce(self.normalize(self.basis(x)))
        else:
            z = self._reduce_raw(x)
        mean = jnp.mean(z, axis=-1, keepdims=True)
        var = jnp.var(z, axis=-1, keepdims=True)
        z = (z - mean) * jax.lax.rsqrt(var + 1e-5) * self.norm_weight + self.norm_bias
        return get_activation(self.activation)(z) @ self.weight.T

    def num_parameters(self) -> int:
        """Trainable scalars (``out*in + 2*in + 3K + 2`` for the default global attention)."""
        return count_parameters(self)

    def flops(self) -> int:
        """Forward FLOPs per sample: features, min-max, reduction, LayerNorm, activation, matmul."""
        d, k = self.in_features, self.basis.num_functions
        reduce = {"global_attn": 2 * d * k + 4 * d + d * k, "spatial_attn": 7 * d * k + 4 * d * k,
                  "linear": 2 * d * k}[self.reduction]
        act = {"relu": 1, "sigmoid": 4, "silu": 5, "tanh": 6, "gelu": 14}.get(self.activation, 5)
        return (d * self.basis.flops_per_input() + 3 * d * k + reduce + 8 * d + act * d
                + 2 * d * self.out_features)
