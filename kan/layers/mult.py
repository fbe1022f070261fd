"""Multiplication nodes (pykan's MultKAN; Liu et al. 2024, "KAN 2.0", arXiv 2408.10205, section 2.1).

A hidden layer of ``w`` nodes of which ``m`` are multiplication nodes is fed by ``w + m`` outputs
(*subnodes*) of the layer before it: the first ``w - m`` pass through as sum nodes, the last ``2m``
are multiplied in pairs, ``node[w - m + k] = sub[w - m + 2k] * sub[w - m + 2k + 1]``. Products such as
``a * sin(b)`` then need one hidden node instead of a difference of squares.

Functions here take the model's ``mult_nodes`` (one count per hidden layer) and work for any stack
with ``layers`` (models without the attribute have no multiplication nodes).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def mult_counts(model: Any) -> tuple[int, ...]:
    """Per layer, the multiplication nodes its output feeds: ``model.mult_nodes`` followed by 0 for the
    last layer (zeros for models without them); one entry per layer."""
    depth = len(getattr(model, "layers", ()))
    counts = tuple(getattr(model, "mult_nodes", ()) or ()) or (0,) * max(depth - 1, 0)
    return counts + (0,)


def combine_subnodes(h: Float[Array, "... sub"], num_mult: int) -> Float[Array, "... nodes"]:
    """Subnode values ``(..., w + m)`` -> node values ``(..., w)``: sums pass, pairs are multiplied."""
    if num_mult == 0:
        return h
    num_sum = h.shape[-1] - 2 * num_mult
    products = h[..., num_sum::2] * h[..., num_sum + 1::2]
    return jnp.concatenate([h[..., :num_sum], products], axis=-1)


def combine_expressions(exprs: Sequence[Any], num_mult: int) -> list[Any]:
    """:func:`combine_subnodes` for a list of (sympy) expressions."""
    num_sum = len(exprs) - 2 * num_mult
    return list(exprs[:num_sum]) + [exprs[num_sum + 2 * k] * exprs[num_sum + 2 * k + 1] for k in range(num_mult)]


def layer_output_to_nodes(model: Any, layer: int, h: Float[Array, "... sub"]) -> Float[Array, "... nodes"]:
    """The input of layer ``layer + 1`` from the output ``h`` of layer ``layer`` (unchanged after the last)."""
    return combine_subnodes(h, mult_counts(model)[layer])


def node_to_subnodes(num_nodes: int, num_mult: int) -> np.ndarray:
    """For each subnode of a hidden layer with ``num_nodes`` nodes (``num_mult`` of them products), the
    index of the node it feeds; shape ``(num_nodes + num_mult,)``."""
    num_sum = num_nodes - num_mult
    return np.concatenate([np.arange(num_sum), num_sum + np.repeat(np.arange(num_mult), 2)]).astype(int)


def subnodes_of(nodes: np.ndarray, num_nodes: int, num_mult: int) -> tuple[np.ndarray, int]:
    """Subnode indices (in order) that feed the kept ``nodes`` (sorted node indices), and how many of
    the kept nodes are multiplication nodes."""
    owner = node_to_subnodes(num_nodes, num_mult)
    nodes = np.asarray(nodes, int)
    return np.flatnonzero(np.isin(owner, nodes)), int(np.sum(nodes >= num_nodes - num_mult))


def check_mult_nodes(widths: Sequence[int], mult_nodes: Sequence[int] | None, who: str) -> tuple[int, ...]:
    """Validated multiplication-node counts: one per hidden layer, each in ``[0, width]``."""
    hidden = tuple(widths[1:-1])
    if mult_nodes is None:
        return (0,) * len(hidden)
    counts = tuple(int(m) for m in mult_nodes)
    if len(counts) != len(hidden) or any(not 0 <= m <= w for m, w in zip(counts, hidden)):
        raise ValueError(f"{who}: mult_nodes needs one count in [0, width] per hidden layer {hidden}, "
                         f"got {tuple(mult_nodes)}")
    return counts
