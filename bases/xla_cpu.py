"""One XLA:CPU setting the package makes at import (no YNNPACK library fusions), and one that ``kan demo``
makes for its small programs (:func:`configure_small_programs`).

jaxlib 0.10 hands reductions (and the elementwise work around them) to YNNPACK "library fusions" on CPU.
For the shapes of KAN layers and their gradients those run slower than XLA's own loop fusions. Measured
on 2 CPU cores (jaxlib 0.10.2), each program compiled both ways in one process, timed round-robin
(fwd+bwd, 1024 x 128 -> 128, ``python -m benchmarks.xla_cpu_fusions``):

    MLP 2.11 -> 1.63 ms, RBF 16.2 -> 10.9, Fourier 20.3 -> 15.8, AF-KAN 15.2 -> 13.8, S-KAN 53.0 -> 30.0,
    B-spline 19.0 -> 18.7 (unchanged); the demo's L-BFGS objective ([2, 5, 1] KAN, 1000 rows, with the
    regulariser) 3.62 -> 2.12 ms. At 512 -> 512, G = 20 the B-spline layer is ~520 ms either way.

:func:`configure_xla_cpu` appends ``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list: XLA's own
fusions for everything) to ``XLA_FLAGS`` when ``bases`` is imported, so it reaches every program the
process compiles afterwards, the user's own included (an MLP baseline gets the same setting: fair
comparisons stay fair). It does nothing when

- ``KAN_XLA_CPU_DEFAULTS`` is set to 1/true/yes/on (keep XLA's defaults),
- ``XLA_FLAGS`` already names the option (the user's choice wins),
- jaxlib is not a version it was measured on (:data:`MEASURED_JAXLIB`): an unknown flag in
  ``XLA_FLAGS`` aborts the process, so other versions are left alone,
- a JAX backend is already running (XLA reads its flags once, when the first backend starts).

The option only concerns the CPU backend; GPU programs ignore it.
"""

from __future__ import annotations

import os
from typing import MutableMapping, Optional

OPTION = "xla_cpu_experimental_ynn_fusion_type"
FLAG = f"--{OPTION}="
OPT_OUT = "KAN_XLA_CPU_DEFAULTS"
#: jaxlib (major, minor) versions whose XLA has the option and where the gain was measured.
MEASURED_JAXLIB = {(0, 10)}
_TRUE = {"1", "true", "yes", "on"}


def _jaxlib_version() -> Optional[tuple[int, int]]:
    try:
        from importlib.metadata import version

        major, minor = version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except Exception:  # not installed as a distribution, or an unusual version string
        return None


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:
        return False


def configure_xla_cpu(environ: Optional[MutableMapping[str, str]] = None,
                      jaxlib_version: Optional[tuple[int, int]] = None) -> bool:
    """Append :data:`FLAG` to ``environ["XLA_FLAGS"]`` (default ``os.environ``) unless one of the module
    docstring's exceptions applies; returns whether it did. ``jaxlib_version`` overrides the installed
    version (for tests)."""
    return _append_flag(OPTION, "", environ, jaxlib_version)


#: The option :func:`configure_small_programs` sets (to ``false``: XLA's older loop emitters).
SMALL_PROGRAM_OPTION = "xla_cpu_use_fusion_emitters"


def configure_small_programs(environ: Optional[MutableMapping[str, str]] = None,
                             jaxlib_version: Optional[tuple[int, int]] = None) -> bool:
    """For entry points whose programs are small and compiled fresh (``kan demo``): append
    ``--xla_cpu_use_fusion_emitters=false``, XLA:CPU's older loop emitters, under the same exceptions as
    :func:`configure_xla_cpu`; returns whether it did.

    Measured on 2 CPU cores, jaxlib 0.10.2, one process each way: the demo's first L-BFGS program
    compiles in 1.4 s instead of 2.6 s and ``symbolic``'s edge fits in 1.3 s instead of 2.2-2.6 s; the
    demo's objective (value and gradient, [2, 5, 1] KAN, 1000 rows) runs 1.4x faster. Not set at import,
    because the layers of ``benchmarks.layers`` at 1024 x 128 -> 128 run 0.5-0.9x as fast with these
    emitters (the MLP and S-KAN level)."""
    return _append_flag(SMALL_PROGRAM_OPTION, "false", environ, jaxlib_version)


def _append_flag(option: str, value: str, environ: Optional[MutableMapping[str, str]],
                 jaxlib_version: Optional[tuple[int, int]]) -> bool:
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "").strip().lower() in _TRUE:
        return False
    flags = env.get("XLA_FLAGS", "")
    if option in flags:
        return False
    version = _jaxlib_version() if jaxlib_version is None else jaxlib_version
    if version not in MEASURED_JAXLIB:
        return False
    if environ is None and _backend_started():
        return False
    env["XLA_FLAGS"] = f"{flags} --{option}={value}".strip()
    return True
