"""Chunked Gaussian weight draws: same values as jax.random.normal when small, bounded memory when large."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import init_random
from bases.init_random import LARGE_ELEMENTS, scaled_normal


def test_small_draws_are_jax_random_normal_scaled():
    key = jax.random.PRNGKey(3)
    for shape in [(5, 7, 8), (5, 2), (1, 5, 6), (3,), (0, 4), (255, 256)]:
        np.testing.assert_array_equal(np.asarray(scaled_normal(key, shape, np.float64(0.37))),
                                      np.asarray(np.float64(0.37) * jax.random.normal(key, shape)))
    # Inside a trace (vmap over keys) the same values come from jax.random.normal directly.
    keys = jax.random.split(key, 3)
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda k: scaled_normal(k, (4, 3), 0.5))(keys)),
                                  np.asarray(jax.vmap(lambda k: 0.5 * jax.random.normal(k, (4, 3)))(keys)))


def test_small_draws_of_many_shapes_share_one_compiled_program():
    before = init_random._bucket_normal._cache_size()
    for shape in [(2, 5, 6), (5, 1, 6), (2, 5), (5, 1), (7, 9), (3, 3, 3)]:  # all <= 256 elements
        scaled_normal(jax.random.PRNGKey(1), shape, 1.0)
    assert init_random._bucket_normal._cache_size() - before <= 1


def test_large_draws_are_reproducible_standardised_and_not_repeated_chunks():
    shape = (64, 32, 40)  # 81920 elements: drawn in chunks
    assert np.prod(shape) >= LARGE_ELEMENTS
    a = np.asarray(scaled_normal(jax.random.PRNGKey(0), shape, 0.5))
    b = np.asarray(scaled_normal(jax.random.PRNGKey(0), shape, 0.5))
    c = np.asarray(scaled_normal(jax.random.PRNGKey(1), shape, 0.5))
    assert a.shape == shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert abs(a.std() - 0.5) < 0.01 and abs(a.mean()) < 0.01
    rows = a.reshape(shape[0], -1)
    assert np.abs(np.corrcoef(rows[:8])[np.triu_indices(8, 1)]).max() < 0.1  # chunks are independent


def test_chunked_draw_keeps_xla_temporaries_below_the_result():
    shape = (256, 256, 13)
    rows = init_random._rows_per_chunk(shape[0], 256 * 13)
    assert rows and rows < shape[0]
    chunked = init_random._chunked_normal.lower(jax.random.PRNGKey(0), jnp.float32(1.0), shape, rows,
                                                jnp.dtype(jnp.float32)).compile().memory_analysis()
    whole = jax.jit(lambda k: jax.random.normal(k, shape)).lower(jax.random.PRNGKey(0)).compile().memory_analysis()
    if chunked is None or whole is None:
        pytest.skip("this backend gives no memory analysis")
    out_bytes = 4 * np.prod(shape)
    assert whole.temp_size_in_bytes > 2 * out_bytes  # the single draw: counters and both threefry words
    assert chunked.temp_size_in_bytes < 0.5 * out_bytes


def test_dtype_and_bad_shape():
    assert scaled_normal(jax.random.PRNGKey(0), (300, 300), 1.0, jnp.float32).dtype == jnp.float32
    with pytest.raises(ValueError, match="non-negative"):
        scaled_normal(jax.random.PRNGKey(0), (3, -1), 1.0)


def test_small_draws_without_partitionable_threefry_are_still_jax_random_normal():
    key, shape = jax.random.PRNGKey(5), (6, 7)
    previous = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        assert not init_random._bucketable(key, 0.5)
        np.testing.assert_array_equal(np.asarray(scaled_normal(key, shape, 0.5)),
                                      np.asarray(0.5 * jax.random.normal(key, shape)))
    finally:
        jax.config.update("jax_threefry_partitionable", previous)
    assert init_random._bucketable(key, 0.5) == bool(previous)


def test_layer_construction_makes_no_float64_host_copies():
    """The layer's host-made buffers (edge mask, bias) are built in float32 directly: NumPy's traced
    peak while building a 256 -> 256 layer stays near the float32 mask (256 KiB), not mask + a float64
    twice its size."""
    import tracemalloc

    from bases import BSpline
    from kan import KANLayer

    KANLayer(256, 256, BSpline(256, grid_size=10), key=jax.random.PRNGKey(0))  # compile the draws first
    tracemalloc.start()
    try:
        jax.block_until_ready(KANLayer(256, 256, BSpline(256, grid_size=10), key=jax.random.PRNGKey(1)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    mask_bytes = 256 * 256 * 4
    assert peak < 1.6 * mask_bytes, f"traced peak {peak / 1024:.0f} KiB for a {mask_bytes / 1024:.0f} KiB mask"
