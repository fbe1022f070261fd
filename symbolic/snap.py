"""Snapping edges inside a model: pykan's ``auto_symbolic`` and ``fix_symbolic`` (Liu et al. 2024).

A snapped edge becomes a symbolic edge of its layer (``bases.SymbolicEdges``): the numeric edge is
masked out and ``c f(a x + b) + d`` takes its place with trainable ``(a, b, c, d)``, so the usual
fit -> snap -> refit loop is ``auto_symbolic`` followed by ``kan.fit``.

Edge curves are sampled on ``num_points`` evenly spaced points of the range that the layer's input
actually takes on the data ``x`` given here (not on the last batch seen, pykan issue #508).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bases import host_array
from bases.symbolic_edges import IDENTITY_AFFINE, SymbolicEdges
from kan.layers.mult import mult_counts
from kan.edit.surgery import replace_fields

from .fit_edges import choose, fit_curves, scores
from .library import Library, as_library

_activations = eqx.filter_jit(lambda model, x: model.activations(x))
_edge_functions = eqx.filter_jit(lambda layer, x: layer.edge_functions(x))
_features = eqx.filter_jit(lambda basis, x: basis(x))


@dataclasses.dataclass(frozen=True)
class SnapRecord:
    """What ``auto_symbolic`` did to one edge ``(layer, out, in)``."""

    layer: int
    out: int
    inp: int
    name: str
    r2: float
    affine: tuple[float, float, float, float]
    snapped: bool
    alternatives: tuple[tuple[str, float, tuple[float, ...]], ...] = ()  # next best (name, R^2, affine)


def _check_model(model: Any, x: Array) -> Array:
    layers = getattr(model, "layers", None)
    if not layers:
        raise TypeError(f"symbolic snapping needs a model with .layers, got {type(model).__name__}")
    for idx, layer in enumerate(layers):
        if not (hasattr(layer, "symbolic") and hasattr(layer, "edge_mask") and hasattr(layer, "edge_functions")):
            raise TypeError(f"layer {idx} ({type(layer).__name__}) has no symbolic edges; use kan.KANLayer")
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] != layers[0].in_features:
        raise ValueError(f"expected x of shape (n>=2, {layers[0].in_features}), got {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating point, got dtype {x.dtype}")
    if not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x contains NaN or inf")
    return x


def _symbolic_of(layer: Any) -> SymbolicEdges:
    if layer.symbolic is None:
        return SymbolicEdges.empty(layer.out_features, layer.in_features)
    return layer.symbolic


def _input_samples(model: Any, x: Array, num_points: int) -> list[np.ndarray]:
    """Per layer, ``(num_points, in)`` points spanning each input's range on the data."""
    acts = _activations(model, x)
    t = np.linspace(0.0, 1.0, num_points)[:, None]
    samples = []
    for h in acts[:-1]:
        h = np.asarray(h, np.float64)
        lo, hi = h.min(axis=0), h.max(axis=0)
        samples.append(lo[None, :] + t * (hi - lo)[None, :])
    return samples


def _set_layer_symbolic(model: Any, idx: int, sym: SymbolicEdges) -> Any:
    layers = list(model.layers)
    layers[idx] = replace_fields(layers[idx], symbolic=sym)
    return eqx.tree_at(lambda m: m.layers, model, tuple(layers))


def auto_symbolic(
    model: Any,
    x: Float[Array, "n in"],
    library: Library | Sequence[str] | None = None,
    *,
    layers: Optional[Sequence[int]] = None,
    num_points: int = 64,
    complexity_weight: float = 1.0,
    noise_floor: float = 1e-6,
    margin: float = 0.5,
    min_r2: Optional[float] = None,
    verbose: bool = False,
) -> tuple[Any, list[SnapRecord]]:
    """Snap every active numeric edge (of ``layers``, default all) to its best library function.

    Ranking: see :func:`symbolic.fit_edges.choose`. Edges whose best R^2 is below ``min_r2`` stay
    numeric (recorded with ``snapped=False``). ``verbose`` prints one line per edge and a summary with
    the time taken. Returns ``(model, records)``.
    """
    start = time.perf_counter()
    x = _check_model(model, x)
    lib = as_library(library)
    if num_points < 8:
        raise ValueError(f"auto_symbolic: num_points must be >= 8, got {num_points}")
    layer_ids = range(len(model.layers)) if layers is None else [int(l) for l in layers]
    for l in layer_ids:
        if not 0 <= l < len(model.layers):
            raise ValueError(f"auto_symbolic: layer index {l} out of range for {len(model.layers)} layers")
    samples = _input_samples(model, x, num_points)
    edges, xs, ys = [], [], []
    for l in layer_ids:
        layer = model.layers[l]
        sym = _symbolic_of(layer)
        phi = np.asarray(_edge_functions(layer, host_array(samples[l], np.float32)), np.float64)
        todo = (np.asarray(layer.edge_mask) > 0) & (np.asarray(sym.active) == 0)
        for o, i in zip(*np.nonzero(todo)):
            edges.append((l, int(o), int(i)))
            xs.append(samples[l][:, i])
            ys.append(phi[:, o, i])
    records: list[SnapRecord] = []
    if not edges:
        if verbose:
            print("auto_symbolic: no numeric edge left to snap")
        return model, records
    fits = fit_curves(np.stack(xs), np.stack(ys), lib)
    picks = choose(fits, complexity_weight, noise_floor, margin)
    ranking = np.argsort(scores(fits, complexity_weight, noise_floor), axis=1, kind="stable")
    new_syms = {l: _symbolic_of(model.layers[l]) for l in layer_ids}
    names = {l: [list(row) for row in new_syms[l].names] for l in layer_ids}
    affine = {l: np.array(new_syms[l].affine, np.float64) for l in layer_ids}
    active = {l: np.array(new_syms[l].active, np.float64) for l in layer_ids}
    for e, (l, o, i) in enumerate(edges):
        j = int(picks[e])
        r2 = float(fits.r2[e, j])
        params = tuple(float(v) for v in fits.params[e, j])
        snapped = min_r2 is None or r2 >= min_r2
        if snapped:
            names[l][o][i] = fits.names[j]
            affine[l][o, i] = params
            active[l][o, i] = 1.0
        alts = tuple((fits.names[k], float(fits.r2[e, k]), tuple(float(v) for v in fits.params[e, k]))
                     for k in ranking[e][:6] if k != j)[:5]
        records.append(SnapRecord(l, o, i, fits.names[j], r2, params, snapped, alts))
        if verbose:
            state = "snapped" if snapped else "kept numeric"
            print(f"layer {l} edge ({i} -> {o}): {fits.names[j]:<8s} R^2 = {r2:.6f} ({state})")
    for l in layer_ids:
        model = _set_layer_symbolic(model, l, SymbolicEdges(names[l], affine[l], active[l]))
    if verbose:
        done = [r for r in records if r.snapped]
        print(f"auto_symbolic: snapped {len(done)} of {len(records)} edges "
              f"({', '.join(sorted({r.name for r in done})) or 'none'}) in {time.perf_counter() - start:.1f} s")
    return model, records


def fix_symbolic(
    model: Any,
    layer: int,
    out: int,
    inp: int,
    name: str,
    x: Optional[Float[Array, "n in"]] = None,
    *,
    num_points: int = 64,
) -> tuple[Any, float]:
    """Set edge ``inp -> out`` of layer ``layer`` to the library function ``name`` by hand.

    With data ``x`` the affine parameters are fitted to the current edge curve (returns its R^2);
    without, the edge becomes exactly ``f(x)`` (returns nan).
    """
    lib = Library([name])  # ValueError for unknown names
    if not 0 <= layer < len(getattr(model, "layers", ())):
        raise ValueError(f"fix_symbolic: layer index {layer} out of range")
    target = model.layers[layer]
    if not (0 <= out < target.out_features and 0 <= inp < target.in_features):
        raise ValueError(f"fix_symbolic: edge ({inp} -> {out}) outside layer {layer} of shape "
                         f"({target.in_features} -> {target.out_features})")
    sym = _symbolic_of(target)
    r2, params = float("nan"), IDENTITY_AFFINE
    if x is not None:
        x = _check_model(model, x)
        sym_off = sym.with_edge(out, inp, sym.names[out][inp], sym.affine[out, inp], active=False)
        probe = replace_fields(target, symbolic=sym_off)
        xs = _input_samples(model, x, num_points)[layer]
        phi = np.asarray(_edge_functions(probe, jnp.asarray(xs, jnp.float32)), np.float64)
        fits = fit_curves(xs[None, :, inp], phi[None, :, out, inp], lib)
        r2, params = float(fits.r2[0, 0]), tuple(float(v) for v in fits.params[0, 0])
    model = _set_layer_symbolic(model, layer, sym.with_edge(out, inp, name, params))
    return model, r2


def fix_after_products(model: Any, name: str = "x") -> Any:
    """Fix every edge that leaves a multiplication node (``kan.KAN(..., mult_nodes=...)``) to the library
    function ``name`` (default ``c*x + d``; its affine parameters keep training). Training from there
    tests the hypothesis ``y = c * u * v + d`` for each product ``u * v``: a free network may route a
    product around its node or split it as ``(u^p v^p)^(1/p)``, which snaps to the wrong functions.
    :func:`release_after_products` frees these edges again."""
    for l, o, i in _product_edges(model):
        model, _ = fix_symbolic(model, l, o, i, name)
    return model


def _numeric_like_symbolic(layer: Any, out: int, inp: int, xs: Array) -> Any:
    """``layer`` whose numeric edge ``inp -> out`` is the least-squares spline fit (residual branch off)
    of its symbolic curve on the input samples ``xs`` (P, in)."""
    xs = jnp.asarray(xs, jnp.float32)
    curve = np.asarray(_symbolic_of(layer)(xs), np.float64)[:, out, inp]
    feats = np.asarray(_features(layer.basis, xs), np.float64)[:, inp, :]
    coef, *_ = np.linalg.lstsq(feats, curve, rcond=None)
    changes = {"spline_weight": layer.spline_weight.at[out, inp].set(jnp.asarray(coef, jnp.float32))}
    if layer.base_weight is not None:
        changes["base_weight"] = layer.base_weight.at[out, inp].set(0.0)
    return replace_fields(layer, **changes)


def _unfixed(model: Any, layer: int, out: int, inp: int, xs: Optional[np.ndarray]) -> Any:
    target = model.layers[layer]
    if xs is not None:
        target = _numeric_like_symbolic(target, out, inp, xs)
    sym = _symbolic_of(target).with_edge(out, inp, "0", IDENTITY_AFFINE, active=False)
    layers = list(model.layers)
    layers[layer] = replace_fields(target, symbolic=sym)
    return replace_fields(model, layers=tuple(layers))


def unfix_symbolic(model: Any, layer: int, out: int, inp: int, x: Optional[Float[Array, "n in"]] = None,
                   *, num_points: int = 64) -> Any:
    """Turn edge ``inp -> out`` of layer ``layer`` back into its numeric edge. With data ``x`` the
    numeric edge is first fitted (least squares, residual branch off) to the symbolic curve on the
    range that input takes on ``x`` (which the layer's grid should cover, as after training or
    ``kan.update_grid``), so the model keeps its function; without, the edge returns to whatever its
    spline held."""
    xs = None if x is None else _input_samples(model, _check_model(model, x), num_points)[layer]
    return _unfixed(model, layer, out, inp, xs)


def _product_edges(model: Any) -> list[tuple[int, int, int]]:
    """``(layer, out, inp)`` of every edge that leaves a multiplication node."""
    counts = mult_counts(model)
    if not any(counts):
        raise ValueError("the model has no multiplication nodes")
    edges = []
    for l, count in enumerate(counts[:-1]):  # the last layer feeds no node
        width = model.layers[l + 1].in_features
        edges += [(l + 1, o, node) for node in range(width - count, width)
                  for o in range(model.layers[l + 1].out_features)]
    return edges


def release_after_products(model: Any, x: Float[Array, "n in"], *, num_points: int = 64) -> Any:
    """Undo :func:`fix_after_products` keeping the function (:func:`unfix_symbolic` with data ``x``):
    the edges after the products become numeric again, starting from ``c*x + d``, so a refit can
    bend them (``asin(a/b)``) while the products keep the split the linear start found. Edges that
    are numeric or pruned are left as they are."""
    samples = _input_samples(model, _check_model(model, x), num_points)  # unfixing keeps the function
    for l, o, i in _product_edges(model):
        layer = model.layers[l]
        if layer.symbolic is not None and layer.symbolic.active[o, i] > 0 and layer.edge_mask[o, i] > 0:
            model = _unfixed(model, l, o, i, samples[l])
    return model


def symbolic_status(model: Any) -> list[np.ndarray]:
    """Per layer, an ``(out, in)`` int array: 0 pruned edge, 1 numeric edge, 2 symbolic edge."""
    status = []
    for layer in model.layers:
        mask = np.asarray(layer.edge_mask) > 0
        sym = np.zeros(mask.shape, bool) if layer.symbolic is None else np.asarray(layer.symbolic.active) > 0
        status.append(np.where(mask, np.where(sym, 2, 1), 0))
    return status
