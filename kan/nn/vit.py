"""Vision Transformer (Dosovitskiy et al. 2021, arXiv 2010.11929) and the Kolmogorov-Arnold
Transformer KAT (Yang & Wang 2024, arXiv 2409.10594): a ViT whose feed-forward is GR-KAN.

    images (..., H, W, C) -> patches (..., N, p*p*C) -> Linear -> (..., N, width)
    prepend class token, add positional embedding      (..., N + 1, width)
    depth x TransformerBlock, LayerNorm                 (..., N + 1, width)
    class token (or mean over tokens) -> Linear head    (..., num_classes)

Configurations by name (:data:`VIT_CONFIGS`, :func:`vision_transformer`): ``"kat-t"``, ``"kat-s"``,
``"kat-b"`` (depth 12; width 192 / 384 / 768; heads 3 / 6 / 12; GR-KAN with 8 groups, mlp_ratio 4)
and the matching MLP models ``"vit-t"``, ``"vit-s"``, ``"vit-b"`` (DeiT-T/S/B); ``"kat-micro"`` /
``"vit-micro"`` (width 32, depth 2, 2 heads) for tests and examples.

Init: patch embedding ``N(0, 1 / (p*p*C))`` (unit-variance tokens for standardised pixels);
positional embedding and class token ``N(0, 0.02^2)``; head zero (the first loss is ``log C``).
Blocks keep their own variance-preserving init (nothing here re-initialises them).
"""

from __future__ import annotations

from typing import Any, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from bases import count_parameters

from .block import TransformerBlock, collect_aux
from .layers import LayerNorm, Linear

VIT_CONFIGS: dict[str, dict[str, Any]] = {
    "kat-t": dict(width=192, depth=12, num_heads=3, ffn="grkan"),
    "kat-s": dict(width=384, depth=12, num_heads=6, ffn="grkan"),
    "kat-b": dict(width=768, depth=12, num_heads=12, ffn="grkan"),
    "vit-t": dict(width=192, depth=12, num_heads=3, ffn="mlp"),
    "vit-s": dict(width=384, depth=12, num_heads=6, ffn="mlp"),
    "vit-b": dict(width=768, depth=12, num_heads=12, ffn="mlp"),
    "kat-micro": dict(width=32, depth=2, num_heads=2, ffn="grkan"),
    "vit-micro": dict(width=32, depth=2, num_heads=2, ffn="mlp"),
}
_ALIASES = {"deit-t": "vit-t", "deit-s": "vit-s", "deit-b": "vit-b"}


def vit_config(name: str) -> dict[str, Any]:
    """A copy of the configuration called ``name`` (case, ``_`` and ``-`` ignored: ``"KAT_T"``)."""
    key = str(name).lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in VIT_CONFIGS:
        raise ValueError(f"vit_config: unknown configuration {name!r}; known: {', '.join(VIT_CONFIGS)}")
    return dict(VIT_CONFIGS[key])


def patchify(images: Float[Array, "... H W C"], patch_size: int) -> Float[Array, "... N P"]:
    """Non-overlapping ``p x p`` patches in row-major order: ``(..., H, W, C) -> (..., HW/p^2, p*p*C)``."""
    *lead, h, w, c = images.shape
    p = int(patch_size)
    if h % p or w % p:
        raise ValueError(f"patchify: image {h}x{w} is not divisible by patch size {p}")
    x = images.reshape(*lead, h // p, p, w // p, p, c)
    x = jnp.moveaxis(x, -4, -3)  # (..., H/p, W/p, p, p, C)
    return x.reshape(*lead, (h // p) * (w // p), p * p * c)


class VisionTransformer(eqx.Module):
    """ViT / KAT classifier ``(..., H, W, C) -> (..., num_classes)`` (see the module docstring).

    ``attention`` is ``"softmax"`` or ``"karat"`` (options in ``attention_options``) or a module.
    ``ffn`` is a feed-forward kind (``"mlp"``, ``"grkan"``, ``"kan"``, ``"afkan"``) or a module;
    ``ffn_options`` go to :class:`kan.nn.FeedForward` (``mlp_ratio``, ``hidden``, ``num_groups``,
    ``rational_backend``, ...). ``pool`` is ``"cls"`` (class token, as in ViT/KAT) or ``"mean"``.
    """

    patch_embed: Linear
    cls_token: Float[Array, "1 d"]
    pos_embed: Float[Array, "n d"]
    blocks: tuple[TransformerBlock, ...]
    norm: LayerNorm
    head: Linear
    image_size: int = eqx.field(static=True)
    patch_size: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    pool: str = eqx.field(static=True)

    def __init__(
        self,
        *,
        key: PRNGKeyArray,
        image_size: int = 224,
        patch_size: int = 16,
        channels: int = 3,
        num_classes: int = 1000,
        width: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        ffn: str | eqx.Module = "grkan",
        ffn_options: Optional[dict] = None,
        attention: str | eqx.Module = "softmax",
        attention_options: Optional[dict] = None,
        layer_scale: Optional[float] = None,
        pool: str = "cls",
    ):
        if pool not in ("cls", "mean"):
            raise ValueError(f"VisionTransformer: pool must be 'cls' or 'mean', got {pool!r}")
        if int(depth) < 1 or int(num_classes) < 1 or int(channels) < 1 or int(patch_size) < 1:
            raise ValueError("VisionTransformer: depth, num_classes, channels and patch_size must be >= 1")
        if int(image_size) % int(patch_size):
            raise ValueError(f"VisionTransformer: patch_size={patch_size} must divide image_size={image_size}")
        self.image_size, self.patch_size, self.channels, self.pool = int(image_size), int(patch_size), int(channels), pool
        num_patches = (self.image_size // self.patch_size) ** 2
        patch_dim = self.patch_size**2 * self.channels
        k_patch, k_cls, k_pos, k_blocks, k_head = jax.random.split(key, 5)
        self.patch_embed = Linear(patch_dim, width, key=k_patch)
        self.cls_token = 0.02 * jax.random.normal(k_cls, (1, width), jnp.float32)
        self.pos_embed = 0.02 * jax.random.normal(k_pos, (num_patches + 1, width), jnp.float32)
        self.blocks = tuple(
            TransformerBlock(width, num_heads, key=k, ffn=ffn, layer_scale=layer_scale, ffn_options=ffn_options,
                             attention=attention, attention_options=attention_options)
            for k in jax.random.split(k_blocks, int(depth))
        )
        self.norm = LayerNorm(width)
        self.head = Linear(width, num_classes, key=k_head, std=0.0)

    @property
    def width(self) -> int:
        """Token width ``d``."""
        return self.cls_token.shape[-1]

    def tokens(self, images: Float[Array, "... H W C"]) -> Float[Array, "... n d"]:
        """Patch tokens with the class token prepended and positions added: ``(..., N + 1, d)``."""
        expected = (self.image_size, self.image_size, self.channels)
        if images.ndim < 3 or tuple(images.shape[-3:]) != expected:
            raise ValueError(f"VisionTransformer: expected images (..., {expected[0]}, {expected[1]}, "
                             f"{expected[2]}), got {tuple(images.shape)}")
        x = self.patch_embed(patchify(images, self.patch_size))
        cls = jnp.broadcast_to(self.cls_token.astype(x.dtype), x.shape[:-2] + self.cls_token.shape)
        x = jnp.concatenate([cls, x], axis=-2)
        return x + self.pos_embed.astype(x.dtype)

    def residual_stream(self, images: Float[Array, "... H W C"]) -> list[Float[Array, "... n d"]]:
        """The residual stream before the first block and after every block (``depth + 1`` arrays)."""
        xs = [self.tokens(images)]
        for block in self.blocks:
            xs.append(block(xs[-1]))
        return xs

    def features(self, images: Float[Array, "... H W C"], *, return_aux: bool = False
                 ) -> Float[Array, "... d"] | tuple[Float[Array, "... d"], dict]:
        """Pooled, normalised features before the head: ``(..., d)`` (and the blocks' summed auxiliary
        dict with ``return_aux=True``, see :func:`kan.nn.block.collect_aux`)."""
        x = self.tokens(images)
        auxes = []
        for block in self.blocks:
            x, aux = block(x, return_aux=True)
            auxes.append(aux)
        x = self.norm(x)
        x = x[..., 0, :] if self.pool == "cls" else jnp.mean(x, axis=-2)
        return (x, collect_aux(auxes)) if return_aux else x

    def __call__(self, images: Float[Array, "... H W C"], *, key: Optional[PRNGKeyArray] = None,
                 return_aux: bool = False) -> Float[Array, "... classes"] | tuple[Float[Array, "... classes"], dict]:
        """Logits (with ``return_aux=True``: ``(logits, aux)``, the mixture-of-experts balancing loss
        summed over blocks); ``key`` is unused (no dropout)."""
        del key
        h, aux = self.features(images, return_aux=True)
        logits = self.head(h)
        return (logits, aux) if return_aux else logits

    def num_parameters(self) -> int:
        """Trainable scalars (buffers excluded)."""
        return count_parameters(self)


def vision_transformer(name: str, *, key: PRNGKeyArray, **overrides: Any) -> VisionTransformer:
    """The configuration called ``name`` (:data:`VIT_CONFIGS`) with ``overrides`` (e.g.
    ``image_size=32, patch_size=4, num_classes=10``), e.g. ``vision_transformer("kat-t", key=k)``."""
    config = vit_config(name)
    config.update(overrides)
    return VisionTransformer(key=key, **config)
