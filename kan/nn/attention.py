"""Multi-head scaled dot-product self-attention (Vaswani et al. 2017, arXiv 1706.03762).

    q, k, v = split(x W_qkv^T + b_qkv)            (..., s, h, d/h) each
    A = softmax(q k^T / sqrt(d/h) + mask)           (..., h, s, s), computed in float32
    y = concat_h(A v) W_o^T + b_o                  (..., s, d)

There is no key bias: it would add ``q . b_k``, the same for every key, which the softmax removes, so
its gradient is exactly zero (and Adam would amplify the rounding noise of that zero into steps of
size ``lr``). Query and value biases are kept.

``causal=True`` masks every key after its query (decoder-only language models), so position ``t``'s
output depends on positions ``<= t`` only.

Init (variance preserving for a unit-variance, LayerNorm-ed input): ``W_qkv`` and ``W_o`` are
``N(0, 1/d)``, so ``q . k / sqrt(d/h)`` has unit variance (the softmax starts neither flat nor
one-hot) and ``y`` has at most the variance of ``v`` (an average of values).
"""

from __future__ import annotations

from typing import Any, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from bases import check_last_dim

from .layers import Linear


def causal_mask(length: int) -> Bool[Array, "s s"]:
    """``(s, s)`` boolean mask, True where key ``j <=`` query ``i``."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))


class MultiHeadAttention(eqx.Module):
    """Self-attention ``(..., seq, width) -> (..., seq, width)`` with ``num_heads`` heads.

    Raises ValueError unless ``num_heads`` divides ``width``. ``mask`` (optional, broadcastable to
    ``(..., heads, seq, seq)``, True = attend) is combined with the causal mask when ``causal``.
    """

    qkv: Linear
    q_bias: Optional[Float[Array, " d"]]
    v_bias: Optional[Float[Array, " d"]]
    out: Linear
    width: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True)

    def __init__(self, width: int, num_heads: int, *, key: PRNGKeyArray, causal: bool = False,
                 use_bias: bool = True):
        width, num_heads = int(width), int(num_heads)
        if width < 1 or num_heads < 1:
            raise ValueError(f"MultiHeadAttention: width and num_heads must be >= 1, got {width}, {num_heads}")
        if width % num_heads:
            raise ValueError(f"MultiHeadAttention: num_heads={num_heads} must divide width={width}")
        self.width, self.num_heads, self.causal = width, num_heads, bool(causal)
        k_qkv, k_out = jax.random.split(key)
        self.qkv = Linear(width, 3 * width, key=k_qkv, use_bias=False)
        self.q_bias = jnp.zeros((width,), jnp.float32) if use_bias else None
        self.v_bias = jnp.zeros((width,), jnp.float32) if use_bias else None
        self.out = Linear(width, width, key=k_out, use_bias=use_bias)

    @property
    def head_dim(self) -> int:
        """Width of one head, ``width // num_heads``."""
        return self.width // self.num_heads

    def attention_weights(self, x: Float[Array, "... s d"],
                          mask: Optional[Bool[Array, "..."]] = None) -> Float[Array, "... h s s"]:
        """The softmax attention matrix per head (float32), for inspection and tests."""
        q, k, _ = self._qkv(x)
        return self._softmax(q, k, mask)

    def _qkv(self, x: Array) -> tuple[Array, Array, Array]:
        if x.ndim < 2:
            raise ValueError(f"MultiHeadAttention: expected input (..., seq, {self.width}), got {tuple(x.shape)}")
        check_last_dim(x, self.width, "MultiHeadAttention")
        return project_heads(self, x)

    def _softmax(self, q: Array, k: Array, mask: Optional[Array]) -> Array:
        scores = jnp.einsum("...qhd,...khd->...hqk", q, k, preferred_element_type=jnp.float32)
        scores = scores * (1.0 / jnp.sqrt(jnp.float32(self.head_dim)))
        seq = q.shape[-3]
        if self.causal:
            cm = causal_mask(seq)
            mask = cm if mask is None else jnp.logical_and(mask, cm)
        if mask is not None:
            scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        return jax.nn.softmax(scores, axis=-1)

    def __call__(self, x: Float[Array, "... s d"], *, mask: Optional[Bool[Array, "..."]] = None,
                 key: Optional[PRNGKeyArray] = None) -> Float[Array, "... s d"]:
        """``key`` is unused (no dropout); accepted for a uniform calling convention."""
        del key
        q, k, v = self._qkv(x)
        return mix_values(self._softmax(q, k, mask), v, self.out, x.shape)


def project_heads(attn: "eqx.Module", x: Float[Array, "... s d"]) -> tuple[Array, Array, Array]:
    """``q, k, v`` of shape ``(..., s, h, d/h)`` from ``attn``'s fused projection ``qkv`` and its query / value
    biases (``q_bias``, ``v_bias``, or None), for any attention module with those fields."""
    width = attn.width
    qkv = attn.qkv(x)
    q, k, v = qkv[..., :width], qkv[..., width : 2 * width], qkv[..., 2 * width :]
    if attn.q_bias is not None:
        q, v = q + attn.q_bias.astype(q.dtype), v + attn.v_bias.astype(v.dtype)
    heads = x.shape[:-1] + (attn.num_heads, width // attn.num_heads)
    return q.reshape(heads), k.reshape(heads), v.reshape(heads)


def mix_values(weights: Float[Array, "... h s s"], v: Float[Array, "... s h hd"], out: Linear,
               shape: tuple[int, ...]) -> Float[Array, "... s d"]:
    """``out(concat_h(A v))``: the attention matrix per head applied to the values ``(..., s, h, d/h)``,
    heads concatenated to ``shape = (..., s, d)``, then the output projection."""
    y = jnp.einsum("...hqk,...khd->...qhd", weights.astype(v.dtype), v)
    return out(y.reshape(shape))


ATTENTION_KINDS = ("softmax", "karat")


def make_attention(kind: "str | eqx.Module", width: int, num_heads: int, *, key: PRNGKeyArray,
                   causal: bool = False, **options: Any) -> eqx.Module:
    """An attention module ``(..., seq, width) -> (..., seq, width)`` of ``kind``: ``"softmax"``
    (:class:`MultiHeadAttention`), ``"karat"`` (Kolmogorov-Arnold attention, :mod:`kan.nn.karat`), or
    ``kind`` itself if it is already a module. ``options`` go to the module's constructor; ``"karat"``
    needs ``seq_len`` among them (its learnable operator maps rows of that many scores), e.g.
    ``attention_options=dict(seq_len=17, rank=4)``."""
    if isinstance(kind, eqx.Module):
        if options:
            raise ValueError("make_attention: attention_options apply to a kind name, not to a given module")
        return kind
    if kind == "softmax":
        return MultiHeadAttention(width, num_heads, key=key, causal=causal, **options)
    if kind == "karat":
        from .karat import KolmogorovArnoldAttention  # imported here: the softmax path needs no basis code

        return KolmogorovArnoldAttention(width, num_heads, key=key, causal=causal, **options)
    raise ValueError(f"make_attention: unknown attention kind {kind!r}; valid kinds: {', '.join(ATTENTION_KINDS)}")
