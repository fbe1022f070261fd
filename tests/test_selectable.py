"""Tests for kan.SelectableKANLayer (S-KAN): selection, finalisation, planted-family recovery."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import BSpline, Chebyshev, Fourier, GaussianRBF
from kan.layers.selectable_layer import (InputAffine, SelectableKANLayer, SelectedKANLayer, Selection, adapt_basis,
                                  anneal_temperature, fit_selectable, nice_ranges, plot_selection, set_temperature)

KEY = jax.random.PRNGKey(0)
apply = eqx.filter_jit(lambda module, x: module(x))
# Identifiable families on [-2, 2]: 3 Fourier harmonics hold sin(3x) exactly but not x^3; a cubic
# Chebyshev polynomial (affine map of [-2, 2]) holds x^3 exactly but not sin(3x); Gaussian bumps are
# a generic competitor that can approximate both but neither exactly.
PLANTED = [("fourier", lambda d: Fourier(d, 3)),
           ("chebyshev", lambda d: Chebyshev(d, 3, (-2.0, 2.0), input_map="affine")),
           ("rbf", lambda d: GaussianRBF(d, 5, (-2.0, 2.0)))]


def _planted(seed):
    k_data, k_init = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.uniform(k_data, (256, 2), minval=-2.0, maxval=2.0)
    y = (jnp.sin(3 * x[:, 0]) + x[:, 1] ** 3)[:, None]
    return x, (y - y.mean()) / y.std(), k_init


def test_planted_families_are_recovered_in_most_seeds():
    """The paper's annealed softmax (criterion="softmax") on a case it handles."""
    correct = []
    for seed in range(5):
        x, y, k_init = _planted(seed)
        layer = SelectableKANLayer(2, 1, PLANTED, key=k_init)
        layer, history = fit_selectable(layer, (x, y), criterion="softmax", steps=300, learning_rate=0.1)
        sel = layer.selection()
        assert sel.criterion == "softmax" and sel.heldout_error is None
        assert np.all(sel.weight > 0.5)  # the logits trained away from the uniform 1/3
        correct.append(sel.names == ("fourier", "chebyshev"))
        if correct[-1]:
            final = layer.finalize()
            assert final.node_families == ("fourier", "chebyshev")
            assert float(jnp.mean((apply(final, x) - y) ** 2)) < 1e-2 < history["train_loss"][0]
    assert sum(correct) >= 3, correct


def test_selection_and_temperature():
    layer = SelectableKANLayer(4, 3, ["chebyshev", "fourier", "rbf"], key=KEY)
    sel = layer.selection()
    assert sel.candidates == ("chebyshev", "fourier", "rbf") and sel.probabilities.shape == (4, 3)
    np.testing.assert_allclose(sel.probabilities, 1 / 3, rtol=1e-6)  # uniform start
    logits = jnp.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.3, 0.0]])
    layer = eqx.tree_at(lambda m: m.logits, layer, logits)
    sel = layer.selection()
    assert sel.names == ("fourier", "chebyshev", "rbf", "fourier") and list(sel.index) == [1, 0, 2, 1]
    np.testing.assert_allclose(sel.probabilities.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(sel.weight, sel.probabilities.max(-1))
    cold = layer.with_temperature(0.1).selection()
    assert cold.names == sel.names and np.all(cold.weight > sel.weight)
    assert float(anneal_temperature(0, 10)) == pytest.approx(1.0)
    assert float(anneal_temperature(10, 10)) == pytest.approx(0.05)
    assert float(set_temperature([layer, layer], 0.3)[1].temperature) == pytest.approx(0.3)


def test_plot_selection_writes_a_figure(tmp_path):
    layer = SelectableKANLayer(4, 3, ["chebyshev", "fourier", "rbf"], key=KEY)
    plot_selection(layer.selection(), tmp_path / "sel.png")
    assert (tmp_path / "sel.png").stat().st_size > 1000


def test_finalize_keeps_one_space_per_node_and_the_function():
    layer = SelectableKANLayer(4, 3, ["chebyshev", "fourier", "rbf"], key=KEY)
    choice = np.array([1, 0, 1, 2])
    layer = eqx.tree_at(lambda m: m.logits, layer, 30.0 * jax.nn.one_hot(choice, 3))
    x = jax.random.uniform(KEY, (2, 5, 4), minval=-1.0, maxval=1.0)
    final = layer.finalize()
    assert isinstance(final, SelectedKANLayer)
    assert final.node_families == ("fourier", "chebyshev", "fourier", "rbf")
    assert final.families == ("chebyshev", "fourier", "rbf")
    assert [type(g.basis) for g in final.groups] == [Chebyshev, Fourier, GaussianRBF]
    assert [g.in_features for g in final.groups] == [1, 2, 1]
    want, got, edges = eqx.filter_jit(lambda l, f, v: (l(v), f(v), f.edge_functions(v)))(layer, final, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert edges.shape == (2, 5, 3, 4)
    np.testing.assert_allclose(edges.sum(-1) + layer.bias, got, rtol=1e-4, atol=1e-5)
    assert final.num_parameters() < layer.num_parameters()
    assert final.flops() > 0


def test_forward_and_rational_candidate():
    layer = SelectableKANLayer(4, 3, ["rbf", "rational"], key=KEY)
    x = jax.random.normal(KEY, (5, 4))
    y = apply(layer, x)
    assert y.shape == (5, 3) and bool(jnp.all(jnp.isfinite(y)))
    logits = jnp.array([[9.0, 0.0], [0.0, 9.0], [0.0, 9.0], [9.0, 0.0]])
    final = eqx.tree_at(lambda m: m.logits, layer, logits).finalize()
    assert final.node_families == ("rbf", "rational", "rational", "rbf")  # Rational.select_inputs works


def test_32_layer_stack_preserves_variance():
    factories = [("chebyshev", lambda d: Chebyshev(d)), ("fourier", lambda d: Fourier(d))]
    keys = jax.random.split(KEY, 33)
    h = jax.random.normal(keys[32], (512, 64))
    for k in keys[:32]:
        h = apply(SelectableKANLayer(64, 64, factories, key=k), h)
    assert 0.5 <= float(jnp.var(h)) <= 2.0


@pytest.mark.parametrize("candidates, error, match", [
    ([], ValueError, "non-empty"),
    (["bspline", "sinc"], ValueError, "unknown candidate 'sinc'; valid names: bspline, rbf"),
    (["rbf", "rbf"], ValueError, "unique"),
    ([("rbf", lambda d: GaussianRBF(d + 1))], ValueError, "in_features=4"),
    ([42], TypeError, "name or a"),
    ([("rbf", lambda d: GaussianRBF(d, 0))], ValueError, "grid_size"),
])
def test_bad_candidates_raise(candidates, error, match):
    with pytest.raises(error, match=match):
        SelectableKANLayer(4, 3, candidates, key=KEY)


def test_other_bad_input_raises():
    with pytest.raises(ValueError, match="temperature"):
        SelectableKANLayer(4, 3, ["rbf"], key=KEY, temperature=0.0)
    layer = SelectableKANLayer(4, 3, ["rbf"], key=KEY)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        layer(jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="no SelectableKANLayer"):
        set_temperature(eqx.nn.Identity(), 0.5)
    x, y = jnp.zeros((8, 4)), jnp.zeros((8, 3))
    with pytest.raises(ValueError, match="warmup"):
        fit_selectable(layer, (x, y), steps=10, warmup=1.5)
    with pytest.raises(ValueError, match="NaN"):
        fit_selectable(layer, (x.at[0, 0].set(jnp.nan), y), steps=10)


# ----- robust selection: range adaptation and the refit criterion ------------------------------------
# These use only the default fit_selectable (criterion="refit", adapt=True); the truth is used to score.
def _uniform(key, n, ranges):
    lo, hi = np.array(ranges, np.float32).T
    return jax.random.uniform(key, (n, len(ranges)), minval=lo, maxval=hi)


def test_abs_node_picks_the_kinked_space_and_periodic_node_fourier():
    """The reported defect: y = 2|x1| + (x2^2 - x2) + sin(4 x3) on [-2, 2]^3."""
    candidates = ["fourier", "chebyshev", "bspline", "relu_kan", "rbf",
                  ("bspline1", lambda d: BSpline(d, 2, 1, (-2.0, 2.0)))]
    for seed in range(2):
        k_data, k_test, k_init = jax.random.split(jax.random.PRNGKey(seed), 3)
        f = lambda x: (2 * jnp.abs(x[:, 0]) + x[:, 1] ** 2 - x[:, 1] + jnp.sin(4 * x[:, 2]))[:, None]
        x, xt = _uniform(k_data, 256, [(-2, 2)] * 3), _uniform(k_test, 512, [(-2, 2)] * 3)
        layer, _ = fit_selectable(SelectableKANLayer(3, 1, candidates, key=k_init), (x, f(x)))
        sel = layer.selection()
        assert sel.criterion == "refit" and sel.names[0] == "bspline1" and sel.names[2] == "fourier", sel.names
        final = layer.finalize()
        assert final.node_families == sel.names
        assert float(jnp.mean((apply(final, xt) - f(xt)) ** 2) / jnp.var(f(xt))) < 1e-3


SPACES = ["bspline", "rbf", "fourier", "chebyshev", "linear_spline", "polynomial"]


def test_planted_families_on_ranges_other_than_unit():
    """Kinked, saturating and bump nodes on [-2, 2], [0, 10], [-5, 3], kinks/centres off the grids."""
    ranges = [(-2.0, 2.0), (0.0, 10.0), (-5.0, 3.0)]
    f = lambda x: (jnp.maximum(x[:, 0] - 0.37, 0.0) + jnp.tanh((x[:, 1] - 6.1) / 1.3)
                   + jnp.exp(-(((x[:, 2] + 1.2) / 0.6) ** 2)))[:, None]
    x = _uniform(jax.random.PRNGKey(3), 256, ranges)
    y = f(x) + 0.01 * jax.random.normal(jax.random.PRNGKey(4), (256, 1))
    layer, _ = fit_selectable(SelectableKANLayer(3, 1, SPACES, key=KEY), (x, y))
    sel = layer.selection()
    assert sel.names == ("linear_spline", "chebyshev", "rbf"), (sel.names, sel.heldout_error, sel.parameters)
    assert sel.heldout_error.shape == (3, 6) and sel.parameters.shape == (3, 6)


def test_planted_periodic_polynomial_and_kink_on_0_10():
    """sin(0.9 x + 1) is outside Fourier's default frequencies 1..3; the cubic needs an affine map."""
    f = lambda x: (jnp.sin(0.9 * x[:, 0] + 1.0) + 0.01 * (x[:, 1] - 5.0) ** 3 + jnp.abs(x[:, 2] - 3.3))[:, None]
    x = _uniform(jax.random.PRNGKey(5), 256, [(0, 10)] * 3)
    layer, history = fit_selectable(SelectableKANLayer(3, 1, SPACES, key=KEY), (x, f(x)))
    assert layer.selection().names == ("fourier", "polynomial", "linear_spline")
    assert history["train_loss"][-1] / float(jnp.var(f(x))) < 1e-5


def test_range_adaptation_makes_inputs_in_0_10_fit():
    x = _uniform(jax.random.PRNGKey(6), 256, [(0, 10)] * 3)
    y = (jnp.sin(0.6 * x[:, 0]) + 0.05 * x[:, 1] + jnp.exp(-x[:, 2] / 3))[:, None]
    layer, history = fit_selectable(SelectableKANLayer(3, 1, ["bspline"], key=KEY), (x, y))
    assert history["train_loss"][-1] / float(jnp.var(y)) < 1e-4
    lo, hi = nice_ranges(np.concatenate([np.asarray(x), np.asarray(x) * 0.4 - 2.0], axis=1))
    np.testing.assert_allclose(lo, [0.0] * 3 + [-2.0] * 3, atol=1e-9)
    np.testing.assert_allclose(hi, [10.0] * 3 + [2.0] * 3, atol=1e-9)


def test_adapt_places_grids_and_keeps_hand_placed_ones():
    x = _uniform(jax.random.PRNGKey(7), 256, [(-2, 2), (0, 10), (-5, 3)])
    spaces = ["bspline", "rbf", "relu_kan", "polynomial", "chebyshev", "fourier",
              ("bspline1", lambda d: BSpline(d, 2, 1, (-2.0, 2.0)))]
    adapted = SelectableKANLayer(3, 1, spaces, key=KEY).adapt(x)
    for name, basis in zip(spaces[:5], adapted.bases):
        lo, hi = (np.asarray(a) for a in basis.domain())
        np.testing.assert_allclose(lo, [-2.0, 0.0, -5.0], atol=1e-5, err_msg=str(name))
        np.testing.assert_allclose(hi, [2.0, 10.0, 3.0], atol=1e-5, err_msg=str(name))
    assert isinstance(adapted.bases[5], Fourier)  # 3 harmonics of w = 1 reach across every range: kept
    kept = np.asarray(adapted.bases[6].grid)
    np.testing.assert_allclose(kept[0], [-4, -2, 0, 2, 4])  # the hand-placed knot at 0 stays
    np.testing.assert_allclose(kept[1, [1, 3]], [0.0, 10.0], atol=1e-5)  # [-2, 2] -> [0, 10]
    feats = np.asarray(apply(adapted.bases[0], x))
    np.testing.assert_allclose(feats.sum(-1), 1.0, atol=1e-4)  # B-splines: partition of unity on the data
    small = _uniform(jax.random.PRNGKey(8), 64, [(0, 0.1)])  # one period of w = 1 is far wider: rescaled
    tiny = adapt_basis(Fourier(1, 3), small)
    lo, hi = nice_ranges(small)
    assert isinstance(tiny, InputAffine) and float(tiny.scale[0]) == pytest.approx(2 / (hi - lo)[0], rel=1e-5)


def test_plot_selection_returns_the_figure_and_saves_only_with_a_path(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    p = np.array([[0.7, 0.3], [0.2, 0.8]])
    softmax = Selection(("rbf", "polynomial"), ("rbf", "polynomial"), np.array([0, 1]), p.max(1), p)
    fig = plot_selection(softmax)
    assert isinstance(fig, Figure) and list(tmp_path.iterdir()) == []
    refit = softmax._replace(criterion="refit", heldout_error=np.array([[1e-6, 0.3], [2e-2, 1e-7]]),
                             parameters=np.array([[3.0, np.inf], [9.0, 3.0]]))
    fig = plot_selection(refit, tmp_path / "sel.png")
    assert isinstance(fig, Figure) and (tmp_path / "sel.png").stat().st_size > 1000
    assert fig.axes[0].get_title() == "S-KAN selection (refit)"


def test_selectable_modules_import_matplotlib_lazily():
    import ast
    import inspect

    import kan.layers.selectable_core as core
    import kan.layers.selectable_layer as front
    import kan.layers.selectable_refit as refit
    import kan.layers.selectable_spaces as spaces

    for module in (core, front, refit, spaces):
        tree = ast.parse(inspect.getsource(module))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top for a in n.names]
        names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert not any(name.startswith("matplotlib") for name in names), module.__name__


def test_refit_bad_configs_raise():
    layer = SelectableKANLayer(3, 1, ["rbf"], key=KEY)
    x, y = jnp.zeros((40, 3)), jnp.zeros((40, 1))
    with pytest.raises(ValueError, match="unknown criterion 'bayes'; valid: refit, softmax"):
        fit_selectable(layer, (x, y), criterion="bayes")
    with pytest.raises(ValueError, match="validation must be a fraction"):
        fit_selectable(layer, (x, y), validation=1.5)
    with pytest.raises(ValueError, match="need at least 4 of each"):
        fit_selectable(layer, (x[:6], y[:6]))
    with pytest.raises(ValueError, match="criterion='refit' needs a SelectableKANLayer or a stack"):
        fit_selectable([layer], (x, y))
    with pytest.raises(ValueError, match="rounds >= 1"):
        layer.refit(x, y, rounds=0)
    with pytest.raises(ValueError, match=r"expected x \(n, 3\) and y \(n, 1\)"):
        layer.refit(x, jnp.zeros((40, 2)))
    with pytest.raises(ValueError, match="InputAffine: shift must be finite and scale finite and > 0"):
        InputAffine(Fourier(2), 0.0, -1.0)


def test_forward_is_the_selection_weighted_sum_over_spaces_and_the_base_branch():
    """The one contraction (function-major features and weights) equals the plain sum
    y = sum_c sum_i p[i, c] sum_k w_c[o, i, k] F_c(x)[..., i, k] + base + bias, with mixed selections."""
    layer = SelectableKANLayer(5, 3, ["chebyshev", "fourier", "rbf"], key=KEY)
    layer = eqx.tree_at(lambda m: m.logits, layer, jax.random.normal(jax.random.PRNGKey(7), (5, 3)))
    layer = eqx.tree_at(lambda m: m.bias, layer, jnp.arange(3.0))
    x = jax.random.uniform(KEY, (2, 4, 5), minval=-1.0, maxval=1.0)
    p = layer.probabilities()
    want = layer.bias + layer.base_activation(x) @ layer.base_weight.T
    for c, (basis, w) in enumerate(zip(layer.bases, layer.weights)):
        want = want + jnp.einsum("...ik,oik,i->...o", basis(x), w, p[:, c])
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-5)
