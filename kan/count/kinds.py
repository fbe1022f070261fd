"""Model kinds by name: build a model from its widths, and count its parameters and FLOPs from the
widths alone (closed forms, no model built), so that widths can be matched to a budget cheaply.

Each closed form mirrors the ``flops()`` method of the layer it describes and reuses the basis'
``flops_per_input()`` and the basis pytree's parameter count (a basis is cheap to build);
``tests/test_count.py`` checks that both agree with the built model for every kind.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from bases import ActivationPair, Basis, Rational, count_parameters

from ..layers.afkan_layer import AFKANLayer
from ..layers.group_layer import GroupKANLayer
from ..layers.selectable_core import SelectableKANLayer
from ..layers.selectable_spaces import CANDIDATES
from ..model import KAN, MLP, basis_factory_from_name
from ..layers.spline_mlp import SILU_FLOPS, LayerStack, SplineMLP
from ..layers.pade import PadeLayer, PadeStack, combine_flops, power_flops
from ..layers.rational_activation import RationalActivation, RationalMLP

ACTIVATION_FLOPS = {"relu": 1, "sigmoid": 4, "silu": 5, "tanh": 6, "gelu": 14}
_SKAN_DEFAULT = ("bspline", "rbf", "fourier", "chebyshev", "rational")


@functools.lru_cache(maxsize=512)
def _basis_stats(factory_key: tuple, d: int) -> tuple[int, int, int]:
    """``(num_functions, flops_per_input, trainable parameters)`` of a basis on ``d`` inputs. The basis is
    built abstractly (shapes only, nothing computed or compiled), then its leaves stand in as zeros."""
    abstract = eqx.filter_eval_shape(_make_basis, factory_key, d)
    basis = jax.tree_util.tree_map(
        lambda leaf: np.zeros(leaf.shape, leaf.dtype) if isinstance(leaf, jax.ShapeDtypeStruct) else leaf, abstract)
    return basis.num_functions, int(basis.flops_per_input()), count_parameters(basis)


def _make_basis(factory_key: tuple, d: int) -> Basis:
    family, opts = factory_key[0], dict(factory_key[1:])
    if family == "named":
        return basis_factory_from_name(opts["name"], opts["grid_size"], opts["order"], (-1.0, 1.0))(d)
    if family == "candidate":
        return CANDIDATES[opts["name"]](d)
    if family == "afkan":
        return ActivationPair(d, opts["grid_size"], opts["order"], trainable=True, shared=True)
    if family == "rational":
        return Rational(d, min(8, d))
    raise ValueError(f"unknown basis family {family!r}")


def _kan_layer(i: int, o: int, basis_key: tuple, residual: bool = True) -> tuple[int, int]:
    """Edge-sum layer (:meth:`kan.KANLayer.flops`): ``o i k`` spline weights, ``o i`` residual
    weights, ``o`` biases, the basis' own parameters."""
    k, fpi, bp = _basis_stats(basis_key, i)
    kk = k + (1 if residual else 0)
    params = o * i * k + (o * i if residual else 0) + o + bp
    flops = i * fpi + (SILU_FLOPS * i if residual else 0) + 2 * i * kk * o + o
    return params, flops


def _pairs(widths: tuple[int, ...]):
    return list(zip(widths[:-1], widths[1:]))


def _kan(widths, grid_size=5, order=3, basis="bspline"):
    key = ("named", ("name", basis), ("grid_size", int(grid_size)), ("order", int(order)))
    counts = [_kan_layer(i, o, key) for i, o in _pairs(widths)]
    return sum(p for p, _ in counts), sum(f for _, f in counts)


def _mlp(widths, activation="gelu"):
    params = sum((i + 1) * o for i, o in _pairs(widths))
    flops = sum(2 * i * o + o for i, o in _pairs(widths)) + ACTIVATION_FLOPS[activation] * sum(widths[1:-1])
    return params, flops


def _grkan(widths):
    params = flops = 0
    for i, o in _pairs(widths):
        _, fpi, bp = _basis_stats(("rational",), i)
        params += bp + i * o + o
        flops += i * fpi + 2 * i * o + o
    return params, flops


def _afkan(widths, grid_size=3, order=3):
    params = flops = 0
    for d, o in _pairs(widths):
        k, fpi, bp = _basis_stats(("afkan", ("grid_size", int(grid_size)), ("order", int(order))), d)
        params += o * d + 2 * d + bp + k + 2  # W, LayerNorm, points, score vector + bias, temperature
        reduce = 2 * d * k + 4 * d + d * k  # global attention (AFKANLayer.flops)
        flops += d * fpi + 3 * d * k + reduce + 8 * d + SILU_FLOPS * d + 2 * d * o
    return params, flops


def _skan(widths, candidates=_SKAN_DEFAULT):
    params = flops = 0
    for d, o in _pairs(widths):
        for name in candidates:
            k, fpi, bp = _basis_stats(("candidate", ("name", name)), d)
            params += o * d * k + bp
            flops += d * fpi + d * k + 2 * d * k * o
        params += d * len(candidates) + o * d + o  # logits, residual weight, bias
        flops += SILU_FLOPS * d + 2 * d * o + o
    return params, flops


def _spline_mlp(widths, grid_size=5, order=3):
    k, fpi, _ = _basis_stats(("named", ("name", "bspline"), ("grid_size", int(grid_size)),
                              ("order", int(order))), 1)
    hidden = sum(widths[1:-1])
    params = sum((i + 1) * o for i, o in _pairs(widths)) + hidden * (k + 1)
    flops = sum(2 * i * o + o for i, o in _pairs(widths)) + hidden * (fpi + SILU_FLOPS + 1 + 2 * k)
    return params, flops


def _rational_mlp(widths, numerator=5, denominator=4):
    """Linear layers and one shared rational (``m + 1 + n`` coefficients) after every hidden one."""
    act = RationalActivation(int(numerator), int(denominator), "identity")
    params = sum((i + 1) * o for i, o in _pairs(widths)) + int(numerator) + 1 + int(denominator)
    flops = sum(2 * i * o + o for i, o in _pairs(widths)) + act.flops_per_element() * sum(widths[1:-1])
    return params, flops


def _pade(widths, numerator_degree=3, denominator_degree=2):
    """Dense Padé neurons (plain form, safe denominator "B"): ``o (K + L) i + o`` parameters per layer."""
    k, l = int(numerator_degree), int(denominator_degree)
    params = sum(o * (k + l) * i + o for i, o in _pairs(widths))
    flops = sum(power_flops(i, k, l, "B") + combine_flops(k, l, i, o, "plain", "B") for i, o in _pairs(widths))
    return params, flops


def _build_rational_mlp(widths, key, numerator=5, denominator=4):
    return RationalMLP(widths, key=key, sharing="shared", numerator=numerator, denominator=denominator,
                       init="leaky_relu" if (numerator, denominator) == (5, 4) else "identity")


def _build_pade(widths, key, numerator_degree=3, denominator_degree=2):
    keys = jax.random.split(key, len(widths) - 1)
    return PadeStack([PadeLayer(i, o, numerator_degree, denominator_degree, key=k)
                      for (i, o), k in zip(_pairs(widths), keys)])


def _build_kan(basis):
    def build(widths, key, grid_size=5, order=3):
        return KAN(widths, key=key, basis_factory=basis, grid_size=grid_size, order=order)
    return build


def _build_mlp(widths, key, activation="gelu"):
    fns = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "silu": jax.nn.silu, "tanh": jax.numpy.tanh,
           "gelu": jax.nn.gelu}
    return MLP(widths, key=key, activation=fns[activation])


def _build_grkan(widths, key):
    keys = jax.random.split(key, len(widths) - 1)
    return LayerStack([GroupKANLayer(i, o, init="identity" if n == 0 else "swish", key=k)
                       for n, ((i, o), k) in enumerate(zip(_pairs(widths), keys))])


def _build_afkan(widths, key, grid_size=3, order=3):
    keys = jax.random.split(key, len(widths) - 1)
    return LayerStack([AFKANLayer(i, o, grid_size, order, key=k) for (i, o), k in zip(_pairs(widths), keys)])


def _build_skan(widths, key, candidates=_SKAN_DEFAULT):
    keys = jax.random.split(key, len(widths) - 1)
    return LayerStack([SelectableKANLayer(i, o, tuple(candidates), key=k)
                       for (i, o), k in zip(_pairs(widths), keys)])


def _build_spline_mlp(widths, key, grid_size=5, order=3):
    return SplineMLP(widths, key=key, grid_size=grid_size, order=order)


@dataclasses.dataclass(frozen=True)
class Kind:
    """A model kind: ``build(widths, key, **options)``, closed-form ``counts(widths, **options) ->
    (parameters, flops)``, whether it has a grid size to tune, and the smallest hidden width."""

    name: str
    build: Callable[..., Any]
    counts: Callable[..., tuple[int, int]]
    grid_option: str | None = None
    min_hidden: int = 1
    min_in: int = 1
    description: str = ""


def _k(name, basis):
    return Kind(name, _build_kan(basis), functools.partial(_kan, basis=basis), "grid_size",
                description=f"edge-sum KAN, {basis} basis, SiLU residual")


KINDS: dict[str, Kind] = {
    "mlp": Kind("mlp", _build_mlp, _mlp, description="MLP, GELU"),
    "kan": _k("kan", "bspline"),
    "rbf": _k("rbf", "rbf"),
    "chebyshev": _k("chebyshev", "chebyshev"),
    "fourier": _k("fourier", "fourier"),
    "relukan": _k("relukan", "relukan"),
    "grkan": Kind("grkan", _build_grkan, _grkan, description="GR-KAN (KAT): group rational then Linear"),
    "afkan": Kind("afkan", _build_afkan, _afkan, "grid_size", min_hidden=2, min_in=2,
                  description="AF-KAN, global attention, quad1, SiLU"),
    "skan": Kind("skan", _build_skan, _skan, min_hidden=1,
                 description="S-KAN while training: all candidate spaces mixed"),
    "rational_mlp": Kind("rational_mlp", _build_rational_mlp, _rational_mlp, min_hidden=1,
                         description="MLP with one shared rational activation (Delfosse et al. 2024), 5/4"),
    "pade": Kind("pade", _build_pade, _pade, description="Padé neurons (PAON), plain [3/2], denominator B"),
    "spline_mlp": Kind("spline_mlp", _build_spline_mlp, _spline_mlp, "grid_size",
                       description="MLP with learnable B-spline activations (Yu et al. 2024's ablation)"),
}


def get_kind(name: str) -> Kind:
    """The :class:`Kind` called ``name``; ValueError naming the valid kinds otherwise."""
    if name not in KINDS:
        raise ValueError(f"unknown model kind {name!r}; valid kinds: {', '.join(KINDS)}")
    return KINDS[name]


def spec_counts(kind: str, widths: tuple[int, ...] | list[int], **options: Any) -> tuple[int, int]:
    """``(parameters, forward FLOPs per sample)`` of ``kind`` with ``widths``, without building it."""
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise ValueError(f"spec_counts: widths must list >= 2 positive sizes, got {widths}")
    spec = get_kind(kind)
    if widths[0] < spec.min_in or any(w < spec.min_hidden for w in widths[1:-1]):
        raise ValueError(f"spec_counts: kind {kind!r} needs in >= {spec.min_in} and hidden widths >= "
                         f"{spec.min_hidden}, got {widths}")
    return spec.counts(widths, **options)


def build(kind: str, widths, *, key: PRNGKeyArray, **options: Any):
    """Build ``kind`` with ``widths`` (``options``: e.g. ``grid_size`` for kinds with a grid)."""
    spec = get_kind(kind)
    spec_counts(kind, widths, **options)  # validates widths and options
    return spec.build(tuple(int(w) for w in widths), key, **options)


def describe(options: Mapping[str, Any]) -> str:
    """``"grid_size=5"``-style text of an options dict (for tables)."""
    return ",".join(f"{k}={v}" for k, v in sorted(options.items()))
