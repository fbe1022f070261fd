"""The closed-form B-spline derivative (``bases.bspline.features``) against autodiff through the evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import BSpline
from bases.bspline.features import autodiff_features


def _basis(uniform: bool, order: int) -> BSpline:
    if uniform:
        return BSpline(3, grid_size=5, order=order, grid_range=(-1.0, 1.5))
    samples = np.random.default_rng(0).normal(size=(200, 3)) * [1.0, 0.5, 2.0]
    return BSpline(3, grid_size=5, order=order).update_grid(samples, grid_eps=0.1)


def _points(basis: BSpline) -> jax.Array:
    """Random points over and beyond the extended grid, plus every knot itself."""
    grid = np.asarray(basis.grid)
    lo, hi = grid[:, 0] - 0.5, grid[:, -1] + 0.5
    u = np.random.default_rng(1).uniform(size=(64, 3))
    return jnp.asarray(np.concatenate([lo + u * (hi - lo), grid.T]), jnp.float32)


def _reference(basis: BSpline):
    return lambda x: autodiff_features(x, basis.grid, basis.order, basis.uniform)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("order", [0, 1, 3])
def test_values_and_gradients_match_autodiff(uniform, order):
    basis = _basis(uniform, order)
    x = _points(basis)
    reference = _reference(basis)
    w = jax.random.normal(jax.random.PRNGKey(2), x.shape + (basis.num_functions,))
    tangent = jax.random.normal(jax.random.PRNGKey(3), x.shape)

    @jax.jit
    def outputs(basis):
        fn = basis if isinstance(basis, BSpline) else reference
        value, jvp = jax.jvp(fn, (x,), (tangent,))
        return value, jax.grad(lambda v: jnp.sum(w * fn(v)))(x), jvp

    got, want = outputs(basis), outputs(None)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    for g, r in zip(got[1:], want[1:]):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("uniform", [True, False])
def test_second_derivative_matches_autodiff_and_finite_differences(uniform):
    basis = _basis(uniform, 3)
    grid = np.asarray(basis.grid)
    # One point per input inside a knot interval (second derivatives jump at knots for cubics).
    x0 = jnp.asarray(0.5 * (grid[:, 4] + grid[:, 5]), jnp.float32)[None, :]
    w = jax.random.normal(jax.random.PRNGKey(4), (3, basis.num_functions))

    def edge_sum(fn):
        return lambda v: jnp.sum(w * fn(v[None, :])[0])

    hess = jax.jit(jax.hessian(edge_sum(basis)))(x0[0])
    hess_ref = jax.jit(jax.hessian(edge_sum(_reference(basis))))(x0[0])
    np.testing.assert_allclose(np.asarray(hess), np.asarray(hess_ref), rtol=1e-4, atol=1e-4)
    # Central differences of the gradient (the input's features are independent: hess is diagonal).
    h = 1e-2 * float(np.min(np.diff(grid, axis=1)))
    steps = h * jnp.stack([jnp.ones(3), -jnp.ones(3)])
    grads = jax.jit(jax.vmap(jax.grad(edge_sum(basis))))(x0 + steps)
    fd = (grads[0] - grads[1]) / (2 * h)
    np.testing.assert_allclose(np.asarray(jnp.diag(hess)), np.asarray(fd), rtol=2e-2, atol=2e-2)


class _AutodiffBSpline(BSpline):
    def __call__(self, x):
        return autodiff_features(x, jax.lax.stop_gradient(self.grid), self.order, self.uniform)


def test_layer_gradients_unchanged_by_the_closed_form_derivative():
    import equinox as eqx

    from bases import trainable_filter
    from kan import KANLayer

    layer = KANLayer(3, 4, _basis(False, 3), key=jax.random.PRNGKey(5))
    basis = layer.basis
    plain = eqx.tree_at(lambda l: l.basis, layer,
                        _AutodiffBSpline(3, basis.grid_size, basis.order, grid=basis.grid, uniform=False))
    x = _points(basis)

    def grads(model):
        params, static = eqx.partition(model, trainable_filter(model))
        loss = lambda p, v: jnp.sum(jnp.tanh(eqx.combine(p, static)(v)) ** 2)
        return jax.tree_util.tree_leaves(jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x))

    got, want = grads(layer), grads(plain)
    assert len(got) == len(want) >= 3
    for g, r in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-5)
