"""A model pytree as JSON plus a list of arrays, so a checkpoint can rebuild the model by itself.

``encode(tree)`` walks Equinox modules (every dataclass field, static or not), tuples, lists, dicts,
Python scalars, strings, dtypes and module-level callables (``jax.nn.silu`` is stored as its public
name, never as its ``repr`` with a memory address) and replaces every array by an index into a list.
``decode(spec, arrays)`` rebuilds the tree without calling any ``__init__`` (so no random init runs and
fields that ``__init__`` derives, such as a refined B-spline grid, come back exactly as saved).

Only classes and callables from trusted top-level packages are imported on decode (this package,
equinox, jax, numpy, optax, math by default): a checkpoint is data, not code. A callable that has no
importable name (a lambda, a closure) is stored as ``{"opaque": name}``; such a model loads only into a
skeleton (``kan.load(path, like=...)``).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Iterable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_TRUSTED = ("kan", "bases", "symbolic", "benchmarks", "equinox", "jax", "jaxlib", "numpy", "optax",
                   "math", "builtins")
# Public namespaces searched first for a callable's name, so checkpoints do not depend on private paths
# (``jax._src.nn.functions``) that move between jax versions.
_PUBLIC_NAMESPACES = ("jax.nn", "jax.numpy", "jax.lax", "jax.scipy.special", "numpy", "math")


class CodecError(ValueError):
    """A tree holds something a checkpoint cannot describe or rebuild; the message names where."""


def _lookup(module_name: str, attr_path: str) -> Any:
    """``module_name``'s attribute ``attr_path`` (dotted); ImportError / AttributeError when absent."""
    obj = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def _resolve(qualified: str, trusted: Iterable[str], where: str) -> Any:
    module_name, _, attr_path = qualified.partition(":")
    top = module_name.split(".")[0]
    if top not in tuple(trusted):
        raise CodecError(f"load: {where} needs {qualified!r} from package {top!r}, which is not trusted; "
                         f"pass trusted=({top!r},) if you trust this file, or load into a skeleton with like=")
    try:
        obj = _lookup(module_name, attr_path)
    except (ImportError, AttributeError) as err:
        raise CodecError(f"load: {where} refers to {qualified!r}, which cannot be imported here ({err}); "
                         "load into a skeleton with like=") from None
    return obj


def _public_name(obj: Any) -> Optional[str]:
    """``"module:qualname"`` that imports back to ``obj`` itself, preferring the shortest public module
    on its module's path (``kan:KANLayer`` over ``kan.layer:KANLayer``, ``equinox.nn:Linear`` over
    ``equinox.nn._linear:Linear``), so checkpoints survive files moving inside a package; None if none."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    parts = module.split(".")
    candidates = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    candidates = [c for c in candidates if not any(p.startswith("_") for p in c.split("."))] + [module]
    for candidate in candidates:
        try:
            found = _lookup(candidate, qualname)
        except (ImportError, AttributeError):
            continue
        if found is obj:
            return f"{candidate}:{qualname}"
    return None


def _callable_name(fn: Callable) -> Optional[str]:
    """A public importable name of ``fn`` (jax's public namespaces first); None if it has none."""
    name = getattr(fn, "__name__", None)
    if name and name != "<lambda>":
        for namespace in _PUBLIC_NAMESPACES:
            try:
                if getattr(importlib.import_module(namespace), name, None) is fn:
                    return f"{namespace}:{name}"
            except ImportError:  # pragma: no cover - optional namespace missing
                continue
    return _public_name(fn)


def _class_name(cls: type) -> str:
    # A class without an importable name (defined inside a function) is still described, so that the
    # checkpoint loads into a skeleton (``like=``); loading it alone then fails with a clear error.
    return _public_name(cls) or f"{cls.__module__}:{cls.__qualname__}"


def _set_fields(obj: Any) -> list[dataclasses.Field]:
    """The dataclass fields ``obj`` actually holds (a field left at its class default is not in
    ``__dict__``; skipping it keeps the rebuilt treedef identical to the original's)."""
    return [f for f in dataclasses.fields(obj) if f.name in obj.__dict__]


def encode(tree: Any, array_index: dict[int, int], extra_arrays: list) -> Any:
    """JSON-able description of ``tree``. Arrays found in ``array_index`` (``id -> position``) become
    ``{"array": position}``; other arrays (inside static fields) are appended to ``extra_arrays``
    with positions after the indexed ones."""

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, (jax.Array, np.ndarray, np.generic)):
            if id(node) not in array_index:
                array_index[id(node)] = len(array_index)
                extra_arrays.append(node)
            kind = "jax" if isinstance(node, jax.Array) else ("numpy" if isinstance(node, np.ndarray) else "scalar")
            return {"array": array_index[id(node)], "kind": kind}
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, eqx.Module) or (dataclasses.is_dataclass(node) and not isinstance(node, type)):
            return {"module": _class_name(type(node)),
                    "fields": [[f.name, walk(getattr(node, f.name), f"{where}.{f.name}")] for f in _set_fields(node)]}
        if isinstance(node, tuple) and hasattr(node, "_fields"):  # NamedTuple
            return {"namedtuple": _class_name(type(node)), "items": [walk(v, f"{where}.{k}")
                                                                     for k, v in zip(node._fields, node)]}
        if isinstance(node, (tuple, list)):
            return {type(node).__name__: [walk(v, f"{where}[{i}]") for i, v in enumerate(node)]}
        if isinstance(node, dict):
            return {"dict": [[walk(k, where), walk(v, f"{where}[{k!r}]")] for k, v in node.items()]}
        if isinstance(node, np.dtype) or (isinstance(node, type) and issubclass(node, np.generic)):
            return {"dtype": jnp.dtype(node).name}
        if isinstance(node, complex):
            return {"complex": [node.real, node.imag]}
        if callable(node):
            name = _callable_name(node)
            if name is not None:
                return {"type" if isinstance(node, type) else "callable": name}
            return {"opaque": getattr(node, "__qualname__", type(node).__name__), "at": where}
        raise CodecError(f"save: cannot describe {type(node).__name__} at {where or 'the root'}")

    return walk(tree, "")


def decode(spec: Any, arrays: list, trusted: Iterable[str] = DEFAULT_TRUSTED) -> Any:
    """Rebuild the tree described by ``spec`` (from :func:`encode`) with ``arrays`` in place."""
    trusted = tuple(trusted)

    def walk(node: Any, where: str) -> Any:
        if not isinstance(node, dict):
            return node
        if "array" in node:
            value = arrays[node["array"]]
            if node["kind"] == "jax":
                return jnp.asarray(value)
            return value if node["kind"] == "numpy" else value[()]
        if "module" in node:
            cls = _resolve(node["module"], trusted, where or "the root")
            if not isinstance(cls, type) or not dataclasses.is_dataclass(cls):
                raise CodecError(f"load: {node['module']!r} at {where or 'the root'} is not a dataclass module")
            obj = object.__new__(cls)
            for name, value in node["fields"]:
                object.__setattr__(obj, name, walk(value, f"{where}.{name}"))
            return obj
        if "namedtuple" in node:
            cls = _resolve(node["namedtuple"], trusted, where)
            return cls(*(walk(v, f"{where}[{i}]") for i, v in enumerate(node["items"])))
        if "tuple" in node:
            return tuple(walk(v, f"{where}[{i}]") for i, v in enumerate(node["tuple"]))
        if "list" in node:
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(node["list"])]
        if "dict" in node:
            return {walk(k, where): walk(v, f"{where}[{k!r}]") for k, v in node["dict"]}
        if "dtype" in node:
            return jnp.dtype(node["dtype"])
        if "complex" in node:
            return complex(*node["complex"])
        if "callable" in node or "type" in node:
            return _resolve(node.get("callable", node.get("type")), trusted, where)
        if "opaque" in node:
            raise CodecError(f"load: the saved model holds {node['opaque']!r} at {node.get('at', where)}, "
                             "a callable without an importable name; load into a skeleton with like=")
        raise CodecError(f"load: unreadable entry at {where or 'the root'}: {sorted(node)}")

    return walk(spec, "")


def first_difference(saved: Any, other: Any, meta_saved: list, meta_other: list, where: str = "") -> Optional[str]:
    """The first place two encodings differ (arrays compared by shape and dtype), or None."""
    at = where or "the root"
    if isinstance(saved, dict) and isinstance(other, dict):
        if "array" in saved and "array" in other:
            a, b = meta_saved[saved["array"]], meta_other[other["array"]]
            if (tuple(a["shape"]), a["dtype"]) != (tuple(b["shape"]), b["dtype"]):
                return (f"{at}: saved array {a['dtype']}{list(a['shape'])}, "
                        f"skeleton has {b['dtype']}{list(b['shape'])}")
            return None
        if "opaque" in saved or "opaque" in other:
            return None  # an unnamed callable: the skeleton's own stands in for it
        if set(saved) != set(other):
            return f"{at}: saved {_kind(saved)}, skeleton has {_kind(other)}"
        if "module" in saved:
            if saved["module"] != other["module"]:
                return f"{at}: saved {saved['module']}, skeleton has {other['module']}"
            names_saved, names_other = [n for n, _ in saved["fields"]], [n for n, _ in other["fields"]]
            if names_saved != names_other:
                return f"{at}: saved fields {names_saved}, skeleton has {names_other}"
            for (name, a), (_, b) in zip(saved["fields"], other["fields"]):
                found = first_difference(a, b, meta_saved, meta_other, f"{where}.{name}")
                if found:
                    return found
            return None
        for key in saved:
            found = first_difference(saved[key], other[key], meta_saved, meta_other,
                                     where if key in ("tuple", "list", "items", "dict") else f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(other, list):
        if len(saved) != len(other):
            return f"{at}: saved {len(saved)} entries, skeleton has {len(other)}"
        for i, (a, b) in enumerate(zip(saved, other)):
            found = first_difference(a, b, meta_saved, meta_other, f"{where}[{i}]")
            if found:
                return found
        return None
    if saved != other:
        return f"{at}: saved {saved!r}, skeleton has {other!r}"
    return None


def _kind(node: dict) -> str:
    for key in ("module", "callable", "type", "dtype"):
        if key in node:
            return f"{key} {node[key]}"
    return "/".join(sorted(node))
