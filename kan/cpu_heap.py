"""Keep freed memory in this process's heap, so XLA:CPU stops page-faulting large buffers at every call.

XLA:CPU allocates each call's outputs and temporaries with ``malloc``. glibc serves blocks above its mmap
threshold (dynamic, at most 32 MiB; 64 MiB in a thread's arena) with a fresh ``mmap`` and returns them
with ``munmap``, so a program with large buffers page-faults them in again at every call, and the
kernel zeroes each page first. Whether a given buffer lands there depends on the order of earlier
allocations, so the same program runs in one of two modes per process: the 8192 x 768 group-rational
forward took 3.2 or 10.4 ms and its fwd+bwd 7.6 or 15-25 ms (ratio 1.5x to 7.8x) across processes on
2 cores, with 400-12000 minor faults per call against none with the heap kept.

:func:`keep_freed_heap` is the in-process form of the environment in ``benchmarks.cpu_heap.KEEP_FREED``
(glibc's ``mallopt``): no ``mmap`` for large blocks, freed memory kept for reuse (trim threshold 2 GiB,
a 256 MiB top pad), one arena for the threads created afterwards. The cost: the process keeps its
peak heap until it exits, and one arena serialises ``malloc`` across threads (128-wide layers ran
0.76-1.13x in ``python -m benchmarks.cpu_heap``), so the package never calls it by itself: call it once,
early (before the first large program runs), in a script whose steps move large arrays.
"""

from __future__ import annotations

import platform

#: glibc's ``mallopt`` parameters (``malloc.h``) and the values :func:`keep_freed_heap` sets.
SETTINGS = {"M_ARENA_MAX": (-8, 1), "M_MMAP_MAX": (-4, 0), "M_TRIM_THRESHOLD": (-1, 2**31 - 1),
            "M_TOP_PAD": (-2, 256 * 2**20)}


def keep_freed_heap() -> bool:
    """Set glibc's heap to keep freed memory (see the module docstring); returns whether every setting
    took (False, and nothing changed, where the C library is not glibc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes  # here, not at `import kan`: only a caller of this function needs them
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS.values())
