"""Tests for kan.SelectableKANLayer (S-KAN): selection, finalisation, planted-family recovery."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import Chebyshev, Fourier, GaussianRBF
from kan.selectable_layer import (SelectableKANLayer, SelectedKANLayer, anneal_temperature, fit_selectable,
                                  plot_selection, set_temperature)

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
    correct = []
    for seed in range(5):
        x, y, k_init = _planted(seed)
        layer = SelectableKANLayer(2, 1, PLANTED, key=k_init)
        layer, history = fit_selectable(layer, (x, y), steps=300, learning_rate=0.1)
        sel = layer.selection()
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
