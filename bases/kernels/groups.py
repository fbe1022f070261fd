"""Channel -> group maps for the group rational.

Channels are split into ``g`` contiguous groups. The default split is *balanced*: channel ``c``
belongs to group ``(c * g) // d``, so group sizes differ by at most one and no group is empty for
any width ``d >= g`` (for ``d`` divisible by ``g`` this is KAT's ``c // (d / g)``). An explicit map
is either a sequence of ``g`` group sizes summing to ``d`` or an integer vector ``(d,)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int


def balanced_group_index(num_channels: int, num_groups: int) -> np.ndarray:
    """``(num_channels,)`` int32 vector of contiguous, balanced group ids in ``[0, num_groups)``."""
    if int(num_groups) < 1 or int(num_channels) < int(num_groups):
        raise ValueError(
            f"balanced_group_index: need 1 <= num_groups <= num_channels, got num_groups={num_groups},"
            f" num_channels={num_channels}"
        )
    return ((np.arange(num_channels, dtype=np.int64) * num_groups) // num_channels).astype(np.int32)


def sizes_to_group_index(sizes: Sequence[int], num_channels: int) -> np.ndarray:
    """Group ids from contiguous group sizes (each >= 0, summing to ``num_channels``)."""
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) != num_channels:
        raise ValueError(
            f"group sizes must be >= 0 and sum to the channel count {num_channels}, got {sizes}"
        )
    return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def resolve_group_index(groups: Any, num_channels: int, num_groups: int) -> Int[Array, " d"]:
    """Turn ``groups`` (None, a sequence of sizes, or an int vector ``(d,)``) into group ids.

    None means the balanced split into ``num_groups`` groups. Raises ValueError/TypeError on a
    wrong length, non-integer ids or (when the ids are concrete) ids outside ``[0, num_groups)``.
    """
    if groups is None:
        return jnp.asarray(balanced_group_index(num_channels, num_groups))
    if isinstance(groups, (list, tuple)):
        if len(groups) != num_groups:
            raise ValueError(f"expected {num_groups} group sizes, got {len(groups)}: {groups}")
        return jnp.asarray(sizes_to_group_index(groups, num_channels))
    if not hasattr(groups, "dtype") or not jnp.issubdtype(groups.dtype, jnp.integer):
        raise TypeError(
            "groups must be None, a list/tuple of group sizes, or an integer array of group ids;"
            f" got {type(groups).__name__}"
        )
    if tuple(groups.shape) != (num_channels,):
        raise ValueError(
            f"group index must have shape ({num_channels},), got {tuple(groups.shape)}"
        )
    if _is_concrete(groups):
        ids = np.asarray(groups)
        if ids.size and (ids.min() < 0 or ids.max() >= num_groups):
            raise ValueError(
                f"group ids must lie in [0, {num_groups}), got range [{ids.min()}, {ids.max()}]"
            )
    return jnp.asarray(groups, jnp.int32)
