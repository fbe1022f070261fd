"""Fused Pallas kernels for the per-channel rational (forward, and backward with coefficient grads).

Layout: ``x`` ``(N, D)`` is tiled on a 2-D grid ``(row block i, channel block j)`` of power-of-two
blocks; block sizes that divide ``N`` and ``D`` are preferred, otherwise the wrapper pads to block
multiples (d = 255 works). Each program walks its row block ``sub_rows`` rows at a time, so
registers hold ``sub_rows x block_cols`` elements. Coefficients are passed transposed and
zero-padded as ``(KA, D)`` / ``(KB, D)`` tables (``KA``, ``KB`` the next powers of two above ``m+1``
and ``n``); padded channels see ``P = 0, Q = 1`` and padded rows carry a zero cotangent, so
padding never changes a result.

The backward kernel writes ``dx`` and, for every (row block, channel) pair, the float32 partial
sums of the coefficient-gradient terms over that block's rows, accumulated in a fixed loop order:
arrays ``(num_row_blocks * KA, D)`` and ``(num_row_blocks * KB, D)``. The wrapper sums them over
row blocks. No atomics anywhere, so results are bit-for-bit reproducible, unlike KAT's backward
that atomically adds into the coefficient gradients.

Refs are read as row slices (``pl.ds``) of full-width blocks, the Triton-style blocked model;
``pallas_backend="triton"`` (default on GPU) passes Triton compiler params, ``"mosaic"`` leaves
JAX's default lowering. ``interpret=True`` is forced off GPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jaxtyping import Array, Float

from .rational_math import rational_backward, rational_forward
from .rational_xla import compute_dtype


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _check_block(value: int, name: str) -> int:
    value = int(value)
    if value < 1 or value & (value - 1):
        raise ValueError(f"rational pallas kernel: {name} must be a power of two, got {value}")
    return value


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def _compiler_params(interpret: bool, pallas_backend: str):
    """Triton params by default on GPU (the kernel is written in Triton's blocked style);
    ``"mosaic"`` leaves the choice to JAX (Mosaic GPU is its default since jax 0.10)."""
    if interpret or pallas_backend != "triton":
        return None
    try:
        from jax.experimental.pallas import triton as pltriton
    except ImportError:  # Triton backend removed from this jax: let JAX pick its default
        return None
    return pltriton.CompilerParams(num_warps=4, num_stages=1)


def _fit_block(size: int, block: int, smallest: int) -> tuple[int, int]:
    """A power-of-two block ``<= block`` for an axis of ``size``: the largest one ``>= smallest``
    that divides ``size`` (no padding copy), else ``block`` capped at ``next_pow2(size)``.
    Returns ``(block, padded_size)``."""
    block = min(block, max(smallest, next_pow2(size)))
    cand = block
    while cand >= smallest:
        if size % cand == 0:
            return cand, size
        cand //= 2
    return block, _round_up(size, block)


def _layout(n_rows: int, n_cols: int, block_rows: int, block_cols: int, sub_rows: int):
    """``(sub_rows, block_rows, block_cols, padded_rows, padded_cols)`` for an ``(N, D)`` input."""
    _check_block(block_rows, "block_rows")
    _check_block(block_cols, "block_cols")
    sub = min(_check_block(sub_rows, "sub_rows"), next_pow2(n_rows))
    br, rows_p = _fit_block(n_rows, max(block_rows, sub), sub)
    bc, cols_p = _fit_block(n_cols, block_cols, min(32, block_cols))
    return sub, br, bc, rows_p, cols_p


def _pad2(x: Array, rows: int, cols: int) -> Array:
    if x.shape == (rows, cols):
        return x
    return jnp.pad(x, ((0, rows - x.shape[0]), (0, cols - x.shape[1])))


def _coeff_table(c: Array, k_pad: int, d_pad: int, dtype) -> Array:
    """``(D, k)`` per-channel coefficients -> zero-padded transposed table ``(k_pad, d_pad)``."""
    return _pad2(c.astype(dtype).T, k_pad, d_pad)


def _rows(ref, count: int) -> list[Array]:
    return [ref[pl.ds(i, 1), :] for i in range(count)]


def _fwd_kernel(x_ref, a_ref, b_ref, y_ref, *, m1: int, n: int, form: str, ct, sub: int):
    a, b = _rows(a_ref, m1), _rows(b_ref, n)

    def body(r, carry):
        rows = pl.ds(pl.multiple_of(r * sub, sub), sub)
        y = rational_forward(x_ref[rows, :].astype(ct), a, b, form)
        y_ref[rows, :] = y.astype(y_ref.dtype)
        return carry

    jax.lax.fori_loop(0, x_ref.shape[0] // sub, body, 0)


def _bwd_kernel(x_ref, g_ref, a_ref, b_ref, dx_ref, da_ref, db_ref, *, m1: int, n: int, form: str,
                ct, sub: int):
    a, b = _rows(a_ref, m1), _rows(b_ref, n)

    def body(r, acc):
        rows = pl.ds(pl.multiple_of(r * sub, sub), sub)
        x = x_ref[rows, :].astype(ct)
        g = g_ref[rows, :].astype(ct)
        dx, da, db = rational_backward(x, g, a, b, form)
        dx_ref[rows, :] = dx.astype(dx_ref.dtype)
        return tuple(s + jnp.sum(t, axis=0, keepdims=True) for s, t in zip(acc, da + db))

    zero = jnp.zeros((1, x_ref.shape[1]), ct)
    acc = jax.lax.fori_loop(0, x_ref.shape[0] // sub, body, (zero,) * (m1 + n))
    da_ref[...] = jnp.zeros(da_ref.shape, da_ref.dtype)
    db_ref[...] = jnp.zeros(db_ref.shape, db_ref.dtype)
    for i in range(m1):
        da_ref[pl.ds(i, 1), :] = acc[i].astype(da_ref.dtype)
    for j in range(n):
        db_ref[pl.ds(j, 1), :] = acc[m1 + j].astype(db_ref.dtype)


@functools.partial(
    jax.jit, static_argnames=("form", "block_rows", "block_cols", "sub_rows", "interpret", "pallas_backend")
)
def forward_pallas(
    x: Float[Array, "N D"],
    ac: Float[Array, "D m1"],
    bc: Float[Array, "D n"],
    *,
    form: str,
    block_rows: int = 256,
    block_cols: int = 128,
    sub_rows: int = 16,
    interpret: bool = False,
    pallas_backend: str = "triton",
) -> Float[Array, "N D"]:
    """``F(x)`` per channel with one fused kernel; output in the dtype of ``x``."""
    (n_rows, n_cols), m1, n = x.shape, ac.shape[1], bc.shape[1]
    ct = compute_dtype(x.dtype)
    sub, br, bcl, rows_p, cols_p = _layout(n_rows, n_cols, block_rows, block_cols, sub_rows)
    ka, kb = next_pow2(m1), next_pow2(n)
    kernel = functools.partial(_fwd_kernel, m1=m1, n=n, form=form, ct=ct, sub=sub)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((rows_p, cols_p), x.dtype),
        grid=(rows_p // br, cols_p // bcl),
        in_specs=[
            pl.BlockSpec((br, bcl), lambda i, j: (i, j)),
            pl.BlockSpec((ka, bcl), lambda i, j: (0, j)),
            pl.BlockSpec((kb, bcl), lambda i, j: (0, j)),
        ],
        out_specs=pl.BlockSpec((br, bcl), lambda i, j: (i, j)),
        interpret=interpret,
        compiler_params=_compiler_params(interpret, pallas_backend),
        name="group_rational_fwd",
    )(_pad2(x, rows_p, cols_p), _coeff_table(ac, ka, cols_p, ct), _coeff_table(bc, kb, cols_p, ct))
    return y[:n_rows, :n_cols]


@functools.partial(
    jax.jit, static_argnames=("form", "block_rows", "block_cols", "sub_rows", "interpret", "pallas_backend")
)
def backward_pallas(
    x: Float[Array, "N D"],
    g: Float[Array, "N D"],
    ac: Float[Array, "D m1"],
    bc: Float[Array, "D n"],
    *,
    form: str,
    block_rows: int = 256,
    block_cols: int = 128,
    sub_rows: int = 16,
    interpret: bool = False,
    pallas_backend: str = "triton",
) -> tuple[Float[Array, "N D"], Float[Array, "D m1"], Float[Array, "D n"]]:
    """``dx`` (dtype of ``x``) and per-channel coefficient gradients ``(D, m+1)``, ``(D, n)``
    (compute dtype), from per-row-block partial sums added in a fixed order."""
    (n_rows, n_cols), m1, n = x.shape, ac.shape[1], bc.shape[1]
    ct = compute_dtype(x.dtype)
    sub, br, bcl, rows_p, cols_p = _layout(n_rows, n_cols, block_rows, block_cols, sub_rows)
    ka, kb = next_pow2(m1), next_pow2(n)
    num_row_blocks = rows_p // br
    kernel = functools.partial(_bwd_kernel, m1=m1, n=n, form=form, ct=ct, sub=sub)
    tile = pl.BlockSpec((br, bcl), lambda i, j: (i, j))
    dx, da_part, db_part = pl.pallas_call(
        kernel,
        out_shape=(
            jax.ShapeDtypeStruct((rows_p, cols_p), x.dtype),
            jax.ShapeDtypeStruct((num_row_blocks * ka, cols_p), ct),
            jax.ShapeDtypeStruct((num_row_blocks * kb, cols_p), ct),
        ),
        grid=(num_row_blocks, cols_p // bcl),
        in_specs=[
            tile,
            tile,
            pl.BlockSpec((ka, bcl), lambda i, j: (0, j)),
            pl.BlockSpec((kb, bcl), lambda i, j: (0, j)),
        ],
        out_specs=(
            tile,
            pl.BlockSpec((ka, bcl), lambda i, j: (i, j)),
            pl.BlockSpec((kb, bcl), lambda i, j: (i, j)),
        ),
        interpret=interpret,
        compiler_params=_compiler_params(interpret, pallas_backend),
        name="group_rational_bwd",
    )(
        _pad2(x, rows_p, cols_p),
        _pad2(g.astype(x.dtype), rows_p, cols_p),
        _coeff_table(ac, ka, cols_p, ct),
        _coeff_table(bc, kb, cols_p, ct),
    )
    da_c = da_part.reshape(num_row_blocks, ka, cols_p).sum(axis=0)[:m1, :n_cols].T
    db_c = db_part.reshape(num_row_blocks, kb, cols_p).sum(axis=0)[:n, :n_cols].T
    return dx[:n_rows, :n_cols], da_c, db_c
