"""Pre-norm transformer block (Xiong et al. 2020, arXiv 2002.04745) with any feed-forward.

    x = x + g1 * attn(LN1(x))
    x = x + g2 * ffn(LN2(x))

``attention`` is ``"softmax"`` (:class:`kan.nn.MultiHeadAttention`), ``"karat"`` (Kolmogorov-Arnold
attention) or a module (see :func:`kan.nn.attention.make_attention`); ``attention_options`` go to its
constructor. ``ffn`` is a kind name (``"mlp"``, ``"grkan"``, ``"kan"``, ``"rbf"``, ``"afkan"``: see
:mod:`kan.nn.feedforward`; ``"moe"``: :class:`kan.nn.MixtureOfExperts`) or any module mapping
``(..., width) -> (..., width)``. A feed-forward with a ``route(x) -> (y, aux)`` method (the mixture of
experts) reports its auxiliary loss through ``block(x, return_aux=True) -> (y, aux)``; for any other
feed-forward ``aux`` is ``{}``. ``g1, g2`` are LayerScale gains (Touvron et
al. 2021, CaiT), present only when ``layer_scale`` is given (a float start value); by default there are
none, as in ViT/DeiT/KAT.

At init each branch receives a LayerNorm-ed (unit variance) input and returns about unit variance,
so the residual stream's variance grows by at most ~2 per block (linearly in depth, never
geometrically); ``tests/test_nn.py`` measures it per block for a 12-block KAT-T.
"""

from __future__ import annotations

from typing import Any, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .attention import make_attention
from .feedforward import make_feed_forward
from .layers import LayerNorm


class TransformerBlock(eqx.Module):
    """``(..., seq, width) -> (..., seq, width)``: pre-norm attention and feed-forward residual branches."""

    norm1: LayerNorm
    attn: Any
    norm2: LayerNorm
    ffn: Any
    gamma1: Optional[Float[Array, " d"]]
    gamma2: Optional[Float[Array, " d"]]
    width: int = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        key: PRNGKeyArray,
        ffn: str | eqx.Module = "mlp",
        causal: bool = False,
        layer_scale: Optional[float] = None,
        ffn_options: Optional[dict] = None,
        attention: str | eqx.Module = "softmax",
        attention_options: Optional[dict] = None,
    ):
        if isinstance(ffn, eqx.Module) and ffn_options:
            raise ValueError("TransformerBlock: ffn_options apply to a feed-forward kind name, not to a given module")
        k_attn, k_ffn = jax.random.split(key)
        self.width = int(width)
        self.norm1 = LayerNorm(width)
        self.attn = make_attention(attention, width, num_heads, key=k_attn, causal=causal, **(attention_options or {}))
        self.norm2 = LayerNorm(width)
        self.ffn = make_feed_forward(ffn, width, key=k_ffn, **(ffn_options or {}))
        if layer_scale is None:
            self.gamma1 = self.gamma2 = None
        else:
            if not float(layer_scale) > 0:
                raise ValueError(f"TransformerBlock: layer_scale must be > 0 or None, got {layer_scale}")
            self.gamma1 = jnp.full((self.width,), float(layer_scale), jnp.float32)
            self.gamma2 = jnp.full((self.width,), float(layer_scale), jnp.float32)

    def branches(self, x: Float[Array, "... s d"], *, mask: Optional[Bool[Array, "..."]] = None
                 ) -> tuple[Float[Array, "... s d"], Float[Array, "... s d"], Float[Array, "... s d"]]:
        """``(attention branch, feed-forward branch, block output)``, for variance diagnostics."""
        return self._forward(x, mask)[:3]

    def _forward(self, x: Array, mask: Optional[Array]) -> tuple[Array, Array, Array, dict]:
        a = self.attn(self.norm1(x), mask=mask)
        if self.gamma1 is not None:
            a = a * self.gamma1.astype(a.dtype)
        x = x + a.astype(x.dtype)
        h = self.norm2(x)
        route = getattr(self.ffn, "route", None)
        f, aux = route(h) if callable(route) else (self.ffn(h), {})
        if self.gamma2 is not None:
            f = f * self.gamma2.astype(f.dtype)
        return a, f, x + f.astype(x.dtype), aux

    def __call__(self, x: Float[Array, "... s d"], *, mask: Optional[Bool[Array, "..."]] = None,
                 key: Optional[PRNGKeyArray] = None, return_aux: bool = False
                 ) -> Float[Array, "... s d"] | tuple[Float[Array, "... s d"], dict]:
        """The block output; with ``return_aux=True`` also the feed-forward's auxiliary dict (the
        mixture of experts' ``balance`` loss, ``load``, ``importance``; ``{}`` for other kinds).
        ``key`` is unused (no dropout); accepted for a uniform calling convention."""
        del key
        _, _, y, aux = self._forward(x, mask)
        return (y, aux) if return_aux else y


def collect_aux(auxes: list[dict]) -> dict:
    """Sum the blocks' auxiliary dicts into ``{"balance": sum of balance losses (0.0 without experts),
    "load": tuple of each mixture block's load fractions (E,)}`` (for ``return_aux=True`` of the models)."""
    routed = [a for a in auxes if "balance" in a]
    balance = sum((a["balance"] for a in routed), jnp.zeros((), jnp.float32))
    return {"balance": balance, "load": tuple(a["load"] for a in routed)}
