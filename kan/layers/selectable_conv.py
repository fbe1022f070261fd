"""S-ConvKAN: the convolutional form of the activation-space selectable KAN (Yang et al. 2024,
"Activation Space Selectable Kolmogorov-Arnold Networks", arXiv 2408.08338, Sec. on S-ConvKAN).

Every *input channel* ``c`` chooses one of ``C`` candidate activation spaces, the same choice for all
its ``kh * kw`` kernel offsets. While training, a channel's edges mix the spaces with the selection
weights ``p[c] = softmax(logits[c] / T)``:

    y[r, s, o] = sum_{i, j, c} sum_m p[c, m] sum_k W_m[o, (i, j, c), k] F^m_k(x[r + i, s + j, c])  (+ base) + b_o

i.e. a :class:`~kan.layers.selectable_core.SelectableKANLayer` over the ``C_in * kh * kw`` patch features
of :class:`~kan.layers.conv.ConvKAN2d` (feature order ``(i * kw + j) * C_in + c``) whose per-feature logits
are the channel logits repeated over the offsets. :func:`fit_selectable_conv` runs the paper's
schedule (uniform mixture with frozen logits, then logits trained while the temperature anneals, a
small ridge on the candidate weights); :meth:`SelectableConvKAN2d.finalize` keeps each channel's most
probable space (weights scaled by its ``p``) and returns a :class:`ConvKAN2d` over a
:class:`~kan.layers.selectable_core.SelectedKANLayer`, which evaluates one space per channel.

The channel logits live on this module; its inner layer's own ``logits`` field is None (so it is not
counted twice), hence :func:`kan.fit_selectable` (2-D data, per-node logits) does not take this layer.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from bases import trainable_filter

from .conv import ConvKAN2d, Padding, pair
from .selectable_core import (Candidate, SelectableKANLayer, Selection, _candidate_weight_norm, anneal_temperature,
                              set_temperature)


class SelectableConvKAN2d(eqx.Module):
    """S-ConvKAN ``(..., H, W, C_in) -> (..., H', W', C_out)``: one selectable space per input channel.

    ``candidates``: as for :class:`kan.SelectableKANLayer` (names of :data:`kan.CANDIDATES` or
    ``(name, factory)`` pairs). Geometry arguments (``stride``, ``padding``, ``dilation``,
    ``image_size``) as :class:`ConvKAN2d`. Init is the inner layer's variance-preserving one at the uniform
    mixture. ``logits (C_in, C)``; the temperature is the inner layer's buffer (:func:`kan.set_temperature`).
    """

    conv: ConvKAN2d
    logits: Float[Array, "c_in c"]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Sequence[int]],
                 candidates: Sequence[Candidate] = ("bspline", "rbf", "fourier", "chebyshev", "rational"), *,
                 key: PRNGKeyArray, stride: Union[int, Sequence[int]] = 1, padding: Padding = "VALID",
                 dilation: Union[int, Sequence[int]] = 1, image_size: Optional[Sequence[int]] = None,
                 base_activation: Optional[Callable[[Array], Array]] = jax.nn.silu, temperature: float = 1.0):
        who = "SelectableConvKAN2d"
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{who}: {name} must be an int >= 1, got {v!r}")
        kh, kw = pair(kernel_size, "kernel_size", who)
        layer = SelectableKANLayer(in_channels * kh * kw, out_channels, candidates, key=key,
                                   base_activation=base_activation, temperature=temperature)
        self.logits = layer.logits[:in_channels]  # zeros: the uniform start
        self.conv = ConvKAN2d(in_channels, out_channels, (kh, kw), layer=eqx.tree_at(lambda l: l.logits, layer, None),
                              stride=stride, padding=padding, dilation=dilation, image_size=image_size)

    # ----- shape and geometry, as ConvKAN2d -----------------------------------------------------------
    @property
    def layer(self) -> SelectableKANLayer:
        """The inner selectable layer over patch features, with the channel logits expanded to it."""
        offsets = self.conv.kernel_size[0] * self.conv.kernel_size[1]
        return eqx.tree_at(lambda l: l.logits, self.conv.layer, jnp.tile(self.logits, (offsets, 1)),
                           is_leaf=lambda v: v is None)

    @property
    def candidates(self) -> tuple[str, ...]:
        """Names of the candidate activation spaces."""
        return self.conv.layer.candidates

    @property
    def in_channels(self) -> int:
        """Input channels ``C_in``."""
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        """Output channels ``C_out``."""
        return self.conv.out_channels

    def output_size(self, image_size: Sequence[int]) -> tuple[int, int]:
        """``(H', W')`` for an image of ``image_size = (H, W)``."""
        return self.conv.output_size(image_size)

    @eqx.filter_jit
    def __call__(self, x: Float[Array, "... H W C_in"], *,
                 key: Optional[PRNGKeyArray] = None) -> Float[Array, "... Ho Wo C_out"]:
        """``(..., H, W, C_in) -> (..., H', W', C_out)``; ``key`` is unused."""
        del key
        return self.layer(self.conv.patches(x))

    # ----- selection ----------------------------------------------------------------------------------
    def probabilities(self) -> Float[Array, "c_in c"]:
        """Selection weights ``softmax(logits / T)`` of every input channel over the candidates."""
        return jax.nn.softmax(self.logits / jax.lax.stop_gradient(self.conv.layer.temperature), axis=-1)

    def selection(self) -> Selection:
        """The space each input channel would keep now (argmax of its selection weights)."""
        p = np.asarray(self.probabilities())
        index = p.argmax(axis=-1)
        return Selection(self.candidates, tuple(self.candidates[i] for i in index), index,
                         p[np.arange(self.in_channels), index], p, "softmax")

    def finalize(self) -> ConvKAN2d:
        """Each channel's most probable space kept (weights scaled by its ``p``), the others dropped: a
        :class:`ConvKAN2d` over a :class:`kan.SelectedKANLayer` (all offsets of a channel share the space)."""
        return self.conv.with_layer(self.layer.finalize())

    def with_temperature(self, temperature: Union[float, Array]) -> "SelectableConvKAN2d":
        """The same layer with the selection temperature set to ``temperature``."""
        return set_temperature(self, temperature)

    # ----- counts ------------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Trainable scalars: all candidate weights, the channel logits, base weight and bias."""
        from bases import count_parameters

        return count_parameters(self)

    def flops(self, image_size: Optional[Sequence[int]] = None) -> int:
        """Forward FLOPs per sample while training (every space evaluated): ``H' W'`` x the inner layer's."""
        return self.conv.flops(image_size)


def _conv_layers(model: Any) -> list[SelectableConvKAN2d]:
    is_sel = lambda n: isinstance(n, SelectableConvKAN2d)
    return [n for n in jax.tree_util.tree_leaves(model, is_leaf=is_sel) if is_sel(n)]


def _mse(model: Any, x: Array, y: Array) -> Array:
    return jnp.mean((model(x) - y) ** 2)


@functools.lru_cache(maxsize=16)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


@eqx.filter_jit
def _step(params, static, opt_state, x, y, temperature, logit_scale, ridge, opt, loss):
    def objective(p):
        model = set_temperature(eqx.combine(p, static), temperature)
        value = loss(model, x, y)
        return value + ridge * _candidate_weight_norm(model), value

    (_, value), grads = jax.value_and_grad(objective, has_aux=True)(params)
    leaves = lambda m: [c.logits for c in _conv_layers(m)]
    grads = eqx.tree_at(leaves, grads, [g * logit_scale for g in leaves(grads)])
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


def fit_selectable_conv(model: Any, data: tuple[Array, Array], *, steps: int = 300, learning_rate: float = 1e-2,
                        t_start: float = 1.0, t_end: float = 0.05, warmup: float = 1 / 3, ridge: float = 1e-3,
                        loss: Callable[[Any, Array, Array], Array] = _mse) -> tuple[Any, dict]:
    """Train ``model`` (one :class:`SelectableConvKAN2d` or any model holding some) on ``data = (x, y)``
    with the S-KAN paper's schedule, full batch Adam: the first ``warmup`` fraction of ``steps`` at
    temperature ``t_start`` with the channel logits frozen, then the logits train while the temperature
    anneals to ``t_end`` (:func:`kan.anneal_temperature`). ``ridge * sum ||W_m||^2`` over the candidate
    weights removes the scale redundancy between ``p`` and ``W`` (see :func:`kan.fit_selectable`).
    ``loss(model, x, y)`` defaults to the mean squared error. Returns ``(model, {"train_loss",
    "temperature"})``; read the choice with :meth:`SelectableConvKAN2d.selection`.
    """
    if not _conv_layers(model):
        raise ValueError("fit_selectable_conv: the model contains no SelectableConvKAN2d")
    if steps < 2 or not (t_start > 0 and t_end > 0) or not 0 <= warmup < 1 or ridge < 0:
        raise ValueError(f"fit_selectable_conv: need steps >= 2, positive temperatures, 0 <= warmup < 1 and "
                         f"ridge >= 0; got steps={steps}, t_start={t_start}, t_end={t_end}, warmup={warmup}, "
                         f"ridge={ridge}")
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    if not (bool(jnp.all(jnp.isfinite(x))) and bool(jnp.all(jnp.isfinite(y)))):
        raise ValueError("fit_selectable_conv: x or y contains NaN or inf")
    params, static = eqx.partition(set_temperature(model, t_start), trainable_filter(model))
    opt = _adam(float(learning_rate))
    opt_state, history = opt.init(params), {"train_loss": [], "temperature": []}
    frozen = int(round(warmup * steps))
    for i in range(steps):
        t, scale = ((t_start, 0.0) if i < frozen else
                    (float(anneal_temperature(i - frozen, steps - frozen - 1, t_start, t_end)), 1.0))
        params, opt_state, value = _step(params, static, opt_state, x, y, jnp.float32(t), jnp.float32(scale),
                                         jnp.float32(ridge), opt, loss)
        history["train_loss"].append(float(value))
        history["temperature"].append(t)
    return set_temperature(eqx.combine(params, static), t_end), history
