"""Pruning by attribution (Liu et al. 2024, section 2.5.1; thresholds as in pykan)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .regularization import attribution_scores
from .surgery import keep_inputs, keep_outputs


def prune_nodes(model, x: Float[Array, "n in"], node_th: float = 1e-2):
    """Remove hidden nodes whose attribution score is at most ``node_th`` (the model gets narrower).
    A layer keeps at least its best node."""
    node_scores, _ = attribution_scores(model, jnp.asarray(x))
    layers = list(model.layers)
    for hidden in range(1, len(layers)):
        scores = np.asarray(node_scores[hidden])
        keep = np.flatnonzero(scores > node_th)
        if keep.size == 0:
            keep = np.array([int(np.argmax(scores))])
        if keep.size < scores.size:
            layers[hidden - 1] = keep_outputs(layers[hidden - 1], keep)
            layers[hidden] = keep_inputs(layers[hidden], keep)
    return eqx.tree_at(lambda m: m.layers, model, tuple(layers))


def prune_edges(model, x: Float[Array, "n in"], edge_th: float = 3e-2):
    """Mask edges whose attribution score is at most ``edge_th``."""
    _, edge_scores = attribution_scores(model, jnp.asarray(x))
    masks = [layer.edge_mask * (score > edge_th) for layer, score in zip(model.layers, edge_scores)]
    return eqx.tree_at(lambda m: [layer.edge_mask for layer in m.layers], model, masks)


def drop_disconnected_nodes(model):
    """Remove hidden nodes whose incoming or outgoing edges are all masked (they carry nothing);
    a layer keeps at least one node."""
    layers = list(model.layers)
    for hidden in range(1, len(layers)):
        incoming = np.asarray(layers[hidden - 1].edge_mask).any(axis=1)
        outgoing = np.asarray(layers[hidden].edge_mask).any(axis=0)
        keep = np.flatnonzero(incoming & outgoing)
        if keep.size == 0:
            keep = np.array([0])
        if keep.size < incoming.size:
            layers[hidden - 1] = keep_outputs(layers[hidden - 1], keep)
            layers[hidden] = keep_inputs(layers[hidden], keep)
    return eqx.tree_at(lambda m: m.layers, model, tuple(layers))


def prune(model, x: Float[Array, "n in"], node_th: float = 1e-2, edge_th: float = 3e-2):
    """``prune_nodes`` then ``prune_edges`` on the data ``x`` (pykan's ``prune``), then
    ``drop_disconnected_nodes`` for hidden nodes left with only masked edges."""
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != model.layers[0].in_features:
        raise ValueError(f"prune: expected x of shape (n>=1, {model.layers[0].in_features}), got {x.shape}")
    return drop_disconnected_nodes(prune_edges(prune_nodes(model, x, node_th), x, edge_th))
