"""The native CPU kernel of the B-spline edge sum (``contraction="native"``) against the dense reference:
values and gradients on random points, points exactly on knots and far outside the grid; uniform,
refined and generic grids; orders 1, 3 and 5; masks; output widths that are not multiples of the kernel
tile; the layer's automatic choice, its forward-mode fallback, and the errors."""

import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bases.bspline.contract as contract
from bases import BSpline
from bases import native_build
from bases.bspline.native import native_spline_sum
from kan import KANLayer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_kernel_builds_where_a_compiler_exists():
    if native_build.compiler() is None:
        pytest.skip("no C++ compiler on this machine")
    assert native_build.available(), native_build.unavailable_reason()


needs_kernel = pytest.mark.skipif(not native_build.available("bspline"),
                                  reason=str(native_build.unavailable_reason("bspline")))


def _bases(order):
    uniform = BSpline(3, 6, order, grid_range=(-1.0, 1.5))
    refined = uniform.update_grid(np.random.default_rng(0).normal(size=(64, 3)) * [1.0, 0.5, 2.0])
    generic = BSpline(3, 6, order, grid=uniform.grid, uniform=False)
    return [uniform, refined, generic]


def _points(basis, n=40, key=0):
    x = jax.random.uniform(jax.random.PRNGKey(key), (n, basis.in_features), minval=-3.0, maxval=3.0)
    knots = jnp.asarray(basis.grid, jnp.float32).T  # every knot, exactly
    far = jnp.array([[1e4] * basis.in_features, [-1e4] * basis.in_features])
    return jnp.concatenate([x, knots, far], axis=0)


def _reference(x, basis, weight, mask):
    return jnp.einsum("bdk,odk->bo", basis(x), weight * mask[..., None])


@needs_kernel
@pytest.mark.parametrize("order", [1, 3, 5])
def test_values_and_gradients_match_the_dense_reference(order):
    cases = []
    for j, basis in enumerate(_bases(order)):
        out = (70, 5, 64)[j]  # not a multiple of the 64-column tile, narrow, exactly one tile
        key = jax.random.PRNGKey(10 * order + j)
        weight = jax.random.normal(key, (out, 3, basis.num_functions))
        mask = jnp.ones((out, 3)).at[1, 2].set(0.0).at[out - 1, 0].set(0.0)
        cases.append((basis, _points(basis, key=j), weight, mask))

    @jax.jit
    def both(args):
        out = []
        for basis, (x, weight, mask) in zip([c[0] for c in cases], args):
            def fast(x, w):
                y = native_spline_sum(x, basis.grid, w, order=order, uniform=basis.uniform, mask=mask)
                return jnp.sum(jnp.sin(y))

            def ref(x, w):
                return jnp.sum(jnp.sin(_reference(x, basis, w, mask)))

            out.append((jax.value_and_grad(fast, (0, 1))(x, weight), jax.value_and_grad(ref, (0, 1))(x, weight)))
        return out

    results = both([c[1:] for c in cases])
    for (basis, *_), ((v, g), (vr, gr)) in zip(cases, results):
        msg = f"order {order}, uniform={basis.uniform}"
        np.testing.assert_allclose(v, vr, rtol=1e-5, atol=1e-4, err_msg=msg)
        np.testing.assert_allclose(np.asarray(g[0]), np.asarray(gr[0]), atol=5e-5, err_msg=msg)
        np.testing.assert_allclose(np.asarray(g[1]), np.asarray(gr[1]), atol=5e-5, err_msg=msg)
        assert np.all(np.asarray(g[1])[1, 2] == 0.0)  # a masked edge gets no weight gradient


def _kernel_in_jaxpr(fn, *args) -> bool:
    return native_build.FORWARD_TARGET in str(jax.make_jaxpr(lambda *a: fn(*a))(*args))


@needs_kernel
def test_auto_picks_the_kernel_where_it_pays_and_matches_the_dense_layer():
    assert contract.choose_contraction(23, 3, 1024, "cpu", 512, 512, jnp.float32) == "native"
    assert contract.choose_contraction(8, 3, 1024, "cpu", 512, 512, jnp.float32) == "native"  # G = 5
    assert contract.choose_contraction(8, 3, 1024, "cpu", 64, 64, jnp.float32) == "dense"  # G = 5, small
    assert contract.choose_contraction(13, 3, 1024, "cpu", 64, 64, jnp.float32) == "native"  # G = 10
    assert contract.choose_contraction(7, 3, 1024, "cpu", 512, 512, jnp.float32) == "dense"  # G = 4
    assert contract.choose_contraction(23, 3, 1024, "gpu", 512, 512, jnp.float32) == "dense"
    assert contract.choose_contraction(23, 3, 1024, "cpu", 512, 512, jnp.float64) == "dense"
    assert contract.choose_contraction(23, 3, 8, "cpu", 8, 8, jnp.float32) == "dense"  # too small
    # large batches: the kernel in row blocks (bases.bspline.native.block_rows), no longer dense
    assert contract.choose_contraction(23, 3, 32768, "cpu", 256, 256, jnp.float32) == "native"
    layer, dense = (KANLayer(48, 40, BSpline(48, grid_size=12), key=jax.random.PRNGKey(0), contraction=c)
                    for c in ("auto", "dense"))
    layer, dense = (eqx.tree_at(lambda m: m.edge_mask, m, m.edge_mask.at[3, 5].set(0.0)) for m in (layer, dense))
    x = jax.random.normal(jax.random.PRNGKey(1), (600, 48)).at[0, :5].set(jnp.asarray(layer.basis.grid)[0, :5])
    assert _kernel_in_jaxpr(layer, x) and not _kernel_in_jaxpr(dense, x)

    def loss(m, x):
        return jnp.sum(jnp.sin(m(x)))

    grad = eqx.filter_jit(eqx.filter_value_and_grad(lambda m, x: loss(m, x)))
    (v, g), (vr, gr) = grad(layer, x), grad(dense, x)
    np.testing.assert_allclose(v, vr, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(gr)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=5e-5)
    dx = jax.jit(jax.grad(lambda x: loss(layer, x)))(x)
    dx_ref = jax.jit(jax.grad(lambda x: loss(dense, x)))(x)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(dx_ref), atol=5e-5)


@needs_kernel
def test_forward_mode_hessians_and_vmap_match_the_dense_layer():
    layer = KANLayer(4, 70, BSpline(4, grid_size=12), key=jax.random.PRNGKey(0), contraction="native")
    dense = KANLayer(4, 70, BSpline(4, grid_size=12), key=jax.random.PRNGKey(0), contraction="dense")
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    f = lambda v: jnp.sum(layer(v) ** 2)  # noqa: E731 (two names, not a generator: no late binding)
    f_ref = lambda v: jnp.sum(dense(v) ** 2)  # noqa: E731
    tangent = jnp.ones_like(x)
    (_, t), (_, t_ref) = jax.jvp(f, (x,), (tangent,)), jax.jvp(f_ref, (x,), (tangent,))
    np.testing.assert_allclose(t, t_ref, rtol=1e-5)
    hess_ref = jax.hessian(f_ref)(x[0])
    scale = float(jnp.max(jnp.abs(hess_ref)))
    np.testing.assert_allclose(jax.hessian(f)(x[0]), hess_ref, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(jax.jacrev(jax.grad(f))(x[0]), hess_ref, rtol=1e-4, atol=1e-5 * scale)
    grads = jax.vmap(jax.grad(lambda v: jnp.sum(layer(v[None]) ** 2)))(x)  # vmap over reverse mode
    np.testing.assert_allclose(grads, jax.grad(f_ref)(x), rtol=1e-4, atol=1e-5)
    batched = jax.vmap(layer)(x.reshape(3, 1, 4))  # a vmapped call runs the kernel once per member
    np.testing.assert_allclose(np.asarray(batched[:, 0]), np.asarray(dense(x)), atol=1e-5)


@needs_kernel
def test_bad_inputs_raise_clear_errors():
    basis = BSpline(2, 12, 3)
    w = jnp.ones((3, 2, basis.num_functions))
    with pytest.raises(ValueError, match="float32"):
        native_spline_sum(jnp.ones((4, 2), jnp.float16), basis.grid, w, order=3, uniform=True)
    with pytest.raises(ValueError, match="order"):
        native_spline_sum(jnp.ones((4, 2)), BSpline(2, 12, 0).grid, jnp.ones((3, 2, 12)), order=0, uniform=True)
    with pytest.raises(ValueError, match="mask"):
        native_spline_sum(jnp.ones((4, 2)), basis.grid, w, order=3, uniform=True, mask=jnp.ones((2, 3)))
    # The kernel itself checks the start columns it is given.
    values = jnp.ones((2, 4, 4))
    starts = jnp.full((2, 4), 99, jnp.int32)
    call = jax.ffi.ffi_call(native_build.FORWARD_TARGET, jax.ShapeDtypeStruct((4, 3), jnp.float32))
    with pytest.raises(Exception, match="start column"):
        jax.block_until_ready(call(values, starts, w, jnp.ones((3, 2)), pad=3))


def test_switched_off_kernel_names_the_reason(tmp_path):
    # A fresh process with the kernel turned off: "auto" stays dense, "native" raises naming the switch;
    # AF-KAN's statistics run on XLA (no custom call in its training step).
    code = (
        "import jax, jax.numpy as jnp\n"
        "from bases import BSpline\n"
        "from bases import native_build\nfrom bases.bspline import contract\n"
        "from kan import KANLayer\n"
        "assert not native_build.available()\n"
        "assert 'KAN_NATIVE' in native_build.unavailable_reason()\n"
        "assert contract.choose_contraction(23, 3, 1024, 'cpu', 512, 512, jnp.float32) == 'dense'\n"
        "layer = KANLayer(2, 2, BSpline(2, 20), key=jax.random.PRNGKey(0), contraction='native')\n"
        "try:\n"
        "    layer(jnp.ones((3, 2)))\n"
        "except RuntimeError as err:\n"
        "    assert 'KAN_NATIVE' in str(err), err\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "from kan import AFKANLayer\n"
        "af = AFKANLayer(4, 2, key=jax.random.PRNGKey(0))\n"
        "text = jax.jit(jax.grad(lambda x: af(x).sum())).lower(jnp.ones((3, 4))).as_text()\n"
        "assert 'custom_call' not in text and bool(jnp.all(jnp.isfinite(af(jnp.ones((3, 4))))))\n"
    )
    env = dict(os.environ, KAN_NATIVE="0", KAN_NATIVE_CACHE=str(tmp_path), JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(tmp_path.iterdir())  # nothing was built


def test_library_name_follows_the_source_and_the_machine(monkeypatch, tmp_path):
    cxx = native_build.compiler() or "c++"
    monkeypatch.setenv(native_build.ENV_CACHE, str(tmp_path))
    first = native_build.library_path(cxx)
    assert first.parent == tmp_path and first.name.startswith("kan_native-")
    assert first.name.startswith("kan_native-bspline-")
    assert len({native_build.library_path(cxx, part) for part in native_build.PARTS}) == len(native_build.PARTS)
    with pytest.raises(ValueError, match="unknown part"):
        native_build.library_path(cxx, "splines")
    monkeypatch.setattr(native_build, "_cpu_signature", lambda: "another machine")
    assert native_build.library_path(cxx) != first


def test_a_part_builds_alone(tmp_path):
    # A fresh process and cache: asking for the B-spline kernels builds their library only (a B-spline
    # user does not wait for the other parts' compile).
    if native_build.compiler() is None:
        pytest.skip("no C++ compiler on this machine")
    code = ("from bases import native_build\n"
            "assert native_build.available('bspline'), native_build.unavailable_reason('bspline')\n"
            "assert not native_build._state['pair_stats']['tried'] and not native_build._state['rational']['tried']\n")
    env = dict(os.environ, KAN_NATIVE_CACHE=str(tmp_path), JAX_PLATFORMS="cpu")
    env.pop("KAN_NATIVE", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    built = [p.name for p in tmp_path.iterdir()]
    assert len(built) == 1 and built[0].startswith("kan_native-bspline-"), built


@needs_kernel
def test_profile_benchmark_times_the_kernels_the_layer_runs():
    """benchmarks.native_profile times the two kernel calls on their own; they must be the calls the
    layer makes: the forward kernel on the profile's terms equals the layer's spline part, and every
    part is timed."""
    from benchmarks import native_profile
    from bases.bspline import native_ops

    basis = BSpline(6, 5, 3)
    weight = jax.random.normal(jax.random.PRNGKey(3), (5, 6, basis.num_functions))
    mask = jnp.ones((5, 6))
    x = _points(basis, n=30)
    cfg = native_ops.Config(3, True, basis.num_functions)
    dy = jax.random.normal(jax.random.PRNGKey(4), (x.shape[0], 5))

    @jax.jit
    def both(x, weight):
        values, slopes, first = native_ops.terms(cfg, x, basis.grid, derivatives=True)
        kernels = (native_ops.forward_kernel(cfg, values, first, weight, mask),
                   native_ops.backward_kernel(cfg, values, slopes, first, weight, mask, dy))
        ref = jax.value_and_grad(lambda v, w: jnp.sum(_reference(v, basis, w, mask) * dy), argnums=(0, 1))
        return kernels, (_reference(x, basis, weight, mask), ref(x, weight)[1])

    (y, (dx, dweight)), (ref_y, (ref_dx, ref_dw)) = both(x, weight)
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx.T, ref_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dweight, ref_dw, rtol=1e-4, atol=1e-4)
    times = native_profile.main(["--in", "6", "--out", "5", "--batch", "32", "--repeats", "1"])
    assert set(times) == {"mlp step", "kan step", "terms", "forward kernel", "backward kernel", "residual"}
    assert all(np.isfinite(t) and t > 0 for t in times.values())


@needs_kernel
def test_large_batches_run_in_row_blocks_that_match_one_call_and_keep_memory_down(monkeypatch):
    """Past NATIVE_MAX_BYTES the kernel runs per row block (lax.map, the last block padded): values and
    gradients equal the dense layer's, the residual branch is blocked too, and the step's XLA memory
    stays below the one-call step's (each block rematerialised: only x kept)."""
    import bases.bspline.native as native

    layer, dense = (KANLayer(24, 9, BSpline(24, grid_size=12), key=jax.random.PRNGKey(0), contraction=c)
                    for c in ("native", "dense"))
    layer, dense = (eqx.tree_at(lambda m: m.edge_mask, m, m.edge_mask.at[3, 5].set(0.0)) for m in (layer, dense))
    x = jax.random.normal(jax.random.PRNGKey(1), (2500, 24)).at[0, :5].set(jnp.asarray(layer.basis.grid)[0, :5])

    def step(m):  # the edge sums without the layer's own jit (whose trace cache ignores the monkeypatch)
        edges = (lambda m, x: m._native_sum(x, m._numeric_mask())) if m.contraction == "native" else (
            lambda m, x: m(x) - (0.0 if m.bias is None else m.bias))
        return jax.jit(jax.value_and_grad(lambda m, x: jnp.sum(jnp.sin(edges(m, x))), argnums=(0, 1)))

    one_call = step(layer).lower(layer, x).compile()
    monkeypatch.setattr(native, "NATIVE_MAX_BYTES", 64 * 1024)  # blocks of 64 * 1024 / (4 * 24 * 4) = 170 rows
    assert native.block_rows(2500, 24, 4) == 170
    blocked = step(layer).lower(layer, x).compile()
    assert "while" in blocked.as_text() and "while" not in one_call.as_text()
    (value, (grads, gx)), (ref, (ref_grads, ref_gx)) = blocked(layer, x), step(dense)(dense, x)
    np.testing.assert_allclose(value, ref, rtol=1e-5)
    np.testing.assert_allclose(gx, ref_gx, atol=5e-5)
    for name in ("spline_weight", "base_weight"):
        np.testing.assert_allclose(getattr(grads, name), getattr(ref_grads, name), rtol=1e-4, atol=5e-4)
    direct = native_spline_sum(x, layer.basis.grid, layer.spline_weight, order=3, uniform=True)
    np.testing.assert_allclose(direct, _reference(x, layer.basis, layer.spline_weight, jnp.ones((9, 24))),
                               atol=5e-5)
    tangent = jnp.ones_like(x[:300])  # forward mode through the blocks (the dense reference inside)
    jvp = jax.jvp(lambda v: layer._native_sum(v, layer._numeric_mask()), (x[:300],), (tangent,))[1]
    ref_jvp = jax.jvp(lambda v: dense(v) - dense.bias, (x[:300],), (tangent,))[1]
    np.testing.assert_allclose(jvp, ref_jvp, rtol=1e-4, atol=1e-4)
    # XLA temporaries: one call 3.4 MB; blocks 0.75 MB (3.1 x-sized arrays); blocks without the
    # checkpoint 1.45 MB (every block's residual activations kept)
    temp = lambda c: c.memory_analysis().temp_size_in_bytes
    assert temp(blocked) < 4.5 * x.size * 4 < temp(one_call)
