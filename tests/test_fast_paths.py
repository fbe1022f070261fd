"""Fast paths against their plain references on random inputs: values and gradients (input and
coefficients). Rational XLA backward (row-slice partial sums, scanned blocks), Fourier (angle-addition
recurrence, hand-written derivative), AF-KAN (min-max applied after the K reduction), S-KAN (one
contraction, selection weights on the weights)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import Fourier, get_activation
from bases.kernels import rational_xla
from bases.kernels.rational_math import rational_reference
from kan.layers.afkan_layer import AFKANLayer
from kan.layers.selectable_core import SelectableKANLayer

KEY = jax.random.PRNGKey(0)


def _close(actual, ref, rtol=2e-5):
    actual, ref = np.asarray(actual, np.float64), np.asarray(ref, np.float64)
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=rtol * scale)


def _tree_close(a, b, rtol=2e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        _close(x, y, rtol)


# rows: less than one block (one block of all rows, folded by FOLD or not); several scanned blocks plus a tail
@pytest.mark.parametrize("form, rows", [("A", 37), ("A", 36), ("B", 300)])
def test_rational_xla_backward_matches_autodiff(form, rows, monkeypatch):
    monkeypatch.setattr(rational_xla, "BLOCK_ROWS", 64)
    d = 24
    kx, kg, ka, kb = jax.random.split(jax.random.fold_in(KEY, rows), 4)
    x = 2.0 * jax.random.normal(kx, (rows, d)).at[0, 0].set(0.0)
    g = jax.random.normal(kg, (rows, d))
    ac, bc = 0.3 * jax.random.normal(ka, (d, 6)), 0.3 * jax.random.normal(kb, (d, 4))
    bc = bc.at[0].set(0.0)  # sign at 0: JAX's derivative of abs (+1)

    def ref(x, ac, bc):
        return rational_reference(x, [ac[:, i] for i in range(6)], [bc[:, j] for j in range(4)], form)

    want = jax.jit(lambda *a: jax.vjp(ref, *a)[1](g))(x, ac, bc)
    got = jax.jit(rational_xla.backward_xla, static_argnums=4)(x, g, ac, bc, form)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        _close(a, b)


@pytest.mark.parametrize("grid_size, frequency", [(1, 1.0), (6, 2.5)])
def test_fourier_recurrence_matches_direct_trig(grid_size, frequency):
    x = 3.0 * jax.random.normal(KEY, (16, 3))
    basis = Fourier(3, grid_size, frequency=frequency)

    def direct(x):
        angle = x[..., None] * (jnp.arange(1, grid_size + 1) * frequency)
        return jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], -1)

    np.testing.assert_allclose(jax.jit(basis)(x), direct(x), atol=1e-5)
    w = jax.random.normal(KEY, (3, 2 * grid_size))
    grad = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(f(x) * w)))(x)
    _close(grad(basis), grad(direct), rtol=1e-5)
    second = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(f(x) * w))(x))))(x)
    _close(second(basis), second(direct), rtol=1e-4)


def _afkan_reference(layer, x):
    """The layer as published: min-max normalise the features, then reduce."""
    feats = layer.basis(x)
    if layer.normalization != "none":
        axes = (-2, -1) if layer.normalization == "per_sample" else tuple(range(feats.ndim))
        lo = jnp.min(feats, axis=axes, keepdims=True)
        hi = jnp.max(feats, axis=axes, keepdims=True)
        feats = (feats - lo) / (hi - lo + 1e-6)
    z, _ = layer.reduce(feats)
    mean, var = jnp.mean(z, -1, keepdims=True), jnp.var(z, -1, keepdims=True)
    z = (z - mean) * jax.lax.rsqrt(var + 1e-5) * layer.norm_weight + layer.norm_bias
    return get_activation(layer.activation)(z) @ layer.weight.T


@pytest.mark.parametrize("reduction, normalization",
                         [("global_attn", "per_sample"), ("linear", "batch")])
def test_afkan_reduce_first_matches_normalise_first(reduction, normalization):
    layer = AFKANLayer(6, 4, key=KEY, reduction=reduction, normalization=normalization)
    x = jax.random.normal(jax.random.fold_in(KEY, 1), (2, 5, 6))
    params, static = eqx.partition(layer, eqx.is_inexact_array)
    loss = lambda f: lambda p, x: jnp.sum(f(eqx.combine(p, static), x) ** 2)
    _close(eqx.filter_jit(layer)(x), eqx.filter_jit(_afkan_reference)(layer, x), rtol=1e-5)
    got = jax.jit(jax.grad(loss(lambda m, x: m(x)), argnums=(0, 1)))(params, x)
    want = jax.jit(jax.grad(loss(_afkan_reference), argnums=(0, 1)))(params, x)
    # the score bias gets no gradient in exact arithmetic (softmax / LayerNorm shift): compare it on
    # the scale of the weight gradient, every other leaf on its own scale
    got_p, want_p = got[0], want[0]
    np.testing.assert_allclose(got_p.score_bias, want_p.score_bias,
                               atol=1e-5 * float(jnp.max(jnp.abs(want_p.weight))))
    drop = lambda g: eqx.tree_at(lambda m: m.score_bias, g, jnp.zeros(()))
    _tree_close((drop(got_p), got[1]), (drop(want_p), want[1]), rtol=1e-4)


def test_selectable_one_contraction_matches_per_space_sums():
    layer = SelectableKANLayer(5, 3, ["chebyshev", "fourier", "rbf"], key=KEY)
    layer = eqx.tree_at(lambda m: m.logits, layer, jax.random.normal(KEY, layer.logits.shape))
    x = jax.random.normal(jax.random.fold_in(KEY, 2), (7, 5))

    def reference(m, x):
        p, y = m.probabilities(), m.bias
        for c, (basis, weight) in enumerate(zip(m.bases, m.weights)):
            y = y + jnp.einsum("...dk,odk->...o", basis(x) * p[:, c, None], weight)
        return y + m.base_activation(x) @ m.base_weight.T

    params, static = eqx.partition(layer, eqx.is_inexact_array)
    loss = lambda f: lambda p, x: jnp.sum(f(eqx.combine(p, static), x) ** 2)
    _close(eqx.filter_jit(layer)(x), eqx.filter_jit(reference)(layer, x), rtol=1e-5)
    _tree_close(jax.jit(jax.grad(loss(lambda m, x: m(x)), argnums=(0, 1)))(params, x),
                jax.jit(jax.grad(loss(reference), argnums=(0, 1)))(params, x), rtol=1e-5)


@pytest.mark.parametrize("contraction", ["auto", "dense", "native"])
def test_low_precision_inputs_run_every_path_in_float32(contraction):
    # A bfloat16 input is its float32 value on every path: the residual's SiLU is not evaluated in
    # bfloat16 on one path and float32 on another.
    from bases import BSpline, native_build
    from kan import KANLayer

    if contraction == "native" and not native_build.available("bspline"):
        pytest.skip("no native kernel here")
    layer = KANLayer(16, 5, BSpline(16, 6), key=KEY, contraction=contraction)
    x = (3.0 * jax.random.normal(KEY, (40, 16))).astype(jnp.bfloat16)
    _close(layer(x), layer(x.astype(jnp.float32)), rtol=1e-6)
    _close(layer.edge_functions(x), layer.edge_functions(x.astype(jnp.float32)), rtol=1e-6)


def test_selectable_layer_low_precision_input_is_its_float32_value():
    layer = SelectableKANLayer(8, 3, ["chebyshev", "fourier"], key=KEY)
    x = (2.0 * jax.random.normal(KEY, (30, 8))).astype(jnp.bfloat16)
    _close(layer(x), layer(x.astype(jnp.float32)), rtol=1e-6)
