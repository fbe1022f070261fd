"""Rational basis and its fitted starting coefficients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import Rational, count_parameters, rational_init, trainable_filter
from bases.rational.fit_init import fit, format_table, write_table
from bases.rational.init_table import _TABLE, available_inits

TARGETS = {  # independent of the package: jax.nn definitions
    "identity": lambda x: x,
    "relu": jax.nn.relu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}


def test_every_stored_init_fits_its_target_in_its_own_form():
    xs = jnp.linspace(-3.0, 3.0, 6001)
    far = jnp.concatenate([-jnp.logspace(-2, 4, 400), jnp.logspace(-2, 4, 400)])
    keys = available_inits()
    assert {k[1] for k in keys} >= set(TARGETS) and {k[0] for k in keys} == {"A", "B"}
    for form, name, m, n in keys:
        basis = Rational(1, 1, m, n, init=name, form=form, backend="xla")
        err = jnp.max(jnp.abs(basis.activation(xs[:, None])[:, 0] - TARGETS[name](xs)))
        assert float(err) < 0.02, (form, name, float(err))
        # outside the fit range the rational grows at most linearly (no cubic tails)
        assert float(jnp.max(jnp.abs(basis.activation(far[:, None])[:, 0]) / (1 + jnp.abs(far)))) <= 1.0


def test_forms_are_not_interchangeable():
    """KAT's fault: coefficients fitted for one denominator evaluated in the other."""
    xs = jnp.linspace(-3.0, 3.0, 601)
    a_b, b_b = rational_init("gelu", "B")
    wrong = Rational(1, 1, init=(a_b, b_b), form="A", backend="xla").activation(xs[:, None])[:, 0]
    right = Rational(1, 1, init="gelu", form="A", backend="xla").activation(jnp.asarray([[3.0]]))
    assert float(jnp.max(jnp.abs(wrong - TARGETS["gelu"](xs)))) > 0.05
    assert abs(float(right[0, 0]) - 3.0) < 0.02


def test_lookup_aliases_and_errors():
    np.testing.assert_array_equal(rational_init("silu")[0], rational_init("swish")[0])
    a, b = rational_init("identity", "B", 3, 2)  # exact for any order
    assert a.tolist() == [0, 1, 0, 0] and b.tolist() == [0, 0]
    with pytest.raises(ValueError, match="no starting coefficients"):
        rational_init("softplus")
    with pytest.raises(ValueError, match="no starting coefficients"):
        rational_init("gelu", "A", 7, 6)
    with pytest.raises(TypeError):
        rational_init(3)


def test_fit_script_reproduces_a_fit_and_writes_a_table(tmp_path):
    with jax.enable_x64(True):
        a, b, err = fit("tanh", 5, 4, "B", lawson_rounds=1)
    assert err < 1e-3
    basis = Rational(1, 1, init=(a, b), form="B", backend="xla")
    xs = jnp.linspace(-3, 3, 301)
    assert float(jnp.max(jnp.abs(basis.activation(xs[:, None])[:, 0] - jnp.tanh(xs)))) < 1e-3
    path = tmp_path / "table.py"
    path.write_text("# BEGIN GENERATED\n_TABLE = {}\n# END GENERATED\n")
    write_table(format_table({("B", "tanh", 5, 4): (tuple(a), tuple(b), err)}), path)
    scope = {}
    exec(path.read_text(), scope)
    np.testing.assert_array_equal(np.asarray(scope["_TABLE"][("B", "tanh", 5, 4)][0]), a)


def test_basis_shapes_groups_and_counts():
    basis = Rational(255, 8, init="swish", backend="xla")
    x = jnp.broadcast_to(jnp.linspace(-2, 2, 7)[:, None], (7, 255))
    feats = basis(x)
    assert feats.shape == (7, 255, 1) and basis.num_functions == 1
    # perturb group 3's coefficients: exactly the channels of group 3 change
    changed = Rational(255, 8, init=(basis.numerator.at[3, 1].add(0.5), basis.denominator), backend="xla")
    moved = np.any(np.asarray(changed(x) != feats)[..., 0], axis=0)
    np.testing.assert_array_equal(moved, np.asarray(basis.group_index) == 3)
    assert count_parameters(basis) == 8 * (6 + 4)
    assert basis.params_per_input() == pytest.approx(80 / 255)
    assert jax.tree_util.tree_leaves(trainable_filter(basis)).count(True) == 2  # group ids are a buffer
    assert basis.flops_per_input() > 0
    lo, hi = basis.domain()
    assert lo.shape == (255,) and float(hi[0]) == 3.0
    sized = Rational(10, groups=(2, 3, 5))
    assert sized.num_groups == 3 and np.bincount(np.asarray(sized.group_index)).tolist() == [2, 3, 5]


def test_second_moment_matches_published_gains():
    """KAT: gain^2 = 1 / E[F(x)^2], x ~ N(0,1): 2.81 for swish, 2.35 for GELU; identity gives 1."""
    for name, gain_sq in (("swish", 2.81), ("gelu", 2.35), ("identity", 1.0)):
        m2 = Rational(4, 2, init=name, backend="xla").gaussian_second_moment_trace()
        assert m2.shape == (4,)
        np.testing.assert_allclose(1.0 / np.asarray(m2), gain_sq, rtol=1e-2)
    samples = jax.random.normal(jax.random.PRNGKey(0), (200_000, 1))
    basis = Rational(1, 1, init="tanh", form="B", backend="xla")
    monte_carlo = float(jnp.mean(basis.activation(samples) ** 2))
    assert float(basis.gaussian_second_moment()[0, 0, 0]) == pytest.approx(monte_carlo, rel=1e-2)


def test_select_inputs_keeps_the_selected_functions():
    basis = Rational(40, 4, init=(jax.random.normal(jax.random.PRNGKey(1), (4, 6)) * 0.3,
                                  jax.random.normal(jax.random.PRNGKey(2), (4, 4)) * 0.3), backend="xla")
    idx = np.array([0, 13, 27, 39])
    sub = basis.select_inputs(idx)
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 40))
    assert sub.in_features == 4 and sub.num_groups == 4
    np.testing.assert_array_equal(np.asarray(sub(x[:, idx])), np.asarray(basis(x)[:, idx]))
    with pytest.raises(ValueError):
        basis.select_inputs(np.array([40]))


def test_denominators_train_from_identity_init():
    basis = Rational(8, 2, init="identity", backend="xla")
    x = jax.random.normal(jax.random.PRNGKey(4), (256, 8))

    def loss(model):
        return jnp.mean((model.activation(x) - jnp.abs(x)) ** 2)

    grads = eqx.filter_grad(loss)(basis)
    assert np.all(np.asarray(grads.denominator) != 0)  # sign(0) = +1, as JAX's d|b|/db


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="form"):
        Rational(4, 2, form="C")
    with pytest.raises(ValueError, match="num_groups"):
        Rational(4, 8)
    with pytest.raises(ValueError, match="shapes"):
        Rational(4, 2, init=(np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="NaN"):
        Rational(4, 2, init=(np.full(6, np.nan), np.zeros(4)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        Rational(4, 2)(jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="backend"):
        Rational(4, 2, backend="triton")
