"""Symbolic edges inside layers, pruning, hand fixing, whole-model formulas and constant snapping
(on hand-built models, no training)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import kan
import symbolic
from bases import SymbolicEdges, trainable_filter
from kan.edit.surgery import keep_inputs, keep_outputs, replace_fields

X1, X2 = symbolic.default_variables(2)


def _hellokan_model(perturb: float = 0.0):
    """A [2, 1, 1] KAN whose edges are set by hand to exp(sin(pi x1) + x2^2) (+ a perturbation)."""
    model = kan.KAN([2, 1, 1], key=jax.random.PRNGKey(0))
    model, _ = symbolic.fix_symbolic(model, 0, 0, 0, "sin")
    model, _ = symbolic.fix_symbolic(model, 0, 0, 1, "x^2")
    model, _ = symbolic.fix_symbolic(model, 1, 0, 0, "exp")
    sym0 = model.layers[0].symbolic
    sym0 = sym0.with_edge(0, 0, "sin", (np.pi + perturb, perturb, 1.0 + perturb, 0.0))
    sym0 = sym0.with_edge(0, 1, "x^2", (1.0, 0.0, 1.0 - perturb, perturb))
    layers = list(model.layers)
    layers[0] = replace_fields(layers[0], symbolic=sym0)
    return eqx.tree_at(lambda m: m.layers, model, tuple(layers))


def _data(n=400, seed=0):
    x = jax.random.uniform(jax.random.PRNGKey(seed), (n, 2), minval=-1, maxval=1)
    return x, jnp.exp(jnp.sin(jnp.pi * x[:, :1]) + x[:, 1:] ** 2)


def test_symbolic_layer_output_is_the_formula_and_numeric_part_is_masked():
    model = _hellokan_model()
    x, y = _data(64)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(y), rtol=1e-5, atol=1e-5)
    # Gradients reach the affine parameters, not the masked spline weights.
    params, static = eqx.partition(model, trainable_filter(model))
    grads = jax.grad(lambda p: jnp.mean((eqx.combine(p, static)(x) - y - 0.1) ** 2))(params)
    assert float(jnp.max(jnp.abs(grads.layers[0].symbolic.affine))) > 0
    assert float(jnp.max(jnp.abs(grads.layers[0].spline_weight))) == 0
    assert grads.layers[0].symbolic.active is None  # a buffer, never trained


def test_select_follows_pruning():
    sym = SymbolicEdges.empty(3, 2).with_edge(2, 1, "sin", (2.0, 0.5, 1.5, -1.0))
    sub = sym.select([0, 2], [1])
    assert sub.names == (("0",), ("sin",))
    np.testing.assert_allclose(np.asarray(sub.affine[1, 0]), [2.0, 0.5, 1.5, -1.0])
    layer = kan.KANLayer(2, 3, key=jax.random.PRNGKey(0))
    layer = replace_fields(layer, symbolic=sym)
    x = jnp.linspace(-1, 1, 10).reshape(5, 2)
    full = layer.edge_functions(x)
    pruned = keep_inputs(keep_outputs(layer, np.array([0, 2])), np.array([1]))
    np.testing.assert_allclose(np.asarray(pruned.edge_functions(x[:, 1:])), np.asarray(full[:, [0, 2]][:, :, [1]]),
                               rtol=1e-6, atol=1e-6)


def test_fix_symbolic_fits_the_affine_parameters_to_the_edge():
    model = kan.KAN([1, 1], key=jax.random.PRNGKey(3))
    x = jnp.linspace(-1, 1, 200)[:, None]
    target = 0.8 * jnp.sin(2.0 * x + 0.3) - 0.1
    model, _ = kan.fit(model, (x, target), steps=10, optimizer="lbfgs", progress=False)
    before = model(x)
    fixed, r2 = symbolic.fix_symbolic(model, 0, 0, 0, "sin", x)
    assert r2 > 0.999
    np.testing.assert_allclose(np.asarray(fixed(x)), np.asarray(before), atol=2e-2)
    with pytest.raises(ValueError, match="unknown symbolic function"):
        symbolic.fix_symbolic(model, 0, 0, 0, "sinc")
    with pytest.raises(ValueError, match="outside layer"):
        symbolic.fix_symbolic(model, 0, 1, 0, "sin")
    back = symbolic.unfix_symbolic(fixed, 0, 0, 0)
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(before), rtol=1e-6, atol=1e-6)


def test_formula_of_exact_model():
    model = _hellokan_model()
    exprs = symbolic.model_expressions(model)
    assert len(exprs) == 1
    x, y = _data(100)
    f = sp.lambdify((X1, X2), exprs[0], "numpy")
    np.testing.assert_allclose(f(np.asarray(x[:, 0]), np.asarray(x[:, 1])), np.asarray(y[:, 0]), rtol=1e-5)


def test_numeric_edges_block_the_formula():
    model = kan.KAN([2, 1], key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="not symbolic"):
        symbolic.model_expressions(model)


def test_constants_snap_to_nice_values_and_export():
    model = _hellokan_model(perturb=2e-3)
    train, val = _data(400, 0), _data(400, 1)
    (formula,) = symbolic.extract_formula(model, train, val)
    truth = sp.exp(sp.sin(sp.pi * X1) + X2**2)
    assert sp.simplify(formula.expr - truth) == 0
    assert formula.rmse < 1e-6 < formula.network_rmse
    assert "\\sin" in formula.latex() and "\\pi" in formula.latex()
    pred = formula(val[0])
    np.testing.assert_allclose(np.asarray(pred), np.asarray(val[1][:, 0]), rtol=1e-5)


def test_constant_snapping_keeps_needed_constants():
    x = np.random.default_rng(0).uniform(-1, 1, (300, 1))
    y = 1.37 * np.sin(3.0 * x[:, 0])
    (v,) = symbolic.default_variables(1)
    result = symbolic.snap_constants(sp.Float(1.3) * sp.sin(sp.Float(2.9) * v), [v], (x, y))
    assert result.rmse_after < 1e-6
    coeffs = sorted(float(c) for c in result.expr.atoms(sp.Number))
    assert any(abs(c - 1.37) < 1e-4 for c in coeffs)  # 1.37 is not nice: kept, not rounded to 4/3
    assert sp.Integer(3) in result.expr.atoms(sp.Number)


def test_nice_candidates():
    assert symbolic.nice_candidates(3.1416)[0] == sp.pi
    assert symbolic.nice_candidates(0.49998)[0] == sp.Rational(1, 2)
    assert symbolic.nice_candidates(2e-4)[0] == 0
    assert symbolic.nice_candidates(1.2345, window=0.005) == []
    assert symbolic.nice_candidates(0.0530516)[0] == 1 / (6 * sp.pi)
    assert symbolic.nice_candidates(9.8696)[0] == sp.pi**2
    # a large float is near a large integer, which is not a nice constant
    assert symbolic.nice_candidates(48723.2) == []
    assert symbolic.nice_candidates(-7.0 + 1e-9)[0] == -7


def test_auto_symbolic_snaps_constant_and_dead_edges_without_errors():
    model = kan.KAN([3, 2, 1], key=jax.random.PRNGKey(0))
    model = eqx.tree_at(lambda m: m.layers[0].spline_weight, model,
                        model.layers[0].spline_weight.at[:, 2].set(0.0))
    model = eqx.tree_at(lambda m: m.layers[0].base_weight, model, model.layers[0].base_weight.at[:, 2].set(0.0))
    model = eqx.tree_at(lambda m: m.layers[1].edge_mask, model, model.layers[1].edge_mask.at[0, 1].set(0.0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (200, 3), minval=-1, maxval=1) * jnp.array([1.0, 1e3, 1.0])
    snapped, records = symbolic.auto_symbolic(model, x)
    assert len(records) == 3 * 2 + 1  # the masked edge is skipped
    dead = [r for r in records if r.layer == 0 and r.inp == 2]
    assert all(r.name == "0" and abs(r.affine[3]) < 1e-6 for r in dead)
    status = symbolic.symbolic_status(snapped)
    assert (status[0] == 2).all() and status[1].tolist() == [[2, 0]]
    assert bool(jnp.all(jnp.isfinite(snapped(x))))
    with pytest.raises(ValueError, match="NaN"):
        symbolic.auto_symbolic(model, x.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="shape"):
        symbolic.auto_symbolic(model, x[:, :2])


def test_select_by_formula_swaps_a_look_alike_edge():
    # The x_2 edge snapped to a wrong look-alike (cos); its alternative x^2 fits the data exactly.
    model = _hellokan_model()
    wrong = model.layers[0].symbolic.with_edge(0, 1, "cos", (2.0, 0.0, -0.25, 0.25))
    layers = list(model.layers)
    layers[0] = replace_fields(layers[0], symbolic=wrong)
    model = eqx.tree_at(lambda m: m.layers, model, tuple(layers))
    rec = symbolic.SnapRecord(0, 0, 1, "cos", 0.99, (2.0, 0.0, -0.25, 0.25), True,
                              (("x^2", 0.98, (1.0, 0.0, 0.9, 0.0)), ("sin", 0.5, (1.0, 0.0, 1.0, 0.0))))
    train, val = _data(300, 0), _data(300, 1)
    swapped, swaps = symbolic.select_by_formula(model, [rec], train, val)
    assert [s.name for s in swaps] == ["x^2"]
    assert swapped.layers[0].symbolic.names[0][1] == "x^2"
    (formula,) = symbolic.extract_formula(swapped, train, val)
    assert sp.simplify(formula.expr - sp.exp(sp.sin(sp.pi * X1) + X2**2)) == 0


def test_canonicalize_pulls_redundant_scales_out_of_functions():
    a, b = X1, X2
    k = sp.Float(15.0)
    expr = sp.Float(0.3) * sp.sqrt(k * a**2 + sp.Float(14.0) * b**2 + k) + sp.log(sp.Float(3.0) * a + sp.Float(6.0))
    expr = expr + sp.exp(sp.Float(0.5) + b) / (sp.Float(2.0) + sp.Float(4.0) * a)
    canon = symbolic.canonicalize(expr)
    # sqrt(15 a^2 + 14 b^2 + 15) keeps one inner float, log and 1/(2 + 4a) one each, and the
    # constants in front merge: 9 floats before, 5 after (0.3 sqrt(15), a^2: none, b^2: 14/15, log: 0.5 and
    # log 6, exp: e^0.5 / 2, 1/(.): 2).
    assert len(canon.atoms(sp.Float)) < len(expr.atoms(sp.Float))
    assert all(f != 15.0 for f in canon.atoms(sp.Float))
    point = {a: 0.7, b: -0.4}
    assert float(canon.subs(point)) == pytest.approx(float(expr.subs(point)), rel=1e-12)


def test_constant_snapping_through_a_redundant_scale():
    # c sqrt(k (a^2 + b^2 + 1)) with c = 1/sqrt(k): only the product is determined by data; the
    # formula must still come out exact.
    x = jax.random.uniform(jax.random.PRNGKey(3), (300, 2), minval=-1, maxval=1)
    y = jnp.sqrt(1 + x[:, 0] ** 2 + x[:, 1] ** 2)
    k = sp.Float(15.0)
    expr = sp.Float(1 / np.sqrt(15.0)) * sp.sqrt(k * X1**2 + k * X2**2 + k)
    result = symbolic.snap_constants(symbolic.canonicalize(expr), (X1, X2), (np.asarray(x), np.asarray(y)))
    assert sp.simplify(result.expr - sp.sqrt(X1**2 + X2**2 + 1)) == 0


def test_snap_layerwise_snaps_every_layer_in_order_and_refits():
    x, y = _data(200, 0)
    model = kan.KAN([2, 1, 1], key=jax.random.PRNGKey(0))
    model, _ = kan.fit(model, (x, y), steps=3, optimizer="lbfgs", progress=False)
    lib = ["0", "x", "x^2", "sin", "exp"]
    snapped, records = symbolic.snap_layerwise(model, (x, y), lib, refit_steps=2)
    assert [r.layer for r in records] == [0, 0, 1]
    assert all((s == 2).all() for s in symbolic.symbolic_status(snapped))
    # the refit after the last layer moved its affine parameters away from the snapped fit
    assert not np.allclose(np.asarray(snapped.layers[1].symbolic.affine[0, 0]), records[-1].affine)
    with pytest.raises(ValueError, match="refit_steps"):
        symbolic.snap_layerwise(model, (x, y), lib, refit_steps=-1)
    with pytest.raises(TypeError, match="every layer"):
        symbolic.snap_layerwise(model, (x, y), lib, layers=[0])


def test_formula_with_complex_infinity_evaluates_to_nan_instead_of_crashing():
    # A dead edge 1/(0 x + 0) gives sympy's zoo, which its printers cannot lambdify.
    formula = symbolic.Formula(X1 + sp.zoo * X2, (X1, X2))
    assert np.isnan(formula.evaluate_numpy(np.ones((3, 2)))).all()
    assert np.isnan(np.asarray(formula(jnp.ones((3, 2))))).all()
    x = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    result = symbolic.snap_constants(sp.Float(2.0) * X1 + sp.zoo * X2, (X1, X2), (x, x[:, 0]))
    assert result.rmse_before == float("inf")
