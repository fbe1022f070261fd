"""The B-spline edge sum on the CPU kernel: work that follows the ``k + 1`` non-zero functions per input.

    y[b, o] = sum_d sum_q F_{s(b, d) + q}(x_bd) W[o, d, s(b, d) + q],   q = 0..k

where ``s(b, d)`` is the first non-zero function at ``x_bd`` (``bases.bspline.local``). The dense form
multiplies all ``G + k`` features per input, most of them zero; this one does ``k + 1`` multiply-adds
per input and output, in ``csrc/local_contract.cc`` (built by :mod:`bases.native_build`):

- forward: the rows of each input are grouped by ``s`` (a counting sort), so a group's ``k + 1``
  weight rows stay in registers while its rows are accumulated;
- backward (reverse mode, one kernel call): the weight gradient the same way, and
  ``dx = sum_q F'_q(x) <W[:, d, s + q], dy>``, with the pieces and their derivatives recomputed from
  ``x`` (only ``x``, the grid and the weights are kept for the backward).

The kernel takes the weights as they are, ``(out, d, G + k)``, and reads them through small per-input
blocks of ``G + 3k`` rows: ``k`` zero rows on each side of the functions (a point whose first function
lies off the grid reads zeros there, with its values zeroed too). Only float32, only the
CPU. Forward-mode and higher-order autodiff (``jax.jvp``, ``jax.hessian``) work too, through the dense
reference (:mod:`bases.kernel_ad`). ReLU-KAN bases with fixed windows (:func:`native_relukan_sum`)
and Gaussian RBFs with a cut-off (:func:`native_rbf_sum`) use the same kernels.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import native_build
from .native_ops import Config, local_sum

#: A batch whose kernel arrays (``rows * d * (k + 1)`` float32 values, their slopes and sorted copies)
#: would exceed this many bytes each runs in row blocks of :func:`block_rows` rows, one kernel call per
#: block (``lax.map``): memory stays bounded, and each block's output tiles stay in L2. One call over
#: all rows ran at 11-13x the MLP step at 256 -> 256, G = 10, batch 8192-32768, blocks of 1024 or 2048
#: rows at 6.2-7.3x (the dense path, which "auto" took there before: 12.5-13.8x); 512 -> 512, G = 20,
#: batch 8192: blocks 8.3-8.4x against dense 21.7x (2 cores, fwd+bwd, interleaved).
NATIVE_MAX_BYTES = 16 * 2**20
#: Rows per block (fewer where a block's arrays would exceed :data:`NATIVE_MAX_BYTES`).
NATIVE_BLOCK_ROWS = 1024


def block_rows(rows: int, d: int, terms: int) -> int:
    """Rows per kernel call for ``rows`` points of ``d`` inputs with ``terms`` local terms each: all of
    them up to :data:`NATIVE_MAX_BYTES` per array, else :data:`NATIVE_BLOCK_ROWS` (or fewer)."""
    per_row = 4 * d * terms
    if rows * per_row <= NATIVE_MAX_BYTES:
        return max(rows, 1)
    return max(1, min(NATIVE_BLOCK_ROWS, NATIVE_MAX_BYTES // per_row))


def map_row_blocks(fn: Callable[[Array], Array], x: Float[Array, "rows d"], block: int) -> Array:
    """``fn(x)`` ``(rows, out)`` computed as ``fn`` of row blocks of ``block`` rows (``lax.map``; the last
    block zero-padded, its padded rows get no cotangent) when ``block < rows``. Each block is under
    ``jax.checkpoint``, so reverse mode keeps only ``x`` (not, say, a residual activation of every row)."""
    rows, d = x.shape
    if block >= rows:
        return fn(x)
    blocks = -(-rows // block)
    padded = jnp.concatenate([x, jnp.zeros((blocks * block - rows, d), x.dtype)]) if blocks * block > rows else x
    y = jax.lax.map(jax.checkpoint(fn), padded.reshape(blocks, block, d))
    return y.reshape(blocks * block, -1)[:rows]


def _blocked_sum(cfg: Config, x: Array, weight: Array, grid: Array, mask: Array) -> Array:
    """:func:`local_sum` over row blocks of :func:`block_rows`."""
    return map_row_blocks(lambda xb: local_sum(cfg, xb, weight, grid, mask), x,
                          block_rows(x.shape[0], x.shape[1], cfg.order + 1))


def _check(who: str, x: Array, weight: Array, num_functions: int, order: int,
           mask: Optional[Array]) -> Array:
    """Shared argument checks; returns the mask (default all ones) as float32 without gradient."""
    if not native_build.available("bspline"):
        reason = native_build.unavailable_reason("bspline")
        raise RuntimeError(f"the native local kernel is unavailable: {reason}")
    if x.dtype != jnp.float32 or weight.dtype != jnp.float32:
        raise ValueError(f"{who}: float32 only, got x {x.dtype} and weight {weight.dtype}")
    if x.ndim != 2 or weight.shape[1:] != (x.shape[1], num_functions) or not 1 <= order <= 6:
        raise ValueError(f"{who}: expected x (rows, d), weight (out, d, {num_functions}) and "
                         f"1 <= order <= 6, got x {tuple(x.shape)}, weight {tuple(weight.shape)}, order {order}")
    out, d = weight.shape[:2]
    mask = jnp.ones((out, d), jnp.float32) if mask is None else mask
    if mask.shape != (out, d):
        raise ValueError(f"{who}: mask must be (out, d) = {(out, d)}, got {tuple(mask.shape)}")
    return jax.lax.stop_gradient(mask.astype(jnp.float32))


def native_spline_sum(
    x: Float[Array, "rows d"],
    grid: Float[Array, "d n_knots"],
    weight: Float[Array, "out d n"],
    *,
    order: int,
    uniform: bool,
    mask: Optional[Float[Array, "out d"]] = None,
) -> Float[Array, "rows out"]:
    """``y[b, o] = sum_d mask[o, d] sum_i weight[o, d, i] F_i(x_bd)`` for the ``n = n_knots - order - 1``
    B-splines, on the CPU kernel (raises ``RuntimeError`` naming the reason when it is unavailable); the
    mask (default all ones) is applied inside the kernel, so the masked weights are never materialised.
    Gradients flow to ``x`` and ``weight``, not to ``grid`` or ``mask``; float32 only."""
    num_functions = grid.shape[1] - order - 1
    mask = _check("native_spline_sum", x, weight, num_functions, order, mask)
    cfg = Config(int(order), bool(uniform), int(num_functions))
    return _blocked_sum(cfg, x, weight, jax.lax.stop_gradient(grid), mask)


def native_relukan_sum(
    x: Float[Array, "rows d"],
    start: Float[Array, "p n"],
    end: Float[Array, "p n"],
    weight: Float[Array, "out d n"],
    *,
    order: int,
    mask: Optional[Float[Array, "out d"]] = None,
) -> Float[Array, "rows out"]:
    """:func:`native_spline_sum` for the ``n`` :class:`bases.ReLUKAN` windows ``start``/``end`` (a fixed
    phase grid, ``p`` = 1 or d; see :func:`bases.relu_kan.relukan_local_pieces`). No gradient to the
    windows: trainable windows need the dense path."""
    num_functions = start.shape[-1]
    if start.shape != end.shape or start.ndim != 2 or start.shape[0] not in (1, x.shape[-1]):
        raise ValueError(f"native_relukan_sum: start and end must both be (1, n) or (d, n), got "
                         f"{tuple(start.shape)} and {tuple(end.shape)}")
    mask = _check("native_relukan_sum", x, weight, num_functions, order, mask)
    cfg, windows = relukan_kernel_args(start, end, x.shape[-1], order)
    return _blocked_sum(cfg, x, weight, windows, mask)


def relukan_kernel_args(start: Array, end: Array, d: int, order: int) -> tuple[Config, Array]:
    """The kernels' ``(cfg, grid)`` for ReLU-KAN windows (``grid``: the stacked ``(2, d, n)`` windows)."""
    n = start.shape[-1]
    windows = jnp.stack([jnp.broadcast_to(a, (d, n)) for a in (start, end)]).astype(jnp.float32)
    return Config(int(order), True, int(n), "relukan"), jax.lax.stop_gradient(windows)


def rbf_kernel_args(centers: Array, inv_width: Array, cutoff: float, terms: int) -> tuple[Config, Array]:
    """The kernels' ``(cfg, grid)`` for evenly spaced cut-off bumps (``grid``: first centre, spacing and
    inverse width, ``(3, d)``)."""
    n = centers.shape[-1]
    spacing = (centers[:, -1] - centers[:, 0]) / (n - 1)
    grid = jnp.stack([centers[:, 0], spacing, inv_width]).astype(jnp.float32)
    return Config(int(terms) - 1, True, int(n), "rbf", float(cutoff)), jax.lax.stop_gradient(grid)


def native_rbf_sum(
    x: Float[Array, "rows d"],
    centers: Float[Array, "d n"],
    inv_width: Float[Array, " d"],
    weight: Float[Array, "out d n"],
    *,
    cutoff: float,
    terms: int,
    mask: Optional[Float[Array, "out d"]] = None,
) -> Float[Array, "rows out"]:
    """:func:`native_spline_sum` for the ``n >= 2`` evenly spaced bumps of a :class:`bases.GaussianRBF`
    with a cut-off (``cutoff`` in widths, at most ``terms`` consecutive bumps non-zero: its
    ``local_terms``; see :func:`bases.rbf.rbf_local_pieces`). No gradient to the centres or widths."""
    num_functions = centers.shape[-1]
    if centers.ndim != 2 or centers.shape[0] != x.shape[-1] or num_functions < 2 or inv_width.shape != (x.shape[-1],):
        raise ValueError(f"native_rbf_sum: expected centers (d, n >= 2) and inv_width (d,) for d = {x.shape[-1]}, "
                         f"got {tuple(centers.shape)} and {tuple(inv_width.shape)}")
    mask = _check("native_rbf_sum", x, weight, num_functions, int(terms) - 1, mask)
    cfg, grid = rbf_kernel_args(centers, inv_width, cutoff, terms)
    return _blocked_sum(cfg, x, weight, grid, mask)
