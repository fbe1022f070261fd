"""Data-dependent calibration of deep stacks: LSUV-style rescaling of every layer's output weights.

LSUV ("layer-sequential unit-variance", Mishkin & Matas 2016, "All you need is a good init",
arXiv 1511.06422, Algorithm 1): walk the layers in order; for each, run the calibration batch through
the already-calibrated layers before it and divide the layer's weights by the standard deviation of
its output, ``W <- W * sqrt(target / Var[y])``, repeating until ``|Var[y] - target| < tol`` or
``max_iters`` tries. This module does that for every layer kind of the package:

=========================  =========================================================================
layer                      scaled (everything else, biases, masks, grids, rational coefficients kept)
=========================  =========================================================================
``KANLayer``               ``spline_weight``, ``base_weight``, active symbolic edges' ``c`` and ``d``
``GroupKANLayer``          ``weight`` (the Linear after the group rational)
``AFKANLayer``             ``weight`` (the output map after LayerNorm and the activation)
``SelectableKANLayer``     every candidate's ``weights`` and ``base_weight``
``SelectedKANLayer``       its groups, as ``KANLayer``
``MLP`` (each layer)       ``weights[l]``
``eqx.nn.Linear``          ``weight``
=========================  =========================================================================

Every scaled term is linear in those weights, so a layer's output is affine in the factor:
``y(s) = s (y - b) + b`` with ``b`` its biases. The function class is unchanged (same parameters, same
structure; only their values are multiplied).

Statistic: the *variance* of the layer output over all its entries (batch and channels pooled, as
``jnp.var`` and as in LSUV's code), not the mean square. Reasons: (1) it is the figure the package's
deep-stack tests and ``benchmarks.models.deep_variance`` measure, and what "keeps the signal's scale" means
for the next layer's basis (a shared offset is not signal); (2) at init (biases 0, zero-mean weights)
it equals the mean square up to the squared mean of the output, so it agrees with the
variance-preserving init formulas, which are written for ``E[y^2]``; (3) both are quadratic in the
factor (with biases), so neither is easier to reach; the variance does not move with a common offset.

The search is exact: because ``y(s)`` is affine in ``s``, two runs of a layer (``s = 1`` and
``s = 0``, i.e. its biases) give ``Var(s)`` of the next layer's input as a polynomial in ``s``, solved
for ``target`` (the positive root closest to 1). With zero biases that is LSUV's
``s = sqrt(target / Var)``; with biases, or inside a ``KAN`` with multiplication nodes (:mod:`kan.layers.mult`),
where the statistic is taken on the node values after the products (they scale as ``s^2``), it is
the root of a quadratic or quartic. A third run of the rescaled layer measures the variance it
reports; LSUV's iteration ``s <- s sqrt(target / Var)`` (up to ``max_iters`` rounds, until within
``tol``) only runs if that check is off, i.e. for a registered kind whose scale is not linear.

One pass is exact: rescaling layer ``l`` changes only the inputs of layers after it, and those are
calibrated after it, so repeating the walk would not change any factor.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..layers.mult import combine_subnodes, mult_counts
from ..layers.layer import KANLayer
from ..model import KAN, MLP
from .layer_scaling import SCALERS, register_layer_kind, scale_weight, scaler_for

__all__ = ["CalibrationRecord", "calibrate", "layer_variances", "register_layer_kind", "scale_layer"]

# A variance below this fraction of the output's mean square is a constant output (rounding noise).
_ZERO_VARIANCE = 1e-12


class CalibrationRecord(NamedTuple):
    """What :func:`calibrate` did to one layer: where it is (``path``, e.g. ``"layers[3]"``), its kind,
    the factor ``scale`` its output weights were multiplied by, the output variance on the batch before
    and after (after: measured by running the rescaled layer), and the rescaling rounds (1 unless the
    layer's output is not affine in the scale, see :func:`register_layer_kind`)."""

    path: str
    kind: str
    scale: float
    variance_before: float
    variance_after: float
    rounds: int


def scale_layer(layer: Any, s: float) -> Any:
    """``layer`` with its output-producing weights multiplied by ``s`` (see the table above)."""
    scale = scaler_for(layer)
    if scale is None:
        raise TypeError(_unknown_kind(layer, ""))
    return scale(layer, s)


class _Dense(eqx.Module):
    """One layer of :class:`kan.MLP`: ``(act(x) if not first else x) @ W^T + b``."""

    weight: Array
    bias: Array
    activation: Callable[[Array], Array] = eqx.field(static=True)
    first: bool = eqx.field(static=True)

    def __call__(self, x: Array) -> Array:
        if not self.first:
            x = self.activation(x)
        return x @ self.weight.T + self.bias


SCALERS[_Dense] = scale_weight


def _forward(layer: Any, x: Array) -> Array:
    """``layer`` on a batch ``(..., in)``; Equinox's own layers take one sample, so they are vmapped."""
    if isinstance(layer, eqx.nn.Linear):
        if layer.in_features == "scalar":
            raise TypeError("calibrate: eqx.nn.Linear with in_features='scalar' is not supported")
        flat = x.reshape((-1, x.shape[-1]))
        y = jax.vmap(layer)(flat)
        return y.reshape(x.shape[:-1] + y.shape[1:])
    return layer(x)


# ----- the scale of one layer -----------------------------------------------------------------------
_jitted_forward = eqx.filter_jit(_forward)


def _forward_jit(layer: Any, x: Array) -> Array:
    """:func:`_forward`, compiled once per layer structure and batch shape. ``KANLayer`` jits its own
    ``__call__``: it is called directly, so the compiled code is shared with the caller's own calls."""
    return layer(x) if type(layer) is KANLayer else _jitted_forward(layer, x)


def _node_polynomials(u: np.ndarray, b: np.ndarray, num_mult: int) -> list[np.ndarray]:
    """The next layer's inputs as polynomials in the scale ``s``: coefficient arrays ``[c0, c1, c2]``
    (entries ``c0 + c1 s + c2 s^2``) from the layer output ``s u + b``; products of subnode pairs
    (:func:`kan.layers.mult.combine_subnodes`) are the degree-2 terms."""
    u = u.reshape(-1, u.shape[-1])
    b = b.reshape(-1, b.shape[-1])
    if num_mult == 0:
        return [b, u, np.zeros_like(u)]
    k = u.shape[-1] - 2 * num_mult
    u1, u2, b1, b2 = u[:, k::2], u[:, k + 1::2], b[:, k::2], b[:, k + 1::2]
    zeros = np.zeros_like(u[:, :k])
    return [np.concatenate(parts, axis=-1) for parts in
            ((b[:, :k], b1 * b2), (u[:, :k], u1 * b2 + b1 * u2), (zeros, u1 * u2))]


def _variance_polynomial(coeffs: list[np.ndarray]) -> np.ndarray:
    """Coefficients (lowest first) of ``Var(s) = E[n(s)^2] - E[n(s)]^2`` over all entries ``n``."""
    mean = np.array([c.mean() for c in coeffs])
    square = np.zeros(2 * len(coeffs) - 1)
    for i, ci in enumerate(coeffs):
        for j, cj in enumerate(coeffs):
            square[i + j] += np.mean(ci * cj)
    return square - np.convolve(mean, mean)


def _solve_scale(poly: np.ndarray, target: float, where: str) -> float:
    """The positive ``s`` with ``Var(s) = target`` closest to 1 (the least change), or a ValueError."""
    shifted = poly.copy()
    shifted[0] -= target
    roots = np.roots(np.trim_zeros(shifted[::-1], "f"))
    real = roots[np.abs(roots.imag) <= 1e-9 * np.maximum(1.0, np.abs(roots.real))].real
    positive = real[real > 0]
    if positive.size == 0:
        grid = np.exp(np.linspace(-20.0, 20.0, 4001))
        lowest = float(np.min(np.polyval(poly[::-1], grid)))
        raise ValueError(f"calibrate: {where} cannot reach output variance {target:g} by scaling its "
                         f"weights: its variance stays >= {lowest:.4g} (set by its biases)")
    return float(positive[np.argmin(np.abs(np.log(positive)))])


def _calibrate_layer(layer: Any, x: Array, cfg: "_Config", path: str, records: list,
                     num_mult: int = 0) -> tuple[Any, Array]:
    """LSUV for one layer. The output is affine in the scale, ``y(s) = s u + b`` with ``b = y(0)`` (the
    biases), so the variance of the next layer's input is a polynomial in ``s`` (degree 2, or 4 with
    multiplication nodes) and the scale is solved for exactly; a check run of the scaled layer follows,
    and Mishkin & Matas' update ``s <- s sqrt(target / Var)`` repeats while it is off by more than ``tol``
    (only for registered kinds whose ``scale`` is not exactly linear)."""
    scale = scaler_for(layer)
    where = f"layer {path} ({type(layer).__name__})"

    def run(s: float) -> tuple[Any, Array, float, float]:
        scaled = layer if s == 1.0 else scale(layer, s)
        y = _forward_jit(scaled, x)
        nodes = combine_subnodes(y, num_mult).astype(jnp.float32)
        var, ms = float(jnp.var(nodes)), float(jnp.mean(nodes ** 2))
        if not (math.isfinite(var) and math.isfinite(ms)):
            raise FloatingPointError(f"calibrate: {where} gives a non-finite output on the batch "
                                     f"(scaled by {s:.4g})")
        return scaled, y, var, ms

    _, y1, before, ms = run(1.0)
    if before <= _ZERO_VARIANCE * ms:
        raise ValueError(f"calibrate: {where} has output variance 0 on the batch (constant output: zero "
                         "weights, a constant input or pruned edges), so no rescaling can reach the target")
    new, y, var, s, rounds = layer, y1, before, 1.0, 1
    if abs(before / cfg.target - 1.0) > cfg.tol:
        y0 = run(0.0)[1]
        u, b = np.asarray(y1 - y0, np.float64), np.asarray(y0, np.float64)
        poly = _variance_polynomial(_node_polynomials(u, b, num_mult))
        if np.max(np.abs(poly[1:])) <= _ZERO_VARIANCE * max(ms, 1e-30):
            raise ValueError(f"calibrate: {where} has an output variance ({before:.4g}) that does not depend "
                             "on its weights (zero weights, biases only), so no rescaling can reach the target")
        s = _solve_scale(poly, cfg.target, where)
        new, y, var, _ = run(s)
    while abs(var / cfg.target - 1.0) > cfg.tol:
        if rounds >= cfg.max_iters:
            warnings.warn(f"calibrate: {where} reached variance {var:.4g} (target {cfg.target:g}) after "
                          f"{rounds} rescalings; continuing with it", RuntimeWarning, stacklevel=3)
            break
        s *= math.sqrt(cfg.target / var)  # LSUV's step (Mishkin & Matas 2016, Algorithm 1)
        new, y, var, _ = run(s)
        rounds += 1
    records.append(CalibrationRecord(path, type(layer).__name__, s, before, var, rounds))
    return new, combine_subnodes(y, num_mult)


# ----- walking a model --------------------------------------------------------------------------
class _Config(NamedTuple):
    target: float
    tol: float
    max_iters: int


def _is_parameter_free(obj: Any) -> bool:
    """Activations and other callables without floating-point arrays (``jax.nn.gelu``, ``eqx.nn.Lambda``)."""
    if not callable(obj):
        return False
    return not jax.tree_util.tree_leaves(eqx.filter(obj, eqx.is_inexact_array))


def _unknown_kind(obj: Any, path: str) -> str:
    kinds = sorted({c.__name__ for c in SCALERS if c is not _Dense} | {"KAN", "MLP"})
    at = f" at {path}" if path else ""
    return (f"calibrate: unknown layer kind {type(obj).__name__}{at}; it knows {', '.join(kinds)}, "
            "sequences of them (tuple, list, eqx.nn.Sequential) and parameter-free callables. "
            "Add one with register_layer_kind (from kan.edit.calibrate import register_layer_kind).")


Visit = Callable[[Any, Array, str, int], tuple[Any, Array]]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _walk(obj: Any, x: Array, visit: Visit, path: str) -> tuple[Any, Array]:
    """Walk ``obj`` on input ``x``, calling ``visit(layer, x, path, num_mult) -> (layer, next input)``
    on every scalable layer in order; return the rebuilt ``obj`` and its output."""
    if isinstance(obj, KAN):
        layers, counts = [], mult_counts(obj)
        for l, layer in enumerate(obj.layers):
            where = _join(path, f"layers[{l}]")
            if scaler_for(layer) is None:
                raise TypeError(_unknown_kind(layer, where))
            layer, x = visit(layer, x, where, counts[l])
            layers.append(layer)
        return eqx.tree_at(lambda m: m.layers, obj, tuple(layers)), x
    if isinstance(obj, MLP):
        weights = []
        for l, (w, b) in enumerate(zip(obj.weights, obj.biases)):
            dense, x = visit(_Dense(w, b, obj.activation, l == 0), x, _join(path, f"weights[{l}]"), 0)
            weights.append(dense.weight)
        return eqx.tree_at(lambda m: m.weights, obj, tuple(weights)), x
    if isinstance(obj, eqx.nn.Sequential):
        layers, x = _walk(tuple(obj.layers), x, visit, _join(path, "layers"))
        return eqx.tree_at(lambda m: m.layers, obj, layers), x
    if isinstance(obj, (tuple, list)):
        out = []
        for i, item in enumerate(obj):
            item, x = _walk(item, x, visit, f"{path}[{i}]")
            out.append(item)
        return type(obj)(out), x
    if scaler_for(obj) is not None:
        return visit(obj, x, path or "model", 0)
    if _is_parameter_free(obj):
        return obj, obj(x)
    raise TypeError(_unknown_kind(obj, path))


def _in_features(obj: Any) -> int | None:
    if isinstance(obj, MLP):
        return int(obj.weights[0].shape[1])
    if isinstance(obj, KAN):
        return int(obj.layers[0].in_features)
    if isinstance(obj, eqx.nn.Sequential):
        return _in_features(tuple(obj.layers))
    if isinstance(obj, (tuple, list)):
        for item in obj:  # the first layer with a known size (activations in front keep the size)
            size = _in_features(item)
            if size is not None:
                return size
        return None
    if isinstance(obj, eqx.nn.Linear):
        return None if obj.in_features == "scalar" else int(obj.in_features)
    size = getattr(obj, "in_features", None)
    return int(size) if isinstance(size, (int, np.integer)) else None


def _check_batch(model: Any, x: Any) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"calibrate: x must be a floating-point array, got dtype {x.dtype}")
    size = _in_features(model)
    if x.ndim < 2 or (size is not None and x.shape[-1] != size):
        expected = f"(batch, {size})" if size is not None else "(batch, in_features)"
        raise ValueError(f"calibrate: x must have shape {expected} (any leading batch axes), "
                         f"got {tuple(x.shape)}")
    if math.prod(x.shape[:-1]) < 2:
        raise ValueError(f"calibrate: need at least 2 samples to measure a variance, got shape {tuple(x.shape)}")
    if not bool(jnp.all(jnp.isfinite(x))):
        bad = int(jnp.sum(~jnp.isfinite(x)))
        raise ValueError(f"calibrate: x contains {bad} NaN or inf values")
    return x


def calibrate(
    model: Any,
    x: Float[Array, "... in"],
    *,
    target: float = 1.0,
    tol: float = 1e-3,
    max_iters: int = 5,
    return_records: bool = False,
) -> Any:
    """Rescale every layer of ``model`` so that its output has variance ``target`` on the batch ``x``.

    LSUV (Mishkin & Matas 2016, "All you need is a good init", Algorithm 1), for the layers of this
    package: layers are visited in order and each one's output-producing weights (module docstring)
    are multiplied by one factor ``s`` so that ``Var[output] = target`` on ``x`` propagated through the
    already-calibrated layers before it. The variance is taken over all output entries (batch and
    channels pooled, like ``jnp.var``), not the mean square; biases are left alone. Inside a ``KAN``
    with multiplication nodes the statistic is the node values after the products (the next layer's
    input). Nothing but those weights changes: not biases, masks, grids, rational coefficients,
    selection logits, LayerNorm parameters.

    Args:
        model: a ``kan.KAN`` (``mult_nodes`` allowed), a ``kan.MLP``, a single layer, or a tuple / list /
            ``eqx.nn.Sequential`` mixing ``KANLayer``, ``GroupKANLayer``, ``AFKANLayer``,
            ``SelectableKANLayer``, ``SelectedKANLayer``, ``MLP``, ``KAN``, ``eqx.nn.Linear`` (applied
            per sample) and parameter-free callables (activations, ``eqx.nn.Lambda``, applied to the
            whole batch); other kinds via :func:`register_layer_kind`.
        x: calibration batch ``(..., in)``, at least 2 samples, finite. Deep stacks whose variance map
            is unstable (rational, swish, GELU; ``docs/init.md``) amplify the batch's sampling error
            with depth: a few thousand rows keep 32 layers within ~10% on fresh data.
        target: output variance to reach, > 0.
        tol: accepted relative error ``|Var / target - 1|`` of each layer (the exact solve lands at
            float32 rounding; ``tol`` matters only for the LSUV fallback rounds).
        max_iters: most rescaling rounds per layer (one is exact for every built-in kind); a layer
            still off target after them gives a ``RuntimeWarning`` and keeps its last scale.
        return_records: also return one :class:`CalibrationRecord` per calibrated layer.

    Returns:
        A model of the same pytree structure (``eqx.tree_at``), or ``(model, records)``.

    Raises:
        ValueError: ``x`` of the wrong shape, with NaN/inf, with fewer than 2 samples; a layer whose
            output variance on the batch is 0, or does not depend on its weights, or cannot come down
            to ``target`` because of its biases; bad ``target`` / ``tol`` / ``max_iters``.
        TypeError: an unknown layer kind (named, with its position), a non-floating ``x``.
        FloatingPointError: a layer gives NaN/inf on the (finite) batch.
    """
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise ValueError(f"calibrate: target must be a finite number > 0, got {target!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"calibrate: tol must be a finite number > 0, got {tol!r}")
    if not isinstance(max_iters, (int, np.integer)) or max_iters < 1:
        raise ValueError(f"calibrate: max_iters must be an integer >= 1, got {max_iters!r}")
    x = _check_batch(model, x)
    records: list[CalibrationRecord] = []
    cfg = _Config(float(target), float(tol), int(max_iters))
    visit = lambda layer, h, path, num_mult: _calibrate_layer(layer, h, cfg, path, records, num_mult)
    new, _ = _walk(model, x, visit, "")
    return (new, records) if return_records else new


def layer_variances(model: Any, x: Float[Array, "... in"]) -> list[tuple[str, float]]:
    """``(path, Var)`` of every layer's output on the batch ``x`` (the next layer's input: node values
    after products in a ``KAN`` with multiplication nodes), walking ``model`` as :func:`calibrate` does;
    accepts the same models. For finding where a deep stack drifts, and for checking on held-out data."""
    x = _check_batch(model, x)
    out: list[tuple[str, float]] = []

    def visit(layer: Any, h: Array, path: str, num_mult: int) -> tuple[Any, Array]:
        h = combine_subnodes(_forward_jit(layer, h), num_mult)
        out.append((path, float(jnp.var(h.astype(jnp.float32)))))
        return layer, h

    _walk(model, x, visit, "")
    return out
