"""The symbolic function library: domain safety, jnp/sympy agreement, registry errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import symbolic
from bases import SymbolicEdges, evaluate_symbolic, get_jnp_function
from symbolic.library import BUILTIN_NAMES

EXTREME = jnp.array([-1e30, -1e6, -50.0, -1.0, -1e-9, 0.0, 1e-9, 0.5, 1.0, 1.5707964, 50.0, 1e6, 1e30])

# Points inside each function's domain where the safe jnp form must equal the sympy form.
DOMAIN = {"log": (0.1, 5.0), "sqrt": (0.01, 5.0), "1/sqrt": (0.1, 5.0), "arcsin": (-0.95, 0.95),
          "arctanh": (-0.95, 0.95), "tan": (-1.2, 1.2), "1/x": (0.1, 3.0), "1/x^2": (0.1, 3.0),
          "1/x^3": (0.1, 3.0), "1/x^4": (0.2, 3.0)}


def test_library_has_the_issue_functions():
    wanted = {"x", "x^2", "x^3", "x^4", "x^5", "1/x", "1/x^2", "1/x^3", "1/x^4", "sqrt", "1/sqrt", "exp",
              "log", "sin", "cos", "tan", "tanh", "arcsin", "arctan", "arctanh", "abs", "gaussian", "0"}
    assert wanted <= set(BUILTIN_NAMES)
    lib = symbolic.Library()
    assert len(lib.complexities) == len(lib.names)
    assert symbolic.get_entry("0").complexity < symbolic.get_entry("x").complexity < symbolic.get_entry("arcsin").complexity


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_values_and_gradients_finite_everywhere(name):
    fn = get_jnp_function(name).fn
    values = fn(EXTREME)
    grads = jax.vmap(jax.grad(lambda v: fn(v)))(EXTREME)
    assert bool(jnp.all(jnp.isfinite(values))), (name, values)
    assert bool(jnp.all(jnp.isfinite(grads))), (name, grads)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_jnp_form_matches_sympy_form_inside_domain(name):
    lo, hi = DOMAIN.get(name, (-2.0, 2.0))
    xs = np.linspace(lo, hi, 9)
    z = sp.Symbol("z")
    ref = sp.lambdify(z, symbolic.get_entry(name).sympy_fn(z), "numpy")
    expected = np.broadcast_to(np.asarray(ref(xs), np.float64), xs.shape)
    got = np.asarray(evaluate_symbolic(name, jnp.asarray(xs, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_unknown_names_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown symbolic function 'sinh'"):
        symbolic.Library(["x", "sinh"])
    with pytest.raises(ValueError, match="unknown symbolic function"):
        SymbolicEdges([["nope"]], jnp.zeros((1, 1, 4)), jnp.ones((1, 1)))
    with pytest.raises(ValueError, match="already"):
        symbolic.add_function("sin", jnp.sin, sp.sin, 2)
    with pytest.raises(ValueError, match="duplicate"):
        symbolic.Library(["x", "x"])


def test_user_function_is_used_by_the_fitter():
    name = "test_softplus"
    if name not in symbolic.function_names():
        symbolic.add_function(name, jax.nn.softplus, lambda x: sp.log(1 + sp.exp(x)), 2)
    x = np.linspace(-3, 3, 64)
    y = 2.0 * np.log1p(np.exp(1.5 * x - 0.5)) + 0.3
    fits = symbolic.fit_curves(x[None], y[None], ["x", "x^2", "exp", name])
    pick = fits.names[symbolic.choose(fits)[0]]
    assert pick == name
    a, b, c, d = fits.params[0, fits.names.index(name)]
    np.testing.assert_allclose([a, b, c, d], [1.5, -0.5, 2.0, 0.3], atol=2e-3)
