"""Learning-rate schedules and the AdamW optimiser used for transformer training.

``warmup_cosine``: linear warm-up to ``peak`` over ``warmup_steps``, then a half cosine down to
``end_ratio * peak`` at ``total_steps`` (Loshchilov & Hutter 2017, SGDR; Goyal et al. 2017 warm-up).
``make_optimizer``: ``clip_by_global_norm -> AdamW`` (Loshchilov & Hutter 2019, arXiv 1711.05101)
with that schedule and decoupled weight decay on matrices only (:func:`decay_mask`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import optax
from jaxtyping import Array, Float, Int

from bases import Rational

NO_DECAY_NAMES = ("pos_embed", "cls_token")


def warmup_cosine(peak: float, total_steps: int, warmup_steps: int = 0,
                  end_ratio: float = 0.0) -> Callable[[Int[Array, ""]], Float[Array, ""]]:
    """Schedule ``step -> learning rate`` (optax convention: ``step`` counts updates from 0).

    ``lr(t) = peak (t + 1) / warmup_steps`` for ``t < warmup_steps`` (the first update is not
    wasted at 0), then ``end + (peak - end) (1 + cos(pi u)) / 2`` with
    ``u = (t - warmup_steps) / (total_steps - warmup_steps)`` clipped to ``[0, 1]``.
    """
    total, warmup = int(total_steps), int(warmup_steps)
    if total < 1 or warmup < 0 or warmup > total:
        raise ValueError(f"warmup_cosine: need total_steps >= 1 and 0 <= warmup_steps <= total_steps, "
                         f"got {total_steps}, {warmup_steps}")
    if not (math.isfinite(peak) and peak > 0) or not 0.0 <= end_ratio <= 1.0:
        raise ValueError(f"warmup_cosine: need peak > 0 and end_ratio in [0, 1], got {peak}, {end_ratio}")
    end = float(peak) * float(end_ratio)

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        warm = float(peak) * (t + 1.0) / max(warmup, 1)
        u = jnp.clip((t - warmup) / max(total - warmup, 1), 0.0, 1.0)
        cosine = end + (float(peak) - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * u))
        return jnp.where(t < warmup, warm, cosine)

    return schedule


def decay_mask(params: Any) -> Any:
    """Boolean pytree like ``params``: True (decayed) on arrays with ``ndim >= 2`` except rational
    coefficients (a function's shape, not a scale) and the ``pos_embed`` / ``cls_token`` fields;
    False on biases, LayerNorm gains and everything else (the usual ViT/GPT practice)."""

    def leaf(path, x):
        if isinstance(x, Rational):
            return jtu.tree_map(lambda _: False, x)
        if not eqx.is_array(x):
            return False
        names = [k.name for k in path if isinstance(k, jtu.GetAttrKey)]
        return x.ndim >= 2 and not any(n in NO_DECAY_NAMES for n in names)

    return jtu.tree_map_with_path(leaf, params, is_leaf=lambda x: isinstance(x, Rational))


def make_optimizer(
    learning_rate: float | Callable = 1e-3,
    *,
    total_steps: Optional[int] = None,
    warmup_steps: int = 0,
    end_ratio: float = 0.0,
    weight_decay: float = 0.05,
    clip_norm: Optional[float] = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    mask: Any = decay_mask,
) -> optax.GradientTransformation:
    """``clip_by_global_norm(clip_norm) -> adamw`` with a warm-up + cosine schedule.

    ``learning_rate`` is the peak (a float, with ``total_steps`` required) or a schedule callable.
    ``clip_norm=None`` disables clipping; ``mask`` selects the decayed parameters.
    """
    if callable(learning_rate):
        schedule = learning_rate
    else:
        if total_steps is None:
            raise ValueError("make_optimizer: total_steps is required for a float learning_rate")
        schedule = warmup_cosine(float(learning_rate), total_steps, warmup_steps, end_ratio)
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"make_optimizer: weight_decay must be a finite number >= 0, got {weight_decay}")
    parts = []
    if clip_norm is not None:
        if not clip_norm > 0:
            raise ValueError(f"make_optimizer: clip_norm must be > 0 or None, got {clip_norm}")
        parts.append(optax.clip_by_global_norm(float(clip_norm)))
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask))
    return optax.chain(*parts)
