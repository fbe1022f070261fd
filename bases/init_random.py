"""Gaussian weight draws whose peak memory stays near the size of the weights they make.

``jax.random.normal`` on CPU runs threefry as a loop over whole arrays: besides the float output it
keeps the two 32-bit counter words and the two output words alive, so drawing an ``(out, in, k)``
tensor lifts memory by about four times the tensor (measured: a ``(256, 256, 13)`` draw has 9.75 MiB
of XLA temporaries for a 3.25 MiB result). Large draws are therefore made in row chunks inside one
compiled loop, each chunk with its own key, so the transient is one chunk's working set.

Small draws compile once per power-of-two size, not once per shape: with JAX's default partitionable
threefry the value at flat index ``i`` of ``jax.random.normal(key, shape)`` depends on ``key`` and ``i``
only, so ``normal(key, (2^m,))[:size]`` reshaped is the same array, bit for bit.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .buffers import host_array

LARGE_ELEMENTS = 1 << 16  # draws at least this big go in chunks (below: one jax.random.normal)
CHUNK_ELEMENTS = 1 << 14  # at most this many elements per chunk
_MIN_CHUNK_ELEMENTS = 1 << 12  # smaller chunks (no fitting divisor of the rows) are not worth a loop


def _rows_per_chunk(rows: int, cols: int) -> int:
    """The largest divisor of ``rows`` whose chunk holds at most ``CHUNK_ELEMENTS`` elements (0: none
    big enough to be worth looping over)."""
    best = 0
    for r in range(1, rows + 1):
        if rows % r == 0 and r * cols <= CHUNK_ELEMENTS:
            best = r
    return best if best * cols >= _MIN_CHUNK_ELEMENTS else 0


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _chunked_normal(key: PRNGKeyArray, std: Array, shape: tuple[int, ...], rows_per_chunk: int,
                    dtype) -> Array:
    rows = shape[0]
    cols = math.prod(shape[1:])
    keys = jax.random.split(key, rows // rows_per_chunk)
    draw = lambda k: std.astype(dtype) * jax.random.normal(k, (rows_per_chunk, cols), dtype)
    return jax.lax.map(draw, keys).reshape(shape)


def scaled_normal(key: PRNGKeyArray, shape: Sequence[int], std: float, dtype=None) -> Float[Array, "..."]:
    """``std * N(0, 1)`` draws of ``shape`` in ``dtype`` (default: JAX's default float).

    Below ``LARGE_ELEMENTS`` elements this is ``std * jax.random.normal(key, shape)`` (the same values).
    From there on the first axis is split into chunks of at most ``CHUNK_ELEMENTS`` elements, drawn one
    after another with keys from ``jax.random.split(key, chunks)``: the values differ from a single
    draw, are as random and as reproducible, and the extra memory is one chunk's, not ~3x the result.
    """
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"scaled_normal: shape must be non-negative, got {shape}")
    dtype = jnp.dtype(dtype) if dtype is not None else jax.dtypes.canonicalize_dtype(jnp.float64)
    size = math.prod(shape)
    if size >= LARGE_ELEMENTS and len(shape) >= 1:
        rows_per_chunk = _rows_per_chunk(shape[0], size // shape[0])
        if rows_per_chunk:
            return _chunked_normal(key, jnp.asarray(std, dtype), shape, rows_per_chunk, dtype)
    if _bucketable(key, std):
        flat = np.asarray(_bucket_normal(key, max(256, 1 << max(size - 1, 0).bit_length()), dtype))
        return host_array(np.asarray(std, dtype) * flat[:size].reshape(shape), dtype)
    return std * jax.random.normal(key, shape, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _bucket_normal(key: PRNGKeyArray, size: int, dtype) -> Array:
    return jax.random.normal(key, (size,), dtype)


def _bucketable(key: PRNGKeyArray, std: float) -> bool:
    """Whether a small draw may come from a power-of-two draw (see the module docstring): a concrete
    raw threefry key under the partitionable threefry, and a concrete ``std``."""
    if isinstance(key, jax.core.Tracer) or isinstance(std, jax.core.Tracer):
        return False
    partitionable = getattr(jax.config, "jax_threefry_partitionable", False)
    if not partitionable or getattr(jax.config, "jax_default_prng_impl", None) != "threefry2x32":
        return False
    return getattr(key, "dtype", None) == jnp.uint32 and tuple(key.shape) == (2,)
