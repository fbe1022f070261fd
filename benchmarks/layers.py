"""Forward+backward time and training memory of each layer kind against an MLP layer, in one run.

    python -m benchmarks.layers [--in 128] [--out 128] [--batch 1024] [--repeats 50] [--only NAME ...] [--floor]
    python -m benchmarks.layers --scaling [--basis bspline|relukan|rbf] [--batch 1024] [--repeats 20]
                                [--widths 64 256 512] [--grids 5 10 20]
    python -m benchmarks.layers --memory [--in 256] [--out 256] [--batch 32768] [--grid 10]

The baseline is an MLP layer of the same in/out sizes (GELU then Linear). Every layer is timed as
``jax.jit(jax.grad(sum(layer(x)**2)))`` with respect to its *trainable* parameters (the same
``bases.trainable_filter`` split that ``kan.fit`` uses: grids, masks and other buffers are not
differentiated) and the input. Each contender is timed round-robin with the MLP layer alone (one call
of each per round, :func:`benchmarks.timing.paired_rounds`), so a drift in machine load hits both
alike and no heavy third contender slows the MLP's step by evicting its data (at 512 -> 512 the MLP
took 13.3 ms among four B-spline contenders and 10.7 ms beside one: the KAN ratio read 5.80x instead
of 7.45x); the script prints the median time, the ratio to the MLP of its own pair (of the medians)
with the spread of the per-round ratios in brackets (25th to 75th percentile: how far one run's ratio
can be trusted on a noisy machine), analytic FLOPs and parameter counts, and writes CSV + Markdown to
``benchmarks/results/``.

``--floor``: for each layer that is one dense contraction over ``K`` features per input (RBF, Chebyshev,
Fourier, AF-pair, S-KAN while training), also time its three matmuls alone (:mod:`benchmarks.layer_floors`): the
cost no evaluation of the features can remove, so a layer's ratio to the MLP cannot fall below its
floor's on that machine. For the B-spline and ReLU-KAN layers, whose kernels follow the ``k + 1``
non-zero functions, the same three matmuls over ``in * (k + 2)`` (the local pieces and the residual):
the kernels' multiply-adds run at the MLP's matmul efficiency, a floor for any local evaluation that
is no faster per multiply-add than XLA's matmul.

``--scaling``: the B-spline KAN layer against the MLP layer at widths 64/256/512 x G 5/10/20
(``width -> width``; ``--widths`` / ``--grids`` pick others), timed interleaved with the same layer on
its dense path ("dense": one matmul over ``in * (G + k + 1)``, in row blocks where the features pass
``FULL_BYTES``, what ``"auto"`` ran before the native kernel; "path" says which one ``"auto"`` takes)
and differentiated by autodiff through its basis evaluation ("before": no closed-form B-spline
derivative). ``--basis relukan``: the same table for a ReLU-KAN layer (fixed windows, k = 3), whose
bumps are as local as B-splines and run on the same kernel (no "before" column). ``--basis rbf``: for
a Gaussian RBF layer with ``G`` centres cut off at 3 widths (6 non-zero bumps per input), "before"
being the plain Gaussian (FastKAN) on its dense path.

``--memory``: each contender runs in its own subprocess. Reported per contender: the XLA buffer
assignment of the compiled training step (``compiled.memory_analysis()``: temporaries + arguments +
outputs, exact and deterministic), the process's peak resident memory while the step runs for the
first time above its resident memory just before (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``),
and the peak resident memory added by constructing the layer, against the parameters' bytes and all of
the layer's arrays (parameters plus buffers such as grids and edge masks): the first
construction of that shape (which includes XLA compiling ``jax.random`` for the new shapes) and the
median of three more of the same shapes, each kept ("again").
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bases import (ActivationPair, Chebyshev, Fourier, GaussianRBF, ReLUKAN, count_parameters,
                   trainable_filter)
from kan import KANLayer, MLP
from kan.layers.afkan_layer import AFKANLayer
from kan.layers.selectable_layer import SelectableKANLayer

from .layer_baselines import AutodiffAFKAN, DenseKAN, XlaStatsAFKAN, bspline_layer, reference_layer
from .layer_floors import floor_layers
from .timing import medians, paired_rounds, ratio_quantiles, time_rounds

LayerFactory = Callable[[int, int, jax.Array], eqx.Module]


def _mlp_layer(n_in: int, n_out: int, key: jax.Array) -> eqx.Module:
    return _MLPLayer(n_in, n_out, key)


class _MLPLayer(eqx.Module):
    """GELU followed by Linear: the MLP counterpart of one KAN layer (activation, then weights)."""

    mlp: MLP

    def __init__(self, n_in: int, n_out: int, key: jax.Array):
        self.mlp = MLP([n_in, n_out], key=key)

    def __call__(self, x):
        return self.mlp(jax.nn.gelu(x))


def _gr_kan_layer(n_in: int, n_out: int, key: jax.Array) -> eqx.Module:
    from kan import GroupKANLayer

    return GroupKANLayer(n_in, n_out, init="swish", key=key)


MLP_NAME = "mlp (gelu+linear)"
#: name -> factory(in_features, out_features, key); other layer kinds register themselves here.
LAYERS: dict[str, LayerFactory] = {
    MLP_NAME: _mlp_layer,
    "kan b-spline G=5 k=3": bspline_layer,
    "kan b-spline G=5 k=3 (before: autodiff basis)": reference_layer,
    "gr-kan": _gr_kan_layer,
}


# Issue 5: more bases in the KAN edge sum, AF-KAN and S-KAN.
LAYERS.update({
    "kan rbf G=8": lambda i, o, k: KANLayer(i, o, GaussianRBF(i, 8), key=k),
    "kan chebyshev deg=5": lambda i, o, k: KANLayer(i, o, Chebyshev(i, 5), key=k),
    "kan fourier G=5": lambda i, o, k: KANLayer(i, o, Fourier(i, 5), key=k),
    "kan relu-kan G=5 k=3": lambda i, o, k: KANLayer(i, o, ReLUKAN(i, 5, 3), key=k),
    "kan af-pair silu/quad1 G=3 k=3": lambda i, o, k: KANLayer(i, o, ActivationPair(i, 3, 3), key=k),
    "af-kan global_attn G=3 k=3": lambda i, o, k: AFKANLayer(i, o, 3, 3, key=k),
    "af-kan global_attn G=3 k=3 (before: XLA statistics)": lambda i, o, k: XlaStatsAFKAN(
        AFKANLayer(i, o, 3, 3, key=k)),
    "af-kan global_attn G=3 k=3 (before: autodiff reduction)": lambda i, o, k: AutodiffAFKAN(
        AFKANLayer(i, o, 3, 3, key=k)),
    "s-kan cheb/fourier/rbf (training)": lambda i, o, k: SelectableKANLayer(
        i, o, ["chebyshev", "fourier", "rbf"], key=k),
})


def grad_step(layer: eqx.Module) -> tuple[Callable, eqx.Module]:
    """``(step, params)``: ``step(params, x)`` is the jitted gradient of ``sum(layer(x)**2)`` with
    respect to the trainable parameters and the input (buffers are closed over, not differentiated)."""
    params, static = eqx.partition(layer, trainable_filter(layer))

    def loss(p, inp):
        return jnp.sum(eqx.combine(p, static)(inp) ** 2)

    return jax.jit(jax.grad(loss, argnums=(0, 1))), params


def step_calls(layers: dict[str, eqx.Module], x: jax.Array) -> dict[str, Callable]:
    """name -> zero-argument call of the layer's :func:`grad_step` on ``x``."""
    steps = {name: grad_step(layer) for name, layer in layers.items()}
    return {name: functools.partial(step, params, x) for name, (step, params) in steps.items()}


def layer_rounds(layers: dict[str, eqx.Module], x: jax.Array, repeats: int) -> dict[str, list[float]]:
    """Seconds of one forward+backward pass per layer in every round, timed round-robin after
    compiling all (:func:`benchmarks.timing.time_rounds`)."""
    return time_rounds(step_calls(layers, x), repeats)


def paired_ratios(layers: dict[str, eqx.Module], x: jax.Array, repeats: int, base: str) -> dict[str, dict]:
    """Per layer: ``{"seconds", "base_seconds", "ratio", "low", "high"}`` from its own round-robin with
    the ``base`` layer (:func:`benchmarks.timing.paired_rounds`); the base row holds its median over all
    pairs and ratio 1."""
    calls = step_calls(layers, x)
    out, base_times = {}, []
    for name, rounds in paired_rounds(calls, base, repeats).items():
        sec = medians(rounds)
        low, _, high = ratio_quantiles(rounds, name, base)
        out[name] = {"seconds": sec[name], "base_seconds": sec[base], "ratio": sec[name] / sec[base],
                     "low": low, "high": high}
        base_times += rounds[base]
    if not out:  # the base alone
        base_times = time_rounds({base: calls[base]}, repeats)[base]
    out[base] = {"seconds": float(np.median(base_times)), "base_seconds": float(np.median(base_times)),
                 "ratio": 1.0, "low": 1.0, "high": 1.0}
    return {name: out[name] for name in layers}


def time_interleaved(layers: dict[str, eqx.Module], x: jax.Array, repeats: int) -> dict[str, float]:
    """Median seconds of one forward+backward pass per layer, timed round-robin after compiling all."""
    return medians(layer_rounds(layers, x, repeats))


def time_fwd_bwd(layer: eqx.Module, x: jax.Array, repeats: int) -> float:
    """Median seconds of one jitted forward+backward pass of a single layer (see :func:`grad_step`)."""
    return time_interleaved({"layer": layer}, x, repeats)["layer"]


def _flops(layer: eqx.Module) -> str:
    fn = getattr(layer, "flops", None)
    return str(fn()) if callable(fn) else "-"


def _write(rows: list[dict], out_dir: str, stem: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = list(rows[0])
    (out / f"{stem}.csv").write_text("\n".join([",".join(header)] + [
        ",".join(str(r[h]) for h in header) for r in rows]) + "\n")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(f"{r[h]:.3f}" if isinstance(r[h], float) else str(r[h]) for h in header) + " |"
           for r in rows]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")


def run_default(args: argparse.Namespace) -> list[dict]:
    x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.n_in))
    names = [n for n in LAYERS if n == MLP_NAME or not args.only or n in args.only]
    layers = {n: LAYERS[n](args.n_in, args.n_out, jax.random.PRNGKey(0)) for n in names}
    if args.floor:  # the matmuls alone (benchmarks.layer_floors)
        layers.update(floor_layers(layers, args.n_in, args.n_out))
    print(f"device: {jax.devices()[0].device_kind}; shape {args.batch}x{args.n_in} -> {args.n_out}; "
          f"each layer round-robin with the MLP alone, {args.repeats} rounds")
    table = paired_ratios(layers, x, args.repeats, MLP_NAME)
    rows = []
    for name, layer in layers.items():
        r = table[name]
        rows.append({"layer": name, "ms": r["seconds"] * 1e3, "ratio_vs_mlp": r["ratio"],
                     "mlp_ms_in_pair": r["base_seconds"] * 1e3,
                     "round_ratio_p25": r["low"], "round_ratio_p75": r["high"],
                     "params": count_parameters(layer), "flops_per_sample": _flops(layer)})
        print(f"{name:<34s} {r['seconds'] * 1e3:8.3f} ms   x{r['ratio']:6.2f} vs MLP "
              f"({r['base_seconds'] * 1e3:6.3f} ms beside it) [{r['low']:5.2f}-{r['high']:5.2f}]   "
              f"params {rows[-1]['params']:>8d}   "
              f"flops/sample {rows[-1]['flops_per_sample']}")
    _write(rows, args.out_dir, "layers")
    return rows


#: ``--scaling --basis rbf``: the cut-off radius (in widths) of the compact Gaussian RBF.
RBF_CUTOFF = 3.0


def run_scaling(args: argparse.Namespace) -> list[dict]:
    relukan, rbf = args.basis == "relukan", args.basis == "rbf"
    title = {"bspline": "B-spline k=3", "relukan": "ReLU-KAN k=3",
             "rbf": f"Gaussian RBF cut off at {RBF_CUTOFF:g} widths (G centres)"}[args.basis]
    print(f"device: {jax.devices()[0].device_kind}; batch {args.batch}; width -> width; "
          f"{title}; each contender round-robin with the MLP alone, {args.repeats} rounds")
    print(f"{'width':>5s} {'G':>3s} {'mlp ms':>9s} {'kan ms':>9s} {'kan/mlp':>8s} {'per round':>11s} "
          f"{'path':>7s} {'dense/mlp':>10s} {'before/mlp':>11s}")
    rows = []
    for width in args.widths:
        x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, width))
        for grid in args.grids:
            if relukan:
                kan = KANLayer(width, width, ReLUKAN(width, grid, 3), key=jax.random.PRNGKey(0))
            elif rbf:
                kan = KANLayer(width, width, GaussianRBF(width, grid, cutoff=RBF_CUTOFF), key=jax.random.PRNGKey(0))
            else:
                kan = bspline_layer(width, width, jax.random.PRNGKey(0), grid)
            layers = {"mlp": _mlp_layer(width, width, jax.random.PRNGKey(0)), "kan": kan,
                      "dense": DenseKAN(kan)}
            if rbf:  # the plain Gaussian (FastKAN), dense
                layers["before"] = KANLayer(width, width, GaussianRBF(width, grid), key=jax.random.PRNGKey(0))
            elif not relukan:
                layers["before"] = reference_layer(width, width, jax.random.PRNGKey(0), grid)
            table = paired_ratios(layers, x, args.repeats, "mlp")
            sec = {name: r["seconds"] for name, r in table.items()}
            ratio = {name: r["ratio"] for name, r in table.items()}
            sec.setdefault("before", float("nan"))
            ratio.setdefault("before", float("nan"))
            low, high = table["kan"]["low"], table["kan"]["high"]
            path = "native" if kan._uses_native(x) else "dense"
            rows.append({"width": width, "grid_size": grid, "mlp_ms": table["kan"]["base_seconds"] * 1e3,
                         "kan_ms": sec["kan"] * 1e3, "ratio": ratio["kan"],
                         "round_ratio_p25": low, "round_ratio_p75": high, "path": path,
                         "dense_ms": sec["dense"] * 1e3, "dense_ratio": ratio["dense"],
                         "before_ms": sec["before"] * 1e3, "before_ratio": ratio["before"]})
            print(f"{width:5d} {grid:3d} {rows[-1]['mlp_ms']:9.3f} {sec['kan'] * 1e3:9.3f} "
                  f"{ratio['kan']:8.2f} {f'{low:.2f}-{high:.2f}':>11s} {path:>7s} "
                  f"{ratio['dense']:10.2f} {ratio['before']:11.2f}", flush=True)
    _write(rows, args.out_dir, {"bspline": "layers_scaling", "relukan": "layers_scaling_relukan",
                                "rbf": "layers_scaling_rbf"}[args.basis])
    return rows


# ----- memory: one subprocess per contender ------------------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS


def _memory_child(args: argparse.Namespace) -> dict:
    mib = 1024.0
    x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.n_in))
    factory = _mlp_layer if args.child == "mlp" else (
        lambda i, o, k: bspline_layer(i, o, k, args.grid))
    jax.block_until_ready(factory(8, 8, jax.random.PRNGKey(2)))  # warm jax up (not counted)
    layer, build = _measured_build(factory, args, 0)
    # The same shapes again, the earlier layers kept: jax.random's programs are compiled now.
    again = [_measured_build(factory, args, seed) for seed in (3, 4, 5)]
    build_warm = float(np.median([peak for _, peak in again]))
    del again
    step, params = grad_step(layer)
    compiled = step.lower(params, x).compile()
    analysis = compiled.memory_analysis()
    xla = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
           + analysis.output_size_in_bytes) / 2**20 if analysis is not None else float("nan")
    _reset_peak()
    rss1 = _status_kib("VmRSS")
    jax.block_until_ready(compiled(params, x))  # the first run: memory freed later stays resident
    run = _status_kib("VmHWM") - rss1
    param_mib = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(params)) / 2**20
    array_mib = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(eqx.filter(layer, eqx.is_array))) / 2**20
    return {"xla_step_mib": xla, "rss_step_mib": run / mib, "rss_build_mib": build, "rss_build_warm_mib": build_warm,
            "param_mib": param_mib, "array_mib": array_mib}


def _measured_build(factory: LayerFactory, args: argparse.Namespace, seed: int) -> tuple[eqx.Module, float]:
    """``(layer, peak)``: the layer built under a reset ``VmHWM`` and the peak resident memory its
    construction added, in MiB. (Freed temporaries mostly stay resident in the allocator's heap, so the
    peak, not the memory left afterwards, is what shows them.)"""
    _reset_peak()
    rss0 = _status_kib("VmRSS")
    layer = jax.block_until_ready(factory(args.n_in, args.n_out, jax.random.PRNGKey(seed)))
    return layer, (_status_kib("VmHWM") - rss0) / 1024.0


def run_memory(args: argparse.Namespace) -> list[dict]:
    print(f"peak memory of one training step (grad w.r.t. parameters and input), batch {args.batch}, "
          f"{args.n_in} -> {args.n_out}, B-spline G={args.grid} k=3; one subprocess per contender")
    results = {}
    for child in ("mlp", "kan"):
        cmd = [sys.executable, "-m", "benchmarks.layers", "--child", child, "--in", str(args.n_in),
               "--out", str(args.n_out), "--batch", str(args.batch), "--grid", str(args.grid)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory child {child} failed:\n{done.stderr[-3000:]}")
        results[child] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results["mlp"]
    rows = []
    print(f"{'layer':<6s} {'XLA step MiB':>13s} {'x MLP':>6s} {'RSS step MiB':>13s} {'x MLP':>6s} "
          f"{'build RSS MiB':>14s} {'(again)':>8s} {'params MiB':>11s} {'arrays MiB':>11s}")
    for name, r in results.items():
        rows.append({"layer": name, **r, "xla_ratio": r["xla_step_mib"] / base["xla_step_mib"],
                     "rss_ratio": r["rss_step_mib"] / max(base["rss_step_mib"], 1e-9)})
        print(f"{name:<6s} {r['xla_step_mib']:13.1f} {rows[-1]['xla_ratio']:6.2f} {r['rss_step_mib']:13.1f} "
              f"{rows[-1]['rss_ratio']:6.2f} {r['rss_build_mib']:14.1f} {r['rss_build_warm_mib']:8.1f} "
              f"{r['param_mib']:11.2f} {r['array_mib']:11.2f}")
    _write(rows, args.out_dir, "layers_memory")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="n_in", type=int, default=None)
    parser.add_argument("--out", dest="n_out", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--grid", type=int, default=10, help="B-spline grid size for --memory")
    parser.add_argument("--only", nargs="*", default=None, help="layer names to run (default: all)")
    parser.add_argument("--scaling", action="store_true", help="KAN/MLP ratio over width x grid size")
    parser.add_argument("--floor", action="store_true",
                        help="also time the bare matmuls of each dense layer's contraction")
    parser.add_argument("--basis", choices=["bspline", "relukan", "rbf"], default="bspline",
                        help="the KAN layer's basis for --scaling")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256, 512], help="widths for --scaling")
    parser.add_argument("--grids", type=int, nargs="+", default=[5, 10, 20], help="grid sizes for --scaling")
    parser.add_argument("--memory", action="store_true", help="peak training memory vs the MLP's")
    parser.add_argument("--child", choices=["mlp", "kan"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", default="benchmarks/results")
    args = parser.parse_args(argv)
    big = args.memory or args.child is not None
    args.n_in = args.n_in or (256 if big else 128)
    args.n_out = args.n_out or (256 if big else 128)
    args.batch = args.batch or (32768 if big else 1024)
    args.repeats = args.repeats or (20 if args.scaling else 50)
    if args.child is not None:
        print(json.dumps(_memory_child(args)))
        return []
    if args.memory:
        return run_memory(args)
    if args.scaling:
        return run_scaling(args)
    return run_default(args)


if __name__ == "__main__":
    main()
