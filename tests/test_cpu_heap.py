"""benchmarks.cpu_heap: the KEEP_FREED environment stops XLA:CPU's large buffers from being page-faulted
in again at every call (glibc Linux only), which is what the benchmark's comparison rests on."""

import json
import os
import platform
import subprocess
import sys

import pytest

from benchmarks.cpu_heap import heap_env

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc environment variables")

# A program whose 96 MiB output is above every glibc mmap threshold (32 MiB, 64 MiB in a thread arena):
# with the default heap each call maps it afresh (~24k minor faults of 4 KiB pages).
_PROBE = """
import json, jax, jax.numpy as jnp
from benchmarks.cpu_heap import minor_faults
f = jax.jit(lambda x: jnp.broadcast_to(x, (24, 2**20)) * 2.0)
x = jnp.ones((2**20,), jnp.float32)
for _ in range(3):
    jax.block_until_ready(f(x))
faults = []
for _ in range(20):
    before = minor_faults()
    out = jax.block_until_ready(f(x))
    faults.append(minor_faults() - before)
    del out
print(json.dumps(faults))
"""


def _settled(faults: list[int]) -> int:
    """The faults per call once the kept heap has settled (within ~12 calls): median of the last 8."""
    return sorted(faults[-8:])[4]


def _probe_faults(code: str, keep_freed: bool) -> list[int]:
    """Every call's minor faults of ``code`` (ending in :data:`_PROBE`), run in a fresh process."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=heap_env(keep_freed), cwd=root, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _faults_per_call(keep_freed: bool) -> int:
    return _settled(_probe_faults(_PROBE, keep_freed))


def test_keep_freed_heap_stops_refaulting_large_buffers():
    default = _faults_per_call(False)
    kept = _faults_per_call(True)
    pages = 24 * 2**20 * 4 // 4096
    assert default > pages // 2, (default, pages)  # the premise: the default heap re-faults the output
    assert kept < pages // 20, (kept, pages)


def test_keep_freed_heap_in_process_stops_refaulting_large_buffers():
    """kan.keep_freed_heap (glibc's mallopt, called after import and before the first program) does what
    the KEEP_FREED environment does: the 96 MiB output stops being faulted in at every call."""
    faults = _probe_faults("from kan.cpu_heap import keep_freed_heap\nassert keep_freed_heap()\n" + _PROBE, False)
    assert _settled(faults) < 24 * 2**20 * 4 // 4096 // 20, faults  # every call's faults, if it fails


def test_keep_freed_heap_reports_false_off_glibc(monkeypatch):
    import kan.cpu_heap as cpu_heap

    monkeypatch.setattr(cpu_heap.platform, "libc_ver", lambda: ("", ""))
    assert cpu_heap.keep_freed_heap() is False
