"""The "before" contenders of :mod:`benchmarks.layers`: each layer kind as it was before one of its fast
paths (autodiff through the B-spline basis, the dense contraction, AF-KAN's reductions left to XLA's
autodiff or run by XLA instead of the native kernels)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from bases import BSpline, get_activation
from bases.activation_pair import pair_feature_stats
from bases.bspline.features import autodiff_features
from kan import KANLayer
from kan.layers import afkan_layer
from kan.layers.afkan_layer import AFKANLayer


def bspline_layer(n_in: int, n_out: int, key: jax.Array, grid_size: int = 5) -> eqx.Module:
    return KANLayer(n_in, n_out, BSpline(n_in, grid_size=grid_size, order=3), key=key)


class AutodiffBSpline(BSpline):
    """B-spline features differentiated by autodiff through the evaluation (no closed-form JVP)."""

    def __call__(self, x):
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        return autodiff_features(x, jax.lax.stop_gradient(self.grid), self.order, self.uniform)


class DenseAutodiffKAN(eqx.Module):
    """The B-spline KAN layer as it was before the closed-form basis derivative: dense ``(batch, in,
    G + k)`` features, one matmul, and JAX autodiff through the basis evaluation (the "before" contender)."""

    layer: KANLayer

    def __call__(self, x):
        mask = self.layer._numeric_mask()
        return self.layer._dense_sum(x, self.layer.spline_weight * mask[..., None], mask) + self.layer.bias


class DenseKAN(DenseAutodiffKAN):
    """The layer's dense path (closed-form basis derivative, one matmul over ``in * (G + k + 1)``; in
    rematerialised row blocks where the features pass ``FULL_BYTES``, as the layer runs it), which
    ``"auto"`` ran at every shape before the native kernel (the "dense" contender of ``--scaling``)."""

    def __call__(self, x):
        return self.layer._features_sum(x, self.layer._numeric_mask()) + self.layer.bias


def reference_layer(n_in: int, n_out: int, key: jax.Array, grid_size: int = 5) -> eqx.Module:
    layer = bspline_layer(n_in, n_out, key, grid_size)
    basis = AutodiffBSpline(n_in, grid_size=grid_size, order=3)
    return DenseAutodiffKAN(eqx.tree_at(lambda l: l.basis, layer, basis))


class AutodiffAFKAN(eqx.Module):
    """AF-KAN's global-attention layer with its per-input feature reductions written as plain jnp on the
    ``(batch, in, K)`` features and left to XLA's autodiff (the "before" of
    :func:`bases.activation_pair.pair_feature_stats`)."""

    layer: AFKANLayer

    def __call__(self, x):
        m = self.layer
        feats = m.basis(x)
        lo = jnp.min(feats, axis=(-2, -1))[..., None]
        scale = 1.0 / (jnp.max(feats, axis=(-2, -1))[..., None] - lo + 1e-6)
        scores = (feats @ m.score_weight - lo * jnp.sum(m.score_weight)) * scale + m.score_bias
        weights = jax.nn.softmax(scores / jnp.maximum(m.temperature, 1.0), axis=-1)
        z = weights * ((jnp.sum(feats, -1) - feats.shape[-1] * lo) * scale)
        z = (z - jnp.mean(z, -1, keepdims=True)) * jax.lax.rsqrt(jnp.var(z, -1, keepdims=True) + 1e-5)
        return get_activation(m.activation)(z * m.norm_weight + m.norm_bias) @ m.weight.T


class XlaStatsAFKAN(eqx.Module):
    """AF-KAN's global-attention layer with its feature statistics on XLA
    (:func:`bases.activation_pair.pair_feature_stats`) instead of the native kernels (the "before" of
    :mod:`bases.kernels.pair_stats_native`)."""

    layer: AFKANLayer

    def __call__(self, x):
        with afkan_layer.statistics(pair_feature_stats):
            return self.layer(x)
