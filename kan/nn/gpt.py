"""Decoder-only transformer language model (GPT; Radford et al. 2018/2019) with any feed-forward.

    tokens (..., s) int -> token embedding + positional embedding      (..., s, width)
    depth x causal TransformerBlock, LayerNorm                         (..., s, width)
    head: Linear (zero init) or, tied, h E^T / sqrt(width)             (..., s, vocab)

Init: token embedding ``N(0, 1)`` (a unit-variance residual stream), positions ``N(0, 0.02^2)``. With
``tie_embedding=True`` the logits reuse the token embedding scaled by ``1/sqrt(width)`` so they start
with unit variance; otherwise the head starts at zero (first loss ``log vocab``).
``feed-forward``: ``ffn="mlp"`` is GPT's block, ``ffn="grkan"`` puts KAT's GR-KAN in its place,
``ffn="moe"`` a mixture of MLP and KAN experts (MLP-KAN); ``model(tokens, return_aux=True)`` then also
returns ``{"balance": summed load-balancing loss, "load": per-block expert load fractions}``.
"""

from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from bases import count_parameters

from .block import TransformerBlock, collect_aux
from .layers import LayerNorm, Linear


class GPT(eqx.Module):
    """Causal language model ``(..., seq) int -> (..., seq, vocab_size)`` logits, ``seq <= max_len``."""

    token_embed: Float[Array, "vocab d"]
    pos_embed: Float[Array, "max_len d"]
    blocks: tuple[TransformerBlock, ...]
    norm: LayerNorm
    head: Optional[Linear]
    vocab_size: int = eqx.field(static=True)
    max_len: int = eqx.field(static=True)
    tie_embedding: bool = eqx.field(static=True)

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        key: PRNGKeyArray,
        width: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        ffn: str | eqx.Module = "mlp",
        ffn_options: Optional[dict] = None,
        attention: str | eqx.Module = "softmax",
        attention_options: Optional[dict] = None,
        tie_embedding: bool = False,
        layer_scale: Optional[float] = None,
    ):
        if int(vocab_size) < 2 or int(max_len) < 1 or int(depth) < 1:
            raise ValueError(f"GPT: need vocab_size >= 2, max_len >= 1, depth >= 1; got {vocab_size}, {max_len}, {depth}")
        self.vocab_size, self.max_len, self.tie_embedding = int(vocab_size), int(max_len), bool(tie_embedding)
        k_tok, k_pos, k_blocks, k_head = jax.random.split(key, 4)
        self.token_embed = jax.random.normal(k_tok, (self.vocab_size, width), jnp.float32)
        self.pos_embed = 0.02 * jax.random.normal(k_pos, (self.max_len, width), jnp.float32)
        self.blocks = tuple(
            TransformerBlock(width, num_heads, key=k, ffn=ffn, causal=True, layer_scale=layer_scale,
                             ffn_options=ffn_options,
                             attention=attention, attention_options=attention_options)
            for k in jax.random.split(k_blocks, int(depth))
        )
        self.norm = LayerNorm(width)
        self.head = None if self.tie_embedding else Linear(width, self.vocab_size, key=k_head, std=0.0)

    @property
    def width(self) -> int:
        """Residual stream width ``d``."""
        return self.token_embed.shape[1]

    def embed(self, tokens: Int[Array, "... s"]) -> Float[Array, "... s d"]:
        """Token plus positional embeddings. Token ids outside ``[0, vocab_size)`` raise where the tokens
        are concrete; inside ``jit`` they are tracers and cannot be checked."""
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise TypeError(f"GPT: tokens must be integers, got dtype {tokens.dtype}")
        if tokens.ndim < 1 or not 1 <= tokens.shape[-1] <= self.max_len:
            raise ValueError(f"GPT: expected tokens (..., seq) with 1 <= seq <= max_len={self.max_len}, "
                             f"got shape {tuple(tokens.shape)}")
        _check_token_range(tokens, self.vocab_size, "GPT")
        return self.token_embed[tokens] + self.pos_embed[: tokens.shape[-1]]

    def __call__(self, tokens: Int[Array, "... s"], *, key: Optional[PRNGKeyArray] = None,
                 return_aux: bool = False) -> Float[Array, "... s vocab"] | tuple[Float[Array, "... s vocab"], dict]:
        """Next-token logits at every position; with ``return_aux=True`` ``(logits, aux)``, ``aux`` the
        blocks' summed auxiliary losses (:func:`kan.nn.block.collect_aux`). ``key`` is unused (no dropout)."""
        del key
        x = self.embed(tokens)
        auxes = []
        for block in self.blocks:
            x, aux = block(x, return_aux=True)
            auxes.append(aux)
        h = self.norm(x)
        if self.head is None:
            logits = (h @ self.token_embed.T.astype(h.dtype)) * (1.0 / np.sqrt(self.width))
        else:
            logits = self.head(h)
        return (logits, collect_aux(auxes)) if return_aux else logits

    def num_parameters(self) -> int:
        """Trainable scalars (a tied embedding counted once)."""
        return count_parameters(self)


@eqx.filter_jit
def _next_token(model: GPT, window: Array, last: Array, key: PRNGKeyArray, temperature: float) -> Array:
    logits = model(window)[last].astype(jnp.float32)
    return jax.random.categorical(key, logits / temperature)


def _check_token_range(tokens, vocab_size: int, who: str) -> None:
    """Raise if concrete ``tokens`` hold an id outside ``[0, vocab_size)``: the embedding gather would
    clamp it to another token without a word. Traced tokens (inside ``jit``) cannot be checked."""
    if isinstance(tokens, jax.core.Tracer):
        return
    ids = np.asarray(tokens)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"{who}: token ids must be in [0, {vocab_size}), got ids from {int(ids.min())} "
                         f"to {int(ids.max())}")


def sample(model: GPT, prompt: Int[Array, " t"], num_tokens: int, *, key: PRNGKeyArray,
           temperature: float = 1.0) -> Int[Array, " t_plus_n"]:
    """Continue a 1-D ``prompt`` by ``num_tokens`` sampled tokens (``(t,) -> (t + num_tokens,)``).

    The model sees the last ``max_len`` tokens; one compiled step serves every position (the window
    has a fixed shape and, while shorter than ``max_len``, is right-padded; causality makes the
    padding invisible to the position read).
    """
    prompt = np.asarray(prompt, np.int32)
    if prompt.ndim != 1 or prompt.size < 1:
        raise ValueError(f"sample: prompt must be a non-empty 1-D token array, got shape {prompt.shape}")
    if not temperature > 0:
        raise ValueError(f"sample: temperature must be > 0, got {temperature}")
    _check_token_range(prompt, model.vocab_size, "sample")
    seq = list(prompt)
    for k in jax.random.split(key, int(num_tokens)):
        ctx = seq[-model.max_len:]
        window = np.zeros((model.max_len,), np.int32)
        window[: len(ctx)] = ctx
        token = _next_token(model, jnp.asarray(window), jnp.asarray(len(ctx) - 1), k, float(temperature))
        seq.append(int(token))
    return jnp.asarray(seq, jnp.int32)
