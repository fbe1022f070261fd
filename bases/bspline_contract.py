"""The B-spline edge sum ``y = sum_d sum_i W[o, d, i] F_i(x_d)`` with a hand-written backward pass.

    y[..., o] = sum_d ( W[o, d, 0] act(x_d) + sum_i W[o, d, 1 + i] F_i(x_d) )     (with a residual)

Only ``x`` and ``W`` are kept for the backward pass: the ``(rows, d, G + k)`` feature tensor is rebuilt
from the ``k + 1`` local pieces of each point (``bases.bspline_local``) (in row blocks once
it would exceed :data:`FULL_BYTES`), in the forward and again in the backward pass, so training memory does not grow
with ``G`` and a large batch never holds the whole feature tensor. Per block the contraction is:

- ``"dense"``: scatter the local pieces into dense features, then one matmul over ``d * (G + k + 1)``
  (BLAS-speed; the backward is two more matmuls plus a ``k + 1``-wide gather for ``dx``);
- ``"local"``: gather the ``k + 1`` matching weight columns per point and contract them directly
  (work follows ``k + 1``, not ``G``, but XLA lowers it to gathers, not a matmul).

``"auto"`` follows :func:`choose_contraction`. On CPU (XLA 0.10, 2 cores) the dense block matmul was
faster at every shape measured: the gather form took 55x (1024x128, G=5) and 32x (1024x512, G=20) the
dense time, and even at 16 rows x 512, G=20 it was 1.5x slower (``benchmarks.layers --scaling``; the
numbers are in the module's tests' docstring), so "auto" is dense there. Elsewhere (GPU/TPU, where
gathers are cheap) it picks "local" once ``G + k >= 4 (k + 1)``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .bspline_local import dense_rows, local_pieces, local_pieces_and_derivatives

#: Feature tensors up to this size (bytes of float32) are built whole; larger ones in row blocks of
#: about :data:`BLOCK_BYTES`, never fewer rows than ``2 * out`` (so accumulating the weight gradient
#: over blocks costs less than building the blocks).
FULL_BYTES = 32 * 2**20
BLOCK_BYTES = 4 * 2**20
CONTRACTIONS = ("auto", "dense", "local")


class _Config(NamedTuple):
    order: int
    uniform: bool
    num_functions: int
    activation: Optional[Callable[[Array], Array]]
    contraction: str
    chunk: int


def choose_contraction(num_functions: int, order: int, platform: str | None = None) -> str:
    """The rule behind ``contraction="auto"``: ``"dense"`` on CPU; elsewhere ``"local"`` when
    ``num_functions >= 4 * (order + 1)`` (most of the dense work would multiply zeros)."""
    platform = jax.default_backend() if platform is None else platform
    if platform == "cpu":
        return "dense"
    return "local" if num_functions >= 4 * (order + 1) else "dense"


def chunk_rows(in_features: int, width: int, rows: int, out_features: int) -> int:
    """Rows per block (see :data:`FULL_BYTES`): a divisor of ``rows`` near the cap if there is one, else
    balanced blocks (the last padded)."""
    row_bytes = 4 * in_features * width
    if rows * row_bytes <= FULL_BYTES:
        return max(rows, 1)
    cap = max(32, 2 * out_features, BLOCK_BYTES // row_bytes)
    if rows <= cap:
        return rows
    for chunk in range(cap, cap // 2, -1):  # an exact divisor avoids padding copies of x and g
        if rows % chunk == 0:
            return chunk
    blocks = math.ceil(rows / cap)
    return math.ceil(rows / blocks)


def _offset(cfg: _Config) -> int:
    return 0 if cfg.activation is None else 1


def _columns(cfg: _Config, start: Array) -> list[tuple[Array, Array]]:
    """Per local entry q: its column ``offset + start + q`` (clipped) and whether it is a function."""
    off, out = _offset(cfg), []
    for q in range(cfg.order + 1):
        index = start + q
        out.append((jnp.clip(index + off, 0, cfg.num_functions + off - 1),
                    (index >= 0) & (index < cfg.num_functions)))
    return out


def _pick(wt: Array, col: Array) -> Array:
    """``wt[col[c, d], d, :]`` for ``wt`` of shape ``(width, d, out)``: ``(c, d, out)``."""
    return wt[col, jnp.arange(wt.shape[1])]


def _block_forward(cfg: _Config, grid: Array, weight: Array, xb: Array) -> Array:
    """``(c, d) -> (c, out)`` for one row block; ``weight`` is ``(out, width, d)``."""
    pieces, start = local_pieces(xb, grid, cfg.order, cfg.uniform)
    off = _offset(cfg)
    if cfg.contraction == "local":
        wt = jnp.moveaxis(weight, 0, -1)  # (width, d, out)
        y = 0.0
        for piece, (col, ok) in zip(pieces, _columns(cfg, start)):
            y = y + jnp.einsum("cd,cdo->co", jnp.where(ok, piece, 0.0), _pick(wt, col))
        if off:
            y = y + cfg.activation(xb) @ weight[:, 0, :].T
        return y
    feats = dense_rows(pieces, start, cfg.num_functions, off, cfg.activation(xb) if off else None)
    return feats.reshape(xb.shape[0], -1) @ weight.reshape(weight.shape[0], -1).T


def _block_backward(cfg: _Config, grid: Array, weight: Array, xb: Array, gb: Array) -> tuple[Array, Array]:
    """``(dweight, dx)`` of one row block, features rebuilt from ``xb``."""
    pieces, dpieces, start = local_pieces_and_derivatives(xb, grid, cfg.order, cfg.uniform)
    off, width, c = _offset(cfg), weight.shape[1], xb.shape[0]
    if off:
        act, dact = jax.jvp(cfg.activation, (xb,), (jnp.ones_like(xb),))
    if cfg.contraction == "local":
        wt = jnp.moveaxis(weight, 0, -1)  # (width, d, out)
        dwt = jnp.zeros_like(wt)
        dx = jnp.zeros_like(xb)
        lanes = jnp.arange(wt.shape[1])
        for piece, dpiece, (col, ok) in zip(pieces, dpieces, _columns(cfg, start)):
            dlocal = jnp.einsum("co,cdo->cd", gb, _pick(wt, col))
            dx = dx + jnp.where(ok, dlocal * dpiece, 0.0)
            contrib = jnp.einsum("cd,co->cdo", jnp.where(ok, piece, 0.0), gb)
            dwt = dwt.at[col, lanes].add(contrib)
        dweight = jnp.moveaxis(dwt, -1, 0)
        if off:
            dweight = dweight.at[:, 0, :].add(gb.T @ act)
            dx = dx + (gb @ weight[:, 0, :]) * dact
        return dweight, dx
    feats = dense_rows(pieces, start, cfg.num_functions, off, act if off else None)
    dweight = (gb.T @ feats.reshape(c, -1)).reshape(weight.shape)
    dfeats = (gb @ weight.reshape(weight.shape[0], -1)).reshape(c, width, -1)
    # dx = sum_i dfeats[:, i] * F_i'(x): the derivative features in the same nested-select form, reduced
    # over the function axis in one fusion (no gathers).
    dx = jnp.sum(dfeats * dense_rows(dpieces, start, cfg.num_functions, off, dact if off else None), axis=1)
    return dweight, dx


def _blocks(x: Array, chunk: int) -> tuple[Array, int]:
    rows = x.shape[0]
    n = math.ceil(rows / chunk)
    pad = n * chunk - rows
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)], axis=0)
    return x.reshape((n, chunk) + x.shape[1:]), rows


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _edge_sum(cfg: _Config, x: Array, grid: Array, weight: Array) -> Array:
    blocks, rows = _blocks(x, cfg.chunk)
    if blocks.shape[0] == 1:
        return _block_forward(cfg, grid, weight, blocks[0])[:rows]
    y = jax.lax.map(functools.partial(_block_forward, cfg, grid, weight), blocks)
    return y.reshape(-1, y.shape[-1])[:rows]


def _edge_sum_fwd(cfg, x, grid, weight):
    return _edge_sum(cfg, x, grid, weight), (x, grid, weight)


def _edge_sum_bwd(cfg, res, g):
    x, grid, weight = res
    xs, rows = _blocks(x, cfg.chunk)
    gs, _ = _blocks(g.astype(weight.dtype), cfg.chunk)
    if xs.shape[0] == 1:
        dweight, dx = _block_backward(cfg, grid, weight, xs[0], gs[0])
    else:
        def body(acc, inp):
            dw, dxb = _block_backward(cfg, grid, weight, *inp)
            return acc + dw, dxb

        dweight, dx = jax.lax.scan(body, jnp.zeros_like(weight), (xs, gs))
    dx = dx.reshape(-1, x.shape[-1])[:rows].astype(x.dtype)
    return dx, jnp.zeros_like(grid), dweight


_edge_sum.defvjp(_edge_sum_fwd, _edge_sum_bwd)


def bspline_edge_sum(
    x: Float[Array, "... d"],
    grid: Float[Array, "d n_knots"],
    weight: Float[Array, "out d width"],
    *,
    order: int,
    uniform: bool,
    activation: Optional[Callable[[Array], Array]] = None,
    contraction: str = "auto",
) -> Float[Array, "... out"]:
    """``y[..., o] = sum_d sum_c weight[o, d, c] feature_c(x_d)``: features are ``[act(x), F_0..F_{n-1}]``
    with a residual ``activation`` (``width = n + 1``), else the ``n = n_knots - order - 1`` B-splines
    (``width = n``). Gradients flow to ``x`` and ``weight`` (never to ``grid``); see the module docstring
    for ``contraction`` and the memory behaviour."""
    if contraction not in CONTRACTIONS:
        raise ValueError(f"bspline_edge_sum: contraction must be one of {CONTRACTIONS}, got {contraction!r}")
    d = x.shape[-1]
    num_functions = grid.shape[1] - order - 1
    width = num_functions + (0 if activation is None else 1)
    if grid.shape[0] != d or weight.shape[1:] != (d, width):
        raise ValueError(f"bspline_edge_sum: expected grid (d={d}, n_knots) and weight (out, {d}, {width}), "
                         f"got grid {tuple(grid.shape)} and weight {tuple(weight.shape)}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, d).astype(jnp.promote_types(x.dtype, jnp.float32))
    if contraction == "auto":
        contraction = choose_contraction(num_functions, order)
    cfg = _Config(order, bool(uniform), num_functions, activation, contraction,
                  chunk_rows(d, width, flat.shape[0], weight.shape[0]))
    wt = jnp.swapaxes(weight.astype(flat.dtype), 1, 2)  # (out, width, d): d is the fast axis
    y = _edge_sum(cfg, flat, jax.lax.stop_gradient(grid), wt)
    return y.reshape(lead + (weight.shape[0],))
