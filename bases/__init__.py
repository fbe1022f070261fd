"""Univariate basis-function families for KAN layers: features ``(..., d) -> (..., d, k)``."""

from .basis import Basis, check_last_dim, gaussian_expectation
from .bspline import BSpline
from .buffers import buffer_field, count_parameters, trainable_filter

__all__ = [
    "Basis",
    "BSpline",
    "buffer_field",
    "check_last_dim",
    "count_parameters",
    "gaussian_expectation",
    "trainable_filter",
]
