"""XLA implementation of the per-channel rational: the reference for the Pallas kernels and the
fallback where no GPU is present.

Shapes: ``x`` and ``g`` are ``(N, D)``; per-channel coefficients ``ac`` ``(D, m+1)`` and ``bc``
``(D, n)``. Math runs in ``float32`` (``float64`` for float64 inputs); outputs are returned in the
input dtype and coefficient gradients in the compute dtype, reduced over rows per channel.

The backward is written for how XLA runs on CPU: a fused reduction there is a scalar loop per
output, so ten column sums (one per coefficient) cost ten slow passes. Instead every coefficient
gradient ``sum_rows c(x) * base(x)^e`` is first summed elementwise over ``R`` row slices (one
vectorised pass per term, ``(rows / R, D)`` out), then the stacked partial sums go through one
plain reduction. Large inputs are walked in row blocks (``lax.scan``) so each block's passes hit
cache, not memory. ``P``, ``Q`` and their derivatives are formed once per element per pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .rational_math import X_CLIP, _clip, _denominator, _numerator, rational_forward, sign_pos

SLICES = 16  # R: row slices summed elementwise before the one real reduction
BLOCK_ELEMENTS = 1 << 15  # elements per scanned row block (its passes stay in L1/L2)


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


def _dx(x: Array, g: Array, a: list[Array], b: list[Array], form: str) -> Array:
    """``g * dF/dx`` elementwise (0 beyond the clip)."""
    xc = _clip(x)
    p, r = _numerator(a, xc)
    q, dq, _ = _denominator(b, xc, form)
    return jnp.where(jnp.abs(x) <= X_CLIP, g / q * (r - dq * p / q), 0.0)


def _coefficient_sums(x: Array, g: Array, a: list[Array], b: list[Array], form: str,
                      slices: int) -> Array:
    """``(m+1+n, D)`` column sums of the coefficient-gradient terms over the rows of a block
    ``(rows, D)`` (``rows`` a multiple of ``slices``); form A leaves out ``sign(b_j)``."""
    xc = _clip(x)
    p, _ = _numerator(a, xc)
    q, _, extra = _denominator(b, xc, form)
    u = g / q  # dL/da_i = sum u x^i
    w = -u * p / q  # dL/db_j = sum w |x|^j (A, times sign b_j) or sum w sign(T) x^j (B)
    if form == "B":
        w, base_b = w * extra, xc
    else:
        base_b = extra
    m = x.shape[0] // slices
    part = lambda t, s: t[s * m:(s + 1) * m]
    terms = []
    for coef, base, powers in ((u, xc, range(len(a))), (w, base_b, range(1, len(b) + 1))):
        cs = [part(coef, s) for s in range(slices)]
        bs = [part(base, s) for s in range(slices)]
        for e in powers:
            acc = cs[0] * bs[0] ** e
            for s in range(1, slices):
                acc = acc + cs[s] * bs[s] ** e
            terms.append(acc)
    return jnp.stack(terms).sum(axis=1)


def _fused_sums(x: Array, g: Array, a: list[Array], b: list[Array], form: str) -> Array:
    """Column sums over all ``N`` rows: scanned full row blocks, then the padded remainder."""
    n_rows, d = x.shape
    block = max(SLICES, (BLOCK_ELEMENTS // max(d, 1)) // SLICES * SLICES)
    full = n_rows // block if n_rows > block else 0
    total = None
    if full:
        xs = x[: full * block].reshape(full, block, d)
        gs = g[: full * block].reshape(full, block, d)

        def body(acc, xg):
            return acc + _coefficient_sums(xg[0], xg[1], a, b, form, SLICES), None

        zero = jnp.zeros((len(a) + len(b), d), x.dtype)
        total, _ = jax.lax.scan(body, zero, (xs, gs))
    rest = n_rows - full * block
    if rest:
        slices = min(SLICES, rest)
        pad = -rest % slices  # padded rows: g = 0, so they add nothing
        xr = jnp.pad(x[full * block:], ((0, pad), (0, 0)))
        gr = jnp.pad(g[full * block:], ((0, pad), (0, 0)))
        tail = _coefficient_sums(xr, gr, a, b, form, slices)
        total = tail if total is None else total + tail
    return total


def backward_xla(
    x: Float[Array, "N D"],
    g: Float[Array, "N D"],
    ac: Float[Array, "D m1"],
    bc: Float[Array, "D n"],
    form: str,
) -> tuple[Float[Array, "N D"], Float[Array, "D m1"], Float[Array, "D n"]]:
    """``dx`` (dtype of ``x``) and per-channel coefficient gradients ``(D, m+1)``, ``(D, n)``."""
    ct = compute_dtype(x.dtype)
    xt, gt = x.astype(ct), g.astype(ct)
    a, b = _rows(ac, ct), _rows(bc, ct)
    dx = _dx(xt, gt, a, b, form)
    m1 = ac.shape[1]
    if x.shape[0] == 0:
        sums = jnp.zeros((m1 + bc.shape[1], x.shape[1]), ct)
    else:
        sums = _fused_sums(xt, gt, a, b, form)
    da_c = sums[:m1].T
    db_c = sums[m1:].T
    if form == "A":  # dQ/db_j = sign(b_j) |x|^j: the sign is constant per channel
        db_c = db_c * sign_pos(bc.astype(ct))
    return dx.astype(x.dtype), da_c, db_c
