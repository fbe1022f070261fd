"""XLA:CPU with glibc's default heap and with one that keeps freed memory (:data:`KEEP_FREED`), one
subprocess per run, the two alternated.

    python -m benchmarks.cpu_heap [--runs 3] [--repeats 10] [--only NAME ...]

Why: XLA:CPU allocates each call's outputs and temporaries with ``malloc``. glibc serves blocks above
its mmap threshold (dynamic, at most 32 MiB; 64 MiB in a thread's arena) with a fresh ``mmap`` and
returns them with ``munmap``, so every call of a program with large buffers page-faults them in again
and the kernel zeroes each page first (minor faults, counted here per call from ``getrusage``). The
environment in :data:`KEEP_FREED` (read by glibc at process start, so it is set in the subprocess's
environment, not from Python) puts every allocation in the main heap (``MALLOC_ARENA_MAX=1``,
``MALLOC_MMAP_MAX_=0``) and never gives freed memory back (a trim threshold of 100 GB; a 256 MiB top
pad), so later calls reuse pages already mapped (after the heap has grown for a few calls: a 96 MiB output
stopped faulting after 2-12 calls in ``tests/test_cpu_heap.py``'s probe). The cost: the process keeps its peak heap until it
exits, and one arena serialises ``malloc`` across threads.

Contenders (fwd+bwd as in ``benchmarks.layers``: gradient w.r.t. trainable parameters and input):
the MLP, B-spline (G=5) and GR-KAN layers at 1024 x 128 -> 128; the MLP and B-spline (G=20) layers at
1024 x 512 -> 512; the group rational (``backend="xla"``) forward and fwd+bwd at 8192 x 768. Each
subprocess compiles all of them, then times them round-robin; the parent alternates default and
kept-heap subprocesses ``--runs`` times and prints the median of their medians, the ratio and the
faults per call.

The child mode (``--child``) prints one JSON line: ``{contender: [median ms, faults per call]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

#: The environment of a process whose heap keeps freed memory (glibc only; other allocators ignore it).
KEEP_FREED = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
              "MALLOC_TRIM_THRESHOLD_": str(100 * 10**9), "MALLOC_TOP_PAD_": str(256 * 2**20)}
CONTENDERS = ("mlp 128", "b-spline G=5 128", "gr-kan 128", "mlp 512", "b-spline G=20 512",
              "rational 8192x768 fwd", "rational 8192x768 fwd+bwd")


def heap_env(keep_freed: bool) -> dict[str, str]:
    """This process's environment without the :data:`KEEP_FREED` variables, with them if ``keep_freed``."""
    env = {k: v for k, v in os.environ.items() if k not in KEEP_FREED}
    return {**env, **KEEP_FREED} if keep_freed else env


def minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _programs(names: list[str]) -> dict:
    import jax

    from . import kernels
    from .layer_baselines import bspline_layer as _bspline_layer
    from .layers import _gr_kan_layer, _mlp_layer, grad_step

    key = jax.random.PRNGKey(0)
    layers = {"mlp 128": lambda: _mlp_layer(128, 128, key),
              "b-spline G=5 128": lambda: _bspline_layer(128, 128, key, 5),
              "gr-kan 128": lambda: _gr_kan_layer(128, 128, key),
              "mlp 512": lambda: _mlp_layer(512, 512, key),
              "b-spline G=20 512": lambda: _bspline_layer(512, 512, key, 20)}
    programs = {}
    for name in names:
        if name in layers:
            step, params = grad_step(layers[name]())
            width = int(name.split()[-1])
            programs[name] = (step, (params, jax.random.normal(jax.random.PRNGKey(1), (1024, width))))
    if any(name.startswith("rational") for name in names):
        forward, forward_backward = kernels.programs("xla")
        a, b = kernels.coefficients()
        x = jax.random.normal(jax.random.PRNGKey(2), (8192, 768))
        rational = {"rational 8192x768 fwd": (forward, (x, a, b)),
                    "rational 8192x768 fwd+bwd": (forward_backward, (x, a, b, x))}
        programs.update({name: rational[name] for name in names if name in rational})
    return programs


def run_child(names: list[str], repeats: int) -> dict[str, list[float]]:
    """``{contender: [median ms, minor faults per call]}`` in this process, timed round-robin."""
    import jax

    programs = _programs(names)
    for _ in range(3):  # compile; the kept heap then grows for a few calls until its blocks are reused
        for fn, args in programs.values():
            jax.block_until_ready(fn(*args))
    times = {name: [] for name in programs}
    faults = dict.fromkeys(programs, 0)
    for _ in range(repeats):
        for name, (fn, args) in programs.items():
            before, start = minor_faults(), time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
            faults[name] += minor_faults() - before
    return {name: [statistics.median(times[name]) * 1e3, faults[name] / repeats] for name in programs}


def run_subprocess(names: list[str], repeats: int, keep_freed: bool) -> dict[str, list[float]]:
    """One child process (with :data:`KEEP_FREED` in its environment when ``keep_freed``)."""
    env = heap_env(keep_freed)
    cmd = [sys.executable, "-m", "benchmarks.cpu_heap", "--child", "--repeats", str(repeats), "--only", *names]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cpu_heap child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="subprocesses per variant, alternated")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per contender per subprocess")
    parser.add_argument("--only", nargs="*", default=None, help=f"contenders (default: all of {CONTENDERS})")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = list(args.only) if args.only else list(CONTENDERS)
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown:
        parser.error(f"unknown contenders {unknown}; known: {list(CONTENDERS)}")
    if args.runs < 1 or args.repeats < 1:
        parser.error("--runs and --repeats must be >= 1")
    if args.child:
        result = run_child(names, args.repeats)
        print(json.dumps(result))
        return {"child": result}
    runs: dict[str, list[dict]] = {"default": [], "kept": []}
    for _ in range(args.runs):
        for variant in runs:
            runs[variant].append(run_subprocess(names, args.repeats, variant == "kept"))
    out = {variant: {name: [statistics.median(r[name][i] for r in rs) for i in (0, 1)] for name in names}
           for variant, rs in runs.items()}
    print(f"{args.runs} subprocesses per heap, alternated; {args.repeats} round-robin calls each; "
          "medians of the subprocesses' medians")
    print(f"{'contender':<28s} {'default ms':>11s} {'faults':>8s} {'kept ms':>9s} {'faults':>8s} {'speed-up':>9s}")
    for name in names:
        (d_ms, d_f), (k_ms, k_f) = out["default"][name], out["kept"][name]
        print(f"{name:<28s} {d_ms:11.2f} {d_f:8.0f} {k_ms:9.2f} {k_f:8.0f} {d_ms / k_ms:8.2f}x")
    return out


if __name__ == "__main__":
    main()
