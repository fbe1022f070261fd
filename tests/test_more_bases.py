"""Tests for the extra bases: Gaussian RBF, Chebyshev, Fourier, ReLU-KAN, AF-KAN activation pairs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kan
from bases import (ACTIVATIONS, FUNCTION_TYPES, ActivationPair, Chebyshev, Fourier, GaussianRBF, ReLUKAN,
                   count_parameters)

KEY = jax.random.PRNGKey(0)
# One compiled call per module structure (eager dispatch would compile every primitive separately).
apply = eqx.filter_jit(lambda module, x: module(x))

# Configurations with which each basis fits sin(pi x) on [-1, 1] to RMSE < 1e-3 (see test below).
# ReLU-KAN's bumps do not reproduce polynomials, so its error saturates slowly in G: it needs a wide
# order (measured RMSE: G=5,k=3 1.1e-2; G=15,k=3 5.4e-3; G=24,k=11 3.3e-4).
FIT_FACTORIES = {
    "rbf": lambda d: GaussianRBF(d, 11),
    "chebyshev": lambda d: Chebyshev(d, 10),
    "fourier": lambda d: Fourier(d, 4),
    "relu_kan": lambda d: ReLUKAN(d, 24, 11),
    "af_silu_quad1": lambda d: ActivationPair(d, 8, 3, activation="silu", function_type="quad1"),
}
# Default configurations, for the shape / variance tests.
DEFAULT_FACTORIES = {
    "rbf": lambda d: GaussianRBF(d),
    "chebyshev": lambda d: Chebyshev(d),
    "fourier": lambda d: Fourier(d),
    "relu_kan": lambda d: ReLUKAN(d),
    "activation_pair": lambda d: ActivationPair(d),
}
# For the deep-stack variance test: k = 8 features each (one weight shape, fewer compilations).
STACK_FACTORIES = {
    "rbf": lambda d: GaussianRBF(d, 8),
    "chebyshev": lambda d: Chebyshev(d, 7),
    "fourier": lambda d: Fourier(d, 4),
    "relu_kan": lambda d: ReLUKAN(d, 5, 3),
    "activation_pair": lambda d: ActivationPair(d, 5, 3),
}


@pytest.mark.parametrize("name", sorted(DEFAULT_FACTORIES) + ["relu_kan_trainable"])
def test_shapes_and_counts(name):
    basis = ReLUKAN(3, trainable=True) if name == "relu_kan_trainable" else DEFAULT_FACTORIES[name](3)
    x = jax.random.normal(KEY, (2, 5, 3))
    feats = apply(basis, x)
    assert feats.shape == (2, 5, 3, basis.num_functions)
    assert bool(jnp.all(jnp.isfinite(feats)))
    lo, hi = basis.domain()
    assert lo.shape == hi.shape == (3,) and bool(jnp.all(hi > lo))
    xs, dense = basis.evaluate_dense(11)
    assert xs.shape == (11, 3) and dense.shape == (11, 3, basis.num_functions)
    assert isinstance(basis.flops_per_input(), int) and basis.flops_per_input() > 0
    # select_inputs keeps exactly the chosen coordinates' features
    sub = basis.select_inputs(np.array([2, 0]))
    assert sub.in_features == 2
    np.testing.assert_allclose(apply(sub, x[..., [2, 0]]), feats[..., [2, 0], :], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="indices"):
        basis.select_inputs(np.array([3]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        basis(jnp.zeros((4, 2)))
    with pytest.raises(TypeError, match="floating"):
        basis(jnp.zeros((4, 3), jnp.int32))


def test_formulas_against_numpy():
    x = np.linspace(-2.0, 2.0, 41)[:, None].astype(np.float32)
    # Gaussian RBF: centres on the grid, h = spacing
    feats = np.asarray(GaussianRBF(1, 5, (-1.0, 1.0))(jnp.asarray(x)))[:, 0]
    c, h = np.linspace(-1, 1, 5), 0.5
    np.testing.assert_allclose(feats, np.exp(-(((x - c) / h) ** 2)), rtol=1e-5, atol=1e-6)
    # Chebyshev of tanh(x): T_j(t) = cos(j arccos t)
    feats = np.asarray(Chebyshev(1, 6)(jnp.asarray(x)))[:, 0]
    t = np.tanh(x.astype(np.float64))
    np.testing.assert_allclose(feats, np.cos(np.arange(7) * np.arccos(t)), atol=2e-5)
    # Fourier: cos(kx) then sin(kx), k = 1..G
    feats = np.asarray(Fourier(1, 3)(jnp.asarray(x)))[:, 0]
    k = np.arange(1, 4)
    np.testing.assert_allclose(feats, np.concatenate([np.cos(k * x), np.sin(k * x)], 1), atol=1e-5)
    # ReLU-KAN on the paper's grid [0, 1]: s_i = i/G (i = -k..G-1), e_i = s_i + (k+1)/G
    g, order = 4, 2
    s = np.arange(-order, g) / g
    e = s + (order + 1) / g
    feats = np.asarray(ReLUKAN(1, g, order, (0.0, 1.0))(jnp.asarray(x)))[:, 0]
    want = (np.maximum(e - x, 0) * np.maximum(x - s, 0)) ** 2 * 16 / (e - s) ** 4
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    # AF-KAN pairs, checked with independent numpy formulas
    x1, x2 = np.tanh(x - s), np.tanh(e - x)
    expected = {"quad1": (x1 * x2) ** 2, "quad2": x1 * x2 + x1**2 + x2**2, "sum": x1 + x2, "prod": x1 * x2,
                "sum_prod": x1 + x2 + x1 * x2, "cubic1": (x1 + x2) * (x1**2 + x2**2), "cubic2": (x1 * x2) ** 3}
    assert set(expected) == set(FUNCTION_TYPES)
    for ftype, want in expected.items():
        basis = ActivationPair(1, g, order, (0.0, 1.0), activation="tanh", function_type=ftype)
        np.testing.assert_allclose(np.asarray(basis(jnp.asarray(x)))[:, 0], want, rtol=1e-4, atol=1e-5)
    relu_pair = ActivationPair(1, g, order, (0.0, 1.0), activation="relu", function_type="quad1")
    np.testing.assert_allclose(np.asarray(relu_pair(jnp.asarray(x)))[:, 0] * 16 / (e - s) ** 4,
                               np.asarray(ReLUKAN(1, g, order, (0.0, 1.0))(jnp.asarray(x)))[:, 0], atol=1e-5)


def test_every_activation_and_function_type_is_finite():
    x = jnp.linspace(-3.0, 3.0, 17)[:, None]
    for act in ACTIVATIONS:
        for ftype in FUNCTION_TYPES:
            feats = ActivationPair(1, 3, 3, activation=act, function_type=ftype)(x)
            assert feats.shape == (17, 1, 6) and bool(jnp.all(jnp.isfinite(feats))), (act, ftype)


def test_relu_kan_bumps_peak_at_one():
    basis = ReLUKAN(2, 5, 3, (0.0, 1.0))
    xs = jnp.broadcast_to(jnp.linspace(-1.0, 2.0, 3001)[:, None], (3001, 2))
    np.testing.assert_allclose(basis(xs).max(axis=0), 1.0, atol=1e-4)


def test_second_moments_match_closed_forms():
    # E[cos^2 + sin^2] = 1 per frequency
    np.testing.assert_allclose(Fourier(2, 4).gaussian_second_moment_trace(), 4.0, rtol=1e-4)
    # E[exp(-a (x - c)^2)] = exp(-a c^2 / (1 + 2a)) / sqrt(1 + 2a), x ~ N(0, 1), with a = 2 / h^2
    rbf = GaussianRBF(1, 5, (-1.0, 1.0))
    a, c = 2.0 / 0.5**2, np.linspace(-1, 1, 5)
    want = np.exp(-a * c**2 / (1 + 2 * a)) / np.sqrt(1 + 2 * a)
    np.testing.assert_allclose(jnp.diagonal(rbf.gaussian_second_moment()[0]), want, rtol=1e-3)
    # Chebyshev: T_0 = 1, so M[0, 0] = 1 and M[0, 1] = E[tanh x] = 0
    moment = Chebyshev(1, 3).gaussian_second_moment()[0]
    np.testing.assert_allclose(moment[0, :2], [1.0, 0.0], atol=1e-5)


@pytest.mark.parametrize("name", sorted(FIT_FACTORIES))
def test_fits_sin_pi_x_through_kan_layer(name):
    """Least-squares fit of a KANLayer's weights on the basis features (closed form), then the layer
    itself is evaluated on held-out points."""
    basis = FIT_FACTORIES[name](1)
    layer = kan.KANLayer(1, 1, basis, key=KEY)
    x = jnp.linspace(-1.0, 1.0, 401)[:, None]
    y = np.sin(np.pi * np.asarray(x[:, 0], np.float64))
    design = np.concatenate([np.asarray(jax.nn.silu(x), np.float64), np.asarray(basis(x)[:, 0], np.float64),
                             np.ones((401, 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    layer = eqx.tree_at(lambda l: (l.base_weight, l.spline_weight, l.bias), layer,
                        (jnp.asarray(coef[:1].reshape(1, 1), jnp.float32),
                         jnp.asarray(coef[1:-1].reshape(1, 1, -1), jnp.float32),
                         jnp.asarray(coef[-1:], jnp.float32)))
    x_test = x * 0.999 + 0.0005  # held-out points, same shape (no new compilation)
    err = np.asarray(layer(x_test)[:, 0], np.float64) - np.sin(np.pi * np.asarray(x_test[:, 0], np.float64))
    assert np.sqrt(np.mean(err**2)) < 1e-3


def test_trains_through_kan_fit():
    model = kan.KAN([1, 1], key=KEY, basis_factory=lambda d: Fourier(d, 3))
    x = jnp.linspace(-1.0, 1.0, 128)[:, None]
    y = jnp.sin(jnp.pi * x)
    before = float(jnp.sqrt(jnp.mean((model(x) - y) ** 2)))
    model, history = kan.fit(model, (x, y), steps=150, optimizer="adam", learning_rate=0.05, progress=False)
    rmse = float(jnp.sqrt(jnp.mean((model(x) - y) ** 2)))
    assert rmse < 0.05 and rmse < before / 10


def test_trainable_points_get_gradients_and_count():
    fixed, trained = ReLUKAN(3, 4, 2), ReLUKAN(3, 4, 2, trainable=True)
    shared = ActivationPair(3, 4, 2, trainable=True, shared=True)
    assert count_parameters(fixed) == 0
    assert count_parameters(trained) == 2 * 3 * 6 and count_parameters(shared) == 2 * 6
    x = jax.random.uniform(KEY, (64, 3), minval=-1.0, maxval=1.0)
    for basis in (trained, shared):
        grads = eqx.filter_jit(eqx.filter_grad(lambda b: jnp.sum(b(x) ** 2)))(basis)
        assert float(jnp.abs(grads.start).sum()) > 0 and float(jnp.abs(grads.end).sum()) > 0
    grads = eqx.filter_jit(eqx.filter_grad(lambda b: jnp.sum(b(x) ** 2)))(fixed)
    assert grads.start is None and float(jnp.abs(grads.start_fixed).sum()) == 0.0
    assert shared.select_inputs(np.array([1])).points()[0].shape == (1, 6)


@pytest.mark.parametrize("make", [
    lambda: GaussianRBF(2, 0), lambda: Chebyshev(2, 0), lambda: Fourier(2, 0), lambda: ReLUKAN(2, 0),
    lambda: ActivationPair(2, 0), lambda: ReLUKAN(2, 3, -1), lambda: GaussianRBF(2, 4, (1.0, -1.0)),
    lambda: GaussianRBF(0, 4), lambda: Fourier(2, 3, frequency=0.0), lambda: GaussianRBF(2, 4, width=-1.0),
])
def test_bad_configuration_raises(make):
    with pytest.raises(ValueError):
        make()


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'swishh'.*leaky_relu.*silu"):
        ActivationPair(2, activation="swishh")
    with pytest.raises(ValueError, match="unknown function type 'quad3'.*quad1.*cubic2"):
        ActivationPair(2, function_type="quad3")
    with pytest.raises(ValueError, match="unknown input_map 'log'"):
        Chebyshev(2, input_map="log")


@pytest.mark.parametrize("name", sorted(STACK_FACTORIES))
def test_32_layer_stack_preserves_variance(name):
    keys = jax.random.split(KEY, 33)
    layers = [kan.KANLayer(64, 64, STACK_FACTORIES[name](64), key=k) for k in keys[:32]]
    h = jax.random.normal(keys[32], (512, 64))
    for layer in layers:
        h = apply(layer, h)
    var = float(jnp.var(h))
    assert 0.5 <= var <= 2.0, var
