"""Traced programs kept across processes, beside the persistent compilation cache.

JAX's persistent compilation cache (:mod:`kan.compile_cache`) skips XLA's compile on a second run, but
not Python's tracing and lowering of the program, which the cache needs to compute its key: for a large
program that is most of a warm run's cost (``symbolic.fit_edges``' fit of every curve to every library
function traced in 0.7 s of the warm demo's ~6 s). :func:`exported_call` keeps such a program as a
serialized :mod:`jax.export` artefact in ``<compile cache>/kan-exported``: a later process deserialises
it and calls it (one small lowering of the stored module, no trace of the Python function).

It is active only where :func:`kan.compile_cache.enable_compile_cache` turned the compilation cache on
(the CLI and the entry points; ``KAN_COMPILE_CACHE=off`` turns both off), and where ``jax.export`` can
serialise (it needs the ``flatbuffers`` package). The key of a stored program is its name, its static
arguments, the shapes and dtypes of its array arguments, the backend, JAX's and jaxlib's versions and a
digest of the package's own source files (``bases``, ``kan``, ``symbolic``), so any change to the code
that traced it makes a new one. An entry that cannot be read is exported again. Code outside the
package is not in the key: a program that runs a user's own function (a library function added with
``symbolic.add_function``) must not be stored, and :func:`symbolic.fit_edges.fit_curves` calls it
plainly then.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from .compile_cache import enabled_dir

#: Sub-folder of the compilation cache that holds the serialized programs.
FOLDER = "kan-exported"
_PACKAGES = ("bases", "kan", "symbolic")
_digest: str | None = None
_calls: dict[str, Callable] = {}


def source_digest() -> str:
    """sha256 over the ``.py`` and C++ files of the package's parts (path and bytes), computed once."""
    global _digest
    if _digest is None:
        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for package in _PACKAGES:
            for path in sorted((root / package).rglob("*")):
                if path.suffix in (".py", ".cc", ".h") and path.is_file():
                    h.update(str(path.relative_to(root)).encode())
                    h.update(path.read_bytes())
        _digest = h.hexdigest()
    return _digest


def _serialization_available() -> bool:
    try:
        import flatbuffers  # noqa: F401 - jax.export's serialisation needs it
    except ImportError:
        return False
    return hasattr(jax, "export")


def active() -> bool:
    """Whether :func:`exported_call` stores programs in this process (the compilation cache is on and
    ``jax.export`` can serialise)."""
    return enabled_dir() is not None and _serialization_available()


def program_key(name: str, args: Sequence[Any], static: Mapping[str, Any]) -> str:
    """The stored program's key (hex): see the module docstring."""
    import jaxlib

    h = hashlib.sha256()
    for part in (name, repr(sorted(static.items())),
                 repr([(tuple(np.shape(a)), str(a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype))
                       for a in args]),  # no device copy of an argument just for its dtype
                 jax.default_backend(), jax.__version__, jaxlib.__version__,
                 str(jax.config.jax_enable_x64), source_digest()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _store(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` atomically (two processes exporting at once: the last rename wins, both
    are valid); a folder that cannot be written leaves the program unstored."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _load(path: Path):
    try:
        return jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # noqa: BLE001 - a truncated or foreign file: export again
        return None


def exported_call(fn: Callable, name: str, args: Sequence[Any], static: Mapping[str, Any] | None = None):
    """``fn(*args, **static)`` for a ``jax.jit`` function ``fn`` whose ``static`` keywords are its static
    arguments, through a stored export of it when the compilation cache is on (else a plain call).
    ``name`` names the program in the cache folder."""
    static = dict(static or {})
    folder = enabled_dir()
    if folder is None or not _serialization_available():
        return fn(*args, **static)
    key = program_key(name, args, static)
    call = _calls.get(key)
    if call is None:
        path = folder / FOLDER / f"{name}-{key}.jaxexport"
        refused = path.with_suffix(".refused")
        exported = _load(path) if path.is_file() else None
        if exported is None and not refused.is_file():
            try:
                exported = jax.export.export(fn)(*args, **static)
                blob = bytes(exported.serialize())
            except Exception:  # noqa: BLE001 - e.g. a custom call jax.export refuses: plain calls
                _store(refused, b"")  # later processes call plainly at once (no second trace)
                exported = None
            else:
                _store(path, blob)
        if exported is None:
            call = _calls[key] = lambda *a: fn(*a, **static)
        else:
            call = _calls[key] = jax.jit(exported.call)
    return call(*args)


#: Top-level packages whose classes and functions a stored program may depend on: the package's own
#: (in :func:`source_digest`) and libraries whose versions are in :func:`library_versions`.
PORTABLE_PACKAGES = ("kan", "bases", "symbolic", "jax", "jaxlib", "equinox", "optax", "numpy", "math", "builtins")


def library_versions() -> str:
    """The versions of the libraries besides JAX whose code a stored program may run."""
    import equinox
    import optax

    return f"equinox {equinox.__version__}, optax {optax.__version__}, numpy {np.__version__}"


def is_array(leaf: Any) -> bool:
    """Whether a pytree leaf is an array (an input of a stored program), not a static value."""
    return isinstance(leaf, (jax.Array, np.ndarray))


def portable_description(tree: Any) -> str | None:
    """A description of ``tree`` that is the same in every process for the same structure, static
    values and array shapes (array values left out: they are a program's inputs), or None when part of
    it has no such name: a lambda or closure, a class or function from outside
    :data:`PORTABLE_PACKAGES` (a user's code, which no key of a stored program covers), a symbolic
    edge naming a library function the user added or replaced (looked up by name while tracing), or an
    array held in a static field (a constant of the program)."""
    import json

    from bases.symbolic_edges import SymbolicEdges
    from bases.symbolic_functions import is_builtin

    from .tree_codec import CodecError, encode

    edges = [node for node in jax.tree_util.tree_leaves(tree, is_leaf=lambda n: isinstance(n, SymbolicEdges))
             if isinstance(node, SymbolicEdges)]
    if not all(is_builtin(name) for edge in edges for row in edge.names for name in row):
        return None

    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree) if is_array(leaf)]
    index = {id(leaf): i for i, leaf in enumerate(leaves)}
    extra: list = []
    try:
        spec = encode(tree, index, extra)
    except CodecError:
        return None
    if extra or not _names_portable(spec):
        return None
    shapes = [(tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves]
    return json.dumps([spec, shapes], sort_keys=True)


def _names_portable(spec: Any) -> bool:
    if isinstance(spec, list):
        return all(_names_portable(item) for item in spec)
    if not isinstance(spec, dict):
        return True
    if "opaque" in spec:
        return False
    for field in ("module", "namedtuple", "type", "callable"):
        if field in spec:
            module, _, qualname = spec[field].partition(":")
            if module.split(".")[0] not in PORTABLE_PACKAGES or "<" in qualname:
                return False
    return all(_names_portable(value) for value in spec.values())
