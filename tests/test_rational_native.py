"""The native CPU backward of the group rational (bases.kernels.rational_native) against the XLA
backward it replaces and against autodiff of the textbook formula: both forms, channel counts that are
not multiples of the 16-channel vector, rows that are not multiples of the chunk, inputs beyond the
clip, zero and negative denominator coefficients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import native_build
from bases.kernels import group_rational
from bases.kernels.rational_native import DEGREES, backward_native, native_backward_usable
from bases.kernels.rational_xla import backward_xla

pytestmark = pytest.mark.skipif(not native_build.available("rational"), reason=str(native_build.unavailable_reason("rational")))

_xla = jax.jit(backward_xla, static_argnums=4)
_native = jax.jit(backward_native, static_argnums=4)


@pytest.mark.parametrize("form", ["A", "B"])
def test_native_backward_matches_the_xla_backward(form):
    rng = np.random.default_rng(0)
    for rows, d, m1, n in [(300, 37, 6, 4), (17, 5, 4, 3), (256, 16, 1, 1)]:
        x = jnp.asarray(rng.normal(size=(rows, d)) * 3, jnp.float32)
        x = x.at[0, 0].set(2e5).at[1, 1].set(-3e5).at[2, 2].set(0.0)  # beyond the clip, and 0
        g = jnp.asarray(rng.normal(size=(rows, d)), jnp.float32)
        ac = jnp.asarray(rng.normal(size=(d, m1)), jnp.float32)
        bc = jnp.asarray(rng.normal(size=(d, n)), jnp.float32).at[0, 0].set(0.0)
        for got, ref in zip(_native(x, g, ac, bc, form), _xla(x, g, ac, bc, form)):
            scale = float(jnp.max(jnp.abs(ref)))
            np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=2e-6 * scale, rtol=1e-5,
                                       err_msg=f"form {form}, {rows}x{d}, m+1={m1}, n={n}")
        assert float(_native(x, g, ac, bc, form)[0][0, 0]) == 0.0  # no gradient beyond the clip


def test_group_rational_uses_it_and_matches_autodiff():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 50, 40)), jnp.float32)
    a = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    b = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
    assert native_backward_usable(x.reshape(-1, 40), x.reshape(-1, 40), a[:1].repeat(40, 0), b[:1].repeat(40, 0))
    lowered = jax.jit(jax.grad(lambda x, a, b: jnp.sum(group_rational(x, a, b, backend="xla")),
                               argnums=(0, 1, 2))).lower(x, a, b).as_text()
    assert native_build.RATIONAL_BACKWARD_TARGET in lowered
    for form in ("A", "B"):
        def loss(backend):
            return lambda x, a, b: jnp.sum(jnp.sin(group_rational(x, a, b, form=form, backend=backend)))
        got = jax.jit(jax.grad(loss("xla"), argnums=(0, 1, 2)))(x, a, b)
        ref = jax.jit(jax.grad(loss("jnp"), argnums=(0, 1, 2)))(x, a, b)
        for g, r in zip(got, ref):
            np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=2e-4, atol=2e-4, err_msg=form)
        # forward mode and second order (through the textbook formula) agree with the reference too
        tangent = jnp.ones_like(x)
        np.testing.assert_allclose(jax.jvp(lambda v: loss("xla")(v, a, b), (x,), (tangent,))[1],
                                   jax.jvp(lambda v: loss("jnp")(v, a, b), (x,), (tangent,))[1], rtol=1e-4)
        hess = [jax.hessian(lambda bb: loss(be)(x[0, :4], a, bb))(b) for be in ("xla", "jnp")]
        np.testing.assert_allclose(hess[0], hess[1], rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(hess[1]))))


def test_degrees_it_was_not_compiled_for_run_the_xla_backward():
    x = jnp.linspace(-3.0, 3.0, 64, dtype=jnp.float32).reshape(8, 8)
    a, b = jnp.full((1, 3), 0.3, jnp.float32), jnp.full((1, 5), 0.2, jnp.float32)  # (m + 1, n) = (3, 5)
    assert (3, 5) not in DEGREES and not native_backward_usable(x, x, a.repeat(8, 0), b.repeat(8, 0))
    with pytest.raises(Exception, match="degree pair"):
        jax.block_until_ready(backward_native(x, x, a.repeat(8, 0), b.repeat(8, 0), "A"))
    got = jax.grad(lambda x: jnp.sum(group_rational(x, a, b, backend="xla")))(x)
    ref = jax.grad(lambda x: jnp.sum(group_rational(x, a, b, backend="jnp")))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-6)
