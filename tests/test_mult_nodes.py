"""Multiplication nodes (pykan's MultKAN): forward pass, validation, pruning, attribution, formulas,
plots and saving."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import kan
import symbolic
from kan.edit.surgery import replace_fields
from kan.layers.mult import combine_subnodes, node_to_subnodes, subnodes_of


@pytest.fixture(scope="module")
def data():
    x = jax.random.uniform(jax.random.PRNGKey(3), (64, 2), minval=-1.0, maxval=1.0)
    return x


def test_forward_multiplies_subnode_pairs(key, data):
    model = kan.KAN([2, 3, 1], mult_nodes=[2], key=key)
    assert model.widths == (2, 3, 1)
    assert [layer.out_features for layer in model.layers] == [5, 1]
    sub = model.layers[0](data)
    nodes = jnp.stack([sub[:, 0], sub[:, 1] * sub[:, 2], sub[:, 3] * sub[:, 4]], axis=-1)
    np.testing.assert_allclose(model(data), model.layers[1](nodes), rtol=1e-5, atol=1e-6)
    acts = model.activations(data)
    assert [a.shape[-1] for a in acts] == [2, 3, 1]


def test_subnode_bookkeeping():
    np.testing.assert_array_equal(node_to_subnodes(3, 2), [0, 1, 1, 2, 2])
    sub, kept_mult = subnodes_of(np.array([0, 2]), 3, 2)
    np.testing.assert_array_equal(sub, [0, 3, 4])
    assert kept_mult == 1
    h = jnp.arange(5.0)[None] + 1.0
    np.testing.assert_allclose(combine_subnodes(h, 2), [[1.0, 6.0, 20.0]])


@pytest.mark.parametrize("mult", [[], [4], [-1], [1, 0]])
def test_bad_mult_nodes_raise(key, mult):
    with pytest.raises(ValueError, match="mult_nodes"):
        kan.KAN([2, 3, 1], mult_nodes=mult, key=key)


def test_dropping_a_dead_product_node_keeps_the_function(key, data):
    model = kan.KAN([2, 3, 1], mult_nodes=[2], key=key)
    out_mask = model.layers[1].edge_mask.at[:, 1].set(0.0)  # product node 1 feeds nothing
    model = replace_fields(model, layers=(model.layers[0],
                                                      replace_fields(model.layers[1], edge_mask=out_mask)))
    before = model(data)
    pruned = kan.drop_disconnected_nodes(model)
    assert pruned.widths == (2, 2, 1) and pruned.mult_nodes == (1,)
    assert pruned.layers[0].out_features == 3
    np.testing.assert_allclose(pruned(data), before, rtol=1e-5, atol=1e-6)


def test_attribution_shapes_and_prune(key, data):
    model = kan.KAN([2, 3, 2, 1], mult_nodes=[1, 1], key=key)
    nodes, edges = kan.attribution_scores(model, data)
    assert [n.shape[0] for n in nodes] == [2, 3, 2, 1]
    assert [e.shape for e in edges] == [(4, 2), (3, 3), (1, 2)]
    assert all(bool(jnp.all(jnp.isfinite(e))) for e in edges)
    pruned = kan.prune(model, data)
    assert pruned(data).shape == (64, 1)
    assert all(0 <= m <= w for m, w in zip(pruned.mult_nodes, pruned.widths[1:-1]))


def _fix(model, layer, out, inp, name, affine):
    model, _ = symbolic.fix_symbolic(model, layer, out, inp, name)
    sym = model.layers[layer].symbolic.with_edge(out, inp, name, affine)
    layers = list(model.layers)
    layers[layer] = replace_fields(layers[layer], symbolic=sym)
    return replace_fields(model, layers=tuple(layers))


def test_formula_of_a_snapped_product(key, data):
    a, b = symbolic.default_variables(2)
    model = kan.KAN([2, 1, 1], mult_nodes=[1], key=key)
    first = replace_fields(model.layers[0], edge_mask=jnp.array([[1.0, 0.0], [0.0, 1.0]]), bias=jnp.zeros(2))
    model = replace_fields(model, layers=(first, replace_fields(model.layers[1], bias=jnp.zeros(1))))
    model = _fix(model, 0, 0, 0, "x", (1.0, 0.0, 2.0, 0.0))
    model = _fix(model, 0, 1, 1, "sin", (1.0, 0.0, 1.0, 0.0))
    model = _fix(model, 1, 0, 0, "x", (1.0, 0.0, 1.0, 1.0))
    (expr,) = symbolic.model_expressions(model, (a, b))
    assert sp.simplify(sp.nsimplify(expr) - (2 * a * sp.sin(b) + 1)) == 0, expr
    want = 2 * data[:, 0] * jnp.sin(data[:, 1]) + 1
    np.testing.assert_allclose(model(data)[:, 0], want, rtol=1e-4, atol=1e-5)


def test_plot_and_save_roundtrip(key, data, tmp_path):
    model = kan.KAN([2, 2, 1], mult_nodes=[1], key=key)
    kan.plot(model, data, tmp_path / "mult.png")
    assert (tmp_path / "mult.png").stat().st_size > 0
    kan.save(tmp_path / "m.eqx", model)
    loaded = kan.load(tmp_path / "m.eqx", kan.KAN([2, 2, 1], mult_nodes=[1], key=jax.random.PRNGKey(9)))
    np.testing.assert_allclose(loaded(data), model(data))


def test_fix_after_products_fixes_only_the_product_edges(key):
    model = kan.KAN([2, 2, 1, 1], mult_nodes=[1, 0], key=key)
    status = symbolic.symbolic_status(symbolic.fix_after_products(model))
    assert (status[1][:, 1] == 2).all() and (status[1][:, 0] == 1).all()  # the product node's edge only
    assert (status[0] == 1).all() and (status[2] == 1).all()
    with pytest.raises(ValueError, match="no multiplication nodes"):
        symbolic.fix_after_products(kan.KAN([2, 2, 1], key=key))


def test_release_after_products_keeps_the_function(key, data):
    model = symbolic.fix_after_products(kan.KAN([2, 2, 1], mult_nodes=[1], key=key))
    out_layer = model.layers[1]
    affine = out_layer.symbolic.affine.at[0, 1].set(jnp.array([1.0, 0.0, -0.7, 0.3]))
    model = _fix(model, 1, 0, 1, "x", tuple(float(v) for v in affine[0, 1]))
    model = kan.update_grid(model, data)  # the spline must cover the product's range
    before = model(data)
    released = symbolic.release_after_products(model, data)
    assert (symbolic.symbolic_status(released)[1] == 1).all()  # numeric again
    np.testing.assert_allclose(released(data), before, rtol=1e-3, atol=1e-3)
    assert not np.allclose(symbolic.unfix_symbolic(model, 1, 0, 1)(data), before, atol=1e-3)  # without data
