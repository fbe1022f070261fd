"""The rational backward on the CPU kernel (``csrc/rational_backward.cc``, built by
:mod:`bases.native_build`): ``dx`` and the per-channel coefficient sums in one pass over ``x`` and the
cotangent, the same math as :func:`bases.kernels.rational_xla.backward_xla` (float32).

XLA:CPU runs the backward's per-coefficient column sums as scalar loops (about 24 GFLOP/s on 2 cores,
see ``rational_xla``); the kernel keeps 16 channels in one vector register, their ``m + 1 + n`` sums in
registers over a chunk of rows, and adds the chunks' partial sums in double precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import native_build

#: The degree pairs ``(m + 1, n)`` (numerator coefficients, denominator coefficients) the kernel is
#: compiled for; others run the XLA backward. KAT's 5/4 rational is ``(6, 4)``.
DEGREES = frozenset({(1, 1), (2, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 4), (6, 5), (7, 6)})


def native_backward_usable(x: Array, g: Array, ac: Array, bc: Array) -> bool:
    """Whether :func:`backward_native` serves these arguments: float32 on the CPU, degrees in
    :data:`DEGREES`, and the kernel available."""
    return (x.dtype == jnp.float32 and g.dtype == jnp.float32 and jax.default_backend() == "cpu"
            and x.ndim == 2 and x.shape[0] > 0 and (ac.shape[1], bc.shape[1]) in DEGREES
            and native_build.available("rational"))


def backward_native(
    x: Float[Array, "N D"], g: Float[Array, "N D"], ac: Float[Array, "D m1"], bc: Float[Array, "D n"],
    form: str,
) -> tuple[Float[Array, "N D"], Float[Array, "D m1"], Float[Array, "D n"]]:
    """``dx`` and per-channel coefficient gradients ``(D, m + 1)``, ``(D, n)``, as ``backward_xla``
    (raises ``RuntimeError`` naming the reason when the kernel is unavailable)."""
    if not native_build.available("rational"):
        reason = native_build.unavailable_reason("rational")
        raise RuntimeError(f"the native rational kernel is unavailable: {reason}")
    shapes = (jax.ShapeDtypeStruct(x.shape, jnp.float32), jax.ShapeDtypeStruct(ac.shape, jnp.float32),
              jax.ShapeDtypeStruct(bc.shape, jnp.float32))
    call = jax.ffi.ffi_call(native_build.RATIONAL_BACKWARD_TARGET, shapes, vmap_method="sequential")
    return call(x, g, ac.astype(jnp.float32), bc.astype(jnp.float32), form_a=int(form == "A"))
