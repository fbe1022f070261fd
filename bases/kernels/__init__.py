"""Kernels for bases: the group rational as a differentiable op (Pallas on GPU, XLA elsewhere)."""

from .groups import balanced_group_index, resolve_group_index
from .rational_op import BACKENDS, group_rational

__all__ = ["BACKENDS", "balanced_group_index", "group_rational", "resolve_group_index"]
