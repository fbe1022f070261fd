import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import BSpline
import kan
from kan import (KAN, KANLayer, fit, load, prune, prune_edges, prune_nodes, refine, save, update_grid,
                 update_layer_grid)
from kan.edit.grid import refit_basis


def _smooth_layer(grid_size: int) -> KANLayer:
    """A layer whose edge functions are smooth (least-squares fits of sin, cos, exp)."""
    layer = KANLayer(2, 3, BSpline(2, grid_size, 3), key=jax.random.PRNGKey(0))
    xd = np.linspace(-1, 1, 400)[:, None] * np.ones(2)
    feats = np.asarray(layer.basis(jnp.asarray(xd, jnp.float32)), np.float64)
    targets = np.stack([np.sin(xd), np.cos(1.5 * xd), np.exp(0.5 * xd)], -1)  # (n, d, o)
    weight = np.stack([np.linalg.lstsq(feats[:, d], targets[:, d], rcond=None)[0].T for d in range(2)], 1)
    return eqx.tree_at(lambda l: l.spline_weight, layer, jnp.asarray(weight, jnp.float32))


def test_update_grid_keeps_smooth_edge_functions():
    layer = _smooth_layer(10)
    x = jax.random.uniform(jax.random.PRNGKey(1), (500, 2), minval=-0.8, maxval=0.7)
    new = update_layer_grid(layer, x)
    assert not new.basis.uniform
    err = jnp.abs(new.edge_functions(x) - layer.edge_functions(x)).max()
    assert float(err) < 1e-4


def test_update_grid_with_same_knots_is_exact():
    layer = KANLayer(2, 3, key=jax.random.PRNGKey(0))  # random (wiggly) edge functions
    x = jnp.linspace(-1, 1, 300)[:, None] * jnp.ones(2)
    new = update_layer_grid(layer, x, grid_eps=1.0)  # uniform knots on [-1, 1]: the same grid
    assert float(jnp.abs(new(x) - layer(x)).max()) < 1e-4


def test_refine_to_nested_grid_keeps_function_exactly():
    layer = KANLayer(2, 3, BSpline(2, 5, 3), key=jax.random.PRNGKey(0))
    model = eqx.tree_at(lambda m: m.layers, KAN([2, 3], key=jax.random.PRNGKey(0)), (layer,))
    finer = refine(model, 10)
    assert finer.layers[0].basis.grid_size == 10
    x = jax.random.uniform(jax.random.PRNGKey(2), (400, 2), minval=-1, maxval=1)
    assert float(jnp.abs(finer(x) - model(x)).max()) < 1e-4


def test_refine_trained_model_on_data_keeps_function():
    x = jax.random.uniform(jax.random.PRNGKey(0), (300, 2), minval=-1, maxval=1)
    y = jnp.exp(jnp.sin(jnp.pi * x[:, :1]) + x[:, 1:] ** 2)
    model, _ = fit(KAN([2, 3, 1], grid_size=5, key=jax.random.PRNGKey(0)), (x, y), steps=5,
                   optimizer="lbfgs", lbfgs_iterations=10, progress=False)
    finer = refine(model, 12, x)
    assert finer.layers[1].basis.grid_size == 12
    rel = jnp.abs(finer(x) - model(x)).max() / jnp.abs(model(x)).max()
    assert float(rel) < 1e-2


def test_update_grid_model_and_bad_samples():
    model = KAN([2, 3, 1], key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (100, 2))
    new = update_grid(model, x)
    lo, hi = new.layers[0].basis.domain()
    np.testing.assert_allclose(np.asarray(lo), np.asarray(x.min(0)), atol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        update_grid(model, x.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="shape"):
        update_grid(model, x[:, :1])


def _model_with_dead_nodes():
    """A [2, 4, 1] KAN whose hidden nodes 1 and 3 feed nothing (outgoing edges zero), and inputs."""
    model = KAN([2, 4, 1], key=jax.random.PRNGKey(0))
    last = model.layers[1]
    last = eqx.tree_at(lambda l: (l.spline_weight, l.base_weight), last,
                       (last.spline_weight.at[:, [1, 3]].set(0.0), last.base_weight.at[:, [1, 3]].set(0.0)))
    model = eqx.tree_at(lambda m: m.layers, model, (model.layers[0], last))
    x = jax.random.uniform(jax.random.PRNGKey(1), (200, 2), minval=-1, maxval=1)
    return model, x


def test_prune_removes_dead_hidden_nodes_and_keeps_outputs():
    model, x = _model_with_dead_nodes()
    pruned = prune(model, x)
    assert pruned.widths == (2, 2, 1)
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(model(x)), atol=1e-5)


def test_prune_rejects_data_with_nan_or_inf():
    # One NaN row made every attribution score NaN, and prune then dropped 3 of 4 hidden nodes.
    model = KAN([2, 4, 1], key=jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (50, 2), minval=-1, maxval=1)
    for bad in (x.at[2, 1].set(jnp.nan), x.at[7, 0].set(jnp.inf)):
        for fn, name in ((prune, "prune"), (prune_nodes, "prune_nodes"), (prune_edges, "prune_edges")):
            with pytest.raises(ValueError, match=f"{name}: x contains NaN or inf"):
                fn(model, bad)
    with pytest.raises(ValueError, match="prune_edges: expected x"):
        prune_edges(model, x[:, :1])


def test_prune_masks_weak_edges():
    model = KAN([2, 1], key=jax.random.PRNGKey(0))
    layer = model.layers[0]
    layer = eqx.tree_at(lambda l: (l.spline_weight, l.base_weight), layer,
                        (layer.spline_weight.at[0, 1].multiply(1e-4), layer.base_weight.at[0, 1].multiply(1e-4)))
    model = eqx.tree_at(lambda m: m.layers, model, (layer,))
    x = jax.random.uniform(jax.random.PRNGKey(1), (200, 2), minval=-1, maxval=1)
    pruned = prune(model, x)
    np.testing.assert_array_equal(np.asarray(pruned.layers[0].edge_mask), [[1.0, 0.0]])


def test_save_load_round_trip(tmp_path):
    model = KAN([3, 4, 2], key=jax.random.PRNGKey(0))
    model = update_grid(model, jax.random.normal(jax.random.PRNGKey(1), (50, 3)))
    path = tmp_path / "model.eqx"
    save(path, model)
    skeleton = KAN([3, 4, 2], key=jax.random.PRNGKey(5))
    skeleton = update_grid(skeleton, jax.random.normal(jax.random.PRNGKey(9), (50, 3)))
    loaded = load(path, skeleton)
    x = jax.random.normal(jax.random.PRNGKey(2), (7, 3))
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    with pytest.raises(ValueError, match="skeleton"):
        load(path, KAN([3, 5, 2], key=jax.random.PRNGKey(0)))


def test_prune_drops_hidden_nodes_left_with_only_masked_edges():
    model = KAN([2, 3, 1], key=jax.random.PRNGKey(0))
    first, last = model.layers
    # Hidden node 2 keeps a strong incoming edge but its only outgoing edge is weak: edge pruning masks
    # that edge, after which the node carries nothing and must go too.
    last = eqx.tree_at(lambda l: (l.spline_weight, l.base_weight), last,
                       (last.spline_weight.at[0, 2].multiply(1e-3), last.base_weight.at[0, 2].multiply(1e-3)))
    model = eqx.tree_at(lambda m: m.layers, model, (first, last))
    x = jax.random.uniform(jax.random.PRNGKey(1), (200, 2), minval=-1, maxval=1)
    pruned = prune(model, x, node_th=1e-6)  # node threshold too low to remove node 2 by its score
    assert pruned.widths == (2, 2, 1)
    np.testing.assert_allclose(np.asarray(pruned(x)), np.asarray(model(x)), atol=5e-3)


def test_prune_by_masks_keeps_shapes_and_matches_the_shrunk_model():
    model, x = _model_with_dead_nodes()
    masked = prune(model, x, shrink=False)
    assert masked.widths == (2, 4, 1)
    np.testing.assert_array_equal(np.asarray(masked.layers[0].edge_mask)[[1, 3]], 0.0)  # into nodes 1, 3
    np.testing.assert_array_equal(np.asarray(masked.layers[1].edge_mask)[:, [1, 3]], 0.0)  # out of them
    np.testing.assert_allclose(np.asarray(masked(x)), np.asarray(prune(model, x)(x)), atol=1e-6)
    assert kan.drop_disconnected_nodes(masked).widths == (2, 2, 1)


def test_a_traced_lamb_shares_one_program_and_zero_lamb_equals_no_regulariser():
    from kan.train.fit import _lbfgs_step

    model = KAN([2, 3, 1], grid_size=3, key=jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (64, 2), minval=-1, maxval=1)
    data = (x, jnp.sin(x[:, :1]) * x[:, 1:])
    kw = dict(steps=2, optimizer="lbfgs", lbfgs_iterations=3, update_grid=False, progress=False)
    fit(model, data, lamb=1e-3, regularize=True, **kw)
    before = _lbfgs_step._cached._cache_size()
    with_reg, hist = fit(model, data, lamb=0.0, regularize=True, **kw)
    assert _lbfgs_step._cached._cache_size() == before  # no new program for another lamb
    plain, _ = fit(model, data, **kw)
    np.testing.assert_allclose(np.asarray(with_reg(x)), np.asarray(plain(x)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="regularize"):
        fit(model, data, lamb=1e-3, regularize=False, **kw)
