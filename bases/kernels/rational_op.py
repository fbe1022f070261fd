"""``group_rational``: the group rational activation of KAT (Yang & Wang 2024) as one differentiable op.

``y[..., c] = P_{g(c)}(x[..., c]) / Q_{g(c)}(x[..., c])`` where channel ``c`` uses the numerator and
denominator coefficients of its group ``g(c)``. The forward and backward kernels are wrapped by
:func:`bases.kernel_ad.kernel_op` (JAX never differentiates through a kernel: reverse mode runs the
backward kernel, forward mode and Hessians the textbook formula); coefficient gradients are reduced
per channel (per-block partial sums), then into groups with a fixed-order sum over a one-hot map,
so they are deterministic with no atomics or scatter-adds.

Backends: ``"pallas"`` (fused kernels; interpret mode off GPU), ``"xla"`` (the same math as plain
XLA ops; on the CPU in float32 its backward runs on the fused native kernel of
:mod:`bases.kernels.rational_native` when that is available), ``"jnp"`` (the textbook formula differentiated by ``jax.grad``; a reference, unfused),
``"auto"`` (Pallas on GPU, XLA elsewhere).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..kernel_ad import kernel_op
from .groups import resolve_group_index
from .rational_math import check_form, rational_reference
from .rational_pallas import backward_pallas, forward_pallas, on_gpu
from .rational_native import backward_native, native_backward_usable
from .rational_xla import backward_xla, forward_xla

BACKENDS = ("auto", "pallas", "xla", "jnp")


class _Config(NamedTuple):
    form: str
    impl: str  # "pallas" or "xla"
    block_rows: int
    block_cols: int
    sub_rows: int
    interpret: bool
    pallas_backend: str


def _forward(cfg: _Config, x2, ac, bc):
    if cfg.impl == "pallas":
        return forward_pallas(x2, ac, bc, form=cfg.form, block_rows=cfg.block_rows,
                              block_cols=cfg.block_cols, sub_rows=cfg.sub_rows,
                              interpret=cfg.interpret,
                              pallas_backend=cfg.pallas_backend)
    return forward_xla(x2, ac, bc, cfg.form)


def _backward(cfg: _Config, x2, g2, ac, bc):
    if cfg.impl == "pallas":
        return backward_pallas(x2, g2, ac, bc, form=cfg.form, block_rows=cfg.block_rows,
                               block_cols=cfg.block_cols, sub_rows=cfg.sub_rows,
                              interpret=cfg.interpret,
                               pallas_backend=cfg.pallas_backend)
    if native_backward_usable(x2, g2, ac, bc):  # CPU float32: the fused native kernel
        return backward_native(x2, g2, ac, bc, cfg.form)
    return backward_xla(x2, g2, ac, bc, cfg.form)


def _group_sum(per_channel: Array, gidx: Array, num_groups: int) -> Array:
    """``(D, k)`` -> ``(num_groups, k)``: a fixed-order masked sum (deterministic, no scatter)."""
    onehot = (gidx[None, :] == jnp.arange(num_groups)[:, None]).astype(per_channel.dtype)
    return jnp.sum(onehot[:, :, None] * per_channel[None, :, :], axis=1)


def _core_forward(cfg: _Config, x2, a, b, gidx):
    return _forward(cfg, x2, a[gidx], b[gidx])


def _core_backward(cfg: _Config, x2, a, b, gidx, gy):
    dx, da_c, db_c = _backward(cfg, x2, gy, a[gidx], b[gidx])
    da = _group_sum(da_c, gidx, a.shape[0]).astype(a.dtype)
    db = _group_sum(db_c, gidx, b.shape[0]).astype(b.dtype)
    return dx, da, db


def _core_dense(cfg: _Config, x2, a, b, gidx):
    return _reference(x2, a, b, gidx, cfg.form)


#: ``_core(cfg, x2, a, b, gidx)``: the kernels (reverse mode) with the textbook formula behind forward
#: mode and higher orders (:mod:`bases.kernel_ad`).
_core = kernel_op("kan_group_rational", _core_forward, _core_backward, _core_dense, num_diff=3)
_core_jit = jax.jit(_core, static_argnums=(0,))  # one compiled program when called eagerly


def _reference(x2, a, b, gidx, form):
    ct = jnp.promote_types(x2.dtype, jnp.float32)
    ac, bc = a[gidx].astype(ct), b[gidx].astype(ct)
    rows_a = [ac[:, i] for i in range(ac.shape[1])]
    rows_b = [bc[:, j] for j in range(bc.shape[1])]
    return rational_reference(x2.astype(ct), rows_a, rows_b, form).astype(x2.dtype)


_reference_jit = jax.jit(_reference, static_argnums=(4,))


def _validate(x: Any, a: Any, b: Any, form: str, backend: str) -> None:
    who = "group_rational"
    check_form(form, who)
    if backend not in BACKENDS:
        raise ValueError(f"{who}: unknown backend {backend!r}; expected one of {BACKENDS}")
    for name, arr in (("x", x), ("numerator", a), ("denominator", b)):
        if not hasattr(arr, "dtype") or not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"{who}: {name} must be a floating-point array, got "
                            f"{getattr(arr, 'dtype', type(arr).__name__)}")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{who}: x must have shape (..., channels>=1), got {tuple(x.shape)}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0] or a.shape[1] < 1 or b.shape[1] < 1:
        raise ValueError(
            f"{who}: coefficients must be numerator (groups, m+1) and denominator (groups, n>=1) "
            f"with the same number of groups, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def group_rational(
    x: Float[Array, "... d"],
    numerator: Float[Array, "g m1"],
    denominator: Float[Array, "g n"],
    groups: Any = None,
    *,
    form: str = "A",
    backend: str = "auto",
    block_rows: int = 256,
    block_cols: int = 128,
    sub_rows: int = 16,
    pallas_backend: str = "triton",
) -> Float[Array, "... d"]:
    """Apply the group rational to ``x`` ``(..., d)``; returns ``(..., d)`` in the dtype of ``x``.

    ``numerator`` ``(g, m+1)`` holds ``a_0..a_m``, ``denominator`` ``(g, n)`` holds ``b_1..b_n``.
    ``groups``: None (balanced contiguous split into ``g`` groups), ``g`` group sizes, or an int
    vector ``(d,)`` of group ids. ``form``: ``"A"`` or ``"B"`` (see ``rational_math``).
    ``block_rows``/``block_cols`` (powers of two) tile the Pallas grid; each program walks its
    rows ``sub_rows`` at a time (bounding registers) and keeps running coefficient sums; ``pallas_backend``
    ``"triton"`` or ``"mosaic"`` picks their GPU lowering.
    """
    _validate(x, numerator, denominator, form, backend)
    d = x.shape[-1]
    gidx = resolve_group_index(groups, d, numerator.shape[0])
    if pallas_backend not in ("triton", "mosaic"):
        raise ValueError(f"group_rational: pallas_backend must be 'triton' or 'mosaic', got {pallas_backend!r}")
    x2 = x.reshape(-1, d)
    if backend == "jnp" or x2.shape[0] == 0:
        return _reference_jit(x2, numerator, denominator, gidx, form).reshape(x.shape)
    impl = backend if backend != "auto" else ("pallas" if on_gpu() else "xla")
    cfg = _Config(form, impl, int(block_rows), int(block_cols), int(sub_rows), not on_gpu(),
                  pallas_backend)
    return _core_jit(cfg, x2, numerator, denominator, gidx).reshape(x.shape)
