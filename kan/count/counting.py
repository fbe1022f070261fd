"""Parameter and FLOP counts of a built model, in this package's convention or in Yu et al. 2024's
("KAN or MLP: A Fairer Comparison", arXiv 2407.16674), and XLA's own count of the jitted forward.

Trainable means: every floating-point array leaf of the pytree that is not a buffer
(:func:`bases.buffer_field`: B-spline grids, pruning masks, fixed phase points, S-KAN's temperature and
held-out errors are buffers; static fields are not arrays). That is what an optimiser updates.

FLOPs are forward FLOPs per sample: a multiply or an add counts 1, a transcendental counts the cost
:mod:`bases` gives it (exp, tanh, ...), activations cost relu 1, sigmoid 4, silu 5, tanh 6, gelu 14.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from bases import BSpline, count_parameters as _pytree_count
from bases.activation_pair import pair_feature_stats

from ..layers import afkan_layer
from ..layers.afkan_layer import AFKANLayer
from ..layers.group_layer import GroupKANLayer
from ..layers.layer import KANLayer
from ..layers.selectable_core import SelectableKANLayer, SelectedKANLayer
from ..model import KAN, MLP
from .kinds import ACTIVATION_FLOPS
from ..layers.spline_mlp import LayerStack, SplineActivation, SplineMLP

CONVENTIONS = ("package", "kanbefair")
_FN_NAMES = {jax.nn.relu: "relu", jax.nn.sigmoid: "sigmoid", jax.nn.silu: "silu", jax.nn.swish: "silu",
             jnp.tanh: "tanh", jax.nn.gelu: "gelu"}


def count_parameters(model: Any, convention: str = "package") -> int:
    """Trainable scalars of ``model`` (see the module docstring for what is trainable).

    ``convention="kanbefair"``: Yu et al. 2024's formulas, ``d_in d_out (G + K + 3) + d_out`` per
    B-spline KAN layer and ``d_out (d_in + 1)`` per MLP layer (only those two kinds).
    """
    _check_convention(convention)
    if convention == "kanbefair":
        return kanbefair_counts(model)[0]
    return _pytree_count(model)


def _activation_name(fn: Any, who: str) -> str:
    name = _FN_NAMES.get(fn)
    if name is None:
        raise ValueError(f"{who}: no FLOP cost known for activation {fn!r}; known: "
                         f"{', '.join(ACTIVATION_FLOPS)}")
    return name


def count_flops(model: Any, convention: str = "package") -> int:
    """Forward FLOPs per sample of ``model``.

    Kinds: :class:`kan.KAN`, :class:`kan.MLP`, any layer of :mod:`kan.layers` (KANLayer, GroupKANLayer,
    AFKANLayer, SelectableKANLayer, SelectedKANLayer), :class:`LayerStack`, :class:`SplineMLP`,
    :class:`SplineActivation`, ``kan.nn`` feed-forward blocks and Linear layers, ``eqx.nn.Linear``
    tuples/lists of these (summed), and any other object with a ``flops()`` method. ``convention="kanbefair"`` (B-spline KAN and MLP only):
    ``d_in d_out [9K(G + 1.5K) + 2G - 2.5K + 3] + act d_in`` per KAN layer and
    ``2 d_in d_out + act d_out`` per MLP layer (activation after hidden layers only).
    """
    _check_convention(convention)
    if convention == "kanbefair":
        return kanbefair_counts(model)[1]
    if isinstance(model, MLP):
        return int(model.flops(ACTIVATION_FLOPS[_activation_name(model.activation, "count_flops")]))
    if isinstance(model, (KAN, KANLayer, GroupKANLayer, AFKANLayer, SelectableKANLayer, SelectedKANLayer,
                          LayerStack, SplineMLP, SplineActivation)):
        return int(model.flops())
    if isinstance(model, (tuple, list)):
        return sum(count_flops(m) for m in model)
    if isinstance(model, eqx.nn.Linear):
        return 2 * model.in_features * model.out_features + (model.out_features if model.use_bias else 0)
    name = type(model).__name__
    if name == "FeedForward" and hasattr(model, "fc1"):  # kan.nn.FeedForward
        act = ACTIVATION_FLOPS[model.activation] * model.hidden if model.activation else 0
        return count_flops(model.fc1) + act + count_flops(model.fc2)
    if name == "Linear" and hasattr(model, "weight"):  # kan.nn.Linear
        o, i = model.weight.shape
        return 2 * i * o + (o if getattr(model, "bias", None) is not None else 0)
    if callable(getattr(model, "flops", None)):  # any other model that counts itself
        return int(model.flops())
    raise TypeError(f"count_flops: unsupported model kind {name}; supported: KAN, MLP, KANLayer, GroupKANLayer, "
                    "AFKANLayer, SelectableKANLayer, SelectedKANLayer, LayerStack, SplineMLP, "
                    "SplineActivation, FeedForward, Linear (or a list of them)")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown counting convention {convention!r}; valid: {', '.join(CONVENTIONS)}")


def kanbefair_layer_counts(d_in: int, d_out: int, grid_size: int | None, order: int | None,
                           activation: str = "silu") -> tuple[int, int]:
    """Yu et al. 2024's ``(parameters, FLOPs)`` of one layer: a B-spline KAN layer (``grid_size`` G,
    ``order`` K, shortcut ``activation``), or an MLP layer when ``grid_size`` is None (``activation``
    after it, or ``None`` for the output layer)."""
    act = ACTIVATION_FLOPS[activation] if activation else 0
    if grid_size is None:
        return d_out * (d_in + 1), 2 * d_in * d_out + act * d_out
    g, k = int(grid_size), int(order)
    per_edge_twice = 18 * k * g + 27 * k * k + 4 * g - 5 * k + 6  # 2 [9K(G + 1.5K) + 2G - 2.5K + 3]
    return d_in * d_out * (g + k + 3) + d_out, d_in * d_out * per_edge_twice // 2 + act * d_in


def kanbefair_counts(model: Any) -> tuple[int, int]:
    """``(parameters, FLOPs)`` of a B-spline :class:`kan.KAN` (SiLU shortcut) or a :class:`kan.MLP` in
    Yu et al. 2024's convention: KAN [784, 2, 10], G = 3, K = 2 gives (12716, 181786)."""
    if isinstance(model, KAN):
        params = flops = 0
        for layer in model.layers:
            if not isinstance(layer.basis, BSpline) or layer.base_weight is None:
                raise ValueError("kanbefair convention: needs a B-spline KAN with a residual activation")
            act = _activation_name(layer.base_activation, "kanbefair_counts")
            p, f = kanbefair_layer_counts(layer.in_features, layer.out_features, layer.basis.grid_size,
                                          layer.basis.order, act)
            params, flops = params + p, flops + f
        return params, flops
    if isinstance(model, MLP):
        act = _activation_name(model.activation, "kanbefair_counts")
        widths = model.widths
        counts = [kanbefair_layer_counts(i, o, None, None, act if n < len(widths) - 2 else None)
                  for n, (i, o) in enumerate(zip(widths[:-1], widths[1:]))]
        return sum(p for p, _ in counts), sum(f for _, f in counts)
    raise ValueError(f"kanbefair convention is defined for B-spline kan.KAN and kan.MLP only, got "
                     f"{type(model).__name__}")


def kanbefair_spec_counts(kind: str, widths, grid_size: int = 5, order: int = 3,
                          activation: str | None = None) -> tuple[int, int]:
    """Yu et al. 2024's ``(parameters, FLOPs)`` of ``kind`` ("kan" or "mlp") from its widths alone:
    ``kanbefair_spec_counts("kan", (784, 2, 10), grid_size=3, order=2) == (12716, 181786)``.
    ``activation``: the KAN shortcut (default silu) or the MLP's hidden activation (default gelu)."""
    widths = tuple(int(w) for w in widths)
    pairs = list(zip(widths[:-1], widths[1:]))
    if kind == "kan":
        counts = [kanbefair_layer_counts(i, o, grid_size, order, activation or "silu") for i, o in pairs]
    elif kind == "mlp":
        counts = [kanbefair_layer_counts(i, o, None, None, (activation or "gelu") if n < len(pairs) - 1 else None)
                  for n, (i, o) in enumerate(pairs)]
    else:
        raise ValueError(f"kanbefair convention is defined for 'kan' and 'mlp' only, got {kind!r}")
    return sum(p for p, _ in counts), sum(f for _, f in counts)


class XlaCost(NamedTuple):
    """XLA's cost analysis of the compiled forward, per sample: ``flops`` (adds, multiplies, compares,
    ...) and ``transcendentals`` (exp, log, tanh, ... counted separately by XLA)."""

    flops: float
    transcendentals: float


def xla_flops(model: Any, x: Float[Array, "batch in"], *, optimized: bool = True) -> XlaCost:
    """XLA's cost analysis of ``jax.jit(model)(x)``, divided by the batch size.

    ``optimized=True``: of the compiled program (after XLA's passes; fusion may recompute an elementwise
    value once per consumer, which this counts). ``optimized=False``: of the lowered HLO as the program
    states it, before compilation (cheap: nothing is compiled). XLA does not see inside custom calls:
    B-spline layers on the native CPU kernel (``bases.bspline.native``, chosen by ``contraction="auto"``
    for fine grids and large batches) count only their XLA parts; build them with
    ``contraction="dense"`` to measure the dense contraction. AF-KAN layers are traced with their
    feature statistics on XLA (:func:`kan.layers.afkan_layer.statistics`), not the native kernels.
    """
    if not hasattr(x, "ndim") or x.ndim < 2:
        raise ValueError("xla_flops: x must be a batch (batch, ..., in) of inputs")
    with afkan_layer.statistics(pair_feature_stats):
        lowered = jax.jit(lambda m, inputs: m(inputs)).lower(model, x)
    cost = lowered.compile().cost_analysis() if optimized else lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    n = x.shape[0]
    return XlaCost(float(cost.get("flops", 0.0)) / n, float(cost.get("transcendentals", 0.0)) / n)
