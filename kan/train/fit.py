"""Training loop: jitted optax steps (Adam/AdamW/any transformation) or full-batch L-BFGS.

``fit`` handles mini-batches, a validation split, pykan's sparsity regulariser, periodic grid
updates, early stopping on the validation loss and a tqdm progress bar with the live loss.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import Any, Callable, Optional, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

from bases import host_array, trainable_filter

from ..edit.grid import update_grid as _update_grid
from .lbfgs import LBFGSState, lbfgs_init, lbfgs_run
from .regularization import sparsity_regularizer
from .stored_step import StoredLBFGSStep

LBFGS_MEMORY = 10

Data = tuple[Float[Array, "n in"], Float[Array, "n out"]]


def check_data(data: Any, in_features: Optional[int], who: str = "fit") -> Data:
    """Validate an ``(x, y)`` pair: 2-D arrays (or array-likes such as nested lists), same length,
    non-empty, finite; integer or boolean arrays are converted to float32, other dtypes raise."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{who}: data must be a pair (x, y) of arrays (or pykan's dataset dict), "
                        f"got {type(data).__name__}")
    x, y = (_as_float_array(a, name, who) for a, name in zip(data, ("x", "y")))
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"{who}: x and y must be 2-D (n, features), got shapes {x.shape} and {y.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{who}: data is empty (0 samples)")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{who}: x has {x.shape[0]} samples but y has {y.shape[0]}")
    if in_features is not None and x.shape[1] != in_features:
        raise ValueError(f"{who}: model expects {in_features} input features, x has {x.shape[1]}")
    for name, a in (("x", x), ("y", y)):
        if not _all_finite(a):
            raise ValueError(f"{who}: {name} contains NaN or inf")
    return x, y


#: Arrays up to this many elements are checked for NaN / inf on the host (no XLA program per shape).
HOST_CHECK_ELEMENTS = 1 << 20


def _all_finite(a: Array) -> bool:
    if a.size <= HOST_CHECK_ELEMENTS:
        return bool(np.all(np.isfinite(np.asarray(a))))
    return bool(jnp.all(jnp.isfinite(a)))


def _as_float_array(a: Any, name: str, who: str) -> Array:
    if not isinstance(a, jax.Array):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{who}: {name} must be an array or array-like of numbers ({err})") from None
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{who}: {name} must be an array or array-like of numbers, got dtype {a.dtype}")
    a = jnp.asarray(a)
    if jnp.issubdtype(a.dtype, jnp.integer) or a.dtype == jnp.bool_:
        return a.astype(jnp.float32)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"{who}: {name} must be floating point, got dtype {a.dtype}")
    return a


def dataset_pairs(data: Any, val_data: Any = None) -> tuple[Any, Any]:
    """``(data, val_data)`` from pykan's dataset dict (``train_input``, ``train_label``, optional
    ``val_input``/``val_label``, else ``test_input``/``test_label`` as the validation pair), or as given."""
    if not isinstance(data, dict):
        return data, val_data
    missing = {"train_input", "train_label"} - set(data)
    if missing:
        raise KeyError(f"fit: dataset dict lacks {sorted(missing)}; pykan's keys are train_input, "
                       "train_label, test_input, test_label")
    if val_data is None:
        for split in ("val", "test"):
            if f"{split}_input" in data and f"{split}_label" in data:
                val_data = (data[f"{split}_input"], data[f"{split}_label"])
                break
    return (data["train_input"], data["train_label"]), val_data


def _model_in_features(model: Any) -> Optional[int]:
    widths = getattr(model, "widths", None)
    return widths[0] if widths else None


def mse(pred: Float[Array, "..."], target: Float[Array, "..."]) -> Float[Array, ""]:
    """Mean squared error over all elements; shapes must match (no broadcasting)."""
    if pred.shape != target.shape:
        raise ValueError(f"mse: prediction shape {pred.shape} differs from target shape {target.shape}")
    return jnp.mean((pred - target) ** 2)


def _strong_types(tree: Any) -> Any:
    """Drop weak types from an optimiser state so the state after one step has the same types and the
    jitted step does not compile twice (optax's line-search info starts weakly typed)."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, a.dtype) if eqx.is_array(a) else a, tree)


@functools.lru_cache(maxsize=32)
def _make_optimizer(optimizer: Union[str, optax.GradientTransformation], learning_rate: float,
                    weight_decay: float) -> Optional[optax.GradientTransformation]:
    if not isinstance(optimizer, str):
        return optimizer
    optimizer = optimizer.lower()
    if optimizer == "adam":
        return optax.adam(learning_rate)
    if optimizer == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    if optimizer == "lbfgs":
        return None  # kan.train.lbfgs, not an optax transformation
    raise ValueError(f"fit: unknown optimizer {optimizer!r}; use 'adam', 'adamw', 'lbfgs' or an optax transformation")


class _Objective(eqx.Module):
    """Training objective ``loss(model(x), y) + lamb * reg``; returns (total, (loss, reg)). ``lamb`` is
    traced, so fits that differ only in its value share one compiled program; ``regularize`` (static)
    says whether the regulariser is computed at all."""

    loss_fn: Callable = eqx.field(static=True)
    regularize: bool = eqx.field(static=True)
    lamb: Array
    lamb_l1: float = eqx.field(static=True)
    lamb_entropy: float = eqx.field(static=True)

    def __call__(self, params, static, x, y):
        model = eqx.combine(params, static)
        if self.regularize:
            pred, reg = sparsity_regularizer(model, x, self.lamb_l1, self.lamb_entropy)
        else:
            pred, reg = model(x), jnp.zeros(())
        loss = self.loss_fn(pred, y)
        return loss + self.lamb * reg, (loss, reg)


@eqx.filter_jit
def _first_order_step(objective, opt, params, static, opt_state, x, y):
    (_, aux), grads = jax.value_and_grad(objective, has_aux=True)(params, static, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, aux, jnp.zeros((), bool)


def _lbfgs_init(params: Any) -> LBFGSState:
    """Empty L-BFGS memory for the flat parameter vector that :func:`_lbfgs_step` works on; the
    auxiliary output it tracks is the objective's ``(loss, reg)``."""
    flat = jax.eval_shape(lambda p: ravel_pytree(p)[0], params)  # shape and dtype only: no program
    zero = host_array(0, flat.dtype)
    return lbfgs_init(flat, (zero, zero), memory=LBFGS_MEMORY)


@eqx.filter_jit
def _lbfgs_step(objective, opt, params, static, opt_state, x, y, iterations: int):
    """Up to ``iterations`` L-BFGS iterations in one compiled loop (one pykan "step" is torch's default
    of up to 20 L-BFGS iterations; :func:`kan.train.lbfgs.lbfgs_run`, strong-Wolfe line search, one
    objective call site). The loop stops at the first line search that finds no lower objective
    (converged to float precision, or NaN): the point and memory stay those before it, and ``stalled`` is
    True. Restarting from that state would stall again at once. Without this stop a converged float32 fit
    spends every later iteration on a failed line search (seen in the demo's G=10 retrain: ~90% of its
    run time). ``opt`` is unused (the L-BFGS constants are fixed); parameters run as one flat vector."""
    del opt
    flat, unravel = ravel_pytree(params)
    value_and_grad = jax.value_and_grad(lambda v: objective(unravel(v), static, x, y), has_aux=True)
    flat, opt_state, stalled = lbfgs_run(value_and_grad, flat, opt_state, iterations)
    return unravel(flat), opt_state, opt_state.aux, stalled


@eqx.filter_jit
def _evaluate(loss_fn, params, static, x, y):
    return loss_fn(eqx.combine(params, static)(x), y)


def _has_grid(model: Any) -> bool:
    """Whether any layer's basis has a data-adaptable grid (every Basis has ``update_grid``)."""
    return any(hasattr(getattr(layer, "basis", None), "grid") for layer in getattr(model, "layers", ()))


def _output_width_check(model: Any, x: Array, y: Array, loss_fn: Callable) -> None:
    """With an elementwise loss (mse), y must have the model's output shape: no silent broadcasting."""
    if loss_fn is not mse:
        return
    out = jax.eval_shape(model, jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype))
    if tuple(out.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(f"fit: the model outputs {out.shape[-1]} values per sample but y has "
                         f"{y.shape[-1]} columns (y shape {tuple(y.shape)}); give y of shape (n, {out.shape[-1]})")


DIVERGENCE_ACTIONS = ("restore", "warn", "raise")


def fit(
    model: Any,
    data: Data | dict,
    *,
    steps: int = 100,
    optimizer: Union[str, optax.GradientTransformation] = "adam",
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: Optional[int] = None,
    val_data: Optional[Data] = None,
    loss_fn: Callable[[Array, Array], Array] = mse,
    lamb: float = 0.0,
    lamb_l1: float = 1.0,
    lamb_entropy: float = 2.0,
    regularize: Optional[bool] = None,
    update_grid: bool = True,
    grid_update_every: int = 5,
    stop_grid_update_step: int = 50,
    grid_eps: float = 0.02,
    lbfgs_iterations: int = 20,
    patience: Optional[int] = None,
    eval_every: int = 1,
    on_divergence: str = "restore",
    divergence_factor: float = 10.0,
    progress: bool = True,
    key: Optional[PRNGKeyArray] = None,
) -> tuple[Any, dict[str, list[float]]]:
    """Train ``model`` on ``data = (x, y)`` with shapes ``(n, in)``, ``(n, out)``.

    data: an ``(x, y)`` pair of arrays or array-likes, or pykan's dataset dict (``train_input``,
        ``train_label``; its ``test_input``/``test_label`` become ``val_data`` unless given: pykan
        reports that split as "test", here it is what ``patience`` monitors).
    optimizer: "adam", "adamw", "lbfgs" (any case; full batch, :mod:`kan.train.lbfgs` with a strong-Wolfe
        line search and a memory of 10 pairs, torch's constants; each
        step runs up to ``lbfgs_iterations`` iterations, like one torch ``LBFGS.step`` in pykan, and stops
        early once a line search no longer lowers the loss; the steps after such a stall are skipped up
        to the next grid update, or to the end) or any optax transformation. ``batch_size=None`` uses the full batch; otherwise a random mini-batch per step.
    lamb: weight of the sparsity regulariser (pykan's ``lamb``; ``lamb_l1`` and ``lamb_entropy`` inside).
    regularize: whether the objective computes the regulariser (default: ``lamb > 0``). ``lamb`` is a
        traced value, so with ``regularize=True`` fits of one model shape with any ``lamb`` (0 included,
        e.g. training with the regulariser, then retraining a mask-pruned model without it) run one
        compiled program; without the regulariser the program is smaller and faster.
    update_grid: for grid bases, re-fit the grids to the training inputs every ``grid_update_every``
        steps before ``stop_grid_update_step`` (pykan's schedule), keeping the edge functions.
    patience: stop when the validation loss (train loss without ``val_data``) has not improved for this
        many evaluations, and return the best model seen (the parameters that loss was measured at).
    on_divergence: what happens when the loss becomes NaN/inf, or the returned model's loss (validation
        loss with ``val_data``, else full-batch training loss, measured after the last update) ends above
        ``divergence_factor`` times the best seen: "restore" (default) warns and returns the best
        parameters seen, "warn" warns and returns the last ones, "raise" raises FloatingPointError.
    Returns ``(model, history)``; history has "step", "train_loss" (loss without the regulariser, at the
    parameters the step started from for first-order optimizers, after the step for L-BFGS), "reg",
    with ``val_data`` "val_loss", and "final_loss": ``[loss of the returned model]`` (validation loss
    with ``val_data``, else training loss).
    """
    data, val_data = dataset_pairs(data, val_data)
    if steps < 0:
        raise ValueError(f"fit: steps must be >= 0, got {steps}")
    if on_divergence not in DIVERGENCE_ACTIONS:
        raise ValueError(f"fit: on_divergence must be one of {DIVERGENCE_ACTIONS}, got {on_divergence!r}")
    x, y = check_data(data, _model_in_features(model), "fit")
    _output_width_check(model, x, y, loss_fn)
    if val_data is not None:
        val_x, val_y = check_data(val_data, _model_in_features(model), "fit (val_data)")
        if val_y.shape[1:] != y.shape[1:]:
            raise ValueError(f"fit: val_data's y has shape {tuple(val_y.shape)}, training y {tuple(y.shape)}")
    n = x.shape[0]
    if batch_size is not None and not 1 <= batch_size:
        raise ValueError(f"fit: batch_size must be >= 1, got {batch_size}")
    if lamb < 0:
        raise ValueError(f"fit: lamb must be >= 0, got {lamb}")
    named = optimizer.lower() if isinstance(optimizer, str) else None
    if (named in ("adam", "adamw") and not callable(learning_rate)
            and not (math.isfinite(learning_rate) and learning_rate > 0)):
        raise ValueError(f"fit: learning_rate must be a finite number > 0, got {learning_rate!r}")
    if named == "adamw" and not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"fit: weight_decay must be a finite number >= 0, got {weight_decay!r}")
    use_batches = batch_size is not None and batch_size < n
    is_lbfgs = named == "lbfgs"
    if is_lbfgs and use_batches:
        raise ValueError("fit: L-BFGS is full-batch; leave batch_size=None")
    key = jax.random.PRNGKey(0) if key is None else key
    opt = _make_optimizer(optimizer, learning_rate, weight_decay)
    regularize = lamb > 0 if regularize is None else bool(regularize)
    if lamb > 0 and not regularize:
        raise ValueError(f"fit: lamb={lamb} > 0 needs the regulariser; leave regularize=None or set it True")
    objective = _Objective(loss_fn, regularize, jnp.asarray(lamb, jnp.float32), float(lamb_l1),
                           float(lamb_entropy))
    # L-BFGS through a stored program where the compilation cache is on (kan.train.stored_step)
    step_fn = StoredLBFGSStep(_lbfgs_step, int(lbfgs_iterations)) if is_lbfgs else _first_order_step
    grid_updates = update_grid and _has_grid(model)
    monitor = (val_x, val_y) if val_data is not None else (x, y)

    params, static = eqx.partition(model, trainable_filter(model))
    init_state = _lbfgs_init if is_lbfgs else (lambda p: _strong_types(opt.init(p)))
    opt_state = init_state(params)
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "reg": []}
    if val_data is not None:
        history["val_loss"] = []
    best = (np.inf, params, static)
    bad_evals, diverged_at = 0, None
    bar = tqdm(total=steps, disable=not progress, desc="fit", leave=False, unit="step")
    compile_note: dict[str, str] = {}
    started = time.perf_counter()
    grid_steps = range(0, min(steps, stop_grid_update_step) if grid_updates else 0, grid_update_every)
    stalled = False
    for step in range(steps):
        is_grid_step = step in grid_steps
        if stalled and not is_grid_step:
            # The last L-BFGS step stalled (see _lbfgs_step): from the same state it would stall again.
            # Wait for the next grid update, which changes the model; stop when none is left.
            if not grid_steps or grid_steps[-1] < step:
                break
            continue
        if is_grid_step:
            model = _update_grid(eqx.combine(params, static), x, grid_eps)
            old_structure = jax.tree_util.tree_structure(params)
            params, static = eqx.partition(model, trainable_filter(model))
            # L-BFGS curvature memory refers to the old coefficients; a grid that stopped being
            # uniform also changes the model's structure.
            if is_lbfgs or jax.tree_util.tree_structure(params) != old_structure:
                opt_state = init_state(params)
        if use_batches:
            key, sub = jax.random.split(key)
            idx = jax.random.choice(sub, n, (batch_size,), replace=False)
            bx, by = x[idx], y[idx]
        else:
            bx, by = x, y
        before = params
        params, opt_state, (loss, reg), stalled_now = step_fn(objective, opt, params, static, opt_state, bx, by)
        stalled = is_lbfgs and bool(stalled_now)
        if step == 0 and progress:
            # The first step includes XLA's compilation: restart the bar's clock so that steps/s and the
            # ETA describe the compiled steps, and show the compile time beside them.
            jax.block_until_ready(loss)
            compile_note["first step"] = f"{time.perf_counter() - started:.1f}s"
            bar.reset(total=steps)
        bar.update(1)
        if step % eval_every and step != steps - 1:
            continue
        loss = float(loss)
        history["step"].append(step)
        history["train_loss"].append(loss)
        history["reg"].append(float(reg))
        # The first-order step reports the loss at the parameters it started from; L-BFGS after its update.
        monitored, measured_at = loss, (params if is_lbfgs else before)
        if val_data is not None or (use_batches and patience is not None):
            monitored, measured_at = float(_evaluate(loss_fn, params, static, *monitor)), params
            if val_data is not None:
                history["val_loss"].append(monitored)
        if not (np.isfinite(loss) and np.isfinite(monitored)):
            diverged_at = step
            break
        bar.set_postfix(loss=f"{loss:.3e}", **({"val": f"{monitored:.3e}"} if val_data is not None else {}),
                        **compile_note)
        if monitored < best[0]:
            best, bad_evals = (monitored, measured_at, static), 0
        elif patience is not None:
            bad_evals += 1
            if bad_evals >= patience:
                break
    bar.close()
    final = float(_evaluate(loss_fn, params, static, *monitor))
    if patience is not None and best[0] < final:
        params, static, final = best[1], best[2], best[0]
    elif not np.isfinite(final) or (np.isfinite(best[0]) and final > divergence_factor * best[0] + 1e-8):
        where = f"at step {diverged_at}" if diverged_at is not None else "after the last step"
        message = (f"fit: training diverged {where}: the last loss is {final:.3e}, the best seen "
                   f"{best[0]:.3e}; lower the learning rate")
        if on_divergence == "raise":
            raise FloatingPointError(message)
        if on_divergence == "restore" and np.isfinite(best[0]):
            params, static, final = best[1], best[2], best[0]
            message += "; returning the best parameters seen (on_divergence='restore')"
        elif on_divergence == "restore":
            raise FloatingPointError(message + "; no finite loss was ever seen")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    history["final_loss"] = [final]
    return eqx.combine(params, static), history
