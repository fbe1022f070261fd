import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import BSpline, trainable_filter


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
def test_partition_of_unity_inside_grid(order):
    basis = BSpline(3, grid_size=6, order=order, grid_range=(-2.0, 1.0))
    x = jnp.linspace(-2.0, 0.999, 97)[:, None] * jnp.ones(3)
    feats = basis(x)
    assert feats.shape == (97, 3, 6 + order)
    np.testing.assert_allclose(np.asarray(feats.sum(-1)), 1.0, atol=1e-5)
    assert bool(jnp.all(feats >= -1e-7))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_closed_form_matches_cox_de_boor(order):
    uniform = BSpline(2, grid_size=5, order=order)
    generic = BSpline(2, grid_size=5, order=order, grid=uniform.grid, uniform=False)
    x = jax.random.uniform(jax.random.PRNGKey(0), (200, 2), minval=-2.5, maxval=2.5)
    np.testing.assert_allclose(np.asarray(uniform(x)), np.asarray(generic(x)), atol=2e-6)


def test_cubic_bspline_known_values():
    # On knots 0,1,2,3,4 the cubic B-spline equals 1/6 at x=1 and 2/3 at x=2 (textbook values).
    basis = BSpline(1, grid_size=1, order=3, grid_range=(0.0, 1.0))  # knots -3..4, spacing 1
    x = jnp.array([[-2.0], [-1.0]])  # the first B-spline lives on [-3, 1]
    feats = basis(x)[:, 0, 0]
    np.testing.assert_allclose(np.asarray(feats), [1 / 6, 2 / 3], rtol=1e-6)


@pytest.mark.parametrize("uniform", [True, False])
def test_far_inputs_are_finite_with_finite_gradients(uniform):
    base = BSpline(2, grid_size=5, order=3)
    basis = BSpline(2, 5, 3, grid=base.grid, uniform=uniform)
    x = jnp.array([[1e4, -1e4], [3e3, -7e3]])
    feats = basis(x)
    assert bool(jnp.all(jnp.isfinite(feats)))
    np.testing.assert_array_equal(np.asarray(feats), 0.0)
    grad = jax.grad(lambda v: jnp.sum(basis(v) ** 2))(x)
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="grid_size"):
        BSpline(2, grid_size=0)
    with pytest.raises(ValueError, match="order"):
        BSpline(2, order=-1)
    with pytest.raises(ValueError, match="grid_range"):
        BSpline(2, grid_range=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        BSpline(2)(jnp.ones((4, 3)))
    with pytest.raises(TypeError, match="floating"):
        BSpline(2)(jnp.ones((4, 2), dtype=jnp.int32))


def test_second_moment_matches_monte_carlo():
    basis = BSpline(2, grid_size=4, order=3, grid_range=(-1.5, 2.0))
    x = jax.random.normal(jax.random.PRNGKey(3), (400_000, 2))
    mc = jnp.mean(jnp.sum(basis(x) ** 2, -1), 0)
    np.testing.assert_allclose(np.asarray(basis.gaussian_second_moment_trace()), np.asarray(mc), rtol=1e-2)
    full = basis.gaussian_second_moment()
    np.testing.assert_allclose(np.trace(np.asarray(full), axis1=1, axis2=2),
                               np.asarray(basis.gaussian_second_moment_trace()), rtol=1e-5)


def test_grid_is_a_buffer_not_a_parameter():
    spec = trainable_filter(BSpline(2))
    assert jax.tree_util.tree_leaves(spec) == [False]


def test_update_grid_spans_samples_and_stays_sorted():
    x = np.random.default_rng(0).normal(size=(300, 2)) * [1.0, 3.0]
    new = BSpline(2, 5, 3).update_grid(x, grid_eps=0.02)
    lo, hi = new.domain()
    np.testing.assert_allclose(np.asarray(lo), x.min(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(hi), x.max(0), rtol=1e-5, atol=1e-5)
    assert bool(jnp.all(jnp.diff(new.grid, axis=1) > 0))
    assert not new.uniform
    np.testing.assert_allclose(np.asarray(new(jnp.asarray(x, jnp.float32)).sum(-1)), 1.0, atol=1e-5)


def test_update_grid_on_constant_input_is_finite():
    x = np.ones((50, 1))
    new = BSpline(1, 3, 3).update_grid(x)
    assert bool(jnp.all(jnp.diff(new.grid, axis=1) > 0))


def test_with_grid_size_nests_uniform_grid():
    basis = BSpline(1, 5, 3)
    finer = basis.with_grid_size(10)
    assert finer.uniform and finer.num_functions == 13
    old_knots = set(np.round(np.asarray(basis.grid[0, 3:-3]), 6))
    assert old_knots <= set(np.round(np.asarray(finer.grid[0]), 6))


def test_select_inputs_keeps_those_grids():
    basis = BSpline(3, 4, 2).update_grid(np.random.default_rng(1).uniform(size=(40, 3)) * [1, 2, 3])
    sub = basis.select_inputs(jnp.array([2, 0]))
    np.testing.assert_array_equal(np.asarray(sub.grid), np.asarray(basis.grid)[[2, 0]])
    assert sub.in_features == 2
