"""XLA implementation of the per-channel rational: the reference for the Pallas kernels and the
fallback where no GPU is present.

Shapes: ``x`` and ``g`` are ``(N, D)``; per-channel coefficients ``ac`` ``(D, m+1)`` and ``bc``
``(D, n)``. Math runs in ``float32`` (``float64`` for float64 inputs); outputs are returned in the
input dtype and coefficient gradients in the compute dtype, reduced over rows per channel.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from .rational_math import rational_backward, rational_forward


def compute_dtype(dtype) -> jnp.dtype:
    """float32 for bf16/fp16/fp32 inputs, float64 for float64 inputs."""
    return jnp.promote_types(dtype, jnp.float32)


def _rows(coeffs: Array, dtype) -> list[Array]:
    """``(D, k)`` coefficients -> ``k`` rows of shape ``(1, D)``."""
    c = coeffs.astype(dtype)
    return [c[:, i][None, :] for i in range(c.shape[1])]


def forward_xla(
    x: Float[Array, "N D"], ac: Float[Array, "D m1"], bc: Float[Array, "D n"], form: str
) -> Float[Array, "N D"]:
    """``F(x)`` per channel, in the dtype of ``x``."""
    ct = compute_dtype(x.dtype)
    y = rational_forward(x.astype(ct), _rows(ac, ct), _rows(bc, ct), form)
    return y.astype(x.dtype)


def backward_xla(
    x: Float[Array, "N D"],
    g: Float[Array, "N D"],
    ac: Float[Array, "D m1"],
    bc: Float[Array, "D n"],
    form: str,
) -> tuple[Float[Array, "N D"], Float[Array, "D m1"], Float[Array, "D n"]]:
    """``dx`` (dtype of ``x``) and per-channel coefficient gradients ``(D, m+1)``, ``(D, n)``."""
    ct = compute_dtype(x.dtype)
    dx, da, db = rational_backward(x.astype(ct), g.astype(ct), _rows(ac, ct), _rows(bc, ct), form)
    da_c = jnp.stack([jnp.sum(t, axis=0) for t in da], axis=1)
    db_c = jnp.stack([jnp.sum(t, axis=0) for t in db], axis=1)
    return dx.astype(x.dtype), da_c, db_c
