"""Activation-space selectable KAN layer (S-KAN, after Yang et al. 2024, "Activation Space Selectable
Kolmogorov-Arnold Networks", arXiv 2408.08338).

Every input node ``d`` may use one of ``C`` candidate activation spaces (bases). During training its
edges mix the candidates with learnable selection weights

    p[d] = softmax(logits[d] / T)                               (C,)
    y_o  = sum_d sum_c p[d, c] sum_k W_c[o, d, k] F^c_k(x_d)  (+ w_base[o, d] b(x_d))  + bias_o

:func:`fit_selectable` chooses one space per node in one of two ways:

``criterion="softmax"`` (the paper's rule): the paper's phases, full training, selective training and
pruning. All spaces first train at the uniform mixture with the logits frozen, then the logits train
while the temperature ``T`` anneals (:func:`anneal_temperature`), so the mixture moves to one space per
node while the weights adapt; a small ridge on the candidate weights removes the scale redundancy
between ``p`` and ``W`` that would otherwise leave the logits without a signal. The space of largest
``p`` wins. It prefers whichever space the gradient path happens to favour, not the one that explains
the node best: in ``python -m benchmarks.models.skan_selection`` it picks the planted family of a node about
as often as chance.

``criterion="refit"`` (the default): a validation split of the training rows is held out; every
candidate space is refitted alone on every node's partial residual by ridge least squares
(:mod:`kan.layers.selectable_refit`, backfitting), after the data-driven placement search of the spaces that
have placement parameters (:mod:`kan.layers.selectable_spaces`). The node keeps the space that explains it
with the fewest effective parameters (functions needed along its forward-stepwise path, plus searched
placement parameters) among the fits whose held-out error is within one standard error (plus a
round-off ``tolerance``) of the best. The chosen spaces are refitted on all training rows and
installed (logits one-hot, other spaces' weights zero, base branch zero), so the layer, its
:meth:`selection` and :meth:`finalize` agree. Only the data passed to :func:`fit_selectable` is used.

By default (``adapt=True``) candidate grids and frequencies are first placed on the range of each
node's training inputs (:func:`kan.layers.selectable_spaces.adapt_basis`), so inputs in ``[-2, 2]`` or
``[0, 10]`` work as well as ``[-1, 1]``. :meth:`finalize` keeps the most probable space of every node (its
weights scaled by that node's final ``p``) and prunes the others: the result, :class:`SelectedKANLayer`,
evaluates one space per node. The base branch and bias are shared by all spaces (not part of the choice).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Optional, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from bases import trainable_filter

from .selectable_core import (Candidate, SelectableKANLayer, SelectedKANLayer, Selection, _candidate_weight_norm,
                              _logit_leaves, _selectable_layers, anneal_temperature, set_temperature, split_rows)
from .selectable_spaces import CANDIDATES, InputAffine, adapt_basis, nice_ranges

CRITERIA = ("refit", "softmax")

__all__ = ["CANDIDATES", "CRITERIA", "Candidate", "InputAffine", "SelectableKANLayer", "SelectedKANLayer",
           "Selection", "adapt_basis", "anneal_temperature", "fit_selectable", "nice_ranges", "plot_selection",
           "set_temperature", "split_rows"]


def plot_selection(selection: Selection, path: Optional[Union[str, os.PathLike]] = None, *,
                   ax: Any = None) -> "matplotlib.figure.Figure":  # noqa: F821
    """Heat map of the selection (nodes x candidate spaces), the chosen space outlined in red.

    After the softmax criterion the colours and numbers are the selection weights; after a refit
    they are ``log10`` of the relative held-out errors, the number in a cell being the effective
    parameters the space needed at that node ("-": never within tolerance). Draws on ``ax`` or on a
    new pyplot-free ``matplotlib.figure.Figure`` (the user's backend is left alone), saves it to
    ``path`` only when one is given, and returns the Figure. matplotlib is imported here, not when
    :mod:`kan` is imported.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    refit = selection.heldout_error is not None
    values = (np.log10(np.maximum(np.asarray(selection.heldout_error, float), 1e-12)) if refit
              else np.asarray(selection.probabilities))
    if ax is None:
        ax = Figure(figsize=(1.2 + 0.9 * values.shape[1], 0.8 + 0.45 * values.shape[0])).add_subplot()
    if refit:
        image = ax.imshow(values, cmap="viridis_r", aspect="auto")
    else:
        image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
    ax.figure.colorbar(image, ax=ax, label="log10 held-out error / variance" if refit else "selection weight")
    ax.set_xticks(range(values.shape[1]), selection.candidates, rotation=30)
    ax.set_yticks(range(values.shape[0]), [f"x{d}" for d in range(values.shape[0])])
    for d in range(values.shape[0]):
        for c in range(values.shape[1]):
            if refit:
                count = float(selection.parameters[d, c])
                ax.text(c, d, f"{count:.0f}" if np.isfinite(count) else "-", ha="center", va="center", fontsize=7)
            elif c == selection.index[d]:
                ax.text(c, d, f"{selection.weight[d]:.2f}", ha="center", va="center", fontsize=8)
        ax.add_patch(Rectangle((selection.index[d] - 0.5, d - 0.5), 1, 1, fill=False, lw=2, ec="red"))
    ax.set_title(f"S-KAN selection ({selection.criterion})")
    if path is not None:
        ax.figure.savefig(path, bbox_inches="tight")
    return ax.figure


@functools.lru_cache(maxsize=16)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


@eqx.filter_jit
def _select_step(params, static, opt_state, x, y, temperature, logit_scale, ridge, opt):
    def loss_fn(p):
        model = set_temperature(eqx.combine(p, static), temperature)
        mse = jnp.mean((model(x) - y) ** 2)
        return mse + ridge * _candidate_weight_norm(model), mse

    (_, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    grads = eqx.tree_at(_logit_leaves, grads, [g * logit_scale for g in _logit_leaves(grads)])
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, mse


def _is_stack(model: Any) -> bool:
    return hasattr(model, "layers") and callable(getattr(model, "activations", None))


def _set_layer(model: Any, index: int, layer: SelectableKANLayer) -> Any:
    return eqx.tree_at(lambda m: m.layers[index], model, layer)


def _adapt(model: Any, x: Array) -> Any:
    """Every selectable layer placed on the range of its inputs (front to back for stacks)."""
    if isinstance(model, SelectableKANLayer):
        return model.adapt(x)
    if _is_stack(model):
        for l, layer in enumerate(model.layers):
            if isinstance(layer, SelectableKANLayer):
                model = _set_layer(model, l, layer.adapt(model.activations(x)[l]))
    return model  # other containers: their layers' inputs are unknown, the spaces stay where they are


def _softmax_fit(model, x, y, steps, learning_rate, t_start, t_end, warmup, ridge):
    nan = lambda a: jnp.full_like(a, jnp.nan)  # a softmax fit voids the scores of an earlier refit
    model = eqx.tree_at(lambda m: [f for n in _selectable_layers(m) for f in (n.heldout_error, n.parameters)],
                        model, [nan(f) for n in _selectable_layers(model) for f in (n.heldout_error, n.parameters)])
    params, static = eqx.partition(set_temperature(model, t_start), trainable_filter(model))
    opt = _adam(float(learning_rate))
    opt_state, history = opt.init(params), {"train_loss": [], "temperature": []}
    frozen = int(round(warmup * steps))
    for i in range(steps):
        if i < frozen:
            t, scale = t_start, 0.0
        else:
            t, scale = float(anneal_temperature(i - frozen, steps - frozen - 1, t_start, t_end)), 1.0
        params, opt_state, mse = _select_step(params, static, opt_state, x, y, jnp.float32(t),
                                               jnp.float32(scale), jnp.float32(ridge), opt)
        history["train_loss"].append(float(mse))
        history["temperature"].append(t)
    return set_temperature(eqx.combine(params, static), t_end), history


def fit_selectable(model: Any, data: tuple[Float[Array, "n in"], Float[Array, "n out"]], *,
                   criterion: str = "refit", adapt: bool = True, validation: float = 0.25,
                   key: Optional[PRNGKeyArray] = None, steps: int = 300, learning_rate: float = 1e-2,
                   t_start: float = 1.0, t_end: float = 0.05, warmup: float = 1 / 3, ridge: float = 1e-3,
                   z: float = 1.0, tolerance: float = 1e-5, refit_ridge: float = 1e-6, rounds: int = 3,
                   search: bool = True) -> tuple[Any, dict]:
    """Fit ``model`` to ``data = (x (n, in), y (n, out))`` and choose one space per selectable node.

    ``model``: a :class:`SelectableKANLayer`, a stack with ``.layers`` and ``.activations`` (e.g. a
    ``kan.KAN`` whose layers are selectable layers) or, for ``criterion="softmax"``, any model holding
    selectable layers. ``adapt`` first places every candidate space on its node's input range
    (:meth:`SelectableKANLayer.adapt`; for stacks front to back on the activations at the start).

    ``criterion="softmax"`` (the S-KAN paper's rule): full-batch Adam on the mean squared error. For
    the first ``warmup`` fraction of the ``steps`` the selection logits are frozen at the uniform
    mixture (temperature ``t_start``) so every space first learns its part of the fit; then the
    logits train while the temperature anneals to ``t_end`` (:func:`anneal_temperature`). ``ridge``
    adds ``ridge * sum ||W_c||^2`` over the candidate weights. Without it the mixture is redundant
    (scaling ``W_c`` up and ``p_c`` down gives the same function, so at a fitted ``W`` the logit
    gradient vanishes); with it, ``dJ/dp_c = -2 ridge ||W_c||^2 / p_c`` at the fitted weights, so the
    space that carries the fit grows its weight. Each node keeps its space of largest ``p``.

    ``criterion="refit"`` (default): ``round(validation * n)`` rows (drawn with ``key``, default
    ``PRNGKey(0)``) are held out and every node's space is chosen on them by
    :meth:`SelectableKANLayer.refit` (``z``, ``tolerance``, ``refit_ridge``, ``rounds``, ``search``; see
    :mod:`kan.layers.selectable_refit`). A single layer needs no gradient steps. A stack is first trained
    with the softmax schedule on the training rows; then its selectable layers are refitted front to
    back, each on its inputs in the current stack, the last one to ``y`` and the others to the
    outputs they had after training.

    Returns ``(model, history)``: "train_loss" (per step for the softmax schedule; for a refitted
    single layer one entry, the MSE on all of ``data``), "temperature" and "criterion".
    """
    from ..train.fit import check_data

    x, y = check_data(data, None, "fit_selectable")
    if criterion not in CRITERIA:
        raise ValueError(f"fit_selectable: unknown criterion {criterion!r}; valid: {', '.join(CRITERIA)}")
    if steps < 2 or not (t_start > 0 and t_end > 0) or not 0 <= warmup < 1 or ridge < 0:
        raise ValueError(f"fit_selectable: need steps >= 2, positive temperatures, 0 <= warmup < 1 and "
                         f"ridge >= 0; got steps={steps}, t_start={t_start}, t_end={t_end}, "
                         f"warmup={warmup}, ridge={ridge}")
    if not _selectable_layers(model):
        raise ValueError("fit_selectable: the model contains no SelectableKANLayer")
    bare = isinstance(model, SelectableKANLayer)
    if criterion == "refit" and not (bare or _is_stack(model)):
        raise ValueError(f"fit_selectable: criterion='refit' needs a SelectableKANLayer or a stack with .layers "
                         f"and .activations (e.g. kan.KAN); got {type(model).__name__} (use criterion='softmax')")
    options = dict(z=z, tolerance=tolerance, ridge=refit_ridge, rounds=rounds, search=search)
    train = split_rows(x.shape[0], validation, key) if criterion == "refit" else np.ones(x.shape[0], bool)
    if adapt:
        model = _adapt(model, x[train])
    if criterion == "softmax":
        model, history = _softmax_fit(model, x, y, steps, learning_rate, t_start, t_end, warmup, ridge)
        return model, {**history, "criterion": criterion}
    if bare:
        model = model.refit(x, y, train=train, **options)
        mse = float(jnp.mean((_apply(model, x) - y) ** 2))
        return model, {"train_loss": [mse], "temperature": [float(model.temperature)], "criterion": criterion}
    trained, history = _softmax_fit(model, x[train], y[train], steps, learning_rate, t_start, t_end, warmup, ridge)
    trained_acts = trained.activations(x)
    model, last = trained, len(trained.layers) - 1
    for l, layer in enumerate(trained.layers):
        if isinstance(layer, SelectableKANLayer):
            target = y if l == last else layer(trained_acts[l])
            refitted = model.layers[l].refit(model.activations(x)[l], target, train=train, **options)
            model = _set_layer(model, l, refitted)
    return model, {**history, "criterion": criterion}


_apply = eqx.filter_jit(lambda model, x: model(x))
