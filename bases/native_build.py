"""Build and load the package's CPU kernels: the local B-spline contraction
(``bspline/csrc/local_contract.cc``, used by :mod:`bases.bspline.native`), the rational backward
(``kernels/csrc/rational_backward.cc``, used by :mod:`bases.kernels.rational_native`) and AF-KAN's
feature statistics (``kernels/csrc/pair_stats.cc``, used by :mod:`bases.kernels.pair_stats_native`).

They are C++ against the XLA FFI headers that ship with jaxlib (``jax.ffi.include_dir()``), built into
one library, compiled once per machine with the system C++ compiler (``$CXX``, else ``g++``, ``c++`` or ``clang++``)
and ``-O3 -march=native``, into ``$KAN_NATIVE_CACHE`` (default ``~/.cache/kan/native``, or under
``$XDG_CACHE_HOME``). The file name carries a digest of the sources, the flags, the compiler's version,
jaxlib's version and the CPU's model and flags, so a changed source, toolchain or machine builds anew;
two processes building at once each write a private file and rename it into place.

``KAN_NATIVE=0`` (or ``off``/``no``/``false``) turns the kernels off: ``contraction="auto"`` then stays
on the XLA paths, ``contraction="native"`` raises, and the rational backward and AF-KAN's statistics
run on XLA. Without a compiler, or when the build fails, the
same happens, and :func:`unavailable_reason` says why (the compiler's message included).
"""

from __future__ import annotations

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
SOURCES = (_HERE / "bspline" / "csrc" / "local_contract.cc", _HERE / "kernels" / "csrc" / "rational_backward.cc",
           _HERE / "kernels" / "csrc" / "pair_stats.cc")
HEADERS = (_HERE / "csrc" / "parallel_chunks.h",)
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
FORWARD_TARGET = "kan_bspline_local_forward"
BACKWARD_TARGET = "kan_bspline_local_backward"
RATIONAL_BACKWARD_TARGET = "kan_rational_backward"
PAIR_STATS_FORWARD_TARGET = "kan_pair_stats_forward"
PAIR_STATS_BACKWARD_TARGET = "kan_pair_stats_backward"
_SYMBOLS = {FORWARD_TARGET: "KanLocalForward", BACKWARD_TARGET: "KanLocalBackward",
            RATIONAL_BACKWARD_TARGET: "KanRationalBackward", PAIR_STATS_FORWARD_TARGET: "KanPairStatsForward",
            PAIR_STATS_BACKWARD_TARGET: "KanPairStatsBackward"}
ENV_SWITCH = "KAN_NATIVE"
ENV_CACHE = "KAN_NATIVE_CACHE"
_OFF = {"0", "off", "no", "false", "none"}

_lock = threading.Lock()
_state: dict = {"tried": False, "lib": None, "reason": None}


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


def library_path(cxx: str) -> Path:
    """The cached library for this source, toolchain and machine."""
    import jaxlib

    digest = hashlib.sha256()
    for part in (*(source.read_bytes() for source in SOURCES + HEADERS), " ".join(FLAGS).encode(), _compiler_version(cxx).encode(),
                 jaxlib.__version__.encode(), _cpu_signature().encode(), platform.machine().encode()):
        digest.update(part)
        digest.update(b"\0")
    return cache_dir() / f"kan_native-{digest.hexdigest()[:20]}.so"


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")


def _build(cxx: str, target: Path) -> None:
    """Compile the sources side by side (one compiler per source), link, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        include = ["-I", jax.ffi.include_dir(), "-I", str(HEADERS[0].parent)]
        objects = [os.path.join(work, f"{i}.o") for i in range(len(SOURCES))]
        compile_flags = [f for f in FLAGS if f != "-shared"]
        jobs = [subprocess.Popen([cxx, *compile_flags, *include, "-c", str(src), "-o", obj],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for src, obj in zip(SOURCES, objects)]
        failures = []
        for job in jobs:
            _, err = job.communicate(timeout=600)
            if job.returncode != 0:
                failures.append(f"{' '.join(job.args)} failed:\n{err[-2000:]}")
        if failures:
            raise RuntimeError("\n".join(failures))
        linked = os.path.join(work, "kan_native.so")
        _run([cxx, "-shared", "-fPIC", *objects, "-o", linked])
        os.replace(linked, target)


def load() -> bool:
    """Build (first time on a machine) and load the kernels, registering their FFI targets for the CPU;
    returns whether it is usable. Only the first call in a process does the work."""
    with _lock:
        if _state["tried"]:
            return _state["lib"] is not None
        _state["tried"] = True
        if os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF:
            _state["reason"] = f"turned off by {ENV_SWITCH}={os.environ[ENV_SWITCH]}"
            return False
        cxx = compiler()
        if cxx is None:
            _state["reason"] = "no C++ compiler found ($CXX, g++, c++ or clang++)"
            return False
        try:
            path = library_path(cxx)
            if not path.exists():
                _build(cxx, path)
            lib = ctypes.CDLL(str(path))
            for target, symbol in _SYMBOLS.items():
                jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
        except Exception as err:  # any failure leaves the XLA paths in charge, with the reason kept
            _state["reason"] = f"{type(err).__name__}: {err}"
            return False
        _state["lib"] = lib
        return True


def available() -> bool:
    """Whether the CPU kernels can be used in this process (builds them on first call)."""
    return load()


def unavailable_reason() -> Optional[str]:
    """Why :func:`available` is false (``None`` when it is true or was not asked yet)."""
    return _state["reason"]
