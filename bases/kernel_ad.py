"""Kernels differentiable in every autodiff mode: :func:`kernel_op`.

A ``custom_vjp`` cannot be forward-differentiated (``jax.jvp``, ``jax.hessian`` refuse it), and a
layer's ``jit`` hides the call from any ``try``/``except`` fallback. :func:`kernel_op` instead builds a
``custom_jvp`` function whose tangent is a primitive with rules of its own:

- ``f(cfg, *diff, *consts)``: ``forward`` (a kernel); its JVP is the tangent primitive.
- tangent ``(*diff, *consts, *d_diff)``, linear in ``d_diff``: evaluated (forward mode) and
  differentiated further (``jax.hessian``) through ``dense``, the pure-JAX reference; its transpose,
  which reverse mode (``jax.grad``) runs, is the backward primitive.
- backward ``(*diff, *consts, ct) -> grads``: ``backward`` (a kernel); differentiated (second order,
  e.g. ``jax.jacrev(jax.grad(f))``) through ``dense`` too.

So reverse mode runs the kernels, forward mode and higher orders run XLA's ``dense``, and ``vmap``
maps the primitives one member at a time (``lax.map``). ``consts`` get no gradient.
"""

from __future__ import annotations

import functools
from typing import Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np

try:  # the primitive API (jax.extend); without it kernel_op falls back to a reverse-mode-only custom_vjp
    from jax.extend.core import Primitive
    from jax.interpreters import ad, batching, mlir

    _ShapedArray = getattr(jax.core, "ShapedArray", None)
    if _ShapedArray is None:
        from jax._src.core import ShapedArray as _ShapedArray
    PRIMITIVES = True
except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
    PRIMITIVES = False


def _zeros_like(value):
    if jnp.issubdtype(value.dtype, jnp.inexact):
        return jnp.zeros(value.shape, value.dtype)
    return np.zeros(value.shape, jax.dtypes.float0)


def _instantiate(tangents, primals):
    return tuple(_zeros_like(p) if type(t) is ad.Zero else t for t, p in zip(tangents, primals))


def _mapped(prim):
    """vmap rule: ``prim`` once per member of the mapped axis (``lax.map``), unmapped operands closed over."""

    def rule(args, dims, **params):
        mapped = [i for i, d in enumerate(dims) if d is not None]

        def one(members):
            full = list(args)
            for i, m in zip(mapped, members):
                full[i] = m
            return prim.bind(*full, **params)

        out = jax.lax.map(one, [jnp.moveaxis(args[i], dims[i], 0) for i in mapped])
        return out, ([0] * len(out) if prim.multiple_results else 0)

    return rule


def _aval(shape_dtype):
    return _ShapedArray(shape_dtype.shape, shape_dtype.dtype)


def _reverse_only(forward: Callable, backward: Callable, num_diff: int) -> Callable:
    """The same op as a ``custom_vjp`` (no forward mode), where the primitive API is missing."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def op(cfg, *arrays):
        return forward(cfg, *arrays)

    def fwd(cfg, *arrays):
        return forward(cfg, *arrays), arrays

    def bwd(cfg, arrays, ct):
        return tuple(backward(cfg, *arrays, ct)) + tuple(_zeros_like(a) for a in arrays[num_diff:])

    op.defvjp(fwd, bwd)
    return op


def kernel_op(name: str, forward: Callable, backward: Callable, dense: Callable, num_diff: int) -> Callable:
    """``f(cfg, *arrays)`` with ``arrays = (*diff, *consts)``, the first ``num_diff`` differentiable.

    ``forward(cfg, *arrays) -> y`` and ``backward(cfg, *arrays, ct) -> tuple(grads of diff)`` are the
    kernels; ``dense(cfg, *arrays) -> y`` is the same function in differentiable JAX. ``cfg`` is
    hashable (static). See the module docstring."""
    if not PRIMITIVES:  # pragma: no cover - other JAX versions
        return _reverse_only(forward, backward, num_diff)

    def dense_tangent(cfg, *args):
        arrays, tangents = args[:-num_diff], args[-num_diff:]
        fn = lambda *d: dense(cfg, *d, *arrays[num_diff:])
        return jax.jvp(fn, tuple(arrays[:num_diff]), tuple(tangents))[1]

    def dense_backward(cfg, *args):
        arrays, ct = args[:-1], args[-1]
        _, pullback = jax.vjp(lambda *d: dense(cfg, *d, *arrays[num_diff:]), *arrays[:num_diff])
        return list(pullback(ct))

    tangent_p, backward_p = Primitive(f"{name}_tangent"), Primitive(f"{name}_backward")
    backward_p.multiple_results = True
    tangent_p.def_abstract_eval(lambda *args, cfg: _aval(jax.eval_shape(
        functools.partial(dense, cfg), *args[:-num_diff])))
    # gradients have their primals' shapes and dtypes: no trace of the backward needed
    backward_p.def_abstract_eval(lambda *args, cfg: [_ShapedArray(a.shape, a.dtype) for a in args[:num_diff]])
    tangent_impl = lambda *args, cfg: dense_tangent(cfg, *args)
    backward_impl = lambda *args, cfg: list(backward(cfg, *args))
    tangent_p.def_impl(tangent_impl)
    backward_p.def_impl(backward_impl)
    mlir.register_lowering(tangent_p, mlir.lower_fun(tangent_impl, multiple_results=False))
    mlir.register_lowering(backward_p, mlir.lower_fun(backward_impl, multiple_results=True))

    def jvp_through(dense_fn, multiple):
        def rule(primals, tangents, *, cfg):
            out, dout = jax.jvp(functools.partial(dense_fn, cfg), tuple(primals),
                                _instantiate(tangents, primals))
            return (list(out), list(dout)) if multiple else (out, dout)

        return rule

    ad.primitive_jvps[tangent_p] = jvp_through(dense_tangent, False)
    ad.primitive_jvps[backward_p] = jvp_through(dense_backward, True)

    def tangent_transpose(ct, *args, cfg):
        arrays, tangents = args[:-num_diff], args[-num_diff:]
        if any(ad.is_undefined_primal(a) for a in arrays):
            raise NotImplementedError(f"{name}: the tangent is linear in the tangents only")
        if type(ct) is ad.Zero:
            ct = jnp.zeros(ct.aval.shape, ct.aval.dtype)
        grads = backward_p.bind(*arrays, ct, cfg=cfg)
        return (None,) * len(arrays) + tuple(g if ad.is_undefined_primal(t) else None
                                             for g, t in zip(grads, tangents))

    ad.primitive_transposes[tangent_p] = tangent_transpose
    batching.primitive_batchers[tangent_p] = _mapped(tangent_p)
    batching.primitive_batchers[backward_p] = _mapped(backward_p)

    @functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
    def op(cfg: Hashable, *arrays):
        return forward(cfg, *arrays)

    @op.defjvp
    def _op_jvp(cfg, primals, tangents):
        return op(cfg, *primals), tangent_p.bind(*primals, *tangents[:num_diff], cfg=cfg)

    return op
