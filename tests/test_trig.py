"""``bases.trig.sincos`` against float64 NumPy: accuracy over the fast range, the whole-array fallback
for large / non-finite arguments, other dtypes, and ``vmap``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases.trig import FAST_LIMIT, sincos

_sincos = jax.jit(sincos)


@pytest.mark.parametrize("scale, tol", [(1.0, 1.2e-7), (100.0, 1.2e-7), (6400.0, 1.2e-7), (FAST_LIMIT * 0.999, 3e-7)])
def test_sincos_accuracy(scale, tol):
    t = (np.random.default_rng(0).uniform(-1, 1, 200_000) * scale).astype(np.float32)
    t[:4] = [0.0, -0.0, np.float32(np.pi / 4), np.float32(-np.pi / 2)]
    s, c = map(np.asarray, _sincos(jnp.asarray(t)))
    exact = t.astype(np.float64)
    assert np.max(np.abs(s - np.sin(exact))) <= tol
    assert np.max(np.abs(c - np.cos(exact))) <= tol
    assert s.dtype == c.dtype == np.float32


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf, 1e8, -3e20])
def test_sincos_falls_back_for_the_whole_array(special):
    t = np.linspace(-5.0, 5.0, 64, dtype=np.float32)
    t[7] = special
    s, c = _sincos(jnp.asarray(t))
    np.testing.assert_array_equal(np.asarray(s), np.asarray(jnp.sin(t)))
    np.testing.assert_array_equal(np.asarray(c), np.asarray(jnp.cos(t)))
    assert np.isnan(s[7]) == (not np.isfinite(special))


def test_sincos_other_dtypes_and_vmap():
    t = jnp.linspace(-3.0, 3.0, 16, dtype=jnp.bfloat16)
    s, c = sincos(t)
    assert s.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(s, np.float32), np.asarray(jnp.sin(t), np.float32))
    rows = jnp.stack([jnp.linspace(-2.0, 2.0, 8), jnp.linspace(-2.0, 2.0, 8).at[3].set(1e9)])
    s, c = jax.vmap(sincos)(rows)
    np.testing.assert_allclose(np.asarray(s), np.sin(np.asarray(rows, np.float64)), atol=1.2e-7)
    np.testing.assert_allclose(np.asarray(c), np.cos(np.asarray(rows, np.float64)), atol=1.2e-7)
