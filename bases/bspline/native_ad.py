"""Autodiff of the native local sum (:mod:`bases.bspline.native_ops`) in every mode.

A ``custom_vjp`` cannot be forward-differentiated, and a layer's ``jit`` hides the call from any
``try``/``except`` fallback, so the sum is a ``custom_jvp`` instead, whose tangent is a primitive with
rules of its own:

- ``local_sum(cfg, x, grid, weight, mask)``: the forward kernel; its JVP is ``kan_local_tangent``.
- ``kan_local_tangent(x, grid, weight, mask, dx, dweight)``, linear in ``(dx, dweight)``: evaluated
  (forward mode) and differentiated further (``jax.hessian``) through the dense reference
  :func:`bases.bspline.native_ops.dense`; its transpose, which reverse mode (``jax.grad``) runs, is
  ``kan_local_backward``.
- ``kan_local_backward(x, grid, weight, mask, dy) -> (dx, dweight)``: the fused backward kernel;
  differentiated (second order) through the dense reference.

So reverse mode runs both kernels, forward mode and higher orders run XLA, and ``vmap`` maps the
primitives one member at a time (``lax.map``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from jaxtyping import Array

from . import native_ops
from .native_ops import Config


def _dense_tangent(cfg: Config, x, grid, weight, mask, dx, dweight):
    fn = lambda xv, wv: native_ops.dense(cfg, xv, grid, wv, mask)
    return jax.jvp(fn, (x, weight), (dx, dweight))[1]


def _dense_backward(cfg: Config, x, grid, weight, mask, dy):
    _, pullback = jax.vjp(lambda xv, wv: native_ops.dense(cfg, xv, grid, wv, mask), x, weight)
    return pullback(dy)


def _zeros_for(tangents, primals):
    return [jnp.zeros_like(p) if type(t) is ad.Zero else t for t, p in zip(tangents, primals)]


def _dense_jvp(dense_fn, primals, tangents, *, cfg):
    return jax.jvp(functools.partial(dense_fn, cfg), tuple(primals), tuple(_zeros_for(tangents, primals)))


def _batched(prim):
    """vmap rule: the primitive once per member of the mapped axis (``lax.map``), unmapped operands
    closed over."""

    def rule(args, dims, **params):
        mapped = [i for i, d in enumerate(dims) if d is not None]
        moved = [jnp.moveaxis(args[i], dims[i], 0) for i in mapped]

        def one(members):
            full = list(args)
            for i, m in zip(mapped, members):
                full[i] = m
            return prim.bind(*full, **params)

        out = jax.lax.map(one, moved)
        return out, ([0] * len(out) if prim.multiple_results else 0)

    return rule


tangent_p = Primitive("kan_local_tangent")
backward_p = Primitive("kan_local_backward")
backward_p.multiple_results = True

tangent_p.def_abstract_eval(
    lambda x, grid, weight, mask, dx, dweight, *, cfg: jax.core.ShapedArray((x.shape[0], weight.shape[0]),
                                                                            jnp.float32))
backward_p.def_abstract_eval(
    lambda x, grid, weight, mask, dy, *, cfg: [jax.core.ShapedArray(x.shape, jnp.float32),
                                               jax.core.ShapedArray(weight.shape, jnp.float32)])

_tangent_impl = lambda *args, cfg: _dense_tangent(cfg, *args)
_backward_impl = lambda x, grid, weight, mask, dy, *, cfg: list(native_ops.backward(cfg, x, grid, weight, mask, dy))
tangent_p.def_impl(_tangent_impl)
backward_p.def_impl(_backward_impl)
mlir.register_lowering(tangent_p, mlir.lower_fun(_tangent_impl, multiple_results=False))
mlir.register_lowering(backward_p, mlir.lower_fun(_backward_impl, multiple_results=True))

ad.primitive_jvps[tangent_p] = functools.partial(_dense_jvp, _dense_tangent)


def _backward_jvp(primals, tangents, *, cfg):
    out, dout = _dense_jvp(_dense_backward, primals, tangents, cfg=cfg)
    return list(out), list(dout)


ad.primitive_jvps[backward_p] = _backward_jvp


def _tangent_transpose(ct, x, grid, weight, mask, dx, dweight, *, cfg):
    for name, value in (("x", x), ("grid", grid), ("weight", weight), ("mask", mask)):
        if ad.is_undefined_primal(value):
            raise NotImplementedError(f"kan_local_tangent is linear in dx and dweight only, not in {name}")
    if type(ct) is ad.Zero:
        ct = jnp.zeros((x.shape[0], weight.shape[0]), jnp.float32)
    gx, gw = backward_p.bind(x, grid, weight, mask, ct, cfg=cfg)
    return (None, None, None, None, gx if ad.is_undefined_primal(dx) else None,
            gw if ad.is_undefined_primal(dweight) else None)


ad.primitive_transposes[tangent_p] = _tangent_transpose
batching.primitive_batchers[tangent_p] = _batched(tangent_p)
batching.primitive_batchers[backward_p] = _batched(backward_p)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def local_sum(cfg: Config, x: Array, grid: Array, weight: Array, mask: Array) -> Array:
    """``(rows, out)``: the forward kernel, differentiable in every mode (module docstring)."""
    return native_ops.forward(cfg, x, grid, weight, mask)


@local_sum.defjvp
def _local_sum_jvp(cfg: Config, primals, tangents):
    x, grid, weight, mask = primals
    dx, _, dweight, _ = tangents
    y = local_sum(cfg, x, grid, weight, mask)
    return y, tangent_p.bind(x, grid, weight, mask, dx, dweight, cfg=cfg)
