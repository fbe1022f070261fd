import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import BSpline, count_parameters
from kan import KAN, MLP, KANLayer


def test_any_leading_batch_shape_and_vmap(key):
    layer = KANLayer(3, 4, key=key)
    x = jax.random.normal(key, (2, 5, 3))
    y = layer(x)
    assert y.shape == (2, 5, 4)
    np.testing.assert_allclose(np.asarray(jax.vmap(layer)(x[0])), np.asarray(y[0]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer(x[1, 2])), np.asarray(y[1, 2]), atol=1e-6)


def test_edge_functions_sum_to_output(key):
    layer = KANLayer(3, 2, key=key)
    layer = eqx.tree_at(lambda l: l.bias, layer, jnp.array([0.5, -1.0]))
    x = jax.random.uniform(key, (16, 3), minval=-1, maxval=1)
    phi = layer.edge_functions(x)
    assert phi.shape == (16, 2, 3)
    np.testing.assert_allclose(np.asarray(phi.sum(-1) + layer.bias), np.asarray(layer(x)), atol=1e-5)


def test_edge_mask_removes_exactly_that_edge(key):
    layer = KANLayer(3, 2, key=key)
    x = jax.random.uniform(key, (8, 3), minval=-1, maxval=1)
    masked = eqx.tree_at(lambda l: l.edge_mask, layer, layer.edge_mask.at[1, 2].set(0.0))
    phi = layer.edge_functions(x)
    np.testing.assert_allclose(np.asarray(masked(x)[:, 1]), np.asarray(layer(x)[:, 1] - phi[:, 1, 2]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(masked(x)[:, 0]), np.asarray(layer(x)[:, 0]), atol=1e-6)


def test_wrong_inputs_raise(key):
    layer = KANLayer(3, 2, key=key)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        layer(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        layer(jnp.ones((3, 1)))  # would silently broadcast in a careless implementation
    with pytest.raises(ValueError, match="in_features"):
        KANLayer(3, 2, BSpline(4), key=key)
    with pytest.raises(ValueError, match="widths"):
        KAN([3], key=key)
    for scale in (float("nan"), float("inf"), -1.0):  # NaN used to give NaN weights silently
        with pytest.raises(ValueError, match="init_scale must be a finite number >= 0"):
            KANLayer(3, 2, key=key, init_scale=scale)
    assert float(jnp.abs(KANLayer(3, 2, key=key, init_scale=0.0).spline_weight).max()) == 0.0


def test_parameter_count_matches_formula(key):
    n_in, n_out, grid, order = 5, 4, 6, 3
    layer = KANLayer(n_in, n_out, BSpline(n_in, grid, order), key=key)
    # spline coefficients + residual weights + bias; the grid and the mask are buffers
    assert count_parameters(layer) == n_in * n_out * (grid + order) + n_in * n_out + n_out
    assert MLP([5, 7, 2], key=key).num_parameters() == 5 * 7 + 7 + 7 * 2 + 2


@eqx.filter_jit
def _variance(model, x):
    return jnp.var(model(x))


def _stack_variance(model, key, width):
    return float(_variance(model, jax.random.normal(key, (2048, width))))


def test_variance_preserving_32_layer_kan(key):
    width = 32
    model = KAN([width] * 33, key=key)
    assert len(model.layers) == 32
    assert 0.5 <= _stack_variance(model, jax.random.PRNGKey(1), width) <= 2.0


def test_spline_share_moves_variance_to_the_residual_but_keeps_the_total(key):
    # Per layer the second moment is preserved; deep stacks are not tested: with most of the
    # variance in the SiLU residual they drift like a SiLU MLP (~17x at depth 32).
    width = 32
    wide = KANLayer(256, 256, key=key, spline_share=0.1)
    moment = float(jnp.mean(wide(jax.random.normal(jax.random.PRNGKey(1), (2048, 256))) ** 2))
    assert 0.8 <= moment <= 1.25
    even, small = KANLayer(width, width, key=key), KANLayer(width, width, key=key, spline_share=0.1)
    ratio = float(jnp.std(small.spline_weight) / jnp.std(even.spline_weight))
    assert ratio == pytest.approx(np.sqrt(0.1 / 0.5), rel=0.1)
    assert float(jnp.std(small.base_weight)) > float(jnp.std(even.base_weight))
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="spline_share"):
            KANLayer(3, 2, key=key, spline_share=bad)


def test_variance_preserving_32_layer_kan_without_residual(key):
    width = 32
    model = KAN([width] * 33, key=key, base_activation=None)
    assert 0.5 <= _stack_variance(model, jax.random.PRNGKey(1), width) <= 2.0


def test_variance_preserving_32_layer_relu_mlp(key):
    width = 64
    model = MLP([width] * 33, key=key, activation=jax.nn.relu)
    assert 0.5 <= _stack_variance(model, jax.random.PRNGKey(1), width) <= 2.0


@pytest.mark.parametrize("activation", [jax.nn.gelu, jax.nn.silu, jnp.tanh])
def test_variance_preserving_mlp_layer(key, activation):
    # One hidden layer: activation then Linear keeps the second moment of N(0, 1) input at 1.
    model = MLP([256, 256, 256], key=key, activation=activation)
    x = jax.random.normal(jax.random.PRNGKey(1), (4096, 256))
    assert 0.8 <= float(jnp.mean(model(x) ** 2)) <= 1.25


def test_naive_init_does_not_preserve_variance(key):
    # The check above can fail: with unit-scale spline weights the variance explodes.
    width = 32
    model = KAN([width] * 9, key=key, init_scale=3.0)
    assert _stack_variance(model, jax.random.PRNGKey(1), width) > 2.0


def test_flops_are_counted(key):
    layer = KANLayer(4, 3, BSpline(4, 5, 3), key=key)
    assert layer.flops() > 2 * 4 * 3 * 8
    assert MLP([4, 3], key=key).flops() == 2 * 4 * 3 + 3


def _xla_flops(fn, x):
    cost = jax.jit(fn).lower(x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return cost["flops"]


def test_analytic_flops_agree_with_xla_cost_analysis(key):
    layer = KANLayer(32, 16, BSpline(32, 5, 3), key=key)
    x = jnp.ones((1, 32))
    assert 0.8 <= layer.flops() / _xla_flops(lambda v: layer(v), x) <= 1.25
    mlp = MLP([32, 16], key=key)
    assert 0.8 <= mlp.flops() / _xla_flops(lambda v: mlp(v), x) <= 1.25


def test_forward_and_second_order_derivatives_go_through_a_kan(key):
    """PINN-style use (jax.hessian, jax.jvp: forward mode) and the discovery surrogate's Hessians need
    every autodiff mode through the layer; compared with central differences of the gradient."""
    model = KAN([2, 3, 1], key=key)
    f = lambda p: model(p[None, :])[0, 0]
    p = jnp.array([0.3, -0.45])
    hess = jax.hessian(f)(p)
    _, tangent = jax.jvp(f, (p,), (jnp.array([1.0, 0.0]),))
    grad = jax.grad(f)
    h = 1e-3
    fd = jnp.stack([(grad(p + h * e) - grad(p - h * e)) / (2 * h) for e in jnp.eye(2)])
    np.testing.assert_allclose(hess, fd, atol=5e-3, rtol=1e-3)
    np.testing.assert_allclose(tangent, grad(p)[0], rtol=1e-5)
    np.testing.assert_allclose(jax.jacrev(grad)(p), hess, atol=1e-5)
