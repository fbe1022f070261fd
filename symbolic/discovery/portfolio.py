"""A portfolio of small generic KAN shapes, each trained from several random starts at once, pruned by
masks, snapped edge by edge and read out as a formula: the KAN paper's route (Liu et al. 2024, arXiv
2404.19756), for what neither the sparse regression nor the surrogate's structure tests find, e.g.
``cos(a + b^2)`` (not separable, no combination of two variables).

Shapes (``d`` inputs, the truth never looked at): ``[d, 1, 1]`` (``g(sum_i phi_i(x_i))``), ``[d, 1, 1]``
with a multiplication node (``g(sum_i phi_i(x_i) * sum_i psi_i(x_i))``: ``a sin b``, ``a exp(-b)``) and
``[d, 2, 1]`` (a sum of two such compositions).

Speed by design: all ``starts`` random starts of a shape are one ``vmap``-ed batch of models trained by
one compiled L-BFGS loop; pruning sets edge masks (arrays, not shapes), so the retraining after it runs
the same compiled program; inputs are mapped to the grid's range ``[-1, 1]`` and outputs standardised,
the formula maps them back. Where the time goes: compiling the batched fit once per shape and input
count (the persistent compilation cache keeps it), then ``symbolic.auto_symbolic`` on the best start
(one batched curve fit for all edges) and sympy (under the budget's time limit).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from bases import trainable_filter

from ..constants import refit_expr
from ..formula import canonicalize, model_expressions
from .budget import Budget, TimeLimit, time_limit
from .pareto import Candidate, rmse

SHAPES: tuple[tuple[str, tuple[int, ...], Optional[tuple[int, ...]]], ...] = (
    ("[d,1,1]", (1,), None),
    ("[d,1x,1]", (1,), (1,)),
    ("[d,2,1]", (2,), None),
)
_FIT_SECONDS: list[float] = []


@dataclasses.dataclass
class PortfolioNetwork:
    """A snapped KAN of the portfolio with the maps between data and network units:
    ``z = 2 (x - lo) / (hi - lo) - 1`` per input, ``y = y_mean + y_std * net(z)``."""

    net: Any
    lo: np.ndarray
    hi: np.ndarray
    y_mean: float
    y_std: float
    shape: str

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Data ``x (n, d)`` in the network's units."""
        return 2.0 * (np.asarray(x, np.float64) - self.lo) / (self.hi - self.lo) - 1.0


def portfolio_seconds() -> float:
    """A guess of one shape's wall time (a started shape cannot be interrupted, so the guess errs high):
    2x the last in this process; before the first, 25 s (compiling on 2 busy cores) or 10 s when the
    persistent compilation cache already holds programs (loading them and the first run take seconds)."""
    if _FIT_SECONDS:
        return 2.0 * _FIT_SECONDS[-1]
    from kan.compile_cache import cache_is_warm

    return 10.0 if cache_is_warm() else 25.0


def _loss(params: Any, static: Any, x: jax.Array, y: jax.Array, lamb: jax.Array) -> jax.Array:
    from kan.train.regularization import sparsity_regularizer

    model = eqx.combine(params, static)
    pred, reg = sparsity_regularizer(model, x)
    return jnp.mean((pred - y) ** 2) + lamb * reg


@eqx.filter_jit
def _train_batch(params: Any, static: Any, x: jax.Array, y: jax.Array, lamb: jax.Array,
                 iterations: jax.Array) -> Any:
    """Up to ``iterations`` L-BFGS iterations (:func:`kan.train.lbfgs.lbfgs_run`: one objective call site,
    stops once a line search finds no lower loss) for every model of the batch (leading axis of
    ``params``); ``lamb`` and ``iterations`` are traced, so every stage of a shape runs one program."""
    from jax.flatten_util import ravel_pytree

    from kan.train.lbfgs import lbfgs_init, lbfgs_run

    def one(p0):
        flat, unravel = ravel_pytree(p0)
        value_and_grad = jax.value_and_grad(lambda v: (_loss(unravel(v), static, x, y, lamb), ()), has_aux=True)
        flat, _, _ = lbfgs_run(value_and_grad, flat, lbfgs_init(flat, ()), iterations)
        return unravel(flat)

    return jax.vmap(one)(params)


@eqx.filter_jit
def _batch_rmse(params: Any, static: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    return jax.vmap(lambda p: jnp.sqrt(jnp.mean((eqx.combine(p, static)(x) - y) ** 2)))(params)


def _params(model: Any) -> Any:
    return eqx.filter(model, trainable_filter(model))


def _prune_masks(model: Any, x: jax.Array, threshold: float) -> Any:
    """``model`` with the edges whose attribution is below ``threshold`` x the layer's largest masked."""
    from kan.edit.surgery import replace_fields
    from kan.train.regularization import attribution_scores

    _, edges = attribution_scores(model, x)
    layers = []
    for layer, score in zip(model.layers, edges):
        score = np.asarray(score)
        keep = (score >= threshold * (score.max() + 1e-30)).astype(np.float32)
        layers.append(replace_fields(layer, edge_mask=jnp.asarray(keep) * layer.edge_mask))
    return eqx.tree_at(lambda m: m.layers, model, tuple(layers))


def train_shape(hidden: Sequence[int], mult: Optional[Sequence[int]], z: np.ndarray, t: np.ndarray,
                vz: np.ndarray, vt: np.ndarray, *, starts: int = 4, seed: int = 0, grid_size: int = 5,
                steps: int = 200, lamb: float = 1e-3, prune_threshold: float = 0.03) -> tuple[Any, float]:
    """Train ``[d, *hidden, 1]`` (``mult``: multiplication nodes per hidden layer) from ``starts`` random
    starts as one batch (``steps`` L-BFGS iterations with pykan's sparsity regulariser ``lamb``), prune
    the best start's weak edges by masks, retrain the batch of pruned copies without the regulariser
    (the same compiled program) and return the best network with its validation RMSE (network units)."""
    import kan

    d = z.shape[1]
    keys = jax.random.split(jax.random.PRNGKey(seed), starts)
    build = lambda k: kan.KAN((d, *hidden, 1), key=k, grid_size=grid_size, mult_nodes=mult)
    models = [build(k) for k in keys]
    static = eqx.partition(models[0], trainable_filter(models[0]))[1]
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[_params(m) for m in models])
    x, y, vx, vy = (jnp.asarray(a, jnp.float32) for a in (z, t, vz, vt))
    params = _train_batch(params, static, x, y, jnp.float32(lamb), jnp.int32(steps))
    errors = np.asarray(_batch_rmse(params, static, vx, vy))
    errors = np.where(np.isfinite(errors), errors, np.inf)
    best = int(np.argmin(errors))
    model = eqx.combine(jax.tree_util.tree_map(lambda a: a[best], params), static)
    model = _prune_masks(model, x, prune_threshold)
    static = eqx.partition(model, trainable_filter(model))[1]  # the masks: arrays, so no new compile
    params = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (starts,) + a.shape), _params(model))
    params = _train_batch(params, static, x, y, jnp.float32(0.0), jnp.int32(steps // 2))
    model = eqx.combine(jax.tree_util.tree_map(lambda a: a[0], params), static)
    return model, float(np.asarray(_batch_rmse(params, static, vx, vy))[0])


def portfolio_candidates(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                         variables: Sequence[sp.Symbol], budget: Budget, *, seed: int = 0,
                         shapes: Sequence = SHAPES, label: str = "portfolio",
                         good_enough: float = 0.0) -> list[Candidate]:
    """One candidate per shape that fits in the time left, shapes in order, stopping after the first
    whose validation RMSE is ``<= good_enough``: the best start's snapped formula, constants refitted
    on the real ``train`` rows, scored on the real ``val`` rows, ``network`` its
    :class:`PortfolioNetwork`."""
    import symbolic

    x, y = (np.asarray(a, np.float64) for a in train)
    lo, hi = x.min(axis=0), x.max(axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)
    y_mean, y_std = float(y.mean()), float(y.std() + 1e-12)
    out = []
    for name, hidden, mult in shapes:
        if budget.left() < portfolio_seconds():
            break
        t0 = time.perf_counter()
        net_map = PortfolioNetwork(None, lo, hi, y_mean, y_std, name)
        z, vz = net_map.inputs(x), net_map.inputs(val[0])
        t, vt = ((y - y_mean) / y_std)[:, None], ((np.asarray(val[1]) - y_mean) / y_std)[:, None]
        try:
            model, _ = train_shape(hidden, mult, z, t, vz, vt, seed=seed)
            model, _ = symbolic.auto_symbolic(model, jnp.asarray(z, jnp.float32))
            net_map.net = model
            zs = [sp.Dummy(f"z{i}") for i in range(len(variables))]
            with time_limit(max(0.5, min(10.0, budget.left()))):
                expr = model_expressions(model, zs)[0]
                back = {zi: 2 * (v - float(a)) / float(b - a) - 1 for zi, v, a, b in zip(zs, variables, lo, hi)}
                expr = canonicalize(y_mean + y_std * expr.xreplace(back))
                expr = refit_expr(expr, variables, (x, y))
        except (TimeLimit, ValueError, TypeError, OverflowError, ZeroDivisionError, FloatingPointError):
            _FIT_SECONDS.append(time.perf_counter() - t0)
            continue
        _FIT_SECONDS.append(time.perf_counter() - t0)
        c = Candidate(expr, tuple(variables), 0.0, f"{label}{name}", network=net_map)
        c.val_rmse = rmse(c.evaluate(np.asarray(val[0], np.float64)), np.asarray(val[1], np.float64))
        out.append(c)
        if c.val_rmse <= good_enough:
            break
    return out
