"""Drawing a KAN as pykan does: nodes in rows, one thumbnail of its curve per edge, line strength by
the edge's attribution score, snapped edges labelled with their function, product nodes marked
``×``; and one edge's curve against its snapped formula.

Both functions return a matplotlib ``Figure`` (shown inline in Jupyter) and save it only when given a
path. They build ``matplotlib.figure.Figure`` objects (:class:`kan.plot_figure.KANFigure`, which adds
``_repr_png_``) without pyplot, so the user's backend and global state are untouched, and matplotlib is
imported only when a plot is drawn (``import kan`` stays light).

Layout of :func:`plot`: each layer's edges sit in one row of thumbnails, grouped under their input node
(input ``i``'s edges to outputs ``0..out-1`` left to right), so thumbnails never overlap; lines run
from an input node to its thumbnails and from each thumbnail to its output node. The figure grows with
the layer that has the most edges and the thumbnails shrink once it hits a maximum width (layers with
too many edges for any thumbnail are drawn as one line per edge).
"""

from __future__ import annotations

import time

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .layers.mult import mult_counts, node_to_subnodes
from .train.regularization import attribution_scores
from .edit.surgery import replace_fields

if TYPE_CHECKING:  # matplotlib is imported lazily, inside the functions
    from matplotlib.figure import Figure



@eqx.filter_jit
def _network_curves(model: Any, x: Array, t: Array) -> tuple[list[Array], list[Array], list[Array]]:
    """One compiled pass for :func:`plot`: per layer, sample points ``(num, in)`` spanning the range
    each input takes on ``x`` (``t`` in [0, 1], shape ``(num,)``), edge values there ``(num, out, in)``
    and edge attribution scores ``(out, in)``."""
    acts = model.activations(x)
    xs = [h.min(axis=0) + t[:, None] * (h.max(axis=0) - h.min(axis=0)) for h in acts[:-1]]
    phis = [layer.edge_functions(s) for layer, s in zip(model.layers, xs)]
    return xs, phis, attribution_scores(model, x)[1]


@eqx.filter_jit
def _edge_curves(model: Any, layer: int, x: Array, t: Array) -> tuple[Array, Array, Array]:
    """For :func:`plot_edge`: sample points ``(num, in)`` of layer ``layer``'s input range, and its
    edge values ``(num, out, in)`` without and with the snapped (symbolic) edges."""
    h = model.activations(x)[layer]
    xs = h.min(axis=0) + t[:, None] * (h.max(axis=0) - h.min(axis=0))
    target = model.layers[layer]
    numeric = replace_fields(target, symbolic=None) if getattr(target, "symbolic", None) is not None else target
    return xs, numeric.edge_functions(xs), target.edge_functions(xs)

# layout constants, in inches
_SLOT = 0.6         # preferred horizontal room per edge thumbnail
_MIN_WIDTH = 3.5    # narrowest drawing
_MAX_WIDTH = 36.0   # widest drawing; past it the thumbnails shrink
_MIN_THUMB = 0.08   # thumbnails narrower than this are left out (the edge is drawn as one line)
_MAX_THUMB = 0.9
_MARGIN = 0.25
NETWORK_LABEL = "kan-network"  # label of the background axes; thumbnails are labelled "edge l,o,i"


def _check(model: Any, x: Array) -> Array:
    if not getattr(model, "layers", None):
        raise TypeError(f"plot: expected a model with .layers, got {type(model).__name__}")
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] != model.layers[0].in_features:
        raise ValueError(f"plot: expected x of shape (n>=2, {model.layers[0].in_features}), got {tuple(x.shape)}")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("plot: x contains NaN or inf")
    return x


def _var_names(names: Optional[Sequence[str]], count: int, prefix: str, what: str) -> list[str]:
    if names is None:
        return [f"{prefix}_{k + 1}" for k in range(count)]
    if isinstance(names, str):
        raise TypeError(f"plot: {what} must be a sequence of strings, not one string {names!r}")
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(f"plot: {what} has {len(names)} names but the model has {count} "
                         f"{'inputs' if what == 'in_vars' else 'outputs'}")
    return names


def _name(layer: Any, o: int, i: int) -> Optional[str]:
    sym = getattr(layer, "symbolic", None)
    return None if sym is None else sym.function_name(o, i)


def _save(fig: "Figure", path: str | Path | None, dpi: int) -> None:
    if path is not None:
        fig.savefig(Path(path), dpi=dpi, bbox_inches="tight")


def _pad(n_out: int) -> float:
    """Gap, in slots, between the thumbnail groups of neighbouring input nodes."""
    return 0.5 if n_out > 1 else 0.0


@dataclass(frozen=True)
class _Band:
    """Geometry of one layer's band (inches): rows of nodes at ``y0`` and ``y1``, thumbnails between."""
    y0: float
    y1: float
    slot: float      # horizontal room per edge
    thumb_w: float   # 0 when thumbnails are left out
    thumb_h: float
    thumb_y: float   # bottom of the thumbnail row


def _layout(widths: Sequence[int], subnodes: Sequence[int], any_names: Sequence[bool],
            title: bool) -> tuple[float, float, float, list[_Band]]:
    """Width of the node rows, figure size and one band per layer (see the module docstring)."""
    slots = [w * (s + _pad(s)) for w, s in zip(widths[:-1], subnodes)]
    width = float(np.clip(_SLOT * max(slots), _MIN_WIDTH, _MAX_WIDTH))
    bands, y = [], _MARGIN + 0.35  # room for the input names
    for w_in, n, named in zip(widths[:-1], slots, any_names):
        slot = width / n
        thumb_w = min(0.85 * slot, _MAX_THUMB)
        if thumb_w < _MIN_THUMB:
            thumb_w = 0.0
        thumb_h = float(np.clip(2 * thumb_w, 0.4, 0.8)) if thumb_w else 0.0  # narrow ones stand tall
        lower = float(np.clip(0.15 * width / w_in, 0.25, 0.8))    # fan out to one input's edges
        upper = float(np.clip(0.06 * width, 0.7, 2.2)) + (0.15 if named else 0.0)  # fan in to outputs
        y1 = y + lower + thumb_h + upper
        bands.append(_Band(y, y1, slot, thumb_w, thumb_h, y + lower))
        y = y1
    fig_w = width + 2 * _MARGIN
    fig_h = y + 0.35 + (0.4 if title else 0.0) + _MARGIN
    return width, fig_w, fig_h, bands


def plot(model: Any, x: Float[Array, "n in"], path: str | Path | None = None, *,
         in_vars: Optional[Sequence[str]] = None, out_vars: Optional[Sequence[str]] = None,
         title: Optional[str] = None, num_points: int = 64, dpi: int = 120, verbose: bool = False) -> "Figure":
    """Draw ``model`` evaluated on the data ``x`` (shape ``(n, in)``, ``n >= 2``); returns the
    matplotlib ``Figure`` and also writes it to ``path`` (a PNG, or any format matplotlib infers from
    the suffix) when ``path`` is given.

    ``in_vars`` (``in`` strings, default ``x_1, x_2, ...``) are written below the input nodes and
    ``out_vars`` (``out`` strings, default ``y_1, ...``) above the output nodes; sympy-style names
    are drawn as plain text (wrap one in ``$...$`` for mathtext). Edge curves are sampled at
    ``num_points`` points on the range each layer input takes on ``x``; line and thumbnail opacity
    follow the edge attribution score (pruned edges are not drawn); snapped edges are drawn in red
    with their function name; multiplication nodes are marked ``×`` and fed by two subnodes.

    Each layer's edges form one row of thumbnails grouped under their input node, so thumbnails never
    overlap; the figure widens with the layer with the most edges (up to 36 inches, after which the
    thumbnails shrink; below 0.08 inch a layer's edges are drawn as plain lines). ``verbose`` prints
    what was drawn, where it was saved and the time taken.
    """
    from .plot_figure import KANFigure  # lazily: matplotlib without pyplot, the backend is left alone

    start = time.perf_counter()
    x = _check(model, x)
    widths = tuple(model.widths)
    in_names = _var_names(in_vars, widths[0], "x", "in_vars")
    out_names = _var_names(out_vars, widths[-1], "y", "out_vars")
    samples, curves, edge_scores = _network_curves(model, x, jnp.linspace(0.0, 1.0, num_points))
    counts = mult_counts(model)
    subnodes = [layer.out_features for layer in model.layers]
    names = [[[_name(layer, o, i) for i in range(layer.in_features)] for o in range(layer.out_features)]
             for layer in model.layers]
    any_names = [any(n is not None for row in layer_names for n in row) for layer_names in names]
    width, fig_w, fig_h, bands = _layout(widths, subnodes, any_names, bool(title))

    fig = KANFigure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0), label=NETWORK_LABEL)  # data coordinates are inches
    ax.set_xlim(0, fig_w)
    ax.set_ylim(0, fig_h)
    ax.axis("off")
    node_x = [_MARGIN + (np.arange(w) + 0.5) * width / w for w in widths]
    node_y = [b.y0 for b in bands] + [bands[-1].y1]
    label_size = float(np.clip(72 * 0.18 * width / max(widths), 7, 11))

    for l, (layer, band) in enumerate(zip(model.layers, bands)):
        n_out = layer.out_features
        owner = node_to_subnodes(widths[l + 1], counts[l])
        num_sum = widths[l + 1] - counts[l]
        # the two subnodes of a product node sit left and right, just below it
        pin_dx = min(0.12, 0.2 * width / widths[l + 1])
        side = np.where(np.arange(n_out) >= num_sum, 2 * ((np.arange(n_out) - num_sum) % 2) - 1, 0)
        target_x = node_x[l + 1][owner] + side * pin_dx
        target_y = np.where(side != 0, band.y1 - 0.22, band.y1)
        for o in range(num_sum, n_out):
            ax.plot([target_x[o], node_x[l + 1][owner[o]]], [target_y[o], band.y1], color="gray", lw=1.0, zorder=1)
            ax.scatter([target_x[o]], [target_y[o]], s=8, color="black", zorder=3)

        xs, phi = np.asarray(samples[l]), np.asarray(curves[l])
        mask = np.asarray(layer.edge_mask) > 0
        score = np.asarray(edge_scores[l])
        strength = np.clip(score / (score.max() + 1e-12), 0.05, 1.0)
        for o, i in zip(*np.nonzero(mask)):
            name = names[l][o][i]
            color = "tab:red" if name is not None else "black"
            alpha = float(strength[o, i])
            x0, y0 = node_x[l][i], band.y0
            x1, y1 = target_x[o], target_y[o]
            if not band.thumb_w:  # too many edges for thumbnails: one line per edge
                ax.plot([x0, x1], [y0, y1], color=color, alpha=alpha, lw=1.0, zorder=1)
                continue
            cx = _MARGIN + (i * (n_out + _pad(n_out)) + _pad(n_out) / 2 + o + 0.5) * band.slot
            bottom, top = band.thumb_y, band.thumb_y + band.thumb_h
            ax.plot([x0, cx], [y0, bottom], color=color, alpha=alpha, lw=1.2, zorder=1)
            ax.plot([cx, x1], [top, y1], color=color, alpha=alpha, lw=1.2, zorder=1)
            rect = ((cx - band.thumb_w / 2) / fig_w, bottom / fig_h, band.thumb_w / fig_w, band.thumb_h / fig_h)
            thumb = fig.add_axes(rect, label=f"edge {l},{o},{i}")
            thumb.plot(xs[:, i], phi[:, o, i], color=color, alpha=alpha, lw=1.2)
            lo, hi = float(xs[0, i]), float(xs[-1, i])
            pad = 0.0 if hi > lo else max(abs(lo), 1.0) * 1e-3  # a constant layer input: widen, not warn
            thumb.set_xlim(lo - pad, hi + pad)
            thumb.set_xticks([])
            thumb.set_yticks([])
            for spine in thumb.spines.values():
                spine.set_alpha(alpha)
            if name is not None:
                thumb.set_title(name, fontsize=float(np.clip(14 * band.thumb_w, 5.5, 8.0)), color=color, pad=1.5)

    for l, (px, py) in enumerate(zip(node_x, node_y)):
        ax.scatter(px, np.full(len(px), py), s=60, color="white", edgecolor="black", zorder=3)
        mult = counts[l - 1] if l > 0 else 0
        for x_mult in px[len(px) - mult:] if mult else ():
            ax.text(x_mult, py, "×", ha="center", va="center", fontsize=9, zorder=4)
    for px, name in zip(node_x[0], in_names):
        ax.text(px, node_y[0] - 0.12, name, ha="center", va="top", fontsize=label_size)
    for px, name in zip(node_x[-1], out_names):
        ax.text(px, node_y[-1] + 0.12, name, ha="center", va="bottom", fontsize=label_size)
    if title:
        ax.text(fig_w / 2, fig_h - _MARGIN, title, ha="center", va="top", fontsize=12)
    _save(fig, path, dpi)
    if verbose:
        drawn = sum(int((np.asarray(layer.edge_mask) > 0).sum()) for layer in model.layers)
        where = f", saved to {path}" if path is not None else ""
        print(f"plot: {drawn} edges of {list(widths)} drawn ({fig_w:.1f} x {fig_h:.1f} in){where} "
              f"({time.perf_counter() - start:.1f} s)")
    return fig


def plot_edge(model: Any, layer: int, out: int, inp: int, x: Float[Array, "n in"],
              path: str | Path | None = None, *, title: Optional[str] = None, num_points: int = 200,
              dpi: int = 120) -> "Figure":
    """Plot edge ``inp -> out`` of layer ``layer`` on the data ``x`` (shape ``(n, in)`` of the model
    input): its numeric curve (the learned spline + base branch) and, when snapped, its symbolic form
    ``c f(a x + b) + d``. Returns the matplotlib ``Figure``; writes it to ``path`` when given.

    The legend sits below the axes (never on the curves); the default title names the edge and its
    snapped function, if any. ``out`` counts subnodes when the next layer has multiplication nodes.
    """
    from .plot_figure import KANFigure  # lazily: matplotlib without pyplot, the backend is left alone

    x = _check(model, x)
    if not 0 <= layer < len(model.layers):
        raise ValueError(f"plot_edge: layer index {layer} out of range for {len(model.layers)} layers")
    target = model.layers[layer]
    if not (0 <= out < target.out_features and 0 <= inp < target.in_features):
        raise ValueError(f"plot_edge: edge ({inp} -> {out}) outside layer {layer} "
                         f"({target.in_features} -> {target.out_features})")
    xs, numeric, snapped = (np.asarray(v) for v in _edge_curves(model, layer, x, jnp.linspace(0.0, 1.0, num_points)))
    numeric = numeric[:, out, inp]
    fig = KANFigure(figsize=(4.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(xs[:, inp], numeric, color="black", lw=2, label="learned edge")
    name = _name(target, out, inp)
    if name is not None:
        a, b, c, d = (float(v) for v in np.asarray(target.symbolic.affine[out, inp]))
        ax.plot(xs[:, inp], snapped[:, out, inp], "--", color="tab:red", lw=2,
                label=f"{c:.3g}*{name}({a:.3g}x{b:+.3g}){d:+.3g}")
    ax.set_xlabel(f"layer {layer} input {inp}")
    ax.set_ylabel(f"phi (-> node {out})")
    if title is None:
        title = f"layer {layer}, edge {inp} → {out}: " + (f"snapped to {name}" if name is not None else "numeric")
    ax.set_title(title, fontsize=10)
    fig.legend(loc="outside lower center", fontsize=8, ncols=2, frameon=False)
    _save(fig, path, dpi)
    return fig
