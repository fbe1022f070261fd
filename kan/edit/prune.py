"""Pruning by attribution (Liu et al. 2024, section 2.5.1; thresholds as in pykan)."""

from __future__ import annotations

import time

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bases import host_array

from ..layers.mult import mult_counts, node_to_subnodes, subnodes_of
from ..train.regularization import attribution_scores
from .grid import check_samples
from .surgery import keep_inputs, keep_outputs, replace_fields


def _checked_samples(model, x: Array, who: str) -> Array:
    """``x`` as an array, checked by :func:`kan.edit.grid.check_samples` against the model's inputs."""
    check_samples(x, model.layers[0].in_features, who)
    return jnp.asarray(x)


def keep_hidden_nodes(model, hidden: int, keep: np.ndarray):
    """``model`` with only the nodes ``keep`` (sorted indices) of hidden layer ``hidden`` (the input of
    ``model.layers[hidden]``); a kept multiplication node keeps both of its subnodes."""
    layers = list(model.layers)
    counts = list(mult_counts(model))
    subnodes, counts[hidden - 1] = subnodes_of(keep, layers[hidden].in_features, counts[hidden - 1])
    layers[hidden - 1] = keep_outputs(layers[hidden - 1], subnodes)
    layers[hidden] = keep_inputs(layers[hidden], keep)
    changes = {"layers": tuple(layers)}
    if hasattr(model, "mult_nodes"):
        changes["mult_nodes"] = tuple(counts[:-1])
    return replace_fields(model, **changes)


def mask_hidden_nodes(model, hidden: int, keep: np.ndarray):
    """``model`` with every edge into and out of the nodes of hidden layer ``hidden`` that are not in
    ``keep`` masked: the same function as :func:`keep_hidden_nodes` gives, in the same shapes (so
    compiled programs are reused; :func:`drop_disconnected_nodes` removes the nodes later)."""
    layers = list(model.layers)
    width = layers[hidden].in_features
    kept = np.isin(np.arange(width), keep)
    kept_subnodes = kept[node_to_subnodes(width, mult_counts(model)[hidden - 1])]
    into = np.asarray(layers[hidden - 1].edge_mask) * kept_subnodes[:, None]
    out_of = np.asarray(layers[hidden].edge_mask) * kept[None, :]
    return eqx.tree_at(lambda m: (m.layers[hidden - 1].edge_mask, m.layers[hidden].edge_mask), model,
                       (host_array(into, np.float32), host_array(out_of, np.float32)))


def prune_nodes(model, x: Float[Array, "n in"], node_th: float = 1e-2, *, shrink: bool = True):
    """Remove hidden nodes whose attribution score is at most ``node_th`` (the model gets narrower;
    with ``shrink=False`` their edges are masked instead, shapes unchanged). A layer keeps at least
    its best node."""
    node_scores, _ = attribution_scores(model, _checked_samples(model, x, "prune_nodes"))
    for hidden in range(1, len(model.layers)):
        scores = np.asarray(node_scores[hidden])
        keep = np.flatnonzero(scores > node_th)
        if keep.size == 0:
            keep = np.array([int(np.argmax(scores))])
        if keep.size < scores.size:
            model = (keep_hidden_nodes if shrink else mask_hidden_nodes)(model, hidden, keep)
    return model


def prune_edges(model, x: Float[Array, "n in"], edge_th: float = 3e-2):
    """Mask edges whose attribution score is at most ``edge_th``."""
    _, edge_scores = attribution_scores(model, _checked_samples(model, x, "prune_edges"))
    masks = [host_array(np.asarray(layer.edge_mask) * (np.asarray(score) > edge_th), layer.edge_mask.dtype)
             for layer, score in zip(model.layers, edge_scores)]
    return eqx.tree_at(lambda m: [layer.edge_mask for layer in m.layers], model, masks)


def drop_disconnected_nodes(model):
    """Remove hidden nodes whose incoming or outgoing edges are all masked (they carry nothing; a
    multiplication node counts as fed when either subnode is); a layer keeps at least one node."""
    for hidden in range(1, len(model.layers)):
        layers = model.layers
        outgoing = np.asarray(layers[hidden].edge_mask).any(axis=0)
        owner = node_to_subnodes(outgoing.size, mult_counts(model)[hidden - 1])
        incoming = np.zeros(outgoing.size, bool)
        np.logical_or.at(incoming, owner, np.asarray(layers[hidden - 1].edge_mask).any(axis=1))
        keep = np.flatnonzero(incoming & outgoing)
        if keep.size == 0:
            keep = np.array([0])
        if keep.size < incoming.size:
            model = keep_hidden_nodes(model, hidden, keep)
    return model


def _active_edges(model) -> int:
    return int(sum(np.asarray(layer.edge_mask).sum() for layer in model.layers))


def prune(model, x: Float[Array, "n in"], node_th: float = 1e-2, edge_th: float = 3e-2, *,
          verbose: bool = False, shrink: bool = True):
    """``prune_nodes`` then ``prune_edges`` on the data ``x`` (pykan's ``prune``), then
    ``drop_disconnected_nodes`` for hidden nodes left with only masked edges. ``verbose`` prints the
    widths and active edges before and after, and the time taken.

    ``shrink=False`` prunes by masks only: the model keeps its shapes (pruned nodes have all their
    edges masked), so retraining it reuses the programs compiled for the unpruned model; call
    :func:`drop_disconnected_nodes` afterwards for the narrow model. Both give the same function."""
    start = time.perf_counter()
    x = _checked_samples(model, x, "prune")
    pruned = prune_edges(prune_nodes(model, x, node_th, shrink=shrink), x, edge_th)
    narrow = drop_disconnected_nodes(pruned) if shrink or verbose else None
    if verbose:
        masked = "" if shrink else " (by masks; shapes kept)"
        print(f"prune: widths {list(model.widths)} -> {list(narrow.widths)}{masked}, active edges "
              f"{_active_edges(model)} -> {_active_edges(pruned)} ({time.perf_counter() - start:.1f} s)")
    return narrow if shrink else pruned
