"""Self-describing checkpoints: ``kan.save(path, model)`` and ``kan.load(path)``.

A file is one JSON header line and then the raw bytes of every array. The header holds a format
version, the package and jax versions, the model's class and widths, and the whole model as a tree
(:mod:`kan.tree_codec`): classes, static fields (widths, basis settings, grid uniformity, symbolic edge
names, mult nodes, activations by their public name) and, per array, its path, dtype and shape. So
``kan.load(path)`` rebuilds any model of this package by itself, in any process: plain, pruned,
refined, with multiplication nodes, with snapped edges, every layer kind. Arrays come back
bit-identical. ``kan.load(path, like=skeleton)`` reads the arrays into a skeleton instead (for custom
modules, or models holding a lambda); when the skeleton differs, the error names the first place.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .tree_codec import DEFAULT_TRUSTED, decode, encode, first_difference

FORMAT = "jaxkan-research checkpoint"
VERSION = 2


def _package_version() -> str:
    try:
        return metadata.version("jaxkan-research")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _describe(model: Any) -> tuple[Any, list, list[dict]]:
    """(tree spec, arrays, per-array metadata) of ``model``; arrays in jax's flattening order first."""
    leaves_with_paths = jax.tree_util.tree_flatten_with_path(model)[0]
    arrays, meta, index = [], [], {}
    for path, leaf in leaves_with_paths:
        if eqx.is_array(leaf) and id(leaf) not in index:
            index[id(leaf)] = len(arrays)
            arrays.append(leaf)
            meta.append({"path": jax.tree_util.keystr(path)})
    extra: list = []
    spec = encode(model, index, extra)
    arrays.extend(extra)
    meta.extend({"path": "(static)"} for _ in extra)
    for entry, array in zip(meta, arrays):
        if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
            raise ValueError(f"save: {entry['path']} is a typed PRNG key; store jax.random.key_data(key) instead")
        entry.update(dtype=jnp.dtype(array.dtype).name, shape=list(np.shape(array)))
    return spec, arrays, meta


def save(path: str | Path, model: Any) -> None:
    """Write ``model`` (any Equinox module of this package, or a pytree of them) to ``path``."""
    spec, arrays, meta = _describe(model)
    blobs = [np.ascontiguousarray(np.asarray(a)).tobytes() for a in arrays]
    for entry, blob in zip(meta, blobs):
        entry["nbytes"] = len(blob)
    header = {"format": FORMAT, "version": VERSION, "package_version": _package_version(),
              "jax_version": jax.__version__, "class": type(model).__name__,
              "widths": list(getattr(model, "widths", []) or []), "tree": spec, "arrays": meta}
    with open(path, "wb") as f:
        f.write((json.dumps(header) + "\n").encode())
        for blob in blobs:
            f.write(blob)


def read_header(path: str | Path) -> dict:
    """The JSON header of a saved model: format, version, class, widths, tree and array metadata."""
    with open(path, "rb") as f:
        first = f.readline()
    try:
        return json.loads(first.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"load: {path} is not a checkpoint written by kan.save (no JSON header)") from None


def _read_arrays(f, meta: list[dict], path: Any) -> list:
    arrays = []
    for entry in meta:
        blob = f.read(entry["nbytes"])
        if len(blob) != entry["nbytes"]:
            raise ValueError(f"load: {path} is truncated (array {entry['path']} incomplete)")
        arrays.append(np.frombuffer(blob, dtype=jnp.dtype(entry["dtype"])).reshape(entry["shape"]).copy())
    return arrays


def load(path: str | Path, like: Optional[Any] = None, *, trusted: Iterable[str] = ()) -> Any:
    """Read a model written by :func:`save`.

    Without ``like`` the model is rebuilt from the file alone (classes are imported only from this
    package, equinox, jax, numpy, optax and math, plus the top-level packages in ``trusted``). With
    ``like`` (a skeleton of the same structure, e.g. for a custom module) the arrays are read into it;
    a ValueError names the first place where the skeleton differs from the saved model.
    """
    header = read_header(path)
    if "structure" in header and "version" not in header:
        return _load_version_1(path, like)
    if header.get("format") != FORMAT:
        raise ValueError(f"load: {path} is not a checkpoint written by kan.save")
    if header["version"] > VERSION:
        raise ValueError(f"load: {path} has checkpoint format version {header['version']} (written by "
                         f"package {header.get('package_version')}); this package reads up to {VERSION}: upgrade it")
    with open(path, "rb") as f:
        f.readline()
        arrays = _read_arrays(f, header["arrays"], path)
    if like is None:
        return decode(header["tree"], arrays, DEFAULT_TRUSTED + tuple(trusted))
    like_spec, _, like_meta = _describe(like)
    difference = first_difference(header["tree"], like_spec, header["arrays"], like_meta)
    if difference:
        raise ValueError(f"load: skeleton does not match the saved {header['class']} "
                         f"(widths {header['widths']}): {difference}")
    leaves, treedef = jax.tree_util.tree_flatten(like)
    count = 0
    for i, leaf in enumerate(leaves):
        if eqx.is_array(leaf):
            leaves[i] = jnp.asarray(arrays[count]) if isinstance(leaf, jax.Array) else arrays[count]
            count += 1
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _load_version_1(path: str | Path, like: Optional[Any]) -> Any:
    """Files from before format version 2 (no tree): only into a skeleton, checked by leaf shapes."""
    if like is None:
        raise ValueError(f"load: {path} is an old checkpoint (format 1) without a model description; "
                         "pass like= a skeleton built as the original was")
    with open(path, "rb") as f:
        f.readline()
        try:
            return eqx.tree_deserialise_leaves(f, like)
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"load: skeleton does not match the saved model: {err}") from None

