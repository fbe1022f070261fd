"""The whole model as a formula: compose the symbolic edges of every layer into sympy expressions in
the input variables, canonicalise, snap constants (``symbolic.constants``) and export as sympy, LaTeX
and a jitted JAX callable, with the formula's RMSE on data beside the network's.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from jaxtyping import Array, Float

from bases import host_array
from kan.layers.mult import combine_expressions, mult_counts

from .constants import safe_lambdify, snap_constants
from .library import get_entry
from .terms import drop_terms

_SIMPLIFY_MAX_OPS = 120
_predict = eqx.filter_jit(lambda model, x: model(x))


def default_variables(num_inputs: int) -> tuple[sp.Symbol, ...]:
    """``x_1, ..., x_n`` (real symbols), as pykan names them."""
    return tuple(sp.Symbol(f"x_{i + 1}", real=True) for i in range(num_inputs))


def edge_expression(name: str, affine: Sequence[float], arg: sp.Expr, digits: int = 8) -> sp.Expr:
    """``c f(a arg + b) + d`` as a sympy expression."""
    a, b, c, d = (sp.Float(float(v), digits) for v in affine)
    if name == "0":
        return d
    return c * get_entry(name).sympy_fn(a * arg + b) + d


def canonicalize(expr: sp.Expr) -> sp.Expr:
    """Expand products and integer powers everywhere (inside function arguments too) without
    splitting ``exp(a + b)`` or logs, so that degenerate parameter combinations such as
    ``c (a x + b)^2`` become independent coefficients of ``x^2``, ``x`` and 1; then
    :func:`pull_scales` removes the remaining redundant scale factors."""
    expanded = sp.expand(expr, deep=True, power_exp=False, power_base=False, log=False, mul=True,
                         multinomial=True, basic=True)
    return pull_scales(expanded)


def _scale_of(total: sp.Add) -> Optional[sp.Expr]:
    """The positive number by which to divide a sum so that its largest numeric coefficient (the
    constant term counts as one) becomes +-1; None when that is 1 already. The largest, not e.g. the
    constant term: ``log(2868 b - 1)`` should become ``log(b - 0.00035)``, whose tiny constant can
    snap to 0, rather than ``log(2868 b - 1)`` with an integer that merely looks nice."""
    coeffs = [term.as_coeff_Mul()[0] for term in total.as_ordered_terms()]
    coeffs = [c for c in coeffs if c.is_number and c != 0]
    if not coeffs:
        return None
    k = max(coeffs, key=lambda c: abs(float(c)))
    if abs(k) == 1:
        return None
    return abs(k)


def _divided(total: sp.Add, k: sp.Expr) -> sp.Expr:
    """``total / k`` expanded, with the term that became +-1.0 made exact (no longer a constant)."""
    return sp.expand(total / k).xreplace({sp.Float(1.0): sp.Integer(1), sp.Float(-1.0): sp.Integer(-1)})


def pull_scales(expr: sp.Expr) -> sp.Expr:
    """Move scale factors out of functions where they are redundant with an outer constant, bottom
    up: ``(k u)^p -> k^p u^p`` for a sum ``u`` and any power but a positive integer,
    ``log(k u) -> log k + log u`` and ``exp(c + u) -> e^c exp(u)``. A formula such as
    ``c sqrt(k a^2 + k b^2 + k)`` has one free constant, not two; after this it has one
    (``c sqrt(k) sqrt(a^2 + b^2 + 1)`` collapses to a single number), so constant snapping and
    refitting see no degenerate directions."""
    if expr.is_Atom or not expr.args:
        return expr
    expr = expr.func(*[pull_scales(a) for a in expr.args])
    if expr.is_Pow and expr.base.is_Add and not (expr.exp.is_Integer and expr.exp > 0):
        k = _scale_of(expr.base)
        if k is not None:
            return k**expr.exp * _divided(expr.base, k) ** expr.exp
    elif isinstance(expr, sp.log) and expr.args[0].is_Add:
        k = _scale_of(expr.args[0])
        if k is not None:
            return sp.log(k) + sp.log(_divided(expr.args[0], k))
    elif isinstance(expr, sp.exp) and expr.args[0].is_Add:
        const, rest = expr.args[0].as_coeff_Add()
        if const != 0:
            return sp.exp(const) * sp.exp(rest)
    return expr


def model_expressions(model: Any, variables: Optional[Sequence[sp.Symbol]] = None,
                      digits: int = 8) -> list[sp.Expr]:
    """One sympy expression per model output. Every active (unpruned) edge must be symbolic."""
    widths = model.widths
    variables = default_variables(widths[0]) if variables is None else tuple(variables)
    if len(variables) != widths[0]:
        raise ValueError(f"model_expressions: need {widths[0]} variables, got {len(variables)}")
    nodes: list[sp.Expr] = list(variables)
    counts = mult_counts(model)
    for l, layer in enumerate(model.layers):
        mask = np.asarray(layer.edge_mask) > 0
        sym = layer.symbolic
        active = np.zeros(mask.shape, bool) if sym is None else np.asarray(sym.active) > 0
        numeric = np.argwhere(mask & ~active)
        if numeric.size:
            o, i = numeric[0]
            raise ValueError(f"model_expressions: {len(numeric)} edge(s) of layer {l} are not symbolic "
                             f"(first: {i} -> {o}); run symbolic.auto_symbolic first")
        bias = np.zeros(layer.out_features) if layer.bias is None else np.asarray(layer.bias, np.float64)
        affine = None if sym is None else np.asarray(sym.affine, np.float64)
        out = []
        for o in range(layer.out_features):
            total = sp.Float(float(bias[o]), digits)
            for i in np.flatnonzero(mask[o]):
                total = total + edge_expression(sym.names[o][i], affine[o, i], nodes[i], digits)
            out.append(total)
        nodes = combine_expressions(out, counts[l])
    return nodes


def evaluate_numpy(expr: sp.Expr, variables: Sequence[sp.Symbol], x: np.ndarray) -> np.ndarray:
    """``expr`` in float64 numpy at ``x (n, d)`` (one column per variable) -> ``(n,)``; nan where it is
    undefined or cannot be evaluated (e.g. huge exact integers)."""
    x = np.asarray(x, np.float64)
    f = safe_lambdify(tuple(variables), expr, "numpy")
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(f(*[x[:, i] for i in range(x.shape[1])]), np.float64)
        return np.broadcast_to(out, x.shape[:1]).copy()
    except (OverflowError, ValueError, TypeError, ZeroDivisionError, NameError):
        return np.full(x.shape[:1], np.nan)


@dataclasses.dataclass
class Formula:
    """A recovered formula ``expr`` in ``variables``. ``fn`` is a jitted ``(n, d) -> (n,)`` callable;
    RMSEs are filled in by :func:`extract_formula` (nan when not measured)."""

    expr: sp.Expr
    variables: tuple[sp.Symbol, ...]
    rmse: float = float("nan")
    network_rmse: float = float("nan")
    rmse_before_snapping: float = float("nan")

    def __post_init__(self):
        f = safe_lambdify(self.variables, self.expr, "jax")
        d = len(self.variables)

        def call(x):
            cols = [x[..., i] for i in range(d)]
            return jnp.broadcast_to(jnp.asarray(f(*cols), x.dtype), x.shape[:-1])

        self._fn = jax.jit(call)

    @property
    def fn(self) -> Callable[[Array], Array]:
        """The jitted callable ``(..., d) -> (...)`` of the formula (same as calling the Formula)."""
        return self._fn

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "..."]:
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != len(self.variables):
            raise ValueError(f"Formula: expected input of shape (..., {len(self.variables)}), got {x.shape}")
        return self._fn(x)

    def evaluate_numpy(self, x: np.ndarray) -> np.ndarray:
        """Float64 numpy evaluation ``(n, d) -> (n,)`` (for accurate RMSEs)."""
        return evaluate_numpy(self.expr, self.variables, x)

    def latex(self) -> str:
        """The formula as a LaTeX string (sympy's ``latex``)."""
        return sp.latex(self.expr)

    def __str__(self) -> str:
        return str(self.expr)


def _rmse(pred, y) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(y, np.float64)) ** 2)))


def simplify(expr: sp.Expr) -> sp.Expr:
    """``sympy.simplify`` for expressions small enough to simplify quickly (also of the form
    rewritten in exponentials when it holds hyperbolic functions; the shorter result is kept), else
    ``expand``-level clean-up only."""
    expr = canonicalize(expr)
    if sp.count_ops(expr) <= _SIMPLIFY_MAX_OPS:
        options = [sp.simplify(expr)]
        if expr.has(sp.tanh, sp.sinh, sp.cosh, sp.atanh):  # e.g. 1/2 - tanh(log(x)/2)/2 = 1/(1 + x)
            options.append(sp.simplify(expr.rewrite(sp.exp)))
        expr = min(options, key=sp.count_ops)
    return expr


def extract_formula(
    model: Any,
    data: tuple[Float[Array, "n in"], Float[Array, "n out"]],
    val_data: Optional[tuple[Float[Array, "m in"], Float[Array, "m out"]]] = None,
    *,
    snap: bool = True,
    rtol: float = 0.1,
    atol: float = 1e-5,
    variables: Optional[Sequence[sp.Symbol]] = None,
    max_seconds: Optional[float] = None,
) -> list[Formula]:
    """The model's formulas (one per output), constants refitted on ``data`` and snapped to nice
    values where the RMSE on ``val_data`` (default ``data``) keeps its accuracy; each Formula carries
    its RMSE and the network's on ``val_data``. Constant snapping (the slow part for a large formula,
    see :func:`symbolic.snap_constants`) stops trying values after ``max_seconds`` in all (None: no
    limit); the formulas are still returned, with their remaining constants refitted."""
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    left = lambda: None if deadline is None else max(0.0, deadline - time.perf_counter())
    x, y = (np.asarray(a, np.float64) for a in data)
    vx, vy = (x, y) if val_data is None else (np.asarray(a, np.float64) for a in val_data)
    if y.ndim != 2 or vy.ndim != 2 or y.shape[1] != model.widths[-1]:
        raise ValueError(f"extract_formula: y must have shape (n, {model.widths[-1]}), got {y.shape}")
    variables = default_variables(model.widths[0]) if variables is None else tuple(variables)
    net = np.asarray(_predict(model, host_array(vx, np.float32)), np.float64)
    formulas = []
    for o, expr in enumerate(model_expressions(model, variables)):
        expr = canonicalize(expr)
        before = float("nan")
        if snap:
            expr = drop_terms(expr, variables, (x, y[:, o]), (vx, vy[:, o]), rtol=rtol, atol=atol,
                              max_seconds=left())
            result = snap_constants(expr, variables, (x, y[:, o]), (vx, vy[:, o]), rtol=rtol, atol=atol,
                                    max_seconds=left())
            expr, before = result.expr, result.rmse_before
        expr = simplify(expr)
        if snap and expr.atoms(sp.Float):
            # Simplification can merge snapped and unsnapped parts into new floats
            # (exp(1.1447) -> 3.14159): give those one more snapping pass.
            again = snap_constants(canonicalize(expr), variables, (x, y[:, o]), (vx, vy[:, o]), rtol=rtol,
                                   atol=atol, max_seconds=left())
            if again.snapped:
                expr = simplify(again.expr)
        formula = Formula(expr, variables, network_rmse=_rmse(net[:, o], vy[:, o]), rmse_before_snapping=before)
        formula.rmse = _rmse(formula.evaluate_numpy(vx), vy[:, o])
        formulas.append(formula)
    return formulas
