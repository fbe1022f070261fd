"""kan.RationalActivation and kan.RationalMLP: the activation against its target and its jnp formula,
one coefficient set reached by every layer when shared, counts, init variance, plots, errors. (Their
fresh-process save/load, sharing included, is in tests/test_pade.py's one subprocess.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kan

KEY = jax.random.PRNGKey(0)


def _normal(seed, shape):
    """N(0, 1) float32 data drawn on the host (no XLA program to compile per shape)."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)
WIDTHS = (3, 8, 8, 8, 2)  # three hidden layers: three uses of the shared activation


@pytest.fixture(scope="module")
def nets():
    return {s: kan.RationalMLP(WIDTHS, key=KEY, sharing=s) for s in ("shared", "per_layer")}


def test_activation_matches_its_start_and_formula():
    z = jnp.linspace(-3.0, 3.0, 61)
    act = kan.RationalActivation(init="leaky_relu")
    y = act(z)
    assert y.shape == z.shape and y.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(y - jax.nn.leaky_relu(z, 0.01)))) < 0.02
    np.testing.assert_allclose(np.asarray(y), np.asarray(act.reference(z)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(kan.RationalActivation(3, 2, "identity")(z)), np.asarray(z), atol=1e-6)


def test_shared_set_gets_the_gradient_of_every_layer(nets):
    shared, per_layer = nets["shared"], nets["per_layer"]
    assert len(shared.activations) == 1 and len(per_layer.activations) == 3
    x = _normal(1, (16, 3))
    loss = lambda m: jnp.sum(m(x) ** 2)
    value, grads = jax.value_and_grad(loss)(shared)
    assert float(value) == pytest.approx(float(loss(per_layer)), rel=1e-6)  # equal starts, equal function
    g_shared = grads.activations[0]
    g_layers = jax.grad(loss)(per_layer).activations
    for g in g_layers:  # every layer contributes
        assert float(jnp.abs(g.numerator).sum()) > 1e-6
    for field in ("numerator", "denominator"):
        total = sum(getattr(g, field) for g in g_layers)
        np.testing.assert_allclose(np.asarray(getattr(g_shared, field)), np.asarray(total), rtol=1e-4, atol=1e-6)
    # one optimiser step moves the one set that every layer then uses
    stepped = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, shared, grads)
    assert stepped.activation(0) is stepped.activation(2)
    assert not np.allclose(np.asarray(stepped.activation(0).numerator), np.asarray(shared.activation(0).numerator))


def test_counts_against_the_pytree_and_xla(nets):
    linear = sum(i * o + o for i, o in zip(WIDTHS[:-1], WIDTHS[1:]))
    assert kan.count_parameters(nets["shared"]) == nets["shared"].num_parameters() == linear + 10
    assert kan.count_parameters(nets["per_layer"]) == linear + 3 * 10
    relu = kan.MLP(list(WIDTHS), key=KEY, activation=jax.nn.relu)
    assert kan.count_parameters(nets["shared"]) - kan.count_parameters(relu) == 10
    x = _normal(2, (128, 3))
    cost = kan.xla_flops(nets["shared"], x, optimized=False)
    ratio = (cost.flops + cost.transcendentals) / kan.count_flops(nets["shared"])
    assert 0.8 <= ratio <= 1.25, ratio


def test_init_variance_of_an_8_deep_stack():
    net = kan.RationalMLP([32] * 9, key=KEY, init="leaky_relu")
    x = _normal(3, (2048, 32))
    ratio = float(jnp.mean(net(x) ** 2) / jnp.mean(x ** 2))
    assert 0.5 <= ratio <= 2.0, ratio


def test_learned_curve_plots(nets):
    from matplotlib.figure import Figure

    act = nets["shared"].activation(0)
    x = jnp.linspace(-3.0, 3.0, 32)[:, None]
    view = kan.PadeStack([act.as_layer()])
    np.testing.assert_allclose(np.asarray(view.layers[0].edge_functions(x))[:, 0, 0], np.asarray(act(x))[:, 0])
    fig = kan.plot_edge(view, 0, 0, 0, x)
    assert isinstance(fig, Figure) and fig.axes[0].lines


def test_clear_errors(nets):
    with pytest.raises(ValueError, match="sharing"):
        kan.RationalMLP(WIDTHS, key=KEY, sharing="tied")
    with pytest.raises(ValueError, match="hidden"):
        kan.RationalMLP([3, 2], key=KEY)
    with pytest.raises(ValueError, match="no starting coefficients"):
        kan.RationalActivation(5, 4, init="softplus")
    with pytest.raises(ValueError, match="denominator_order"):
        kan.RationalActivation(5, 0)
    with pytest.raises(ValueError, match="form"):
        kan.RationalActivation(form="C")
    with pytest.raises(TypeError, match="floating"):
        kan.RationalActivation()(jnp.arange(3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        nets["shared"](jnp.ones((4, 5)))
