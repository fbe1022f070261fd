"""Build and load the package's CPU kernels: the local B-spline contraction
(``bspline/csrc/local_contract.cc``, used by :mod:`bases.bspline.native`), the rational backward
(``kernels/csrc/rational_backward.cc``, used by :mod:`bases.kernels.rational_native`) and AF-KAN's
feature statistics (``kernels/csrc/pair_stats.cc``, used by :mod:`bases.kernels.pair_stats_native`).

They are C++ against the XLA FFI headers that ship with jaxlib (``jax.ffi.include_dir()``), one library
per part (:data:`PARTS`: ``"bspline"``, ``"rational"``, ``"pair_stats"``), each built the first time a
process asks for it (:func:`available`), so a B-spline user never waits for AF-KAN's kernels: compiled
once per machine with the system C++ compiler (``$CXX``, else ``g++``, ``c++`` or ``clang++``) and
``-O3 -march=native``, into ``$KAN_NATIVE_CACHE`` (default ``~/.cache/kan/native``, or under
``$XDG_CACHE_HOME``). The file name carries the part and a digest of its sources, the flags, the
compiler's version, jaxlib's version and the CPU's model and flags, so a changed source, toolchain or
machine builds anew; two processes building at once each write a private file and rename it into place.

``KAN_NATIVE=0`` (or ``off``/``no``/``false``) turns the kernels off: ``contraction="auto"`` then stays
on the XLA paths, ``contraction="native"`` raises, and the rational backward and AF-KAN's statistics
run on XLA. Without a compiler, or when the build fails, the
same happens, and :func:`unavailable_reason` says why (the compiler's message included).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import jax

_HERE = Path(__file__).parent
HEADERS = (_HERE / "csrc" / "parallel_chunks.h", _HERE / "csrc" / "local_kernels.h")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
FORWARD_TARGET = "kan_bspline_local_forward"
BACKWARD_TARGET = "kan_bspline_local_backward"
RATIONAL_BACKWARD_TARGET = "kan_rational_backward"
PAIR_STATS_FORWARD_TARGET = "kan_pair_stats_forward"
PAIR_STATS_BACKWARD_TARGET = "kan_pair_stats_backward"
#: part -> (its sources, {FFI target: exported symbol}).
PARTS: dict[str, tuple[tuple[Path, ...], dict[str, str]]] = {
    "bspline": ((_HERE / "bspline" / "csrc" / "local_contract.cc",),
                {FORWARD_TARGET: "KanLocalForward", BACKWARD_TARGET: "KanLocalBackward"}),
    "rational": ((_HERE / "kernels" / "csrc" / "rational_backward.cc",),
                 {RATIONAL_BACKWARD_TARGET: "KanRationalBackward"}),
    "pair_stats": ((_HERE / "kernels" / "csrc" / "pair_stats.cc",),
                   {PAIR_STATS_FORWARD_TARGET: "KanPairStatsForward",
                    PAIR_STATS_BACKWARD_TARGET: "KanPairStatsBackward"}),
}
ENV_SWITCH = "KAN_NATIVE"
ENV_CACHE = "KAN_NATIVE_CACHE"
_OFF = {"0", "off", "no", "false", "none"}

_locks = {part: threading.Lock() for part in PARTS}
_state: dict[str, dict] = {part: {"tried": False, "lib": None, "reason": None} for part in PARTS}


def compiler() -> Optional[str]:
    """The C++ compiler the build would use, or ``None``."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cache_dir() -> Path:
    """Where built kernels are kept."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kan" / "native"


def _cpu_signature() -> str:
    """The CPU's model and feature flags (what ``-march=native`` compiles for)."""
    wanted, found = ("model name", "flags", "Features", "CPU part"), {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in wanted:
                    found.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return "\n".join(f"{k}: {v}" for k, v in sorted(found.items())) or platform.processor()


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"native_build: unknown part {part!r}; valid: {', '.join(PARTS)}")


def library_path(cxx: str, part: str = "bspline") -> Path:
    """The cached library of ``part`` for its sources, this toolchain and this machine."""
    import jaxlib

    _check_part(part)
    digest = hashlib.sha256()
    for piece in (*(source.read_bytes() for source in PARTS[part][0] + HEADERS), " ".join(FLAGS).encode(),
                  _compiler_version(cxx).encode(), jaxlib.__version__.encode(), _cpu_signature().encode(),
                  platform.machine().encode()):
        digest.update(piece)
        digest.update(b"\0")
    return cache_dir() / f"kan_native-{part}-{digest.hexdigest()[:20]}.so"


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")


def _build(cxx: str, target: Path, sources: tuple[Path, ...]) -> None:
    """Compile and link ``sources`` into a private file, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        include = ["-I", jax.ffi.include_dir(), "-I", str(HEADERS[0].parent)]
        linked = os.path.join(work, "kan_native.so")
        _run([cxx, *FLAGS, *include, *map(str, sources), "-o", linked])
        os.replace(linked, target)


def load(part: str = "bspline") -> bool:
    """Build (first time on a machine) and load ``part``'s kernels, registering their FFI targets for the
    CPU; returns whether they are usable. Only the first call per part in a process does the work."""
    _check_part(part)
    with _locks[part]:
        state = _state[part]
        if state["tried"]:
            return state["lib"] is not None
        state["tried"] = True
        if os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF:
            state["reason"] = f"turned off by {ENV_SWITCH}={os.environ[ENV_SWITCH]}"
            return False
        cxx = compiler()
        if cxx is None:
            state["reason"] = "no C++ compiler found ($CXX, g++, c++ or clang++)"
            return False
        sources, symbols = PARTS[part]
        try:
            path = library_path(cxx, part)
            if not path.exists():
                _build(cxx, path, sources)
            lib = ctypes.CDLL(str(path))
            for target, symbol in symbols.items():
                jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
        except Exception as err:  # any failure leaves the XLA paths in charge, with the reason kept
            state["reason"] = f"{type(err).__name__}: {err}"
            return False
        state["lib"] = lib
        return True


def available(part: Optional[str] = None) -> bool:
    """Whether ``part``'s CPU kernels can be used in this process (built on first call); ``None``: all
    parts (the missing ones built side by side)."""
    if part is None:
        with concurrent.futures.ThreadPoolExecutor(len(PARTS)) as pool:
            return all(list(pool.map(load, PARTS)))
    return load(part)


def unavailable_reason(part: Optional[str] = None) -> Optional[str]:
    """Why :func:`available` is false for ``part`` (``None``: the first part that gave a reason);
    ``None`` when it is true or was not asked yet."""
    if part is not None:
        _check_part(part)
        return _state[part]["reason"]
    return next((st["reason"] for st in _state.values() if st["reason"] is not None), None)
