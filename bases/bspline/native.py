"""The B-spline edge sum on the CPU kernel: work that follows the ``k + 1`` non-zero functions per input.

    y[b, o] = sum_d sum_q F_{s(b, d) + q}(x_bd) W[o, d, s(b, d) + q],   q = 0..k

where ``s(b, d)`` is the first non-zero function at ``x_bd`` (``bases.bspline.local``). The dense form
multiplies all ``G + k`` features per input, most of them zero; this one does ``k + 1`` multiply-adds
per input and output, in ``csrc/local_contract.cc`` (built by :mod:`bases.native_build`):

- forward: the rows of each input are grouped by ``s`` (a counting sort), so a group's ``k + 1``
  weight rows stay in registers while its rows are accumulated;
- backward (custom VJP, one kernel call): the weight gradient the same way, and
  ``dx = sum_q F'_q(x) <W[:, d, s + q], dy>``, with the pieces and their derivatives recomputed from
  ``x`` (only ``x``, the grid and the weights are kept for the backward).

The kernel takes the weights as they are, ``(out, d, G + k)``, and copies them into its own layout
``(d, G + 3k, out padded to 64)``: ``k`` zero columns on each side of the functions (a point whose
first function lies off the grid reads zeros there, with its values zeroed too). Only float32, only the
CPU. Forward-mode autodiff
(``jax.jvp``, ``jax.hessian``) cannot run a custom VJP: :func:`bases.bspline_edge_sum` then falls back
to its XLA path (see :func:`forward_mode_error`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .. import native_build
from .local import local_pieces, local_pieces_and_derivatives

class _Config(NamedTuple):
    order: int
    uniform: bool
    num_functions: int


def forward_mode_error(err: BaseException) -> bool:
    """Whether ``err`` is JAX refusing forward-mode autodiff of a custom VJP (the caller falls back)."""
    return isinstance(err, TypeError) and "forward-mode" in str(err)


def _terms(cfg: _Config, x: Array, grid: Array, derivatives: bool):
    """``V`` (and ``D``) ``(d, rows, k + 1)``: the local pieces (derivatives), zero where a piece is not a
    basis function; ``S`` ``(d, rows)``: the first piece's column in the padded weights."""
    k, n = cfg.order, cfg.num_functions
    if derivatives:
        pieces, dpieces, start = local_pieces_and_derivatives(x, grid, k, cfg.uniform)
    else:
        (pieces, start), dpieces = local_pieces(x, grid, k, cfg.uniform), None

    def stack(values):
        cols = [jnp.where((start + q >= 0) & (start + q < n), v, 0.0) for q, v in enumerate(values)]
        return jnp.transpose(jnp.stack(cols, axis=-1), (1, 0, 2))

    first = (jnp.clip(start, -k, n - 1) + k).astype(jnp.int32).T
    return stack(pieces), (None if dpieces is None else stack(dpieces)), first


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _spline_sum(cfg: _Config, x: Array, grid: Array, weight: Array, mask: Array) -> Array:
    values, _, first = _terms(cfg, x, grid, derivatives=False)
    shape = jax.ShapeDtypeStruct((x.shape[0], weight.shape[0]), jnp.float32)
    return jax.ffi.ffi_call(native_build.FORWARD_TARGET, shape, vmap_method="sequential")(
        values, first, weight, mask, pad=cfg.order)


def _spline_sum_fwd(cfg: _Config, x: Array, grid: Array, weight: Array, mask: Array):
    return _spline_sum(cfg, x, grid, weight, mask), (x, grid, weight, mask)


def _spline_sum_bwd(cfg: _Config, residuals, dy: Array):
    x, grid, weight, mask = residuals
    values, slopes, first = _terms(cfg, x, grid, derivatives=True)
    shapes = (jax.ShapeDtypeStruct((x.shape[1], x.shape[0]), jnp.float32),
              jax.ShapeDtypeStruct(weight.shape, jnp.float32))
    dx, dweight = jax.ffi.ffi_call(native_build.BACKWARD_TARGET, shapes, vmap_method="sequential")(
        values, slopes, first, weight, mask, dy.astype(jnp.float32), pad=cfg.order)
    return dx.T.astype(x.dtype), jnp.zeros_like(grid), dweight, jnp.zeros_like(mask)


_spline_sum.defvjp(_spline_sum_fwd, _spline_sum_bwd)


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
    if not native_build.available():
        raise RuntimeError(f"the native B-spline kernel is unavailable: {native_build.unavailable_reason()}")
    if x.dtype != jnp.float32 or weight.dtype != jnp.float32:
        raise ValueError(f"native_spline_sum: float32 only, got x {x.dtype} and weight {weight.dtype}")
    num_functions = grid.shape[1] - order - 1
    if x.ndim != 2 or weight.shape[1:] != (x.shape[1], num_functions) or not 1 <= order <= 6:
        raise ValueError(f"native_spline_sum: expected x (rows, d), weight (out, d, {num_functions}) and "
                         f"1 <= order <= 6, got x {tuple(x.shape)}, weight {tuple(weight.shape)}, order {order}")
    out, d = weight.shape[:2]
    mask = jnp.ones((out, d), jnp.float32) if mask is None else mask
    if mask.shape != (out, d):
        raise ValueError(f"native_spline_sum: mask must be (out, d) = {(out, d)}, got {tuple(mask.shape)}")
    cfg = _Config(int(order), bool(uniform), int(num_functions))
    return _spline_sum(cfg, x, jax.lax.stop_gradient(grid), weight,
                       jax.lax.stop_gradient(mask.astype(jnp.float32)))
