"""Gaussian RBFs with a cut-off (bases.GaussianRBF(..., cutoff=r)): compact C1 bumps, and the KAN layer
on the native local kernel equal to its dense path (values and gradients) on random inputs, points on
centres (where neighbours sit exactly at the radius) and far outside."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bases.bspline.contract as contract
from bases import GaussianRBF, native_build
from kan import KANLayer

needs_native = pytest.mark.skipif(not native_build.available("bspline"), reason=str(native_build.unavailable_reason("bspline")))


def test_bumps_are_compact_c1_and_near_the_gaussian():
    r = 2.5
    cut, plain = GaussianRBF(1, 3, cutoff=r), GaussianRBF(1, 3)
    center, width = float(cut.centers[0, 1]), float(1.0 / cut.inv_width[0])
    z = jnp.linspace(-4.0, 4.0, 801)
    f = lambda v: cut(jnp.asarray(center + width * v).reshape(-1, 1))[:, 0, 1]
    values = f(z)
    assert float(values[400]) == pytest.approx(1.0, abs=1e-6)  # peak 1 at the centre
    assert float(jnp.max(jnp.abs(jnp.where(jnp.abs(z) >= r, values, 0.0)))) == 0.0  # zero beyond r
    assert float(jnp.min(values)) >= 0.0
    slope = jax.vmap(jax.grad(lambda v: f(v[None])[0]))(jnp.array([r - 1e-3, r + 1e-3, -r + 1e-3]))
    assert float(jnp.max(jnp.abs(slope))) < 1e-4  # C1: no kink at the radius
    gap = np.exp(-r * r) * (1 + r * r)
    ref = plain(jnp.asarray(center + width * z).reshape(-1, 1))[:, 0, 1]
    assert float(jnp.max(jnp.abs(values - ref))) <= 1.01 * gap / (1 - gap)
    # at most local_terms consecutive bumps are non-zero anywhere
    many = GaussianRBF(1, 20, cutoff=3.0)
    assert many.local_terms == 6
    nonzero = np.asarray(many(jnp.linspace(-1.5, 1.5, 3001)[:, None])[:, 0] > 0)
    assert nonzero.sum(-1).max() <= 6
    first = nonzero.argmax(-1)
    assert all(nonzero[i, first[i]:first[i] + 6].sum() == nonzero[i].sum() for i in range(3001))


@pytest.mark.parametrize("kwargs, match", [
    ({"cutoff": 0.0}, "cutoff"), ({"cutoff": -1.0}, "cutoff"), ({"cutoff": float("nan")}, "cutoff"),
    ({"cutoff": True}, "cutoff"), ({"cutoff": "3"}, "cutoff")])
def test_bad_cutoff_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianRBF(2, 8, **kwargs)


def test_native_needs_a_cutoff_and_select_inputs_keeps_it():
    with pytest.raises(ValueError, match="cut-off"):
        KANLayer(2, 2, GaussianRBF(2, 8), key=jax.random.PRNGKey(0), contraction="native")(jnp.ones((3, 2)))
    basis = GaussianRBF(4, 12, width=0.05, cutoff=1.5)
    sub = basis.select_inputs(jnp.array([1, 3]))
    assert (sub.cutoff, sub.local_terms, sub.in_features) == (1.5, basis.local_terms, 2)
    np.testing.assert_array_equal(sub(jnp.ones((2, 2)) * 0.3), basis(jnp.ones((2, 4)) * 0.3)[:, [1, 3]])


@needs_native
@pytest.mark.parametrize("grid_size, cutoff, width", [(20, 3.0, None), (8, 2.0, None), (12, 1.5, 0.05)])
def test_native_layer_matches_the_dense_layer(grid_size, cutoff, width):
    basis = GaussianRBF(16, grid_size, cutoff=cutoff, width=width)
    native = KANLayer(16, 8, basis, key=jax.random.PRNGKey(0), contraction="native")
    dense = KANLayer(16, 8, basis, key=jax.random.PRNGKey(0), contraction="dense")
    x = 1.3 * jax.random.normal(jax.random.PRNGKey(1), (50, 16))
    x = x.at[0, 0].set(basis.centers[0, 3]).at[1, 1].set(9.0).at[2, 2].set(-7.5)  # centre; far outside
    text = jax.jit(lambda x: native(x)).lower(x).as_text()
    assert native_build.FORWARD_TARGET in text
    loss = lambda m, x: jnp.sum(jnp.sin(m(x)))

    @eqx.filter_jit
    def everything(m, x):  # value, weight and input gradients, and a forward-mode tangent (dense reference)
        value, grads = eqx.filter_value_and_grad(loss)(m, x)
        dx = jax.grad(lambda x: loss(m, x))(x)
        return value, grads.spline_weight, grads.base_weight, dx, jax.jvp(m, (x,), (jnp.ones_like(x),))[1]

    got, ref = everything(native, x), everything(dense, x)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5)
    for name, g, r in zip(("spline_weight", "base_weight"), got[1:3], ref[1:3]):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(got[3], ref[3], rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(ref[3]))))
    np.testing.assert_allclose(got[4], ref[4], rtol=1e-4, atol=1e-4)


@needs_native
def test_auto_takes_the_kernel_where_the_grid_is_fine():
    x = jnp.zeros((1024, 128))
    fine = KANLayer(128, 128, GaussianRBF(128, 20, cutoff=3.0), key=jax.random.PRNGKey(0))
    coarse = KANLayer(128, 128, GaussianRBF(128, 8, cutoff=3.0), key=jax.random.PRNGKey(0))
    plain = KANLayer(128, 128, GaussianRBF(128, 20), key=jax.random.PRNGKey(0))
    assert fine._uses_native(x) and not coarse._uses_native(x) and not plain._uses_native(x)
    # the RBF crossover (dense features cost an exponential each), not the B-spline one
    def auto(width, grid_size):
        layer = KANLayer(width, width, GaussianRBF(width, grid_size, cutoff=3.0), key=jax.random.PRNGKey(0))
        return layer._uses_native(jnp.zeros((1024, width)))

    assert auto(256, 10) and auto(64, 14) and not auto(128, 10) and not auto(256, 8)
    assert contract.choose_contraction(10, 5, 1024, "cpu", 256, 256, jnp.float32) == "dense"  # B-spline rule
    with pytest.raises(ValueError, match="kind"):
        contract.choose_contraction(14, 3, 1024, "cpu", 64, 64, jnp.float32, kind="fourier")


def test_nan_input_stays_nan_on_both_paths():
    """A NaN is not "beyond the radius": it must reach the output, as with the plain Gaussian."""
    basis = GaussianRBF(8, 20, cutoff=3.0)
    x = jnp.zeros((3, 8)).at[0, 2].set(jnp.nan)
    assert bool(jnp.all(jnp.isnan(basis(x)[0, 2]))) and not bool(jnp.any(jnp.isnan(basis(x)[1:])))
    paths = ["dense"] + (["native"] if native_build.available("bspline") else [])
    for path in paths:
        layer = KANLayer(8, 3, basis, key=jax.random.PRNGKey(0), contraction=path, base_activation=None)
        np.testing.assert_array_equal(np.isnan(np.asarray(layer(x))).any(axis=1), [True, False, False])
