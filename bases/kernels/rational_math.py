"""Elementwise math of the safe rational ``F(x) = P(x) / Q(x)``, shared by the XLA and Pallas code.

``P(x) = sum_{i=0}^{m} a_i x^i``. Two safe denominators (both ``Q >= 1``):

* form ``"A"``: ``Q = 1 + sum_{j=1}^{n} |b_j| |x|^j`` (KAT's kernel; rational_activations "A"),
* form ``"B"``: ``Q = 1 + |sum_{j=1}^{n} b_j x^j|`` (the "safe PAU" of Molina et al. 2019).

Gradients (form A as in KAT, Yang & Wang 2024): with ``R = P'``, ``S = dQ/dx`` and ``F = P/Q``,
``dx = g (R - S F) / Q``, ``da_i = g x^i / Q`` and
``db_j = -g F/Q * sign(b_j) |x|^j`` (A) or ``-g F/Q * sign(T) x^j`` with ``T = sum_j b_j x^j`` (B).
``sign`` follows JAX's derivative of ``abs`` (``+1`` at 0), so coefficients that start at exactly 0
(identity init) still receive gradients.

Inputs are clipped to ``[-X_CLIP, X_CLIP]`` before evaluation so every power up to ``x^5`` stays far
below the float32 maximum (``1e5 ** 5 = 1e25``); the gradient w.r.t. ``x`` is 0 beyond the clip.
Every function works on arrays of any shape; coefficient "rows" are arrays broadcastable to ``x``
(per-channel ``(1, C)`` rows in the kernels) or scalars. No ``jnp`` calls beyond elementwise ops,
so the same code runs inside Pallas kernels.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float

X_CLIP = 1.0e5
FORMS = ("A", "B")


def sign_pos(v: Array) -> Array:
    """``+1`` where ``v >= 0`` else ``-1`` (JAX's derivative of ``abs``)."""
    return jnp.where(v >= 0, 1.0, -1.0).astype(v.dtype)


def _horner(coeffs: Sequence[Array], t: Array) -> Array:
    """``sum_i coeffs[i] t^i`` by Horner's rule (``coeffs`` non-empty)."""
    acc = coeffs[-1] + jnp.zeros_like(t)
    for c in reversed(coeffs[:-1]):
        acc = acc * t + c
    return acc


def _clip(x: Array) -> Array:
    return jnp.minimum(jnp.maximum(x, -X_CLIP), X_CLIP)


def _numerator(a: Sequence[Array], xc: Array) -> tuple[Array, Array]:
    """``P(x)`` and ``P'(x)``."""
    p = _horner(a, xc)
    if len(a) == 1:
        return p, jnp.zeros_like(xc)
    r = _horner([i * a[i] for i in range(1, len(a))], xc)
    return p, r


def _denominator(b: Sequence[Array], xc: Array, form: str) -> tuple[Array, Array, Array]:
    """``Q``, ``dQ/dx`` and ``|x|`` (form A) or ``sign(T)`` (form B, ``T = sum_j b_j x^j``)."""
    if form == "A":
        ax = jnp.abs(xc)
        absb = [jnp.abs(bj) for bj in b]
        q = 1.0 + ax * _horner(absb, ax)
        dq = sign_pos(xc) * _horner([(j + 1) * absb[j] for j in range(len(b))], ax)
        return q, dq, ax
    t = xc * _horner(list(b), xc)
    st = sign_pos(t)
    q = 1.0 + jnp.abs(t)
    dq = st * _horner([(j + 1) * b[j] for j in range(len(b))], xc)
    return q, dq, st


def rational_forward(
    x: Float[Array, "..."], a: Sequence[Array], b: Sequence[Array], form: str
) -> Float[Array, "..."]:
    """``F(x) = P(x) / Q(x)``; ``a`` has ``m + 1`` rows, ``b`` has ``n`` rows (``b[0]`` is ``b_1``)."""
    xc = _clip(x)
    p, _ = _numerator(a, xc)
    q, _, _ = _denominator(b, xc, form)
    return p / q


def rational_backward(
    x: Float[Array, "..."],
    g: Float[Array, "..."],
    a: Sequence[Array],
    b: Sequence[Array],
    form: str,
) -> tuple[Array, list[Array], list[Array]]:
    """Per-element ``dx`` and the per-element terms of ``dL/da_i`` and ``dL/db_j`` (sum them over
    the elements that share a coefficient). ``g`` is the output cotangent, same shape as ``x``."""
    xc = _clip(x)
    p, r = _numerator(a, xc)
    q, dq, extra = _denominator(b, xc, form)
    f = p / q
    gq = g / q
    inside = jnp.abs(x) <= X_CLIP
    dx = jnp.where(inside, gq * (r - dq * f), 0.0)
    da = []
    power = jnp.ones_like(xc)
    for i in range(len(a)):
        da.append(gq * power)
        if i + 1 < len(a):
            power = power * xc
    if form == "A":  # dQ/db_j = sign(b_j) |x|^j
        weight, base = -gq * f, extra
    else:  # dQ/db_j = sign(T) x^j
        weight, base = -gq * f * extra, xc
    db = []
    power = base
    for j in range(len(b)):
        term = weight * power
        db.append(sign_pos(b[j]) * term if form == "A" else term)
        if j + 1 < len(b):
            power = power * base
    return dx, da, db


def rational_reference(
    x: Float[Array, "..."], a: Sequence[Array], b: Sequence[Array], form: str
) -> Float[Array, "..."]:
    """The textbook formula with explicit powers, meant for ``jax.grad`` (tests and the "jnp"
    backend): no Horner sharing, no hand-written derivative."""
    xc = jnp.clip(x, -X_CLIP, X_CLIP)
    p = sum(a[i] * xc**i for i in range(len(a)))
    if form == "A":
        q = 1.0 + sum(jnp.abs(b[j]) * jnp.abs(xc) ** (j + 1) for j in range(len(b)))
    else:
        q = 1.0 + jnp.abs(sum(b[j] * xc ** (j + 1) for j in range(len(b))))
    return p / q


def check_form(form: str, who: str) -> None:
    if form not in FORMS:
        raise ValueError(f"{who}: unknown form {form!r}; expected one of {FORMS}")
