"""KAN vs MLP feed-forward inside a transformer: a one-block ViT on scikit-learn's digits.

Each 8x8 image is 8 tokens (its rows) of 8 pixels: Linear embedding to ``WIDTH`` plus a learned position
embedding, one pre-norm :class:`kan.nn.TransformerBlock` whose feed-forward is the kind under test
(``mlp``, ``kan``, ``grkan``, ``afkan`` of :mod:`kan.nn.feedforward`), mean pooling, LayerNorm and a
linear head. Everything but the feed-forward is the same for every kind; the budget is the feed-forward's
parameter count (its hidden width is matched with :func:`kan.count.match_widths`, whose closed forms
equal :class:`kan.nn.FeedForward`'s counts), and the table reports the whole model's parameters and
FLOPs (attention FLOPs are a closed-form estimate, identical for every kind).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from kan.count import count_flops, match_widths
from kan.nn import TransformerBlock
from kan.nn.layers import LayerNorm, Linear

from .tasks import Task, _sklearn, register_task

WIDTH, HEADS, TOKENS, PATCH = 16, 2, 8, 8


class DigitsViT(eqx.Module):
    """``(..., 64) -> (..., 10)``: rows as tokens, one transformer block, mean pool, head."""

    embed: Linear
    position: Float[Array, "t w"]
    block: TransformerBlock
    norm: LayerNorm
    head: Linear

    def __init__(self, ffn_kind: str, hidden: int, *, key: PRNGKeyArray, **ffn_options: Any):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.embed = Linear(PATCH, WIDTH, key=k1)
        self.position = 0.02 * jax.random.normal(k2, (TOKENS, WIDTH))
        self.block = TransformerBlock(WIDTH, HEADS, key=k3, ffn=ffn_kind, ffn_options=dict(hidden=hidden, **ffn_options))
        self.norm = LayerNorm(WIDTH)
        self.head = Linear(WIDTH, 10, key=k4)

    def __call__(self, x: Float[Array, "... 64"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... 10"]:
        del key
        tokens = x.reshape(x.shape[:-1] + (TOKENS, PATCH))
        h = self.block(self.embed(tokens) + self.position)
        return self.head(self.norm(jnp.mean(h, axis=-2)))

    def flops(self) -> int:
        """Per sample: embedding, attention (qkv, scores, softmax ~5/score, mixing, output), the
        feed-forward (:func:`kan.count.count_flops`), LayerNorms (~8 per value), pooling, head."""
        t, w = TOKENS, WIDTH
        attention = t * (2 * w * 3 * w) + 2 * t * t * w + 5 * t * t * HEADS + 2 * t * t * w + t * (2 * w * w + w)
        per_token = count_flops(self.block.ffn) + 2 * 8 * w + 2 * w
        return (t * (2 * PATCH * w + w) + t * w + attention + t * per_token + t * w + 8 * w
                + 2 * w * 10 + 10)


def build_digits_vit(kind: str, budget: float, options: dict, in_features: int, out_features: int,
                     key: PRNGKeyArray) -> tuple[DigitsViT, tuple[int, ...]]:
    """The task's ``model_fn``: a :class:`DigitsViT` whose feed-forward has ``budget`` parameters."""
    del in_features, out_features
    count_kind = {"mlp": "mlp", "kan": "kan", "grkan": "grkan", "afkan": "afkan"}.get(kind)
    if count_kind is None:
        raise ValueError(f"digits_transformer: feed-forward kind must be mlp, kan, grkan or afkan, got {kind!r}")
    spec = {k: v for k, v in options.items() if k == "grid_size"}
    if kind == "kan":  # the transformer's KAN feed-forward uses grid range (-3, 3): counts are the same
        spec.setdefault("grid_size", 5)
    m = match_widths(count_kind, budget, in_features=WIDTH, out_features=WIDTH, depth=1, **spec)
    return DigitsViT(kind, m.widths[1], key=key, **spec), m.widths


register_task(Task("digits_transformer", _sklearn("load_digits"), "classification", kinds=("mlp", "kan", "grkan"),
                   budgets=(6000,), epochs=20, model_fn=build_digits_vit,
                   description="one-block ViT on digits, feed-forward parameters matched"))
