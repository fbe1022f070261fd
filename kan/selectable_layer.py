"""Activation-space selectable KAN layer (S-KAN, after Yang et al. 2024, "Activation Space Selectable
Kolmogorov-Arnold Networks", arXiv 2408.08338).

Every input node ``d`` may use one of ``C`` candidate activation spaces (bases). During training its
edges mix the candidates with learnable selection weights

    p[d] = softmax(logits[d] / T)                               (C,)
    y_o  = sum_d sum_c p[d, c] sum_k W_c[o, d, k] F^c_k(x_d)  (+ w_base[o, d] b(x_d))  + bias_o

Training follows the paper's three phases (full training, selective training, pruning):
:func:`fit_selectable` first trains all spaces at the uniform mixture with the logits frozen, then
trains the logits while the temperature ``T`` anneals (:func:`anneal_temperature`), so the mixture
moves to one space per node while the weights adapt; a small ridge on the candidate weights removes the
scale redundancy between ``p`` and ``W`` that would otherwise leave the logits without a signal (see
:func:`fit_selectable`). :meth:`finalize` then keeps the most probable space of every node (its weights
scaled by that node's final ``p``) and prunes the others: the result, :class:`SelectedKANLayer`,
evaluates one space per node. The base branch and bias are shared by all spaces (not part of the choice).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional, Sequence, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from bases import (Basis, BSpline, Chebyshev, Fourier, GaussianRBF, Rational, ReLUKAN, buffer_field,
                   check_last_dim, count_parameters, trainable_filter)

from .layer import KANLayer, _activation_second_moment

#: name -> basis factory ``f(in_features) -> Basis`` for candidates given by name.
CANDIDATES: dict[str, Callable[[int], Basis]] = {
    "bspline": lambda d: BSpline(d),
    "rbf": lambda d: GaussianRBF(d),
    "fourier": lambda d: Fourier(d, 3),
    "chebyshev": lambda d: Chebyshev(d),
    "relu_kan": lambda d: ReLUKAN(d),
    "rational": lambda d: Rational(d, num_groups=d),
}
Candidate = Union[str, tuple[str, Callable[[int], Basis]]]
# One compiled quadrature per basis type and size (much faster than op-by-op dispatch at init).
_trace_sum = eqx.filter_jit(lambda basis: jnp.sum(basis.gaussian_second_moment_trace()))


def _resolve(candidates: Sequence[Candidate], in_features: int) -> tuple[tuple[str, ...], tuple[Basis, ...]]:
    if isinstance(candidates, (str, bytes)) or len(candidates) == 0:
        raise ValueError("SelectableKANLayer: candidates must be a non-empty list of names or "
                         f"(name, factory) pairs; got {candidates!r}")
    names, bases = [], []
    for cand in candidates:
        if isinstance(cand, str):
            if cand not in CANDIDATES:
                raise ValueError(f"SelectableKANLayer: unknown candidate {cand!r}; valid names: "
                                 f"{', '.join(CANDIDATES)} (or pass a (name, factory) pair)")
            name, factory = cand, CANDIDATES[cand]
        elif isinstance(cand, tuple) and len(cand) == 2 and isinstance(cand[0], str) and callable(cand[1]):
            name, factory = cand
        else:
            raise TypeError(f"SelectableKANLayer: a candidate is a name or a (name, factory) pair, got {cand!r}")
        basis = factory(in_features)
        if not isinstance(basis, Basis) or basis.in_features != in_features:
            raise ValueError(f"SelectableKANLayer: factory of {name!r} must return a bases.Basis with "
                             f"in_features={in_features}, got {basis!r}")
        names.append(name)
        bases.append(basis)
    if len(set(names)) != len(names):
        raise ValueError(f"SelectableKANLayer: candidate names must be unique, got {names}")
    return tuple(names), tuple(bases)


class Selection(NamedTuple):
    """Which space each input node chose: ``names[d]``, ``index[d]`` into ``candidates``, its selection
    weight ``weight[d]`` and all weights ``probabilities[d, c]`` at the layer's current temperature."""

    candidates: tuple[str, ...]
    names: tuple[str, ...]
    index: np.ndarray
    weight: np.ndarray
    probabilities: np.ndarray


def plot_selection(selection: Selection, path: Optional[str] = None, *, ax=None):
    """Heat map of the selection weights (nodes x candidate spaces), the chosen space outlined and
    its weight printed. Draws on ``ax`` (or a new figure, saved to ``path`` when given); returns the axes."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    p = np.asarray(selection.probabilities)
    if ax is None:  # a pyplot-free figure: the user's backend is left alone
        ax = Figure(figsize=(1.2 + 0.9 * p.shape[1], 0.8 + 0.45 * p.shape[0])).add_subplot()
    ax.imshow(p, vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
    ax.set_xticks(range(p.shape[1]), selection.candidates, rotation=30)
    ax.set_yticks(range(p.shape[0]), [f"x{d}" for d in range(p.shape[0])])
    for d, (c, w) in enumerate(zip(selection.index, selection.weight)):
        ax.add_patch(Rectangle((c - 0.5, d - 0.5), 1, 1, fill=False, lw=2, ec="red"))
        ax.text(c, d, f"{w:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title("S-KAN selection")
    if path is not None:
        ax.figure.savefig(path, bbox_inches="tight")
    return ax


class SelectableKANLayer(eqx.Module):
    """S-KAN layer ``(..., in_features) -> (..., out_features)`` (see the module docstring).

    ``candidates``: names from :data:`CANDIDATES` or ``(name, factory)`` pairs. Init is variance
    preserving at the uniform start mixture (each space's weights are scaled by its basis second moment
    and by ``1 / sqrt(sum_c p_c^2)``).
    """

    bases: tuple[Basis, ...]
    weights: tuple[Float[Array, "out in k"], ...]
    logits: Float[Array, "in c"]
    base_weight: Optional[Float[Array, "out in"]]
    bias: Float[Array, " out"]
    temperature: Float[Array, ""] = buffer_field()
    candidates: tuple[str, ...] = eqx.field(static=True)
    base_activation: Optional[Callable[[Array], Array]] = eqx.field(static=True)
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        candidates: Sequence[Candidate] = ("bspline", "rbf", "fourier", "chebyshev", "rational"),
        *,
        key: PRNGKeyArray,
        base_activation: Optional[Callable[[Array], Array]] = jax.nn.silu,
        temperature: float = 1.0,
    ):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"SelectableKANLayer: in_features and out_features must be >= 1, got "
                             f"{in_features}, {out_features}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"SelectableKANLayer: temperature must be > 0, got {temperature}")
        self.candidates, self.bases = _resolve(candidates, int(in_features))
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.base_activation = base_activation
        num = len(self.bases)
        share = 0.5 if base_activation is not None else 1.0
        mix = math.sqrt(num)  # 1 / sqrt(sum_c p_c^2) at the uniform start p_c = 1 / C
        sizes = [b.num_functions for b in self.bases]
        noise = jax.random.normal(key, (out_features, in_features, sum(sizes) + 1))  # one draw
        starts = np.cumsum([0] + sizes)
        self.weights = tuple(
            mix * math.sqrt(share / max(float(_trace_sum(b)), 1e-12)) * noise[..., lo:hi]
            for b, lo, hi in zip(self.bases, starts[:-1], starts[1:]))
        self.logits = jnp.zeros((in_features, num))
        if base_activation is not None:
            std = math.sqrt(0.5 / (in_features * _activation_second_moment(base_activation)))
            self.base_weight = std * noise[..., -1]
        else:
            self.base_weight = None
        self.bias = jnp.zeros((out_features,))
        self.temperature = jnp.asarray(temperature, jnp.float32)

    def probabilities(self) -> Float[Array, "in c"]:
        """Selection weights ``softmax(logits / T)`` of every node over the candidates."""
        return jax.nn.softmax(self.logits / jax.lax.stop_gradient(self.temperature), axis=-1)

    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        del key
        check_last_dim(x, self.in_features, "SelectableKANLayer")
        p = self.probabilities()
        y = self.bias
        for c, (basis, weight) in enumerate(zip(self.bases, self.weights)):
            feats = basis(x) * p[:, c, None]
            y = y + jnp.einsum("...dk,odk->...o", feats, weight)
        if self.base_weight is not None:
            y = y + self.base_activation(x) @ self.base_weight.T
        return y

    def with_temperature(self, temperature: Union[float, Array]) -> "SelectableKANLayer":
        return eqx.tree_at(lambda m: m.temperature, self, jnp.asarray(temperature, jnp.float32))

    def selection(self) -> Selection:
        """The space each node would keep now (argmax of its selection weights), for inspection."""
        p = np.asarray(self.probabilities())
        index = p.argmax(axis=-1)
        return Selection(self.candidates, tuple(self.candidates[i] for i in index), index,
                         p[np.arange(self.in_features), index], p)

    def finalize(self) -> "SelectedKANLayer":
        """Keep each node's most probable space, weights scaled by its selection weight; drop the rest."""
        sel = self.selection()
        groups, indices, names = [], [], []
        for c, name in enumerate(self.candidates):
            idx = np.flatnonzero(sel.index == c)
            if idx.size == 0:
                continue
            first = not groups
            layer = KANLayer(int(idx.size), self.out_features, self.bases[c].select_inputs(idx),
                             key=jax.random.PRNGKey(0), base_activation=self.base_activation, use_bias=first)
            spline = self.weights[c][:, idx, :] * jnp.asarray(sel.weight[idx])[None, :, None]
            layer = eqx.tree_at(lambda l: l.spline_weight, layer, spline)
            if self.base_weight is not None:
                layer = eqx.tree_at(lambda l: l.base_weight, layer, self.base_weight[:, idx])
            if first:
                layer = eqx.tree_at(lambda l: l.bias, layer, self.bias)
            groups.append(layer)
            indices.append(tuple(int(i) for i in idx))
            names.append(name)
        return SelectedKANLayer(tuple(groups), tuple(indices), tuple(names), self.in_features)

    def num_parameters(self) -> int:
        return count_parameters(self)

    def flops(self) -> int:
        """Forward FLOPs per sample while training: every candidate space is evaluated and mixed."""
        d, o = self.in_features, self.out_features
        total = sum(d * b.flops_per_input() + d * b.num_functions + 2 * d * b.num_functions * o
                    for b in self.bases)
        if self.base_weight is not None:
            total += 5 * d + 2 * d * o
        return total + o


class SelectedKANLayer(eqx.Module):
    """A finalised S-KAN layer: one :class:`KANLayer` per chosen space, each on the inputs
    ``indices[g]`` that chose ``families[g]``; the output is the sum of the groups' outputs."""

    groups: tuple[KANLayer, ...]
    indices: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    families: tuple[str, ...] = eqx.field(static=True)
    in_features: int = eqx.field(static=True)

    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        del key
        check_last_dim(x, self.in_features, "SelectedKANLayer")
        return sum(g(x[..., list(idx)]) for g, idx in zip(self.groups, self.indices))

    @property
    def node_families(self) -> tuple[str, ...]:
        """The space of every input node, in input order."""
        out = [""] * self.in_features
        for name, idx in zip(self.families, self.indices):
            for i in idx:
                out[i] = name
        return tuple(out)

    def edge_functions(self, x: Float[Array, "... in"]) -> Float[Array, "... out in"]:
        """Every edge function ``phi_od(x_d)``, in the original input order."""
        check_last_dim(x, self.in_features, "SelectedKANLayer.edge_functions")
        out = jnp.zeros(x.shape[:-1] + (self.groups[0].out_features, self.in_features), x.dtype)
        for g, idx in zip(self.groups, self.indices):
            out = out.at[..., list(idx)].set(g.edge_functions(x[..., list(idx)]))
        return out

    def num_parameters(self) -> int:
        return sum(g.num_parameters() for g in self.groups)

    def flops(self) -> int:
        return sum(g.flops() for g in self.groups)


def _selectable_layers(model) -> list["SelectableKANLayer"]:
    is_sel = lambda n: isinstance(n, SelectableKANLayer)
    return [n for n in jax.tree_util.tree_leaves(model, is_leaf=is_sel) if is_sel(n)]


def _logit_leaves(model) -> list[Array]:
    return [layer.logits for layer in _selectable_layers(model)]


def _candidate_weight_norm(model) -> Array:
    return sum(sum(jnp.sum(w**2) for w in layer.weights) for layer in _selectable_layers(model))


def anneal_temperature(step: Int[Array, ""], total_steps: int, t_start: float = 1.0,
                       t_end: float = 0.05) -> Float[Array, ""]:
    """Exponential schedule ``t_start * (t_end / t_start) ** (step / total_steps)`` (clipped at the end)."""
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
    return t_start * (t_end / t_start) ** frac


def set_temperature(model, temperature: Union[float, Array]):
    """``model`` with every :class:`SelectableKANLayer` inside set to ``temperature``."""
    layers = _selectable_layers(model)
    if not layers:
        raise ValueError("set_temperature: the model contains no SelectableKANLayer")
    t = jnp.asarray(temperature, jnp.float32)
    return eqx.tree_at(lambda m: [n.temperature for n in _selectable_layers(m)], model, [t] * len(layers))


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


def fit_selectable(model, data: tuple[Array, Array], *, steps: int = 300, learning_rate: float = 1e-2,
                   t_start: float = 1.0, t_end: float = 0.05, warmup: float = 1 / 3, ridge: float = 1e-3):
    """Full-batch Adam on the mean squared error of ``model`` (any model holding selectable layers).

    Schedule: for the first ``warmup`` fraction of the steps the selection logits are frozen at the
    uniform mixture (temperature ``t_start``) so every space first learns its part of the fit; then
    the logits train while the temperature anneals to ``t_end`` (:func:`anneal_temperature`).
    ``ridge`` adds ``ridge * sum ||W_c||^2`` over the candidate weights. Without it the mixture is
    redundant (scaling ``W_c`` up and ``p_c`` down gives the same function, so at a fitted ``W`` the
    logit gradient vanishes); with it, ``dJ/dp_c = -2 ridge ||W_c||^2 / p_c`` at the fitted weights,
    so the space that carries the fit grows its weight and the choice is driven by the data.
    Returns ``(model, history)`` with "train_loss" (MSE) and "temperature"; the model ends at ``t_end``.
    """
    from .fit import check_data

    x, y = check_data(data, None, "fit_selectable")
    if steps < 2 or not (t_start > 0 and t_end > 0) or not 0 <= warmup < 1 or ridge < 0:
        raise ValueError(f"fit_selectable: need steps >= 2, positive temperatures, 0 <= warmup < 1 and "
                         f"ridge >= 0; got steps={steps}, t_start={t_start}, t_end={t_end}, "
                         f"warmup={warmup}, ridge={ridge}")
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
