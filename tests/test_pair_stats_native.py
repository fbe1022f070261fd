"""The native CPU kernels of AF-KAN's feature statistics (bases.kernels.pair_stats_native) against the
XLA function they replace (bases.activation_pair.pair_feature_stats): values and gradients for both
compiled activations, several function types, the most windows served (16), shared and per-input window points, input counts that are
not multiples of the 16-input vector, rows that are not multiples of the chunk, points on a window edge
and far outside; forward mode, vmap, the fallback, and the AF-KAN layer on top."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kan.layers.afkan_layer as afkan_layer
from bases import native_build
from bases.activation_pair import pair_feature_stats
from bases.kernels.pair_stats_native import native_usable, pair_stats

pytestmark = pytest.mark.skipif(not native_build.available("pair_stats"), reason=str(native_build.unavailable_reason("pair_stats")))

NAMES = ("dot", "total", "lo", "hi")


def _problem(shape, points, windows, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = 1.5 * jax.random.normal(keys[0], shape)
    start = jax.random.uniform(keys[1], (points, windows), minval=-2.0, maxval=0.5)
    end = start + jax.random.uniform(keys[2], (points, windows), minval=0.5, maxval=2.0)
    weights = jax.random.normal(keys[3], (windows,))
    x = x.reshape(-1)
    x = x.at[0].set(start[0, 1]).at[1].set(-9.0).at[2].set(11.0).reshape(shape)  # on an edge; far outside
    return x, start, end, weights


def _score(f, activation, function_type, probes):
    """Linear in every output, so the four cotangents reaching the backward are the (non-zero) probes."""
    return lambda *a: sum(jnp.sum(o * p) for o, p in zip(f(activation, function_type, *a), probes))


@pytest.mark.parametrize("activation, function_type, shape, points, windows", [
    ("silu", "quad1", (130, 32), 1, 6),        # the AF-KAN default; rows past the 64-row chunk
    ("relu", "quad1", (3, 5, 21), 21, 5),      # exact zeros (ties at the minimum); a partial vector
    ("relu", "cubic1", (9, 17), 1, 9),
    ("silu", "sum_prod", (4, 40), 40, 3),
    ("silu", "cubic2", (5, 16), 1, 16),
])
def test_kernels_match_the_xla_statistics(activation, function_type, shape, points, windows):
    x, start, end, weights = _problem(shape, points, windows)
    assert native_usable(activation, function_type, x, start, end, weights)
    got = jax.jit(lambda *a: pair_stats(activation, function_type, *a))(x, start, end, weights)
    ref = jax.jit(lambda *a: pair_feature_stats(activation, function_type, *a))(x, start, end, weights)
    for name, g, r in zip(NAMES, got, ref):
        assert g.shape == r.shape == shape, name
        # XLA's own error against float64 is ~4e-6 here (the kernel's ~1e-6)
        np.testing.assert_allclose(g, r, rtol=2e-5, atol=1e-5 * float(jnp.max(jnp.abs(r))), err_msg=name)
    probes = jax.random.normal(jax.random.PRNGKey(7), (4,) + shape)
    native = jax.jit(jax.grad(_score(pair_stats, activation, function_type, probes), argnums=(0, 1, 2, 3)))
    assert native_build.PAIR_STATS_BACKWARD_TARGET in native.lower(x, start, end, weights).as_text()
    xla = jax.jit(jax.grad(_score(pair_feature_stats, activation, function_type, probes), argnums=(0, 1, 2, 3)))
    for name, g, r in zip(("x", "start", "end", "weights"), native(x, start, end, weights),
                          xla(x, start, end, weights)):
        assert g.shape == r.shape, name
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(r))), err_msg=name)


def test_forward_mode_vmap_and_the_fallback():
    x, start, end, weights = _problem((6, 18), 1, 6, seed=1)
    f = lambda fn: (lambda x: fn("silu", "quad1", x, start, end, weights)[0].sum())
    tangent = jnp.cos(x)

    @jax.jit
    def derivatives(x):  # each with the kernels and with XLA's function (one compile)
        small = x[:2, :5]  # second order runs through XLA's function
        out = []
        for fn in (pair_stats, pair_feature_stats):
            total = lambda x: fn("silu", "quad1", x, start, end, weights)[1].sum()
            out.append((jax.jvp(f(fn), (x,), (tangent,))[1], jax.hessian(f(fn))(small),
                        jax.vmap(jax.grad(total))(x)))
        return out

    (jvp, hess, batched), (jvp_ref, hess_ref, batched_ref) = derivatives(x)
    np.testing.assert_allclose(jvp, jvp_ref, rtol=1e-5)
    np.testing.assert_allclose(hess, hess_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(batched, batched_ref, rtol=1e-4, atol=1e-6)
    # not compiled (gelu, tanh), an empty batch, 17 windows: XLA's function, unchanged
    assert not native_usable("gelu", "quad1", x, start, end, weights)
    assert not native_usable("tanh", "quad1", x, start, end, weights)
    assert not native_usable("silu", "quad1", x[:0], start, end, weights)
    wide = jnp.zeros((1, 17))
    assert not native_usable("silu", "quad1", x, wide, wide + 1.0, jnp.ones(17))
    for got, ref in zip(pair_stats("gelu", "quad1", x, start, end, weights),
                        pair_feature_stats("gelu", "quad1", x, start, end, weights)):
        np.testing.assert_array_equal(got, ref)


def test_afkan_layer_runs_the_kernels_and_matches_the_xla_layer():
    layer = afkan_layer.AFKANLayer(20, 7, key=jax.random.PRNGKey(2), trainable_points=True)
    x = 1.3 * jax.random.normal(jax.random.PRNGKey(3), (33, 20))
    loss = lambda m, x: jnp.sum(jnp.sin(m(x)))
    step = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    params, static = eqx.partition(layer, eqx.is_array)
    grad_of = lambda p, x: jax.grad(lambda p: loss(eqx.combine(p, static), x))(p)
    text = jax.jit(grad_of).lower(params, x).as_text()
    assert native_build.PAIR_STATS_FORWARD_TARGET in text and native_build.PAIR_STATS_BACKWARD_TARGET in text
    value, grads = step(layer, x)
    with afkan_layer.statistics(pair_feature_stats):
        fresh = jax.jit(lambda p, x: grad_of(p, x))  # a new function: jit's cache keeps what was traced
        assert native_build.PAIR_STATS_BACKWARD_TARGET not in fresh.lower(params, x).as_text()
        value_ref, grads_ref = eqx.filter_jit(eqx.filter_value_and_grad(loss))(layer, x)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_ref)):
        np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-5 * max(1.0, float(jnp.max(jnp.abs(r)))))
