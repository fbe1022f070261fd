"""Batched edge fitting: recovery of known curves, true R^2, degenerate curves, all edges at once
(the speed goal is measured by ``python -m benchmarks.formulas.edge_fit``)."""

import jax
import numpy as np
import pytest

import kan
import symbolic
from bases import evaluate_symbolic


def _curves():
    x = np.linspace(-1, 1, 64)
    xs, ys, want = [], [], []

    def add(xx, yy, name):
        xs.append(xx), ys.append(yy), want.append(name)

    add(x, np.sin(np.pi * x), "sin")
    add(x, 1.3 * (x - 0.2) ** 2 + 0.1, "x^2")
    add(0.5 + 0.75 * (x + 1), 0.7 * np.exp(X := 0.5 + 0.75 * (x + 1)) - 1.0, "exp")
    add(x, 2.0 * x - 0.3, "x")
    add(x * 1e4, np.tanh(x * 1e4 / 3e3), "tanh")  # huge input range
    add(0.9 * x, np.arctanh(0.9 * x), "arctanh")
    add(0.2 + 0.8 * (x + 1) / 2, np.log(0.2 + 0.8 * (x + 1) / 2), "log")
    add(0.2 + 0.8 * (x + 1) / 2, 1.0 / (0.2 + 0.8 * (x + 1) / 2), "1/x")
    del X
    return np.stack(xs), np.stack(ys), want


@pytest.fixture(scope="module")
def fitted():
    x, y, want = _curves()
    return x, y, want, symbolic.fit_curves(x, y)


def test_recovers_known_functions(fitted):
    x, y, want, fits = fitted
    picks = [fits.names[j] for j in symbolic.choose(fits)]
    assert picks == want


def test_parameters_reproduce_the_curve_and_r2_is_true_r2(fitted):
    x, y, want, fits = fitted
    for e, name in enumerate(want):
        j = fits.names.index(name)
        a, b, c, d = fits.params[e, j]
        pred = c * np.asarray(evaluate_symbolic(name, np.float32(a) * x[e].astype(np.float32) + np.float32(b))) + d
        sse = np.sum((pred - y[e]) ** 2)
        sst = np.sum((y[e] - y[e].mean()) ** 2)
        assert abs((1 - sse / sst) - fits.r2[e, j]) < 1e-4, name
        assert fits.r2[e, j] > 0.9999, name


def test_r2_is_not_squared_correlation():
    # A line with the wrong offset: correlation 1 but R^2 of the returned fit must reflect the fit.
    x = np.linspace(-1, 1, 32)
    fits = symbolic.fit_curves(x[None], (3 * x + 5)[None], ["0", "x"], steps=0)
    assert fits.r2[0, 0] == pytest.approx(0.0, abs=1e-6)  # a constant explains nothing
    assert fits.r2[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_sine_is_not_snapped_to_zero():
    # pykan PR #415: a clear sine with a small amplitude was snapped to 0.
    x = np.linspace(-2, 2, 64)
    fits = symbolic.fit_curves(x[None], (0.01 * np.sin(3 * x) + 5.0)[None])
    assert fits.names[symbolic.choose(fits)[0]] == "sin"


def test_poorly_fitted_curved_edge_is_not_snapped_to_zero():
    # Every candidate fits a curve only roughly (R^2 ~0.99, as for the hidden edge of a chain of
    # single nodes); "0" is within the score margin of them but explains nothing.
    x = np.linspace(0.0, 3.0, 64)
    fits = symbolic.fit_curves(x[None], (x**2 + 0.25 * np.sin(9 * x))[None], ["0", "x^2"])
    assert 0.99 < fits.r2[0, 1] < 0.999
    sc = symbolic.scores(fits)[0]
    assert sc[1] < sc[0] < sc[1] + 0.5  # "0" is within the tie margin by score alone
    assert fits.names[symbolic.choose(fits)[0]] == "x^2"


def test_constant_dead_and_noisy_curves():
    x = np.linspace(-1, 1, 64)
    rng = np.random.default_rng(0)
    xs = np.stack([x, x, x, np.full(64, 0.3)])
    ys = np.stack([np.zeros(64), np.full(64, 2.5), rng.normal(size=64), np.full(64, 1.0)])
    fits = symbolic.fit_curves(xs, ys)
    assert np.all(np.isfinite(fits.params))
    assert not np.any(np.isnan(fits.r2))
    picks = symbolic.choose(fits)
    assert fits.names[picks[0]] == "0" and fits.params[0, picks[0], 3] == pytest.approx(0.0)
    assert fits.names[picks[1]] == "0" and fits.params[1, picks[1], 3] == pytest.approx(2.5)
    assert fits.names[picks[3]] == "0" and fits.params[3, picks[3], 3] == pytest.approx(1.0)
    assert fits.r2[2].max() < 0.9  # pure noise is never explained


def test_bad_input_raises():
    with pytest.raises(ValueError, match="NaN"):
        symbolic.fit_curves(np.array([[0.0, 1.0, np.nan]]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="shape"):
        symbolic.fit_curves(np.zeros((2, 5)), np.zeros((3, 5)))


def test_normalized_parameters_are_canonical():
    assert symbolic.normalize_affine("x", 2.0, 1.0, 3.0, 0.5) == (1.0, 0.0, 6.0, 3.5)
    a, b, c, d = symbolic.normalize_affine("x^2", -2.0, 1.0, 3.0, 0.0)
    assert (a, b, c, d) == (-1.0, 0.5, 12.0, 0.0)
    a, b, c, d = symbolic.normalize_affine("exp", 1.5, 2.0, 1.0, 0.0)
    assert b == 0.0 and c == pytest.approx(np.exp(2.0))


def test_fitting_all_edges_of_a_4_5_5_1_kan_at_once():
    """Every edge of a [4, 5, 5, 1] KAN against the whole library in one call (the time is measured by
    ``python -m benchmarks.formulas.edge_fit``): finite scores, true R^2 <= 1, and x^2 fits the x^2 edge."""
    from benchmarks.formulas.edge_fit import edge_curves

    xs, ys = edge_curves((4, 5, 5, 1), 64)
    assert xs.shape == (4 * 5 + 5 * 5 + 5, 64)
    ys = ys.copy()
    ys[0] = 3.0 * (0.5 * xs[0] + 0.2) ** 2 - 1.0  # a known curve among the random ones
    fits = symbolic.fit_curves(xs, ys)
    assert fits.r2.shape == (xs.shape[0], len(fits.names))
    assert np.all(np.isfinite(fits.r2)) and np.all(fits.r2 <= 1.0 + 1e-9)
    assert fits.r2[0, fits.names.index("x^2")] > 1 - 1e-6
