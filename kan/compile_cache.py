"""JAX's persistent compilation cache for the entry points (``kan demo``, ``kan discover``, ``discover``).

Most of a small job's time is XLA compiling; with the cache on, a second run of the same command loads
the compiled programs from disk instead. The folder is ``$KAN_COMPILE_CACHE`` if set, else
``~/.cache/kan/jax`` (``$XDG_CACHE_HOME/kan/jax`` where that is set). ``KAN_COMPILE_CACHE=off`` (or
``0``/``none``) turns it off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import jax

_OFF = {"off", "0", "none", "false", "no", ""}
_enabled: Optional[Path] = None


def default_cache_dir() -> Optional[Path]:
    """The folder the cache would use, or ``None`` where ``$KAN_COMPILE_CACHE`` turns it off."""
    env = os.environ.get("KAN_COMPILE_CACHE")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "kan" / "jax"


def enable_compile_cache(path: "str | os.PathLike | None" = None) -> Optional[Path]:
    """Turn on JAX's persistent compilation cache in ``path`` (default :func:`default_cache_dir`).

    Every compiled program is cached (no minimum compile time or size), since the entry points compile
    many small programs. Returns the folder, or ``None`` when turned off or JAX refuses the setting
    (the run goes on uncached). Calling it again with the same folder does nothing.
    """
    global _enabled
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    if folder is None:
        return None
    if _enabled == folder:
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (OSError, AttributeError, ValueError):
        return None
    _enabled = folder
    return folder


def enabled_dir() -> Optional[Path]:
    """The folder :func:`enable_compile_cache` turned on in this process, or ``None``."""
    return _enabled


def cache_is_warm() -> bool:
    """Whether the enabled persistent cache folder already holds compiled programs."""
    folder = enabled_dir()
    return folder is not None and folder.is_dir() and any(folder.iterdir())
