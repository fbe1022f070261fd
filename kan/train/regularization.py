"""Edge statistics of a KAN on data: pykan's sparsity regulariser and attribution scores.

Liu et al. 2024 (arXiv 2404.19756), section 2.5: the L1 of an edge is the mean of |phi(x)| over
samples (here divided by the input's standard deviation, as pykan does, so that the score measures
the edge's gain rather than the input's scale); the entropy of each node's normalised edge L1s
pushes a node to use few edges. Attribution propagates importance from the outputs back to the
inputs through the edges' output standard deviations.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..layers.mult import layer_output_to_nodes, mult_counts, node_to_subnodes

_EPS = 1e-4


def _entropy(p: Array, axis: int) -> Array:
    return -jnp.mean(jnp.sum(p * jnp.log2(p + _EPS), axis=axis))


def edge_l1(phi: Float[Array, "n out in"], x: Float[Array, "n in"]) -> Float[Array, "out in"]:
    """Normalised L1 of every edge: ``mean_n |phi_oi(x_ni)| / (std_n(x_i) + 1e-4)``."""
    return jnp.mean(jnp.abs(phi), axis=0) / (jnp.std(x, axis=0)[None, :] + _EPS)


def sparsity_regularizer(
    model, x: Float[Array, "n in"], lamb_l1: float = 1.0, lamb_entropy: float = 2.0
) -> tuple[Float[Array, "n out"], Float[Array, ""]]:
    """Model output and ``sum_layers lamb_l1 * sum(L1) + lamb_entropy * (row + column entropy)``."""
    reg = jnp.zeros(())
    h = x
    for l, layer in enumerate(model.layers):
        phi = layer.edge_functions(h)
        l1 = edge_l1(phi, h)
        rows = l1 / (jnp.sum(l1, axis=1, keepdims=True) + _EPS)
        cols = l1 / (jnp.sum(l1, axis=0, keepdims=True) + _EPS)
        reg = reg + lamb_l1 * jnp.sum(l1) + lamb_entropy * (_entropy(rows, 1) + _entropy(cols, 0))
        h = layer_output_to_nodes(model, l, jnp.sum(phi, axis=-1) + (layer.bias if layer.bias is not None else 0.0))
    return h, reg


@eqx.filter_jit
def attribution_scores(model, x: Float[Array, "n in"]) -> tuple[list[Array], list[Array]]:
    """Node and edge importance, propagated back from output nodes of score 1.

    ``edge[l][o, i] = std(phi_oi) * node[l+1][o] / (std(y_o) + 1e-4)`` and
    ``node[l][i] = sum_o edge[l][o, i]``; both subnodes of a multiplication node get its score.
    Returns ``(node_scores, edge_scores)`` with one ``(width,)`` array per layer boundary (nodes) and
    one ``(out, in)`` array per layer (``out`` counts subnodes).
    """
    stds, out_stds = [], []
    h = x
    for l, layer in enumerate(model.layers):
        phi = layer.edge_functions(h)
        stds.append(jnp.std(phi, axis=0))
        sub = layer(h)
        out_stds.append(jnp.std(sub, axis=0))
        h = layer_output_to_nodes(model, l, sub)
    counts = mult_counts(model)
    node_scores = [jnp.ones(model.layers[-1].out_features)]
    edge_scores = []
    for l in reversed(range(len(model.layers))):
        std, out_std = stds[l], out_stds[l]
        sub_scores = node_scores[0][node_to_subnodes(node_scores[0].shape[0], counts[l])]
        edge = std * (sub_scores / (out_std + _EPS))[:, None]
        edge_scores.insert(0, edge)
        node_scores.insert(0, jnp.sum(edge, axis=0))
    return node_scores, edge_scores
