"""The B-spline edge sum ``y = sum_d sum_i W[o, d, i] F_i(x_d)``, recomputed rather than stored.

    y[..., o] = sum_d ( W[o, d, 0] act(x_d) + sum_i W[o, d, 1 + i] F_i(x_d) )     (with a residual)

Features are built from the ``k + 1`` local pieces of each point (``bases.bspline.local``). A batch
whose ``(rows, G + k, d)`` feature tensor would exceed :data:`FULL_BYTES` runs in row blocks, each under
``jax.checkpoint``: only ``x`` and ``W`` are kept for the backward pass, which rebuilds each block's
features, so training memory stays near an MLP's. Below that size the features are the saved residual
(recomputing them cost 1.4-1.6x the time; XLA kept them alive anyway when fwd and bwd share a jit).
1024 x 512 at G = 20 (48 MiB of features) stays whole; 32768 x 256 at G = 10 (470 MiB) runs in blocks.
The features carry a custom JVP (``dF = F'(x) dx``, elementwise), so reverse mode gives
``dx = sum_i dA_i F_i'(x)`` in one fused reduction, and forward mode and Hessians work. Per block:

- ``"dense"``: scatter the local pieces into dense features, then one matmul over ``d * (G + k + 1)``
  (BLAS-speed; the backward is two more matmuls and one fused reduction for ``dx``);
- ``"local"``: gather the ``k + 1`` matching weight columns per point and contract them directly
  (work follows ``k + 1``, not ``G``, but XLA lowers it to gathers, not a matmul).

- ``"native"``: the CPU kernel of :mod:`bases.bspline.native` (``k + 1`` multiply-adds per input and
  output, no feature tensor at all, so no row blocks), with the residual as one more matmul.

"local" on XLA (2 shared cores, fwd+bwd w.r.t. weights and input, local/dense time): 1.1x (1 row), 3.2x
(4), 7.2x (16), 13x (64) at 512 -> 512, G=20; ~13x (1024) at 128 -> 128, G=5: XLA lowers the gather
form to gathers that materialise ``(rows, d, out)`` per local function, so it stays as the reference.
``"auto"`` follows :func:`choose_contraction`: "native" where the kernel measured faster, else "dense".
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import native_build
from ..basis import merge_last_two
from . import native
from .local import dense_rows, local_pieces, local_pieces_and_derivatives

#: Feature tensors up to this size (bytes of float32) are built whole; larger ones in row blocks of
#: about :data:`BLOCK_BYTES`, never fewer rows than ``2 * out`` (so accumulating the weight gradient
#: over blocks costs less than building the blocks).
FULL_BYTES = 64 * 2**20
BLOCK_BYTES = 4 * 2**20
CONTRACTIONS = ("auto", "dense", "local", "native")


class _Config(NamedTuple):
    order: int
    uniform: bool
    num_functions: int
    activation: Optional[Callable[[Array], Array]]
    contraction: str
    chunk: int


#: ``"auto"`` takes the native kernel when a layer has at least this many functions per local term
#: (``G + k >= NATIVE_MIN_RATIO (k + 1)``: G >= 5 for cubic splines) ...
NATIVE_MIN_RATIO = 2
#: ... and at least this many multiply-adds per local term (``rows * in * out``), or
#: :data:`NATIVE_MIN_WORK_FINE` with a finer grid (``G + k >= 3 (k + 1)``: G >= 9 for cubic splines) (B-splines and
#: ReLU-KAN; other kinds in :data:`CROSSOVERS`).
NATIVE_MIN_WORK = 2**23
NATIVE_MIN_WORK_FINE = 2**20


class Crossover(NamedTuple):
    """Where ``"auto"`` takes the native kernel for a basis kind: ``functions >= ratio * terms`` and
    ``rows * in * out >= work``, or ``functions >= fine_ratio * terms`` and ``>= fine_work``."""
    ratio: float
    work: int
    fine_ratio: float
    fine_work: int


#: Per basis kind. B-splines and ReLU-KAN: the measurements in :func:`choose_contraction`. Gaussian RBFs
#: with a cut-off (``local_terms`` = 6 at 3 widths), whose dense features cost an exponential each:
#: native/dense time (fwd+bwd, batch 1024, width -> width, 2 cores, interleaved) 0.76 at 64, G = 14;
#: 0.98 at 64, G = 12; 0.80 at 128, G = 12; 1.17 at 128, G = 10; 0.73 at 256, G = 10; 0.83 at 512,
#: G = 10; 0.96 and 1.00 at 256 and 512, G = 8.
CROSSOVERS = {
    "bspline": Crossover(NATIVE_MIN_RATIO, NATIVE_MIN_WORK, 3, NATIVE_MIN_WORK_FINE),
    "rbf": Crossover(1.6, 2**25, 2, 2**21),
}


def choose_contraction(num_functions: int, order: int, rows: int | None = None,
                       platform: str | None = None, in_features: int | None = None,
                       out_features: int | None = None, dtype=None, kind: str = "bspline") -> str:
    """The rule behind ``contraction="auto"``: ``"native"`` on the CPU, in float32, when the kernel is
    available (:func:`bases.native_build.available`) and the shape passes the thresholds of
    :data:`CROSSOVERS` for ``kind`` (``order + 1`` local terms; large batches run the kernel in row
    blocks, :func:`bases.bspline.native.block_rows`); ``"dense"`` otherwise (shapes not given count as
    small). ``platform`` defaults to JAX's default backend.

    Measured on 2 CPU cores (fwd+bwd w.r.t. trainable parameters and input, batch 1024, width -> width,
    interleaved, KAN/MLP time native vs dense, ``python -m benchmarks.layers --scaling``, then one
    round-robin of four contenders, whose heavy members slowed the MLP: its ratios read low, the
    native/dense comparison holds; with pairs, 7.8 vs 20.0 at 512, G=20): 5.2 vs 19.6
    at 512, G=20; 5.2 vs 11.2 at 512, G=10; 5.2 vs 8.0 at 512, G=5; 6.4 vs 11.7 at 256, G=10; 5.9 vs
    6.2 at 128, G=5; 4.3 vs 5.2 at 64, G=10; at 64, G=5 (4M multiply-adds per term) dense was faster,
    4.4 vs 4.9. No GPU: the kernel is CPU-only."""
    if rows is None or in_features is None or out_features is None:
        return "dense"
    platform = jax.default_backend() if platform is None else platform
    if platform != "cpu" or (dtype is not None and jnp.dtype(dtype) != jnp.float32) or not 1 <= order <= 6:
        return "dense"
    if kind not in CROSSOVERS:
        raise ValueError(f"choose_contraction: kind must be one of {sorted(CROSSOVERS)}, got {kind!r}")
    rule = CROSSOVERS[kind]
    terms, work = order + 1, rows * in_features * out_features
    needed = rule.fine_work if num_functions >= rule.fine_ratio * terms else rule.work
    if num_functions < rule.ratio * terms or work < needed:
        return "dense"
    return "native" if native_build.available("bspline") else "dense"


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


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _features(cfg: _Config, grid: Array, xb: Array) -> Array:
    """Dense features ``(c, width, d)`` of a row block (residual column first), from the local pieces."""
    # Materialise the k + 1 pieces (small) before the scatter reads them once per column.
    pieces, start = jax.lax.optimization_barrier(local_pieces(xb, grid, cfg.order, cfg.uniform))
    lead = cfg.activation(xb) if cfg.activation is not None else None
    return dense_rows(pieces, start, cfg.num_functions, _offset(cfg), lead)


@_features.defjvp
def _features_jvp(cfg: _Config, primals: tuple, tangents: tuple) -> tuple[Array, Array]:
    # d features = F'(x) * dx: elementwise, so reverse mode (its transpose) is one fused reduction
    # sum_i dA[:, i] F_i'(x) instead of k + 1 masked ones. The grid never gets a gradient.
    grid, xb = primals
    dx = tangents[1]
    pieces, dpieces, start = jax.lax.optimization_barrier(
        local_pieces_and_derivatives(xb, grid, cfg.order, cfg.uniform))
    lead = dlead = None
    if cfg.activation is not None:
        lead, dlead = jax.jvp(cfg.activation, (xb,), (jnp.ones_like(xb),))
    off = _offset(cfg)
    feats = dense_rows(pieces, start, cfg.num_functions, off, lead)
    slopes = dense_rows(dpieces, start, cfg.num_functions, off, dlead)
    return feats, slopes * dx[:, None, :]


def _block_forward(cfg: _Config, grid: Array, weight: Array, xb: Array) -> Array:
    """``(c, d) -> (c, out)`` for one row block; ``weight`` is ``(out, width, d)``."""
    if cfg.contraction == "local":
        pieces, start = local_pieces(xb, grid, cfg.order, cfg.uniform)
        wt = jnp.moveaxis(weight, 0, -1)  # (width, d, out)
        y = 0.0
        for piece, (col, ok) in zip(pieces, _columns(cfg, start)):
            y = y + jnp.einsum("cd,cdo->co", jnp.where(ok, piece, 0.0), _pick(wt, col))
        if cfg.activation is not None:
            y = y + cfg.activation(xb) @ weight[:, 0, :].T
        return y
    feats = _features(cfg, grid, xb)
    return merge_last_two(feats) @ weight.reshape(weight.shape[0], -1).T


def _edge_sum(cfg: _Config, x: Array, grid: Array, weight: Array) -> Array:
    """One block: plain autodiff (the features, at most :data:`FULL_BYTES`, are the saved residual:
    recomputing them measured 1.4-1.6x slower). Several blocks: each under ``jax.checkpoint``, so the
    backward pass rebuilds a block's features from ``x`` instead of storing all of them. Every autodiff
    mode (jvp, hessian) works in both."""
    blocks, rows = row_blocks(x, cfg.chunk)
    block = functools.partial(_block_forward, cfg)
    if blocks.shape[0] == 1:
        return block(grid, weight, blocks[0])[:rows]
    block = jax.checkpoint(block)
    y = jax.lax.map(lambda xb: block(grid, weight, xb), blocks)
    return y.reshape(-1, y.shape[-1])[:rows]


def _native_edge_sum(x: Array, grid: Array, weight: Array, order: int, uniform: bool,
                     activation: Optional[Callable[[Array], Array]]) -> Array:
    """The spline part on the CPU kernel (:mod:`bases.bspline.native`), the residual as one matmul."""
    off = 0 if activation is None else 1
    y = native.native_spline_sum(x, grid, weight[:, :, off:].astype(x.dtype), order=order, uniform=uniform)
    if activation is not None:
        y = y + activation(x) @ weight[:, :, 0].T.astype(x.dtype)
    return y


def row_blocks(x: Float[Array, "rows ..."], chunk: int) -> tuple[Float[Array, "n chunk ..."], int]:
    """``x`` cut into ``n = ceil(rows / chunk)`` blocks of ``chunk`` rows (the last zero-padded) and the
    original row count."""
    rows = x.shape[0]
    n = math.ceil(rows / chunk)
    pad = n * chunk - rows
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)], axis=0)
    return x.reshape((n, chunk) + x.shape[1:]), rows


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
        contraction = choose_contraction(num_functions, order, flat.shape[0], None, d, weight.shape[0],
                                         flat.dtype)
    if contraction == "native":
        return _native_edge_sum(flat, grid, weight, order, uniform, activation).reshape(lead + (weight.shape[0],))
    cfg = _Config(order, bool(uniform), num_functions, activation, contraction,
                  chunk_rows(d, width, flat.shape[0], weight.shape[0]))
    wt = jnp.swapaxes(weight.astype(flat.dtype), 1, 2)  # (out, width, d): d is the fast axis
    y = _edge_sum(cfg, flat, jax.lax.stop_gradient(grid), wt)
    return y.reshape(lead + (weight.shape[0],))
