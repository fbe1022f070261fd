"""The native kernels' calls (:mod:`bases.native_build`) and the dense reference they must equal, for
:mod:`bases.bspline.native`: local pieces by XLA (:func:`terms`), the forward and the fused backward
kernel (:func:`forward`, :func:`backward`), and :func:`dense` (features scattered from the same pieces,
one einsum: what forward-mode and higher-order autodiff differentiate, :mod:`bases.kernel_ad`), all
as ``(cfg, x, weight, grid, mask)``. ``local_sum`` puts them together.

Measured slower and left out (128 -> 128, G = 5, batch 1024, fwd+bwd on 2 cores, A/B in one process
or alternating processes): the pieces computed by a native pass (``uniform_terms``: 0.4 ms alone
against XLA's 1-2 ms, yet the step 10-20% slower: XLA then ran the step on one thread), or in the
kernels themselves (no gain); the pieces in ``(d, k + 1, rows)`` planes (rows 4 KiB apart alias in the
cache); the pieces as XLA makes them, ``(k + 1, rows, d)`` planes with no transpose (XLA's part 1.0
against 2.0 ms), regathered per input by the kernel (its grouping 0.56 -> 1.5-2 ms on one thread, the
step 30% slower); ``dx`` written by the kernel as ``(rows, d)`` instead of transposed by XLA (2-7%
slower); a backward that dots each weight row with ``dy`` before weighting by the slopes (one
multiply-add per output fewer, 13-19% slower for its larger per-row buffer)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .. import native_build
from ..kernel_ad import kernel_op
from ..rbf import rbf_local_pieces
from ..relu_kan import relukan_local_pieces
from .local import dense_from_local, local_pieces


class Config(NamedTuple):
    order: int
    uniform: bool
    num_functions: int
    kind: str = "bspline"  # or "relukan": the pieces of bases.ReLUKAN, "grid" its stacked (start, end);
    # or "rbf": a cut-off bases.GaussianRBF, "grid" its stacked (first centre, spacing, 1 / width)
    cutoff: float = 0.0  # "rbf": the cut-off radius in widths


def pieces(cfg: Config, x: Array, grid: Array):
    """``(pieces, first)`` of :func:`bases.bspline.local.local_pieces` (or the ReLU-KAN or cut-off RBF
    ones)."""
    if cfg.kind == "relukan":
        return relukan_local_pieces(x, grid[0], grid[1], cfg.order)
    if cfg.kind == "rbf":
        return rbf_local_pieces(x, grid[0], grid[1], grid[2], cfg.cutoff, cfg.order + 1)
    return local_pieces(x, grid, cfg.order, cfg.uniform)


def terms(cfg: Config, x: Array, grid: Array, derivatives: bool):
    """``V`` (and ``D``) ``(d, rows, k + 1)``: the local pieces (derivatives), zero where a piece is not a
    basis function; ``S`` ``(d, rows)``: the first piece's column in the padded weights."""
    k, n = cfg.order, cfg.num_functions
    fn = lambda v: pieces(cfg, v, grid)
    if derivatives:
        (values, start), (slopes, _) = jax.jvp(fn, (x,), (jnp.ones_like(x),))
    else:
        (values, start), slopes = fn(x), None

    def stack(vals):
        cols = [jnp.where((start + q >= 0) & (start + q < n), v, 0.0) for q, v in enumerate(vals)]
        return jnp.transpose(jnp.stack(cols, axis=-1), (1, 0, 2))

    first = (jnp.clip(start, -k, n - 1) + k).astype(jnp.int32).T
    return stack(values), (None if slopes is None else stack(slopes)), first


def forward(cfg: Config, x: Array, weight: Array, grid: Array, mask: Array) -> Array:
    """``(rows, out)`` by the forward kernel."""
    values, _, first = terms(cfg, x, grid, derivatives=False)
    shape = jax.ShapeDtypeStruct((x.shape[0], weight.shape[0]), jnp.float32)
    return jax.ffi.ffi_call(native_build.FORWARD_TARGET, shape, vmap_method="sequential")(
        values, first, weight, mask, pad=cfg.order)


def backward(cfg: Config, x: Array, weight: Array, grid: Array, mask: Array,
             dy: Array) -> tuple[Array, Array]:
    """``(dx, dweight)`` of ``<dy, forward(...)>`` by the fused backward kernel."""
    values, slopes, first = terms(cfg, x, grid, derivatives=True)
    shapes = (jax.ShapeDtypeStruct((x.shape[1], x.shape[0]), jnp.float32),
              jax.ShapeDtypeStruct(weight.shape, jnp.float32))
    dx, dweight = jax.ffi.ffi_call(native_build.BACKWARD_TARGET, shapes, vmap_method="sequential")(
        values, slopes, first, weight, mask, dy.astype(jnp.float32), pad=cfg.order)
    return dx.T.astype(x.dtype), dweight


def dense(cfg: Config, x: Array, weight: Array, grid: Array, mask: Array) -> Array:
    """The same sum in XLA: dense features from the same pieces, one einsum (any order of autodiff)."""
    values, start = pieces(cfg, x, grid)
    feats = dense_from_local(jnp.stack(values, axis=-1), start, cfg.num_functions)
    return jnp.einsum("bdk,odk->bo", feats, weight * mask[..., None])


#: ``local_sum(cfg, x, weight, grid, mask) -> (rows, out)``: the kernels, differentiable in every mode.
local_sum = kernel_op("kan_local", forward, backward, dense, num_diff=2)
