"""Chebyshev polynomial basis (ChebyKAN, SS et al. 2024, arXiv 2405.07200).

``F_j(x) = T_j(t(x))`` for ``j = 0..degree`` with ``T_j(cos a) = cos(j a)``. ChebyKAN squashes the input
with ``t = tanh(x)`` (``input_map="tanh"``, the default), so the basis is bounded on all of R. With
``input_map="affine"`` the grid range ``[lo, hi]`` is mapped onto ``[-1, 1]`` instead, which makes the
features plain polynomials of ``x`` (exact for polynomial targets, unbounded outside the range).
Evaluated by the three-term recurrence ``T_{j+1} = 2 t T_j - T_{j-1}`` (no arccos, finite gradients).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .basis import Basis, check_last_dim
from .buffers import buffer_field
from .rbf import _check_indices, _compiled_moment, _compiled_trace, _range_arrays

_TANH_FLOPS = 6  # Yu et al. 2024 cost table
INPUT_MAPS = ("tanh", "affine")


class Chebyshev(Basis):
    """``T_0..T_degree`` of the mapped input: ``(..., d) -> (..., d, degree + 1)``.

    ``grid_range`` is the plotting / fitting domain (and, for ``input_map="affine"``, the interval sent
    to ``[-1, 1]``).
    """

    lo: Float[Array, " d"] = buffer_field()
    hi: Float[Array, " d"] = buffer_field()
    in_features: int = eqx.field(static=True)
    degree: int = eqx.field(static=True)
    input_map: str = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        degree: int = 5,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        input_map: str = "tanh",
    ):
        if not isinstance(degree, (int, np.integer)) or degree < 1:
            raise ValueError(f"Chebyshev: degree must be an integer >= 1, got {degree!r}")
        if in_features < 1:
            raise ValueError(f"Chebyshev: in_features must be >= 1, got {in_features}")
        if input_map not in INPUT_MAPS:
            raise ValueError(f"Chebyshev: unknown input_map {input_map!r}; valid: {', '.join(INPUT_MAPS)}")
        lo, hi = _range_arrays(grid_range, in_features, "Chebyshev")
        self.in_features = int(in_features)
        self.degree = int(degree)
        self.input_map = input_map
        self.lo = jnp.asarray(lo, jnp.float32)
        self.hi = jnp.asarray(hi, jnp.float32)

    @property
    def num_functions(self) -> int:
        return self.degree + 1

    def _mapped(self, x: Array) -> Array:
        if self.input_map == "tanh":
            return jnp.tanh(x)
        lo = jax.lax.stop_gradient(self.lo).astype(x.dtype)
        hi = jax.lax.stop_gradient(self.hi).astype(x.dtype)
        return (2.0 * x - lo - hi) / (hi - lo)

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d k"]:
        check_last_dim(x, self.in_features, "Chebyshev")
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        t = self._mapped(x)
        polys = [jnp.ones_like(t), t]
        for _ in range(2, self.degree + 1):
            polys.append(2.0 * t * polys[-1] - polys[-2])
        return jnp.stack(polys, axis=-1)

    def gaussian_second_moment_trace(self) -> Float[Array, " d"]:
        return _compiled_trace(self)

    def gaussian_second_moment(self) -> Float[Array, "d k k"]:
        return _compiled_moment(self)

    def domain(self) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        return self.lo, self.hi

    def flops_per_input(self) -> int:
        mapping = _TANH_FLOPS if self.input_map == "tanh" else 3
        return mapping + 1 + 2 * max(self.degree - 1, 0)  # 2t once, then a multiply-add per degree

    def select_inputs(self, indices: Int[Array, " m"]) -> "Chebyshev":
        idx = _check_indices(indices, self.in_features, "Chebyshev")
        fresh = Chebyshev(int(idx.size), self.degree, input_map=self.input_map)
        return eqx.tree_at(lambda b: (b.lo, b.hi), fresh, (self.lo[idx], self.hi[idx]))
