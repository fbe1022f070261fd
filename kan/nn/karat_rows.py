"""Row normalisations for Kolmogorov-Arnold attention: what turns the learnable operator's output
``z = Phi(scores row)`` into attention weights. Every kind gives masked keys a weight of exactly 0.

- ``"none"``: ``z`` as it is (signed, unbounded; Fourier-KArAt's weights are "not restricted to
  [0, 1]", Maity et al. 2025).
- ``"l1"``: ``|z| / sum |z|``: non-negative rows that sum to 1 (the probability simplex, as softmax).
- ``"signed_l1"``: ``z / sum |z|``: signs kept, absolute row sum 1.
- ``"softmax"``: ``softmax(z)`` over the allowed keys (a learned transform of the scores, then softmax).
- ``"sparsemax"``: the Euclidean projection of ``z`` onto the simplex (Martins & Astudillo 2016,
  arXiv 1602.02068): rows sum to 1, small entries are exactly 0.

A row with no allowed key (or, for the L1 kinds, an all-zero ``z``) comes back all zeros, never NaN.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

ROW_NORMALISATIONS = ("none", "l1", "signed_l1", "softmax", "sparsemax")

# Forward FLOPs per row element (for ``flops()``): abs, sum, divide; max, subtract, exp (4), sum,
# divide; sparsemax: sort (~log2 n compares, counted as 4), cumsum, the support test (3), the
# threshold sum and the clipped difference (3).
NORM_FLOPS = {"none": 0, "l1": 3, "signed_l1": 3, "softmax": 8, "sparsemax": 12}


def check_normalisation(name: str, who: str) -> str:
    """``name`` if it is one of :data:`ROW_NORMALISATIONS`, else a ValueError naming ``who``."""
    if name not in ROW_NORMALISATIONS:
        raise ValueError(f"{who}: unknown normalisation {name!r}; valid: {', '.join(ROW_NORMALISATIONS)}")
    return name


def _safe_divide(num: Array, den: Array) -> Array:
    return num / jnp.where(den > 0, den, 1.0)


def sparsemax(z: Float[Array, "... n"], allowed: Optional[Bool[Array, "... n"]] = None) -> Float[Array, "... n"]:
    """Sparsemax over the last axis, restricted to ``allowed`` entries (the others get 0).

    ``p = max(z - tau, 0)`` with ``tau = (sum_{i in S} z_i - 1) / |S|`` and ``S`` the support
    ``{i : 1 + k z_(k) > sum_{j <= k} z_(j)}`` of the sorted row. The support is found without
    gradients; ``tau`` is then a differentiable function of ``z`` (so the gradient is sparsemax's
    Jacobian ``diag(s) - s s^T / |S|``).
    """
    if allowed is None:
        allowed = jnp.ones(z.shape, bool)
    allowed = jnp.broadcast_to(allowed, z.shape)
    zd = jax.lax.stop_gradient(jnp.where(allowed, z, -jnp.inf))
    zs = -jnp.sort(-zd, axis=-1)  # descending, disallowed (-inf) last
    finite = jnp.isfinite(zs)
    cums = jnp.cumsum(jnp.where(finite, zs, 0.0), axis=-1)
    ks = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    in_support = finite & (1.0 + ks * jnp.where(finite, zs, 0.0) > cums)
    k = jnp.sum(in_support, axis=-1, keepdims=True)  # >= 1 when any entry is allowed
    z_k = jnp.take_along_axis(zs, jnp.maximum(k - 1, 0), axis=-1)
    support = allowed & (zd >= z_k)
    size = jnp.sum(support, axis=-1, keepdims=True).astype(z.dtype)
    tau = _safe_divide(jnp.sum(jnp.where(support, z, 0.0), axis=-1, keepdims=True) - 1.0, size)
    return jnp.where(allowed, jnp.maximum(z - tau, 0.0), 0.0)


def normalise_rows(z: Float[Array, "... n"], allowed: Optional[Bool[Array, "..."]], kind: str
                   ) -> Float[Array, "... n"]:
    """Attention weights from the operator output ``z`` (see the module docstring); ``allowed``
    (broadcastable to ``z``, True = attend) or None for all keys."""
    check_normalisation(kind, "normalise_rows")
    if allowed is not None:
        allowed = jnp.broadcast_to(allowed, z.shape)
    keep = (lambda a: a) if allowed is None else (lambda a: jnp.where(allowed, a, 0.0))
    if kind == "none":
        return keep(z)
    if kind in ("l1", "signed_l1"):
        mag = keep(jnp.abs(z))
        num = mag if kind == "l1" else keep(z)
        return _safe_divide(num, jnp.sum(mag, axis=-1, keepdims=True))
    if kind == "softmax":
        logits = z if allowed is None else jnp.where(allowed, z, jnp.finfo(z.dtype).min)
        return keep(jax.nn.softmax(logits, axis=-1))
    return sparsemax(z, allowed)
