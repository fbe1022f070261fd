"""Non-trainable array fields ("buffers") and the filter that tells them apart from parameters.

A buffer is an array a module carries but that no optimiser may touch: a B-spline grid, a pruning
mask. Declare it with :func:`buffer_field`; :func:`trainable_filter` then gives the boolean pytree
that ``eqx.partition`` / ``eqx.filter_grad`` need to train everything else.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.tree_util as jtu


def buffer_field(**kwargs: Any) -> Any:
    """An ``eqx.field`` marked as a non-trainable buffer (still a pytree leaf, so it jits and saves)."""
    metadata = dict(kwargs.pop("metadata", {}))
    metadata["buffer"] = True
    return eqx.field(metadata=metadata, **kwargs)


def _is_buffer_attr(node: Any, name: str) -> bool:
    if not dataclasses.is_dataclass(node):
        return False
    for field in dataclasses.fields(node):
        if field.name == name:
            return bool(field.metadata.get("buffer", False))
    return False


def _leaf_is_trainable(tree: Any, path: tuple, leaf: Any) -> bool:
    if not eqx.is_inexact_array(leaf):
        return False
    node = tree
    for key in path:
        if isinstance(key, jtu.GetAttrKey):
            if _is_buffer_attr(node, key.name):
                return False
            node = getattr(node, key.name)
        elif isinstance(key, jtu.SequenceKey):
            node = node[key.idx]
        elif isinstance(key, jtu.DictKey):
            node = node[key.key]
        else:  # FlattenedIndexKey or unknown container: cannot look further, treat as trainable
            return True
    return True


def trainable_filter(tree: Any) -> Any:
    """Boolean pytree shaped like ``tree``: True on floating-point parameters, False on buffers,
    integer arrays and non-array leaves. Use with ``eqx.partition(tree, trainable_filter(tree))``."""
    return jtu.tree_map_with_path(lambda path, leaf: _leaf_is_trainable(tree, path, leaf), tree)


def count_parameters(tree: Any) -> int:
    """Number of trainable scalars in ``tree`` (buffers excluded)."""
    params, _ = eqx.partition(tree, trainable_filter(tree))
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
