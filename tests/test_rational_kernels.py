"""Group-rational op: Pallas (interpret mode on CPU) and XLA against jax.grad of the plain formula."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases.kernels import balanced_group_index, group_rational
from bases.kernels.rational_pallas import backward_pallas

KEYS = jax.random.split(jax.random.PRNGKey(0), 6)
N, D, G = 37, 255, 8  # ragged in both rows and channels; 255 channels in 8 groups
BLOCKS = dict(block_rows=16, block_cols=128, sub_rows=8)  # 3 row blocks of 2 sub-blocks


def _coefficients(key, groups=G, m=5, n=4):
    ka, kb = jax.random.split(key)
    return 0.3 * jax.random.normal(ka, (groups, m + 1)), 0.3 * jax.random.normal(kb, (groups, n))


@functools.lru_cache(maxsize=None)
def _program(backend, form, sizes):
    """Jitted (y, dx, da, db) for a backend/form; cached so repeated calls reuse one compilation."""

    @jax.jit
    def run(x, a, b, gy, ids):
        def loss(x, a, b):
            groups = sizes if sizes is not None else ids
            y = group_rational(x, a, b, groups, form=form, backend=backend, **BLOCKS)
            return jnp.sum(y * gy), y

        (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(x, a, b)
        return (y,) + grads

    return run


def _value_and_grads(backend, form, x, a, b, gy, groups=None):
    if isinstance(groups, tuple):  # sizes are static
        return _program(backend, form, groups)(x, a, b, gy, None)
    return _program(backend, form, None)(x, a, b, gy, groups)


def _assert_close(actual, ref, rtol=1e-5):
    actual, ref = np.asarray(actual, np.float64), np.asarray(ref, np.float64)
    scale = max(np.max(np.abs(ref)), 1e-30)
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("form", ["A", "B"])
def test_pallas_and_xla_match_autodiff_of_plain_formula(form):
    x = 2.0 * jax.random.normal(KEYS[0], (N, D))
    a, b = _coefficients(KEYS[1])
    gy = jax.random.normal(KEYS[2], (N, D))
    ref = _value_and_grads("jnp", form, x, a, b, gy)
    xla = _value_and_grads("xla", form, x, a, b, gy)
    pallas = _value_and_grads("pallas", form, x, a, b, gy)
    for name, r, p, q in zip(["y", "dx", "da", "db"], ref, xla, pallas):
        assert r.shape == p.shape == q.shape, name
        _assert_close(p, r)
        _assert_close(q, r)
        _assert_close(q, p)
    # the gradients really depend on every group: no group's gradient is zero
    assert np.all(np.abs(np.asarray(ref[2])).sum(axis=1) > 0)


def test_explicit_group_maps():
    x = jax.random.normal(KEYS[3], (2, 5, 20))  # leading batch dims are flattened and restored
    a, b = _coefficients(KEYS[4], groups=3)
    gy = jax.random.normal(KEYS[5], x.shape)
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 3, 20), jnp.int32)  # non-contiguous
    ref = _value_and_grads("jnp", "A", x, a, b, gy, ids)
    for r, p in zip(ref, _value_and_grads("pallas", "A", x, a, b, gy, ids)):
        _assert_close(p, r)
    sizes = (12, 0, 8)  # contiguous sizes; an empty group is allowed and gets zero gradient
    y, _, da, db = _value_and_grads("xla", "A", x, a, b, gy, sizes)
    same = _value_and_grads("jnp", "A", x, a, b, gy, jnp.asarray([0] * 12 + [2] * 8, jnp.int32))
    _assert_close(y, same[0])
    assert np.all(np.asarray(da[1]) == 0) and np.all(np.asarray(db[1]) == 0)


def test_balanced_groups_cover_every_channel():
    ids = balanced_group_index(255, 8)
    sizes = np.bincount(ids, minlength=8)
    assert sizes.sum() == 255 and sizes.min() >= 31 and sizes.max() <= 32
    assert np.all(np.diff(ids) >= 0)  # contiguous
    assert np.all(np.bincount(balanced_group_index(10, 8)) >= 1)  # no empty group for d=10


def test_pallas_backward_is_bitwise_deterministic():
    x = jax.random.normal(KEYS[0], (N, D))
    gy = jax.random.normal(KEYS[2], (N, D))
    a, b = _coefficients(KEYS[1])
    ids = jnp.asarray(balanced_group_index(D, G))
    ac, bc = a[ids], b[ids]
    runs = [backward_pallas(x, gy, ac, bc, form="A", interpret=True, **BLOCKS) for _ in range(2)]
    for first, second in zip(*runs):
        assert np.array_equal(np.asarray(first), np.asarray(second))
    grads = [_value_and_grads("pallas", "B", x, a, b, gy)[1:] for _ in range(2)]
    for first, second in zip(*grads):
        assert np.array_equal(np.asarray(first), np.asarray(second))


@pytest.mark.parametrize("backend,form", [("xla", "A"), ("xla", "B"), ("pallas", "A")])
def test_no_overflow_for_large_inputs(backend, form):
    mags = jnp.logspace(-3, 4, 64)
    x = jnp.stack([mags, -mags, mags[::-1], -mags[::-1]], axis=1)  # (64, 4): |x| up to 1e4
    a = jnp.asarray([[0.1, 1.0, 0.5, 0.2, 0.1, 0.05]] * 2)
    b = jnp.asarray([[0.3, 0.2, 0.1, 0.01]] * 2)
    y, dx, da, db = _value_and_grads(backend, form, x, a, b, jnp.ones_like(x))
    for arr in (y, dx, da, db):
        assert np.all(np.isfinite(np.asarray(arr)))
    with jax.enable_x64(True):  # the float32 result is accurate, not just finite
        y64 = group_rational(x.astype(jnp.float64), a.astype(jnp.float64), b.astype(jnp.float64),
                             form=form, backend="jnp")
    np.testing.assert_allclose(np.asarray(y), np.asarray(y64), rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs(dtype):
    x32 = 3.0 * jax.random.normal(KEYS[0], (40, 24))
    x32 = x32.at[0, :4].set(jnp.asarray([300.0, -300.0, 6e4, -6e4]))
    x = x32.astype(dtype)
    a, b = _coefficients(KEYS[1], groups=4)
    gy = jnp.ones_like(x)
    for backend in ("xla", "pallas") if dtype == jnp.bfloat16 else ("xla",):
        y, dx, da, db = _value_and_grads(backend, "A", x, a, b, gy)
        assert y.dtype == dtype and dx.dtype == dtype and da.dtype == jnp.float32
        for arr in (y, dx, da, db):
            assert np.all(np.isfinite(np.asarray(arr, np.float32)))
        # computed in float32 from the rounded inputs, rounded once at the end
        ref = group_rational(x.astype(jnp.float32), a, b, form="A", backend="jnp")
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref.astype(dtype), np.float32),
                                   rtol=1e-2, atol=1e-2)


def test_dispatch_and_override():
    x = jnp.ones((4, 8))
    a, b = _coefficients(KEYS[1], groups=2)

    def uses_pallas(backend):
        jaxpr = jax.make_jaxpr(lambda x: group_rational(x, a, b, backend=backend))(x)
        return "pallas_call" in str(jaxpr)

    assert uses_pallas("pallas") and not uses_pallas("xla") and not uses_pallas("jnp")
    assert uses_pallas("auto") == (jax.default_backend() == "gpu")


def test_identity_coefficients_still_get_denominator_gradients():
    x = jax.random.normal(KEYS[0], (16, 8))
    a = jnp.zeros((2, 6)).at[:, 1].set(1.0)
    b = jnp.zeros((2, 4))
    y, _, _, db = _value_and_grads("xla", "A", x, a, b, jnp.ones_like(x))
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-6)
    assert np.all(np.abs(np.asarray(db)) > 0)


def test_bad_inputs_raise():
    x = jnp.ones((4, 8))
    a, b = _coefficients(KEYS[1], groups=2)
    with pytest.raises(ValueError, match="form"):
        group_rational(x, a, b, form="C")
    with pytest.raises(ValueError, match="backend"):
        group_rational(x, a, b, backend="cuda")
    with pytest.raises(TypeError, match="floating"):
        group_rational(jnp.ones((4, 8), jnp.int32), a, b)
    with pytest.raises(ValueError, match="same number of groups"):
        group_rational(x, a, b[:1])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        group_rational(x, a, b, jnp.arange(8, dtype=jnp.int32))
    with pytest.raises(ValueError, match="sum to"):
        group_rational(x, a, b, (4, 5))
    with pytest.raises(ValueError, match="power of two"):
        group_rational(x, a, b, backend="pallas", block_rows=12)


def test_kernel_layout_prefers_divisors_and_pads_otherwise():
    from bases.kernels.rational_pallas import _layout

    assert _layout(128 * 197, 3072, 256, 128, 16) == (16, 128, 128, 128 * 197, 3072)  # KAT-B: no pad
    assert _layout(37, 255, 16, 128, 8) == (8, 16, 128, 48, 256)
    assert _layout(3, 5, 256, 128, 16) == (4, 4, 32, 4, 32)
