"""bases.kernel_ad.kernel_op: which implementation each autodiff mode runs. A toy op whose "kernels"
are marked (the backward returns 3x the true gradient, the forward adds 0 but is a different function
from the dense reference) shows that reverse mode runs the backward kernel, forward mode and second
order the dense reference, and that vmap, jit and constants without gradient work."""

import jax
import jax.numpy as jnp
import numpy as np

from bases.kernel_ad import kernel_op


def _dense(cfg, x, w, c):
    return jnp.sin(x) * w * c * cfg


def _forward(cfg, x, w, c):
    return jnp.sin(x) * w * c * cfg + 0.0


def _backward(cfg, x, w, c, ct):  # 3x the true gradient: a marker, not a bug
    return 3.0 * ct * jnp.cos(x) * w * c * cfg, 3.0 * jnp.sum(ct * jnp.sin(x) * c * cfg, keepdims=True)


op = kernel_op("test_toy", _forward, _backward, _dense, num_diff=2)
X = jnp.linspace(-1.0, 1.0, 5)
W = jnp.array([1.5])
C = jnp.full((5,), 2.0)


def test_reverse_mode_runs_the_backward_kernel():
    gx, gw = jax.grad(lambda x, w: jnp.sum(op(2.0, x, w, C)), argnums=(0, 1))(X, W)
    np.testing.assert_allclose(gx, 3.0 * jnp.cos(X) * W * C * 2.0, rtol=1e-6)
    np.testing.assert_allclose(gw, 3.0 * jnp.sum(jnp.sin(X) * C * 2.0, keepdims=True), rtol=1e-6)
    jitted = jax.jit(jax.grad(lambda x: jnp.sum(op(2.0, x, W, C))))(X)
    np.testing.assert_allclose(jitted, gx, rtol=1e-6)


def test_forward_mode_and_second_order_run_the_dense_reference():
    _, tangent = jax.jvp(lambda x: op(2.0, x, W, C), (X,), (jnp.ones_like(X),))
    np.testing.assert_allclose(tangent, jnp.cos(X) * W * C * 2.0, rtol=1e-6)  # true derivative, not 3x
    hess = jax.hessian(lambda x: jnp.sum(op(2.0, x, W, C)))(X)
    np.testing.assert_allclose(hess, jnp.diag(-jnp.sin(X) * W * C * 2.0), atol=1e-6)
    rev_rev = jax.jacrev(jax.grad(lambda x: jnp.sum(op(2.0, x, W, C))))(X)
    np.testing.assert_allclose(rev_rev, hess, atol=1e-6)  # the backward's own derivative is the dense one


def test_vmap_maps_the_primitives():
    xs = jnp.stack([X, 2 * X])
    grads = jax.vmap(jax.grad(lambda x: jnp.sum(op(2.0, x, W, C))))(xs)
    np.testing.assert_allclose(grads, 3.0 * jnp.cos(xs) * W * C * 2.0, rtol=1e-6)
    tangents = jax.vmap(lambda x: jax.jvp(lambda v: op(2.0, v, W, C), (x,), (jnp.ones_like(x),))[1])(xs)
    np.testing.assert_allclose(tangents, jnp.cos(xs) * W * C * 2.0, rtol=1e-6)


def test_reverse_only_fallback_runs_the_backward_kernel():
    """Where JAX lacks the primitive API, kernel_op is a custom_vjp: reverse mode still uses the kernel."""
    from bases.kernel_ad import _reverse_only

    fallback = _reverse_only(_forward, _backward, num_diff=2)
    gx = jax.grad(lambda x: jnp.sum(fallback(2.0, x, W, C.astype(jnp.int32))))(X)
    np.testing.assert_allclose(gx, 3.0 * jnp.cos(X) * W * C * 2.0, rtol=1e-6)
