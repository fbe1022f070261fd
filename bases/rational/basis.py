"""Group rational basis of the Kolmogorov-Arnold Transformer (KAT, Yang & Wang 2024, arXiv 2409.10594).

One feature per input (``k = 1``): ``F_{g(c)}(x_c) = P(x_c) / Q(x_c)``, where the ``d`` input
channels are split into ``g`` contiguous groups that share coefficients. ``P`` has order ``m``,
``Q`` order ``n`` with a safe denominator (form ``"A"``: ``1 + sum |b_j| |x|^j``, form ``"B"``:
``1 + |sum b_j x^j|``; both ``>= 1``, so no poles). Evaluation and gradients go through
``bases.kernels.group_rational`` (fused Pallas kernels on GPU, XLA elsewhere).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..basis import Basis, check_last_dim, gaussian_expectation
from ..buffers import buffer_field
from ..kernels.groups import resolve_group_index
from ..kernels.rational_math import check_form, rational_reference
from ..kernels.rational_op import BACKENDS, group_rational
from .init_table import rational_init

DOMAIN = (-3.0, 3.0)  # the range the starting coefficients were fitted on


def _coefficients(init: Any, form: str, m: int, n: int, num_groups: int) -> tuple[Array, Array]:
    """Per-group ``(g, m+1)`` and ``(g, n)`` float32 tables from a name or a pair of arrays."""
    if isinstance(init, str):
        a, b = rational_init(init, form, m, n)
    else:
        try:
            a, b = init
        except (TypeError, ValueError):
            raise TypeError("Rational: init must be an activation name or a pair (numerator, "
                            f"denominator), got {type(init).__name__}") from None
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.ndim == 1:
        a = np.broadcast_to(a, (num_groups, a.shape[0]))
    if b.ndim == 1:
        b = np.broadcast_to(b, (num_groups, b.shape[0]))
    if a.shape != (num_groups, m + 1) or b.shape != (num_groups, n):
        raise ValueError(
            f"Rational: coefficients must have shapes ({num_groups}, {m + 1}) and ({num_groups}, {n})"
            f" (or ({m + 1},), ({n},)), got {a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("Rational: coefficients contain NaN or inf")
    return jnp.asarray(a), jnp.asarray(b)


@functools.partial(jax.jit, static_argnames="form")
def _second_moment(a: Array, b: Array, group_index: Array, form: str) -> Array:
    rows_a = [a[:, i] for i in range(a.shape[1])]
    rows_b = [b[:, j] for j in range(b.shape[1])]
    fn = lambda xs: rational_reference(xs, rows_a, rows_b, form) ** 2
    return gaussian_expectation(fn, a.shape[0])[group_index]


class Rational(Basis):
    """Group rational: ``(..., d) -> (..., d, 1)``; coefficients ``numerator (g, m+1)`` and
    ``denominator (g, n)`` (``b_1..b_n``) are trained, the channel -> group map is a buffer.

    ``num_groups`` defaults to ``min(8, in_features)`` (KAT uses 8); ``groups`` may instead give
    ``g`` contiguous group sizes or an int vector ``(d,)`` of group ids. ``init`` is an activation
    name from ``bases.rational_init`` or a pair of coefficient arrays.
    """

    numerator: Float[Array, "g m1"]
    denominator: Float[Array, "g n"]
    group_index: Int[Array, " d"] = buffer_field()
    in_features: int = eqx.field(static=True)
    num_groups: int = eqx.field(static=True)
    form: str = eqx.field(static=True)
    backend: str = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        num_groups: int | None = None,
        numerator_order: int = 5,
        denominator_order: int = 4,
        *,
        init: Any = "identity",
        form: str = "A",
        groups: Sequence[int] | Int[Array, " d"] | None = None,
        backend: str = "auto",
    ):
        check_form(form, "Rational")
        if backend not in BACKENDS:
            raise ValueError(f"Rational: unknown backend {backend!r}; expected one of {BACKENDS}")
        if int(in_features) < 1:
            raise ValueError(f"Rational: in_features must be >= 1, got {in_features}")
        m, n = int(numerator_order), int(denominator_order)
        if m < 0 or n < 1:
            raise ValueError(f"Rational: need numerator_order >= 0 and denominator_order >= 1, got {m}/{n}")
        if num_groups is None:
            if isinstance(groups, (list, tuple)):
                num_groups = len(groups)
            elif groups is not None:
                num_groups = int(np.max(np.asarray(groups))) + 1
            else:
                num_groups = min(8, int(in_features))
        if int(num_groups) < 1:
            raise ValueError(f"Rational: num_groups must be >= 1, got {num_groups}")
        self.in_features = int(in_features)
        self.num_groups = int(num_groups)
        self.form = form
        self.backend = backend
        self.group_index = resolve_group_index(groups, self.in_features, self.num_groups)
        self.numerator, self.denominator = _coefficients(init, form, m, n, self.num_groups)

    @property
    def num_functions(self) -> int:
        return 1

    @property
    def numerator_order(self) -> int:
        """Degree of the numerator P (5 for KAT's P5/Q4)."""
        return self.numerator.shape[1] - 1

    @property
    def denominator_order(self) -> int:
        """Degree of the denominator Q (4 for KAT's P5/Q4)."""
        return self.denominator.shape[1]

    def activation(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        """The rational applied per channel, without the feature axis: ``(..., d) -> (..., d)``."""
        check_last_dim(x, self.in_features, "Rational")
        return group_rational(x, self.numerator, self.denominator, self.group_index,
                              form=self.form, backend=self.backend)

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d 1"]:
        return self.activation(x)[..., None]

    def group_functions(self, x: Float[Array, "... g"]) -> Float[Array, "... g"]:
        """Each group's rational on its own column of ``x`` (plain jnp formula; for plots, moments)."""
        rows_a = [self.numerator[:, i] for i in range(self.numerator.shape[1])]
        rows_b = [self.denominator[:, j] for j in range(self.denominator.shape[1])]
        return rational_reference(x.astype(jnp.float32), rows_a, rows_b, self.form)

    def domain(self) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        lo = jnp.full((self.in_features,), DOMAIN[0], jnp.float32)
        return lo, jnp.full((self.in_features,), DOMAIN[1], jnp.float32)

    def flops_per_input(self) -> int:
        """Horner for P (2m), |x| and Horner for Q (2n + 1, counting the leading 1), one divide."""
        return 2 * self.numerator_order + 2 * self.denominator_order + 2

    def gaussian_second_moment_trace(self) -> Float[Array, " d"]:
        """``E[F(x)^2]`` for x ~ N(0, 1), by quadrature once per group, then per channel."""
        return _second_moment(self.numerator, self.denominator, self.group_index, self.form)

    def gaussian_second_moment(self) -> Float[Array, "d 1 1"]:
        return self.gaussian_second_moment_trace()[:, None, None]

    def select_inputs(self, indices: Int[Array, " m"]) -> "Rational":
        """The basis on the channels ``indices``; all groups (and their coefficients) are kept."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or indices.size == 0:
            raise ValueError(f"Rational.select_inputs: need a non-empty 1-D index vector, got {indices.shape}")
        if indices.min() < -self.in_features or indices.max() >= self.in_features:
            raise ValueError(f"Rational.select_inputs: indices out of range for {self.in_features} inputs")
        return Rational(
            int(indices.size), self.num_groups, self.numerator_order, self.denominator_order,
            init=(self.numerator, self.denominator), form=self.form,
            groups=jnp.asarray(np.asarray(self.group_index)[indices]), backend=self.backend,
        )
