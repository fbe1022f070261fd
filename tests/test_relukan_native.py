"""ReLU-KAN layers on the local CPU kernel (fixed windows): the local pieces rebuild the dense features,
and the layer's values and gradients on the kernel equal its dense path on random points, points exactly
on window edges and far outside; shared and per-input windows, orders 1 and 3, masks, output widths that
are not multiples of the kernel tile; the automatic choice, trainable windows, forward mode and
Hessians, and the errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import ReLUKAN, native_build
from bases.bspline.native import native_relukan_sum
from bases.relu_kan import relukan_local_pieces
from kan import KANLayer

needs_kernel = pytest.mark.skipif(not native_build.available("bspline"), reason=str(native_build.unavailable_reason("bspline")))


def _points(basis, n=40, key=0):
    d = basis.in_features
    x = jax.random.uniform(jax.random.PRNGKey(key), (n, d), minval=-2.0, maxval=2.0)
    start, end = basis.points()
    edges = jnp.broadcast_to(jnp.concatenate([start, end], axis=1), (d, 2 * basis.num_functions)).T
    far = jnp.array([[1e4] * d, [-1e4] * d])
    return jnp.concatenate([x, edges, far], axis=0)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("grid_size,order", [(5, 3), (8, 1), (3, 0)])
def test_local_pieces_rebuild_the_dense_features(shared, grid_size, order):
    basis = ReLUKAN(3, grid_size, order, grid_range=(-1.0, 1.5), shared=shared)
    x = _points(basis)
    pieces, first = relukan_local_pieces(x, *basis.points(), order)
    n = basis.num_functions
    rebuilt = jnp.zeros((x.shape[0], 3, n))
    for q, piece in enumerate(pieces):
        j = first + q
        hot = jax.nn.one_hot(jnp.clip(j, 0, n - 1), n) * piece[..., None]
        rebuilt = rebuilt + jnp.where(((j >= 0) & (j < n))[..., None], hot, 0.0)
    np.testing.assert_allclose(rebuilt, basis(x), rtol=1e-5, atol=1e-6)


def _layer_pair(basis, out, key):
    mask = jnp.ones((out, basis.in_features)).at[1, 2].set(0.0).at[out - 1, 0].set(0.0)
    layers = (KANLayer(basis.in_features, out, basis, key=jax.random.PRNGKey(key), contraction=c)
              for c in ("native", "dense"))
    return tuple(eqx.tree_at(lambda m: m.edge_mask, layer, mask) for layer in layers)


@needs_kernel
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("grid_size,order,out", [(5, 3, 70), (9, 1, 5)])
def test_layer_on_the_kernel_matches_its_dense_path(shared, grid_size, order, out):
    basis = ReLUKAN(3, grid_size, order, grid_range=(-1.0, 1.5), shared=shared)
    native, dense = _layer_pair(basis, out, grid_size)
    x = _points(basis)

    def loss(layer, inp):
        return jnp.sum(jnp.sin(layer(inp)))

    grad = eqx.filter_grad(loss)
    np.testing.assert_allclose(native(x), dense(x), rtol=1e-5, atol=1e-5)
    g_native, g_dense = grad(native, x), grad(dense, x)
    for a, b in [(g_native.spline_weight, g_dense.spline_weight), (g_native.base_weight, g_dense.base_weight)]:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    dx_native = jax.grad(loss, argnums=1)(native, x)
    dx_dense = jax.grad(loss, argnums=1)(dense, x)
    np.testing.assert_allclose(dx_native, dx_dense, rtol=1e-4, atol=1e-3 * float(jnp.max(jnp.abs(dx_dense))))
    # the masked edges get no weight gradient
    assert float(jnp.abs(g_native.spline_weight[1, 2]).max()) == 0.0


@needs_kernel
def test_auto_takes_the_kernel_for_fixed_windows_only():
    x = jax.random.normal(jax.random.PRNGKey(0), (1024, 128))
    fixed = KANLayer(128, 128, ReLUKAN(128, 10, 3), key=jax.random.PRNGKey(1))
    trainable = KANLayer(128, 128, ReLUKAN(128, 10, 3, trainable=True), key=jax.random.PRNGKey(1))
    assert fixed._uses_native(x)
    assert not trainable._uses_native(x)
    assert not fixed._uses_native(x[:8])  # too little work: dense
    dense = KANLayer(128, 128, ReLUKAN(128, 10, 3), key=jax.random.PRNGKey(1), contraction="dense")
    np.testing.assert_allclose(fixed(x), dense(x), rtol=1e-5, atol=1e-5)
    forced = KANLayer(128, 128, ReLUKAN(128, 10, 3, trainable=True), key=jax.random.PRNGKey(1),
                      contraction="native")
    with pytest.raises(ValueError, match="fixed ReLU-KAN windows"):
        forced(x)


@needs_kernel
def test_forward_mode_and_hessians_match_the_dense_path():
    basis = ReLUKAN(3, 6, 2)
    native, dense = _layer_pair(basis, 4, 0)
    x = _points(basis, n=10)
    tangent = jnp.ones_like(x)
    _, jvp_native = jax.jvp(native, (x,), (tangent,))
    _, jvp_dense = jax.jvp(dense, (x,), (tangent,))
    np.testing.assert_allclose(jvp_native, jvp_dense, rtol=1e-5, atol=1e-5)
    hess_native = jax.hessian(lambda v: jnp.sum(native(v[None]) ** 2))(x[0])
    hess_dense = jax.hessian(lambda v: jnp.sum(dense(v[None]) ** 2))(x[0])
    np.testing.assert_allclose(hess_native, hess_dense, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(hess_dense))))


@needs_kernel
def test_bad_windows_raise_clear_errors():
    x = jnp.zeros((4, 3), jnp.float32)
    start, end = ReLUKAN(3, 5, 3).points()
    weight = jnp.zeros((2, 3, 8), jnp.float32)
    with pytest.raises(ValueError, match="start and end"):
        native_relukan_sum(x, start, end[:, :4], weight, order=3)
    with pytest.raises(ValueError, match="1 <= order <= 6"):
        native_relukan_sum(x, start, end, jnp.zeros((2, 3, 8), jnp.float32), order=0)
    with pytest.raises(ValueError, match="float32"):
        native_relukan_sum(x.astype(jnp.bfloat16), start, end, weight, order=3)
