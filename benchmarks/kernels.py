"""Group-rational kernels: forward and forward+backward time and achieved memory bandwidth.

    python -m benchmarks.kernels [--full] [--dtype float32|bfloat16|float16] [--repeats 10]
                                 [--peak-gbs 3350] [--out-dir benchmarks/results] [--keep-freed]

Shapes are (batch * tokens, channels) with 8 groups and a 5/4 rational in form A. Compared:
(a) the fused Pallas kernels, (b) the XLA version of the same math (both under the op's
``custom_vjp``; on CPU in float32 its backward is the native kernel of ``bases.kernels.rational_native``,
and "xla-bwd" times the XLA forward with the XLA backward it replaced), (c) the plain jnp formula
differentiated by ``jax.grad`` ("jnp"). Bytes counted
are the unavoidable traffic: forward reads x and writes y (2 N D elements); forward+backward also
reads x and the cotangent and writes dx (5 N D). GB/s is printed against the device's peak memory
bandwidth where known, and each pass's time as a multiple of the same backend's forward
("x fwd"); contenders are timed interleaved (round-robin), so load hits them alike. On CPU the Pallas kernels would only run in interpret mode (a Python-level
emulation, meaningless for timing), so only the XLA paths run there. Writes CSV + Markdown.

On CPU with glibc's default heap, outputs above its mmap threshold are page-faulted in at every call,
in a pattern that depends on what ran before: the 8192 x 768 forward took 3.9-15 ms in one process
and another, so "x fwd" moves with it. ``python -m benchmarks.cpu_heap`` shows the faults; running
this script with its ``KEEP_FREED`` environment, or with ``--keep-freed`` (:func:`kan.keep_freed_heap`
before the first program), removes them.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import jax
import jax.numpy as jnp

from bases.kernels import group_rational, resolve_group_index
from bases.kernels.rational_xla import backward_xla, forward_xla
from bases.rational.init_table import rational_init
from kan.cpu_heap import keep_freed_heap

from .timing import medians, time_rounds

SMALL_SHAPES = ((4096, 256), (8192, 768))
FULL_SHAPES = ((4096, 256), (16384, 768), (128 * 197, 768), (128 * 197, 3072))  # last: KAT-B MLP
PEAK_GBS = (  # (substring of device_kind, peak HBM GB/s), most specific first
    ("H100 PCIe", 2000.0), ("H100", 3350.0), ("H200", 4800.0), ("GH200", 4000.0),
    ("A100-SXM4-80GB", 2039.0), ("A100 80GB", 1935.0), ("A100", 1555.0), ("L40S", 864.0),
    ("L4", 300.0), ("A10", 600.0), ("V100", 900.0), ("T4", 320.0), ("RTX 4090", 1008.0),
)


def peak_bandwidth(device_kind: str) -> float | None:
    for key, gbs in PEAK_GBS:
        if key.lower() in device_kind.lower():
            return gbs
    return None


def _interleaved_medians(programs: list, repeats: int) -> list[float]:
    """Median seconds of each ``(fn, args)``, timed round-robin (one call of each per round) so
    load from other processes hits every contender alike."""
    rounds = time_rounds({i: functools.partial(fn, *args) for i, (fn, args) in enumerate(programs)}, repeats)
    return list(medians(rounds).values())


def coefficients() -> tuple:
    """``(numerator (8, 6), denominator (8, 4))``: the swish start of a 5/4 form-A rational, 8 groups."""
    a0, b0 = rational_init("swish", "A")
    return (jnp.tile(jnp.asarray(a0, jnp.float32), (8, 1)), jnp.tile(jnp.asarray(b0, jnp.float32), (8, 1)))


#: The XLA forward with the XLA backward it had before the native CPU kernel (``rational_native``):
#: the per-channel backward of ``rational_xla`` (the group sums, a few hundred adds, left out).
XLA_BACKWARD = "xla-bwd"


def programs(backend: str):
    """``(jit(forward), jit(forward_backward))`` of ``group_rational`` with ``backend``: ``forward(x, a, b)``
    and ``forward_backward(x, a, b, gy) -> (y, (dx, da, db))``; :data:`XLA_BACKWARD` pairs the XLA
    forward with ``backward_xla``."""
    if backend == XLA_BACKWARD:
        return programs("xla")[0], jax.jit(_forward_xla_backward)

    def forward(x, a, b):
        return group_rational(x, a, b, backend=backend)

    def forward_backward(x, a, b, gy):
        y, vjp = jax.vjp(forward, x, a, b)
        return y, vjp(gy)

    return jax.jit(forward), jax.jit(forward_backward)


def _forward_xla_backward(x, a, b, gy):
    gidx = resolve_group_index(None, x.shape[-1], a.shape[0])
    ac, bc = a[gidx], b[gidx]
    return forward_xla(x, ac, bc, "A"), backward_xla(x, gy, ac, bc, "A")


def run(shapes, dtype, backends, repeats: int, peak: float | None) -> list[dict]:
    a, b = coefficients()
    rows = []
    for n, d in shapes:
        kx, kg = jax.random.split(jax.random.PRNGKey(n * 7919 + d))
        x = jax.random.normal(kx, (n, d), jnp.float32).astype(dtype)
        gy = jax.random.normal(kg, (n, d), jnp.float32).astype(dtype)
        elem_bytes = n * d * jnp.dtype(dtype).itemsize
        cases = []
        for backend in backends:
            fwd, fwd_bwd = programs(backend)
            cases += [(backend, "fwd", fwd, (x, a, b), 2 * elem_bytes),
                      (backend, "fwd+bwd", fwd_bwd, (x, a, b, gy), 5 * elem_bytes)]
        seconds = _interleaved_medians([(fn, args) for _, _, fn, args, _ in cases], repeats)
        fwd_s = {backend: s for (backend, label, *_), s in zip(cases, seconds) if label == "fwd"}
        for (backend, label, _, _, traffic), sec in zip(cases, seconds):
            gbs = traffic / sec / 1e9
            rows.append({"rows": n, "channels": d, "dtype": jnp.dtype(dtype).name, "impl": backend,
                         "pass": label, "ms": sec * 1e3, "x_fwd": sec / fwd_s[backend], "GB/s": gbs,
                         "pct_peak": (100.0 * gbs / peak) if peak else float("nan")})
            r = rows[-1]
            print(f"{n:>6d} x {d:<5d} {r['dtype']:<8s} {backend:<7s} {label:<8s} {r['ms']:9.3f} ms"
                  f" {r['x_fwd']:5.1f}x fwd {gbs:9.1f} GB/s"
                  + (f"  {r['pct_peak']:5.1f}% of peak" if peak else ""))
    return rows


def write_results(rows: list[dict], out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    (out / "kernels.csv").write_text("\n".join([",".join(header)] + [
        ",".join(fmt(r[h]) for h in header) for r in rows]) + "\n")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(fmt(r[h]) for h in header) + " |" for r in rows]
    (out / "kernels.md").write_text("\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="shapes up to KAT-B's 128*197 x 3072")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--peak-gbs", type=float, default=None, help="override the peak bandwidth")
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--keep-freed", action="store_true",
                        help="keep freed memory in the heap (kan.keep_freed_heap): no page faults per call on CPU")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.keep_freed:
        print(f"heap keeps freed memory: {keep_freed_heap()}")
    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    peak = args.peak_gbs or (peak_bandwidth(device.device_kind) if on_gpu else None)
    print(f"device: {device.device_kind} ({device.platform}); peak memory bandwidth: "
          + (f"{peak:.0f} GB/s" if peak else "unknown (pass --peak-gbs)"))
    backends = ["pallas", "xla", "jnp"] if on_gpu else ["xla", XLA_BACKWARD, "jnp"]
    if not on_gpu:
        print("no GPU: running the XLA paths only (xla = custom_vjp with the XLA forward and, in float32, "
              f"the native CPU backward; {XLA_BACKWARD} = the XLA forward with the XLA backward; jnp = "
              "jax.grad of the plain formula); Pallas runs on CPU only in interpret mode, untimed")
    shapes = FULL_SHAPES if args.full else SMALL_SHAPES
    rows = run(shapes, jnp.dtype(args.dtype), backends, args.repeats, peak)
    write_results(rows, args.out_dir)
    print(f"written to {args.out_dir}/kernels.csv and kernels.md")
    return rows


if __name__ == "__main__":
    main()
