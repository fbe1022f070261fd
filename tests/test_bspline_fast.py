"""The fast B-spline paths (local pieces, the custom-VJP edge sum, analytic moments) against the dense
reference, on random points, points exactly on knots and points outside the grid; uniform and refined
grids."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bases.bspline.contract as contract
from bases import Basis, BSpline, GaussianRBF, bspline_edge_sum
from bases.bspline.local import dense_from_local, local_values
from kan import KANLayer


def _grids(order):
    uniform = BSpline(3, 5, order, grid_range=(-1.0, 1.5))
    refined = uniform.update_grid(np.random.default_rng(0).normal(size=(64, 3)) * [1.0, 0.5, 2.0])
    as_generic = BSpline(3, 5, order, grid=uniform.grid, uniform=False)
    return {"uniform": uniform, "refined": refined, "generic": as_generic}


def _points(basis, n=61, key=0):
    x = jax.random.uniform(jax.random.PRNGKey(key), (n, basis.in_features), minval=-3.0, maxval=3.0)
    knots = jnp.asarray(basis.grid, jnp.float32).T  # every knot, exactly
    far = jnp.array([[1e4] * basis.in_features, [-1e4] * basis.in_features])
    return jnp.concatenate([x, knots, far], axis=0)


def _reference_sum(x, basis, weight, activation):
    feats = basis(x)
    if activation is not None:
        feats = jnp.concatenate([activation(x)[..., None], feats], axis=-1)
    return jnp.einsum("...dk,odk->...o", feats, weight)


def test_local_pieces_rebuild_the_dense_features():
    cases = [(order, basis) for order in (0, 3) for basis in _grids(order).values()]
    cases.append((4, _grids(4)["refined"]))

    @jax.jit
    def errors(xs):
        out = []
        for (order, basis), x in zip(cases, xs):
            values, start = local_values(x, basis.grid, order, basis.uniform)
            out.append(jnp.max(jnp.abs(dense_from_local(values, start, basis.num_functions) - basis(x))))
        return jnp.stack(out)

    np.testing.assert_array_less(np.asarray(errors([_points(b) for _, b in cases])), 3e-7)


@pytest.mark.parametrize("contraction", ["dense", "local"])
def test_edge_sum_values_and_gradients_match_reference(contraction, monkeypatch):
    monkeypatch.setattr(contract, "BLOCK_BYTES", 2048)
    grids, silu = _grids(3), jax.nn.silu
    # (The layer test below covers the dense path on uniform and refined grids with the residual.)
    if contraction == "dense":
        cases = [("generic", grids["generic"], None), ("refined", grids["refined"], silu)]
    else:
        cases = [("uniform", grids["uniform"], silu), ("refined", grids["refined"], None)]
    weights = [jax.random.normal(jax.random.PRNGKey(1), (4, 3, b.num_functions + (a is not None)))
               for _, b, a in cases]
    points = [_points(b, n=53) for _, b, _ in cases]  # 67 rows: prime, so the last block is padded

    @jax.jit
    def both(xs, ws):
        out = []
        for i, ((_, basis, activation), x, w) in enumerate(zip(cases, xs, ws)):
            # The second case runs in row blocks (the last one padded), the others whole.
            monkeypatch.setattr(contract, "FULL_BYTES", 2048 if i == 1 else 2**30)

            def fast(x, w):
                return jnp.sum(jnp.sin(bspline_edge_sum(x, basis.grid, w, order=3, uniform=basis.uniform,
                                                        activation=activation, contraction=contraction)))

            def ref(x, w):
                return jnp.sum(jnp.sin(_reference_sum(x, basis, w, activation)))

            out.append((jax.value_and_grad(fast, (0, 1))(x, w), jax.value_and_grad(ref, (0, 1))(x, w)))
        return out

    for (name, _, activation), ((v, g), (vr, gr)) in zip(cases, both(points, weights)):
        msg = f"{name}, residual={activation is not None}"
        np.testing.assert_allclose(v, vr, rtol=1e-5, err_msg=msg)
        np.testing.assert_allclose(np.asarray(g[0]), np.asarray(gr[0]), atol=3e-5, err_msg=msg)
        np.testing.assert_allclose(np.asarray(g[1]), np.asarray(gr[1]), atol=3e-5, err_msg=msg)


def test_kan_layer_matches_dense_reference_with_mask_and_refined_grid():
    layer = KANLayer(3, 4, BSpline(3, 5, 3), key=jax.random.PRNGKey(0))
    layer = eqx.tree_at(lambda m: m.edge_mask, layer, layer.edge_mask.at[1, 2].set(0.0))
    refined = eqx.tree_at(lambda m: m.basis, layer, layer.basis.update_grid(
        np.random.default_rng(2).normal(size=(50, 3))))

    def fast(m, x):
        return jnp.sum(m(x) ** 2)

    def ref(m, x):
        mask = m._numeric_mask()
        return jnp.sum((m._dense_sum(x, m.spline_weight * mask[..., None], mask) + m.bias) ** 2)

    @eqx.filter_jit
    def check(model, x):
        grads = [jax.grad(f, argnums=(0, 1))(model, x) for f in (fast, ref)]
        return fast(model, x), ref(model, x), grads, jax.vmap(model)(x[0]), model(x[0])

    for model in (layer, refined):
        x = _points(model.basis, n=28)[:30].reshape(2, 15, 3)  # a leading batch shape
        value, value_ref, (g, g_ref), per_row, batched = check(model, x)
        np.testing.assert_allclose(value, value_ref, rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)
        np.testing.assert_allclose(np.asarray(per_row), np.asarray(batched), atol=1e-5)


def test_auto_is_dense_and_bad_contraction_raises():
    assert contract.choose_contraction(23, 3, 1024, "cpu") == "dense"
    with pytest.raises(ValueError, match="contraction"):
        KANLayer(2, 2, BSpline(2), key=jax.random.PRNGKey(0), contraction="sparse")
    with pytest.raises(ValueError, match="weight"):
        bspline_edge_sum(jnp.ones((3, 2)), BSpline(2).grid, jnp.ones((1, 2, 3)), order=3, uniform=True)


def _runs_edge_sum(jaxpr: str) -> bool:
    """Whether the local-piece edge sum (the custom JVP ``bases.bspline.contract._features``) is in the
    jaxpr; the basis's own closed-form derivative is a custom JVP too, under another name."""
    return re.search(r"custom_jvp_call\[\s*name=_features\b", jaxpr) is not None


def test_auto_runs_dense_autodiff_whole_or_in_rematerialised_blocks(monkeypatch):
    # 1024 x 64 x 8 features (2 MiB) fit in FULL_BYTES: the plain dense path, in one piece.
    x = jax.random.normal(jax.random.PRNGKey(3), (1024, 64))
    small = KANLayer(64, 4, BSpline(64), key=jax.random.PRNGKey(0))
    jaxpr = str(jax.make_jaxpr(small)(x))
    assert not _runs_edge_sum(jaxpr) and "remat" not in jaxpr
    # A 64 KiB budget: rematerialised row blocks (1009 rows: prime, so the last block is padded); the
    # values and gradients are the dense path's. Fresh shapes below, so fresh traces.
    monkeypatch.setattr(contract, "FULL_BYTES", 2**16)
    monkeypatch.setattr(contract, "BLOCK_BYTES", 2**16)
    x = x.at[:5, 0].set(jnp.asarray(BSpline(64).grid)[0, :5]).at[5, 1].set(40.0)  # knots; far outside
    x = jnp.concatenate([x, x[:-15]])[:1009]
    for basis in (BSpline(64), GaussianRBF(64, 4)):
        large = KANLayer(64, 5, basis, key=jax.random.PRNGKey(0))
        jaxpr = str(jax.make_jaxpr(large)(x))
        assert "remat" in jaxpr and not _runs_edge_sum(jaxpr)

        def ref(m, x):
            mask = m._numeric_mask()
            return m._dense_sum(x, m.spline_weight * mask[..., None], mask) + m.bias

        loss = lambda f: lambda m, x: jnp.sum(jnp.sin(f(m, x)))
        (v, g), (v_ref, g_ref) = (jax.jit(jax.value_and_grad(loss(f), argnums=(0, 1)))(large, x)
                                  for f in (lambda m, x: m(x), ref))
        np.testing.assert_allclose(v, v_ref, rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=2e-5)  # block sums
    # contraction="dense" / "local" still run the local-piece edge sum.
    forced = KANLayer(64, 6, BSpline(64), key=jax.random.PRNGKey(0), contraction="dense")
    assert _runs_edge_sum(str(jax.make_jaxpr(forced)(x[:8])))


def test_row_blocks_divide_the_batch_and_small_batches_stay_whole():
    assert contract.chunk_rows(256, 14, 1024, 256) == 1024
    rows = contract.chunk_rows(256, 14, 32768, 256)
    assert 32768 % rows == 0 and rows * 256 * 14 * 4 <= 2 * max(contract.BLOCK_BYTES, 4 * 512 * 256 * 14)
    rows = contract.chunk_rows(256, 14, 32771, 256)  # 32771 is prime: balanced blocks, the last padded
    blocks = -(-32771 // rows)
    assert (blocks - 1) * rows < 32771 <= blocks * rows and rows >= 256


@pytest.mark.parametrize("order", [0, 3])
def test_moments_match_generic_quadrature(order):
    grids = _grids(order)
    for basis in (grids["uniform"], grids["refined"], BSpline(2, 1, order, grid_range=(-10.0, 10.0))):
        fast, generic = basis.gaussian_second_moment(), Basis.gaussian_second_moment(basis)
        # The generic trapezoid rule is only first-order accurate at the jumps of order-0 splines.
        tol = 5e-3 if order == 0 else 2e-6
        np.testing.assert_allclose(np.asarray(fast), np.asarray(generic), atol=tol)
        np.testing.assert_allclose(np.asarray(basis.gaussian_second_moment_trace()),
                                   np.trace(np.asarray(fast), axis1=1, axis2=2), rtol=1e-5)


def test_moments_of_a_wide_uniform_layer_are_one_row_broadcast():
    wide = BSpline(4096, 10, 3).gaussian_second_moment_trace()
    assert wide.shape == (4096,)
    np.testing.assert_allclose(np.asarray(wide), float(BSpline(1, 10, 3).gaussian_second_moment_trace()[0]),
                               rtol=1e-6)
    traced = eqx.filter_jit(lambda b: b.gaussian_second_moment_trace())(BSpline(2, 4, 3))
    np.testing.assert_allclose(np.asarray(traced), np.asarray(BSpline(2, 4, 3).gaussian_second_moment_trace()),
                               rtol=1e-5)
