"""The S-KAN modules: :class:`SelectableKANLayer` (training form, a mixture of candidate spaces per
node), :class:`SelectedKANLayer` (one space per node) and the temperature helpers. The overview, the
selection criteria and :func:`kan.fit_selectable` are in :mod:`kan.layers.selectable_layer`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from bases import Basis, buffer_field, check_last_dim, count_parameters, merge_last_two

from .layer import KANLayer, _activation_second_moment
from .selectable_refit import backfit
from .selectable_spaces import CANDIDATES, adapt_basis

Candidate = Union[str, tuple[str, Callable[[int], Basis]]]
# One compiled quadrature per basis type and size (much faster than op-by-op dispatch at init).
_trace_sum = eqx.filter_jit(lambda basis: jnp.sum(basis.gaussian_second_moment_trace()))
_OFF = -30.0  # logit of a space a refit ruled out: p = exp(-30 / T) / ... = 0 at any T <= 1


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
    """Which space each of the ``d`` input nodes chose among the ``C`` ``candidates``.

    ``names[d]`` and ``index (d,)`` (into ``candidates``): the choice; ``weight (d,)`` its selection
    weight and ``probabilities (d, C)`` all weights at the layer's current temperature. After a refit
    (``criterion == "refit"``) also ``heldout_error (d, C)``, every space's held-out mean squared
    error over the variance of the node's held-out partial residual, and ``parameters (d, C)``, the
    effective parameters every space needed at every node (inf where it never came within tolerance,
    :mod:`kan.layers.selectable_refit`); both are None after the softmax criterion.
    """

    candidates: tuple[str, ...]
    names: tuple[str, ...]
    index: np.ndarray
    weight: np.ndarray
    probabilities: np.ndarray
    criterion: str = "softmax"
    heldout_error: Optional[np.ndarray] = None
    parameters: Optional[np.ndarray] = None


def split_rows(n: int, validation: float, key: Optional[PRNGKeyArray] = None) -> np.ndarray:
    """Boolean training mask ``(n,)``: ``round(validation * n)`` random rows (``key``, default
    ``PRNGKey(0)``) are False (held out), the others True."""
    if not 0.0 < validation < 1.0:
        raise ValueError(f"split_rows: validation must be a fraction in (0, 1), got {validation}")
    num_val = int(round(validation * n))
    if num_val < 4 or n - num_val < 4:
        raise ValueError(f"split_rows: {n} rows with validation={validation} leave {num_val} held-out "
                         f"and {n - num_val} training rows; need at least 4 of each")
    perm = np.asarray(jax.random.permutation(jax.random.PRNGKey(0) if key is None else key, n))
    train = np.ones(n, bool)
    train[perm[:num_val]] = False
    return train


class SelectableKANLayer(eqx.Module):
    """S-KAN layer ``(..., in_features) -> (..., out_features)`` (see the module docstring).

    ``candidates``: names from :data:`CANDIDATES` or ``(name, factory)`` pairs, ``factory(in_features)``
    returning a :class:`bases.Basis`. Init is variance preserving at the uniform start mixture (each
    space's weights are scaled by its basis second moment and by ``1 / sqrt(sum_c p_c^2)``).
    ``heldout_error (in, C)`` and ``parameters (in, C)`` are buffers filled by :meth:`refit` (NaN before).
    """

    bases: tuple[Basis, ...]
    weights: tuple[Float[Array, "out in k"], ...]
    logits: Float[Array, "in c"]
    base_weight: Optional[Float[Array, "out in"]]
    bias: Float[Array, " out"]
    temperature: Float[Array, ""] = buffer_field()
    heldout_error: Float[Array, "in c"] = buffer_field()
    parameters: Float[Array, "in c"] = buffer_field()
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
        self.heldout_error = jnp.full((in_features, num), jnp.nan)
        self.parameters = jnp.full((in_features, num), jnp.nan)

    def probabilities(self) -> Float[Array, "in c"]:
        """Selection weights ``softmax(logits / T)`` of every node over the candidates."""
        return jax.nn.softmax(self.logits / jax.lax.stop_gradient(self.temperature), axis=-1)

    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        del key
        check_last_dim(x, self.in_features, "SelectableKANLayer")
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # the residual's SiLU in float32 too
        # All spaces (and the base branch) in one contraction over (sum_c k_c [+ 1], in); the
        # selection weights scale the (out, in, k) weights, not the (batch, in, k) features, so
        # their gradient is a small reduction over the weight gradient, not over the batch. Features
        # and weights are joined function-major, (..., k, in): each space's block is contiguous (joined
        # along the last axis, (..., in, 21), the two concatenations cost 1.7 ms of a 9.8 ms step at
        # 1024 x 128 -> 128; function-major the step took 0.96-0.98x).
        p = self.probabilities()
        feats = [jnp.swapaxes(basis(x), -1, -2) for basis in self.bases]
        weights = [jnp.swapaxes(w * p[None, :, c, None], -1, -2) for c, w in enumerate(self.weights)]
        if self.base_weight is not None:
            feats.insert(0, self.base_activation(x)[..., None, :].astype(feats[0].dtype))
            weights.insert(0, self.base_weight[:, None, :])
        flat = merge_last_two(jnp.concatenate(feats, axis=-2))
        w = jnp.concatenate(weights, axis=-2).reshape(self.out_features, -1)
        return flat @ w.T.astype(flat.dtype) + self.bias

    def with_temperature(self, temperature: Union[float, Array]) -> "SelectableKANLayer":
        """The same layer with the selection softmax's temperature set to ``temperature``."""
        return eqx.tree_at(lambda m: m.temperature, self, jnp.asarray(temperature, jnp.float32))

    def adapt(self, x: Float[Array, "n in"]) -> "SelectableKANLayer":
        """The layer with every candidate space placed on the range of each column of ``x`` ``(n, in)``
        (:func:`kan.layers.selectable_spaces.adapt_basis`); weights are unchanged."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features or not np.all(np.isfinite(x)):
            raise ValueError(f"SelectableKANLayer.adapt: expected finite inputs of shape (n, "
                             f"{self.in_features}), got {x.shape}")
        return eqx.tree_at(lambda m: m.bases, self, tuple(adapt_basis(b, x) for b in self.bases))

    def refit(self, x: Float[Array, "n in"], y: Float[Array, "n out"], *, train: Optional[np.ndarray] = None,
              validation: float = 0.25, key: Optional[PRNGKeyArray] = None, z: float = 1.0,
              tolerance: float = 1e-5, ridge: float = 1e-6, rounds: int = 3,
              search: bool = True) -> "SelectableKANLayer":
        """The refit criterion (module docstring) on inputs ``x (n, in)`` and targets ``y (n, out)``.

        ``train (n,)`` (a boolean mask) or else ``validation`` and ``key`` (:func:`split_rows`) say which
        rows are held out for the choice; ``z``, ``tolerance``, ``ridge``, ``rounds`` and ``search`` are
        those of :func:`kan.layers.selectable_refit.backfit`. After the choice the chosen spaces are refitted on
        all rows. Returns the layer with the choice installed (logits one-hot, other weights zero,
        base branch zero, ``heldout_error`` and ``parameters`` filled).
        """
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        shapes_ok = x.ndim == 2 and x.shape[1] == self.in_features and y.shape == (x.shape[0], self.out_features)
        if not shapes_ok:
            raise ValueError(f"SelectableKANLayer.refit: expected x (n, {self.in_features}) and y (n, "
                             f"{self.out_features}), got {x.shape} and {y.shape}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("SelectableKANLayer.refit: x or y contains NaN or inf")
        if not (z >= 0 and tolerance >= 0 and ridge >= 0 and int(rounds) >= 1):
            raise ValueError(f"SelectableKANLayer.refit: need z, tolerance, ridge >= 0 and rounds >= 1; "
                             f"got z={z}, tolerance={tolerance}, ridge={ridge}, rounds={rounds}")
        train = split_rows(x.shape[0], validation, key) if train is None else np.asarray(train, bool)
        if train.shape != (x.shape[0],) or min(train.sum(), (~train).sum()) < 4:
            raise ValueError(f"SelectableKANLayer.refit: train must be a boolean mask of shape ({x.shape[0]},) "
                             f"with at least 4 training and 4 held-out rows")
        opts = dict(ridge_strength=ridge, rounds=int(rounds), search=search)
        chosen = backfit(self.bases, x, y, train, z=z, tolerance=tolerance, **opts)
        final = backfit(chosen.bases, x, y, np.ones(x.shape[0], bool), choice=chosen.choice,
                        **{**opts, "search": False})
        weights = [np.zeros(w.shape) for w in self.weights]
        for d, (c, w) in enumerate(zip(final.choice, final.weights)):
            weights[c][:, d, :] = w.T
        fields = lambda m: (m.bases, m.weights, m.logits, m.bias, m.heldout_error, m.parameters)
        layer = eqx.tree_at(fields, self, (
            final.bases, tuple(jnp.asarray(w, jnp.float32) for w in weights),
            jnp.where(jax.nn.one_hot(final.choice, len(self.bases)) > 0, 0.0, _OFF),
            jnp.asarray(final.bias, jnp.float32), jnp.asarray(chosen.heldout_error, jnp.float32),
            jnp.asarray(chosen.parameters, jnp.float32)))
        if layer.base_weight is not None:
            layer = eqx.tree_at(lambda m: m.base_weight, layer, jnp.zeros_like(layer.base_weight))
        return layer

    def selection(self) -> Selection:
        """The space each node would keep now (argmax of its selection weights), for inspection."""
        p = np.asarray(self.probabilities())
        index = p.argmax(axis=-1)
        heldout = np.asarray(self.heldout_error)
        refit = bool(np.all(np.isfinite(heldout)))
        return Selection(self.candidates, tuple(self.candidates[i] for i in index), index,
                         p[np.arange(self.in_features), index], p, "refit" if refit else "softmax",
                         heldout if refit else None, np.asarray(self.parameters) if refit else None)

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
        """Trainable scalars: every candidate space's weights, the logits, base weight and bias."""
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
        """Trainable scalars of the kept spaces (one per node)."""
        return sum(g.num_parameters() for g in self.groups)

    def flops(self) -> int:
        """Forward FLOPs per sample: only each node's chosen space is evaluated."""
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
