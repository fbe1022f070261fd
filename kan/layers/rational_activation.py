"""Learnable rational activations for ordinary networks, one coefficient set shared by several layers or
one per layer (Delfosse et al., "Adaptive Rational Activations to Boost Deep Reinforcement Learning",
ICLR 2024; rational / Padé activation units of Molina et al. 2019).

``F(x) = P(x) / Q(x)`` with ``P`` of order ``m`` (``a_0..a_m``) and a safe ``Q`` of order ``n``
(``b_1..b_n``; forms "A" / "B" of :mod:`bases.kernels.rational_math`, both ``>= 1``). Evaluation and
gradients reuse :func:`bases.kernels.rational_op.group_rational` (one group; fused Pallas kernels on
GPU, XLA elsewhere) and the fitted starting coefficients of :func:`bases.rational_init`.

Equinox copies a module that appears twice in a pytree, so sharing is explicit: a
:class:`RationalMLP` built with ``sharing="shared"`` holds ONE :class:`RationalActivation` and calls it
after every hidden layer (Delfosse et al.'s "recurrent" rationals); its gradient is the sum of every
layer's contribution, and a checkpoint stores it once, so sharing survives ``kan.save`` / ``kan.load``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from bases import Rational, count_parameters
from bases.kernels.rational_math import check_form, rational_reference
from bases.kernels.rational_op import BACKENDS, group_rational

SHARING = ("shared", "per_layer")


class RationalActivation(eqx.Module):
    """Elementwise rational activation ``(...) -> (...)`` with one coefficient set: ``numerator (m+1,)``
    (``a_0..a_m``) and ``denominator (n,)`` (``b_1..b_n``).

    ``init`` is an activation name with stored starting coefficients (``"leaky_relu"``, ``"relu"``,
    ``"tanh"``, ``"swish"``, ``"gelu"``, ``"sigmoid"`` at orders 5/4; ``"identity"`` at any orders) or a
    pair of coefficient arrays. The fits hold on ``[-3, 3]``.
    """

    numerator: Float[Array, " m1"]
    denominator: Float[Array, " n"]
    form: str = eqx.field(static=True)
    backend: str = eqx.field(static=True)

    def __init__(self, numerator: int = 5, denominator: int = 4, init: Any = "leaky_relu", *,
                 form: str = "A", backend: str = "auto"):
        check_form(form, "RationalActivation")
        if backend not in BACKENDS:
            raise ValueError(f"RationalActivation: unknown backend {backend!r}; expected one of {BACKENDS}")
        # bases.Rational validates orders, names and coefficient shapes; keep its one group's coefficients.
        basis = Rational(1, 1, numerator, denominator, init=init, form=form)
        self.numerator, self.denominator = basis.numerator[0], basis.denominator[0]
        self.form, self.backend = form, backend

    @property
    def numerator_order(self) -> int:
        """``m``: the numerator has ``m + 1`` coefficients."""
        return self.numerator.shape[0] - 1

    @property
    def denominator_order(self) -> int:
        """``n``: the denominator has ``n`` coefficients (``b_1..b_n``)."""
        return self.denominator.shape[0]

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """Elementwise on any shape (a scalar too); returns the dtype of ``x``."""
        if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"RationalActivation: expected a floating-point array, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        flat = x.reshape(-1, 1)
        y = group_rational(flat, self.numerator[None], self.denominator[None], None, form=self.form,
                           backend=self.backend)
        return y.reshape(x.shape)

    def reference(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """The same function by the plain jnp formula (for plots and tests)."""
        a = [self.numerator[i] for i in range(self.numerator.shape[0])]
        b = [self.denominator[j] for j in range(self.denominator.shape[0])]
        return rational_reference(x.astype(jnp.float32), a, b, self.form)

    def second_moment(self) -> float:
        """``E[F(x)^2]`` for x ~ N(0, 1) (quadrature), for variance-preserving init."""
        basis = Rational(1, 1, self.numerator_order, self.denominator_order,
                         init=(self.numerator, self.denominator), form=self.form)
        return float(basis.gaussian_second_moment_trace()[0])

    def as_layer(self) -> "ActivationLayer":
        """This activation as a plottable one-edge layer (:class:`ActivationLayer`)."""
        return ActivationLayer(self)

    def flops_per_element(self) -> int:
        """Horner for P (2m), |x| and Horner for Q (2n + 1), one divide: ``2m + 2n + 2``."""
        return 2 * self.numerator_order + 2 * self.denominator_order + 2


class ActivationLayer(eqx.Module):
    """A one-input, one-output layer view of an activation, ``(..., 1) -> (..., 1)`` with
    ``edge_functions`` ``(..., 1) -> (..., 1, 1)``, so ``kan.plot_edge(kan.PadeStack([view]), 0, 0, 0, x)``
    draws the learned curve (:meth:`RationalActivation.as_layer`)."""

    activation: RationalActivation
    in_features: int = eqx.field(static=True, default=1)
    out_features: int = eqx.field(static=True, default=1)

    def __call__(self, x: Float[Array, "... 1"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... 1"]:
        del key
        return self.activation(x)

    def edge_functions(self, x: Float[Array, "... 1"]) -> Float[Array, "... 1 1"]:
        """The activation at ``x``, as the layer's one edge."""
        return self.activation(x)[..., None, :]

    def flops(self) -> int:
        """Forward FLOPs per sample (one element)."""
        return self.activation.flops_per_element()


class RationalMLP(eqx.Module):
    """MLP ``(..., w0) -> (..., w-1)``: Linear, rational, Linear, ..., Linear.

    ``sharing="shared"``: one :class:`RationalActivation` used after every hidden Linear
    (``activations`` has length 1); ``"per_layer"``: one per hidden Linear (all starting equal).
    Init: weights ``N(0, 1 / (fan_in E[a^2]))``, ``E[a^2] = 1`` for the input and ``E[F(z)^2]``
    (z ~ N(0, 1)) after a rational, biases 0: each layer keeps a unit second moment.
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]
    activations: tuple[RationalActivation, ...]
    sharing: str = eqx.field(static=True)

    def __init__(self, widths: Sequence[int], *, key: PRNGKeyArray, sharing: str = "shared",
                 numerator: int = 5, denominator: int = 4, init: Any = "leaky_relu", form: str = "A",
                 backend: str = "auto"):
        widths = tuple(int(w) for w in widths)
        if len(widths) < 3 or any(w < 1 for w in widths):
            raise ValueError(f"RationalMLP: widths must list >= 3 positive sizes (at least one hidden "
                             f"layer), got {widths}")
        if sharing not in SHARING:
            raise ValueError(f"RationalMLP: unknown sharing {sharing!r}; expected one of {SHARING}")
        act = RationalActivation(numerator, denominator, init, form=form, backend=backend)
        self.sharing = sharing
        self.activations = (act,) if sharing == "shared" else (act,) * (len(widths) - 2)
        moment = act.second_moment()
        keys = jax.random.split(key, len(widths) - 1)
        self.weights = tuple(
            jax.random.normal(k, (o, i)) * np.sqrt(1.0 / (i * (1.0 if n == 0 else moment)))
            for n, (i, o, k) in enumerate(zip(widths[:-1], widths[1:], keys)))
        self.biases = tuple(jnp.zeros((o,)) for o in widths[1:])

    @property
    def widths(self) -> tuple[int, ...]:
        """Sizes ``(in, hidden..., out)``."""
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    def activation(self, layer: int) -> RationalActivation:
        """The activation after hidden Linear ``layer`` (the same object for every layer when shared)."""
        return self.activations[0 if self.sharing == "shared" else layer]

    @eqx.filter_jit
    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``key`` is unused."""
        del key
        if not hasattr(x, "ndim") or x.ndim == 0 or x.shape[-1] != self.widths[0]:
            raise ValueError(f"RationalMLP: expected input of shape (..., {self.widths[0]}), got "
                             f"{tuple(getattr(x, 'shape', ()))}")
        for n, (w, b) in enumerate(zip(self.weights, self.biases)):
            if n > 0:
                x = self.activation(n - 1)(x)
            x = x @ w.T + b
        return x

    def num_parameters(self) -> int:
        """Weights, biases and ``(m + 1 + n)`` coefficients per activation set (1 set when shared)."""
        return count_parameters(self)

    def flops(self) -> int:
        """Per sample: ``2 i o + o`` per Linear and ``2m + 2n + 2`` per hidden unit."""
        widths = self.widths
        linear = sum(2 * i * o + o for i, o in zip(widths[:-1], widths[1:]))
        return linear + self.activations[0].flops_per_element() * sum(widths[1:-1])
