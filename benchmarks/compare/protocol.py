"""The protocol: splits, scaling, an equal tuning budget per kind, selection on validation only, one
test evaluation per chosen model.

For a task, a budget and a seed:
1. ``split(n, seed)``: a fixed random train/val/test partition (stratified for class labels).
2. Inputs are scaled to [-1, 1] with the *training* rows' min and max; regression targets are
   standardised with the training rows' mean and std (metrics are reported in the original units).
3. Every kind gets the same ``trials``: the same learning-rate / weight-decay draws (log-uniform, one
   fixed sequence per task, shared by all kinds and seeds), plus a grid size for kinds that have one.
   Each trial's widths are matched to the budget (:func:`kan.count.match_widths`), within 5%.
4. Training: AdamW, mini-batches, global-norm clipping 1.0, ``epochs`` epochs; after every epoch the
   validation loss is measured and the parameters of the best epoch are kept.
5. The trial with the lowest validation loss is chosen; only then is the test split evaluated, once.
The functions that train and select (:func:`select`) never receive the test split.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from typing import Any, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bases import trainable_filter
from kan.count import KINDS, build, count_flops, count_parameters, get_kind, match_widths

from .tasks import Task

LR_RANGE = (1e-3, 3e-2)
WD_RANGE = (1e-6, 1e-2)
GRID_CHOICES = {"kan": (3, 5, 8), "rbf": (4, 8, 12), "chebyshev": (3, 5, 7), "fourier": (2, 3, 5),
                "relukan": (3, 5, 8), "afkan": (2, 3, 5), "spline_mlp": (3, 5, 8)}


def split(n: int, seed: int, fractions=(0.6, 0.2, 0.2), labels: Optional[np.ndarray] = None):
    """``(train, val, test)`` index arrays of a fixed partition for ``seed`` (stratified by ``labels``)."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    parts = ([], [], [])
    for idx in groups:
        idx = rng.permutation(idx)
        a = int(round(fractions[0] * idx.size))
        b = a + int(round(fractions[1] * idx.size))
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.append(chunk)
    out = tuple(np.sort(np.concatenate(p)) for p in parts)
    if min(p.size for p in out) < 2:
        raise ValueError(f"split: {n} rows with fractions {fractions} leave a split with < 2 rows")
    return out


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Affine maps fitted on training rows: inputs to [-1, 1], regression targets to zero mean, unit std."""

    x_lo: np.ndarray
    x_hi: np.ndarray
    y_mean: Optional[np.ndarray]
    y_std: Optional[np.ndarray]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, regression: bool) -> "Scaler":
        lo, hi = x.min(0), x.max(0)
        hi = np.where(hi > lo, hi, lo + 1.0)
        if not regression:
            return cls(lo, hi, None, None)
        return cls(lo, hi, y.mean(0), np.maximum(y.std(0), 1e-12))

    def x(self, x: np.ndarray) -> jnp.ndarray:
        return jnp.asarray(2.0 * (x - self.x_lo) / (self.x_hi - self.x_lo) - 1.0, jnp.float32)

    def y(self, y: np.ndarray) -> jnp.ndarray:
        if self.y_mean is None:
            return jnp.asarray(y, jnp.int32)
        return jnp.asarray((y - self.y_mean) / self.y_std, jnp.float32)


def trials(task: Task, kind: str, num: int) -> list[dict[str, Any]]:
    """The ``num`` hyper-parameter settings of ``kind`` on ``task``: lr and weight decay from one
    log-uniform sequence per task (identical for every kind), a grid size per trial where the kind has one."""
    rng = np.random.default_rng(zlib.crc32(f"trials:{task.name}".encode()))
    u = rng.random((num, 2))
    out = []
    for i in range(num):
        t = {"lr": float(math.exp(math.log(LR_RANGE[0]) + u[i, 0] * math.log(LR_RANGE[1] / LR_RANGE[0]))),
             "weight_decay": float(math.exp(math.log(WD_RANGE[0]) + u[i, 1] * math.log(WD_RANGE[1] / WD_RANGE[0])))}
        option = get_kind(kind).grid_option if kind in KINDS else None
        if option is not None:
            choices = GRID_CHOICES[kind]
            t[option] = int(choices[i % len(choices)])
        out.append(t)
    return out


def _loss(model, x, y, classification: bool):
    pred = model(x)
    if classification:
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(pred, y))
    return jnp.mean((pred - y) ** 2)


@eqx.filter_jit
def train(model, x_tr, y_tr, x_va, y_va, lr, weight_decay, key, *, epochs: int, batch_size: int,
          classification: bool):
    """AdamW for ``epochs`` epochs; returns ``(best model, best val loss, best epoch, train losses
    (epochs,), val losses (epochs,))``, "best" by validation loss (NaN never counts as best)."""
    params, static = eqx.partition(model, trainable_filter(model))
    opt = optax.chain(optax.clip_by_global_norm(1.0),
                      optax.inject_hyperparams(optax.adamw)(learning_rate=lr, weight_decay=weight_decay))
    n = x_tr.shape[0]
    batch = min(batch_size, n)
    steps = n // batch

    def loss_fn(p, x, y):
        return _loss(eqx.combine(p, static), x, y, classification)

    def epoch(carry, k):
        p, s, best, best_loss, best_ep, ep = carry
        idx = jax.random.permutation(k, n)[: steps * batch].reshape(steps, batch)

        def step(c, ib):
            p, s = c
            loss, g = jax.value_and_grad(loss_fn)(p, x_tr[ib], y_tr[ib])
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), loss

        (p, s), losses = jax.lax.scan(step, (p, s), idx)
        val = loss_fn(p, x_va, y_va)
        better = val < best_loss
        best = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), p, best)
        best_loss = jnp.where(better, val, best_loss)
        best_ep = jnp.where(better, ep, best_ep)
        return (p, s, best, best_loss, best_ep, ep + 1), (jnp.mean(losses), val)

    init = (params, opt.init(params), params, jnp.asarray(jnp.inf, jnp.float32), jnp.asarray(-1), jnp.asarray(0))
    (_, _, best, best_loss, best_ep, _), (tr, va) = jax.lax.scan(epoch, init, jax.random.split(key, epochs))
    return eqx.combine(best, static), best_loss, best_ep, tr, va


_COMPILED: set = set()  # signatures of train() calls already compiled (their wall time has no compile)


@dataclasses.dataclass
class TrialResult:
    """One trained trial (validation numbers only)."""

    index: int
    hyper: dict[str, Any]
    widths: tuple[int, ...]
    params: int
    flops: int
    val_loss: float
    epoch: int
    seconds: float
    warm: bool
    model: Any = None


def matched_model(task: Task, kind: str, budget: float, hyper: dict, in_features: int, out_features: int, key):
    """Build ``kind`` matched to ``budget`` with the trial's grid option; ``(model, widths)``."""
    options = {k: v for k, v in hyper.items() if k not in ("lr", "weight_decay")}
    if task.model_fn is not None:
        return task.model_fn(kind, budget, options, in_features, out_features, key)
    m = match_widths(kind, budget, in_features=in_features, out_features=out_features, depth=task.depth,
                     metric=task.budget_metric, **options)
    return build(kind, m.widths, key=key, **options), m.widths


def run_trial(task: Task, kind: str, budget: float, index: int, hyper: dict, train_xy, val_xy,
              out_features: int, seed: int, model=None) -> TrialResult:
    """Train one trial (or continue ``model``) on ``train_xy``, keep its best validation epoch."""
    (x_tr, y_tr), (x_va, y_va) = train_xy, val_xy
    key_init, key_train = jax.random.split(jax.random.PRNGKey(seed * 1000 + index))
    widths = None
    if model is None:
        model, widths = matched_model(task, kind, budget, hyper, x_tr.shape[1], out_features, key_init)
    signature = (jax.tree_util.tree_structure(model), tuple(jnp.shape(a) for a in jax.tree_util.tree_leaves(model)),
                 x_tr.shape, x_va.shape, task.epochs, task.batch_size)
    warm = signature in _COMPILED
    _COMPILED.add(signature)
    start = time.perf_counter()
    best, loss, ep, _, _ = train(model, x_tr, y_tr, x_va, y_va, jnp.float32(hyper["lr"]),
                                 jnp.float32(hyper["weight_decay"]), key_train, epochs=task.epochs,
                                 batch_size=task.batch_size, classification=task.problem != "regression")
    loss = float(loss)
    seconds = time.perf_counter() - start
    widths = widths or tuple(getattr(model, "widths", ()))
    return TrialResult(index, dict(hyper), tuple(widths), count_parameters(best), count_flops(best),
                       loss if math.isfinite(loss) else math.inf, int(ep), seconds, warm, best)


def select(task: Task, kind: str, budget: float, train_xy, val_xy, out_features: int, seed: int,
           num_trials: int) -> tuple[TrialResult, list[TrialResult]]:
    """Run the kind's ``num_trials`` trials and choose the lowest validation loss. Sees no test data."""
    results = [run_trial(task, kind, budget, i, h, train_xy, val_xy, out_features, seed)
               for i, h in enumerate(trials(task, kind, num_trials))]
    finite = [r for r in results if math.isfinite(r.val_loss)]
    chosen = min(finite or results, key=lambda r: (r.val_loss, r.index))
    return chosen, results


def test_metric(task: Task, model, x: jnp.ndarray, y: np.ndarray, scaler: Scaler) -> float:
    """RMSE in the target's units (regression) or accuracy."""
    pred = np.asarray(model(x))
    if task.problem == "regression":
        pred = pred * scaler.y_std + scaler.y_mean
        return float(np.sqrt(np.mean((pred - y) ** 2)))
    return float(np.mean(np.argmax(pred, -1) == y))


def prepare(task: Task, seed: int):
    """Data of ``seed``: ``(x, y, (train, val, test) indices, scaler, out_features)``."""
    x, y = task.load(seed)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"task {task.name!r}: load must return x (n, d) and y with n rows, got "
                         f"{x.shape}, {y.shape}")
    labels = None if task.problem == "regression" else y
    idx = split(len(x), seed, task.fractions, labels)
    scaler = Scaler.fit(x[idx[0]], y[idx[0]], task.problem == "regression")
    out = y.shape[1] if task.problem == "regression" else int(np.max(y)) + 1
    return x, y, idx, scaler, out


def run_seed(task: Task, kind: str, budget: float, seed: int, num_trials: int) -> tuple[dict, list[dict]]:
    """The protocol for one (task, kind, budget, seed): a result row and one row per trial."""
    x, y, (tr, va, te), scaler, out = prepare(task, seed)
    train_xy = (scaler.x(x[tr]), scaler.y(y[tr]))
    val_xy = (scaler.x(x[va]), scaler.y(y[va]))
    chosen, results = select(task, kind, budget, train_xy, val_xy, out, seed, num_trials)
    metric = test_metric(task, chosen.model, scaler.x(x[te]), y[te], scaler)  # the one test evaluation
    base = dict(task=task.name, kind=kind, budget=budget, budget_metric=task.budget_metric, seed=seed)
    trial_rows = [dict(base, trial=r.index, **r.hyper, widths="-".join(map(str, r.widths)), params=r.params,
                       flops=r.flops, val_loss=r.val_loss, epoch=r.epoch, seconds=r.seconds, warm=r.warm) for r in results]
    row = dict(base, metric=task.metric_name, value=metric, params=chosen.params, flops=chosen.flops,
               widths="-".join(map(str, chosen.widths)), trial=chosen.index,
               hyper=";".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in chosen.hyper.items()),
               val_loss=chosen.val_loss, epoch=chosen.epoch,
               sec_per_epoch=chosen.seconds / task.epochs if chosen.warm else math.nan)
    return row, trial_rows
