"""Drawing a KAN as pykan does: nodes in rows, one line per edge with a thumbnail of its curve, line
strength by the edge's attribution score, snapped edges labelled with their function; and one
edge's curve against its snapped formula. Drawn on matplotlib ``Figure`` objects without pyplot (no display needed, backend untouched).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from matplotlib.figure import Figure  # no pyplot: never changes the user's backend or global state

from .mult import mult_counts, node_to_subnodes
from .regularization import attribution_scores
from .surgery import replace_fields

_activations = eqx.filter_jit(lambda model, x: model.activations(x))
_edge_functions = eqx.filter_jit(lambda layer, x: layer.edge_functions(x))


def _check(model: Any, x: Array) -> Array:
    if not getattr(model, "layers", None):
        raise TypeError(f"plot: expected a model with .layers, got {type(model).__name__}")
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] != model.layers[0].in_features:
        raise ValueError(f"plot: expected x of shape (n>=2, {model.layers[0].in_features}), got {tuple(x.shape)}")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("plot: x contains NaN or inf")
    return x


def _samples(h: Array, num: int) -> np.ndarray:
    h = np.asarray(h, np.float64)
    t = np.linspace(0.0, 1.0, num)[:, None]
    return h.min(axis=0)[None, :] + t * (h.max(axis=0) - h.min(axis=0))[None, :]


def _name(layer: Any, o: int, i: int) -> Optional[str]:
    sym = getattr(layer, "symbolic", None)
    return None if sym is None else sym.function_name(o, i)


def plot(model: Any, x: Float[Array, "n in"], path: str | Path, *, num_points: int = 64,
         title: Optional[str] = None, dpi: int = 120) -> Path:
    """Draw ``model`` (evaluated on the data ``x``) to the PNG ``path``; returns the path.

    Edge curves are sampled on the range each layer input takes on ``x``; line and thumbnail
    opacity follow the edge attribution score (pruned edges are not drawn); snapped edges are
    drawn in red with their function name.
    """
    x = _check(model, x)
    acts = _activations(model, x)
    _, edge_scores = attribution_scores(model, x)
    widths = model.widths
    depth = len(model.layers)
    fig_w = max(4.0, 1.6 * max(widths))
    fig = Figure(figsize=(fig_w, 2.2 * depth + 1.0))
    ax = fig.add_subplot()
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.3, depth + 0.3)
    ax.axis("off")
    pos = [(np.arange(w) + 0.5) / w for w in widths]
    counts = mult_counts(model)
    for l, layer in enumerate(model.layers):
        owner = node_to_subnodes(widths[l + 1], counts[l])
        # the two subnodes of a product node end left and right of it
        num_sum = widths[l + 1] - counts[l]
        offset = np.where(owner >= num_sum, (np.arange(owner.size) - num_sum) % 2 - 0.5, 0.0) * 0.25 / widths[l + 1]
        xs = _samples(acts[l], num_points)
        phi = np.asarray(_edge_functions(layer, jnp.asarray(xs, jnp.float32)))
        mask = np.asarray(layer.edge_mask) > 0
        score = np.asarray(edge_scores[l])
        strength = np.clip(score / (score.max() + 1e-12), 0.05, 1.0)
        for o, i in zip(*np.nonzero(mask)):
            name = _name(layer, o, i)
            color = "tab:red" if name is not None else "black"
            x0, x1 = pos[l][i], pos[l + 1][owner[o]] + offset[o]
            y1 = l + 1 - (0.15 if offset[o] else 0.0)  # subnodes sit below their product node
            ax.plot([x0, x1], [l, y1], color=color, alpha=float(strength[o, i]), lw=1.5, zorder=1)
            if offset[o]:
                ax.plot([x1, pos[l + 1][owner[o]]], [y1, l + 1], color="gray", lw=1.0, zorder=1)
            frac = 0.3 + 0.4 * (i + 0.5) / layer.in_features  # stagger thumbnails of crossing edges
            mx, my = x0 + frac * (x1 - x0), l + frac * (y1 - l)
            w, h = min(0.12, 0.7 / max(widths)), 0.3
            inset = ax.inset_axes([mx - w / 2, my - h / 2, w, h], transform=ax.transData)
            inset.plot(xs[:, i], phi[:, o, i], color=color, alpha=float(strength[o, i]), lw=1.2)
            inset.set_xticks([])
            inset.set_yticks([])
            for spine in inset.spines.values():
                spine.set_alpha(float(strength[o, i]))
            if name is not None:
                inset.set_title(name, fontsize=7, color=color, pad=1)
    for l, p in enumerate(pos):
        ax.scatter(p, np.full(len(p), l), s=60, color="white", edgecolor="black", zorder=3)
        mult = counts[l - 1] if l > 0 else 0
        for x_mult in p[len(p) - mult:] if mult else ():
            ax.text(x_mult, l, "×", ha="center", va="center", fontsize=9, zorder=4)
    if title:
        ax.set_title(title)
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_edge(model: Any, layer: int, out: int, inp: int, x: Float[Array, "n in"],
              path: str | Path, *, num_points: int = 200, dpi: int = 120) -> Path:
    """Plot edge ``inp -> out`` of layer ``layer``: its numeric curve (the learned spline + base
    branch) and, when snapped, its symbolic form ``c f(a x + b) + d``; returns the PNG path."""
    x = _check(model, x)
    if not 0 <= layer < len(model.layers):
        raise ValueError(f"plot_edge: layer index {layer} out of range for {len(model.layers)} layers")
    target = model.layers[layer]
    if not (0 <= out < target.out_features and 0 <= inp < target.in_features):
        raise ValueError(f"plot_edge: edge ({inp} -> {out}) outside layer {layer} "
                         f"({target.in_features} -> {target.out_features})")
    xs = _samples(_activations(model, x)[layer], num_points)
    numeric_layer = replace_fields(target, symbolic=None) if hasattr(target, "symbolic") else target
    numeric = np.asarray(_edge_functions(numeric_layer, jnp.asarray(xs, jnp.float32)))[:, out, inp]
    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.add_subplot()
    ax.plot(xs[:, inp], numeric, color="black", lw=2, label="learned edge")
    name = _name(target, out, inp)
    if name is not None:
        symbolic = np.asarray(_edge_functions(target, jnp.asarray(xs, jnp.float32)))[:, out, inp]
        a, b, c, d = (float(v) for v in np.asarray(target.symbolic.affine[out, inp]))
        ax.plot(xs[:, inp], symbolic, "--", color="tab:red", lw=2,
                label=f"{c:.3g}*{name}({a:.3g}x{b:+.3g}){d:+.3g}")
    ax.set_xlabel(f"layer {layer} input {inp}")
    ax.set_ylabel(f"phi (-> node {out})")
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
