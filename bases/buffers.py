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
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np


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


def host_array(a: Any, dtype: Any = None) -> jax.Array:
    """``a`` (NumPy, array-like or a concrete JAX array) as a device array of ``dtype`` (default: JAX's
    default float, float32 unless x64 is on), converted on the host and put on the default device by
    ``jax.device_put``: no XLA program. Eager ``jnp`` ops on small bookkeeping arrays (zeros, masks,
    knots, index picks, dtype casts, even ``jnp.asarray`` of a NumPy array) compile one tiny program
    per shape, 10-40 ms each on a CPU. A tracer (inside jit / vmap) goes through ``jnp.asarray``."""
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
    if isinstance(a, jax.core.Tracer):
        return jnp.asarray(a, dtype)
    return jax.device_put(np.asarray(a, dtype))


def count_parameters(tree: Any) -> int:
    """Number of trainable scalars in ``tree`` (buffers excluded)."""
    params, _ = eqx.partition(tree, trainable_filter(tree))
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
