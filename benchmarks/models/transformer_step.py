"""One training step (forward + backward + AdamW update) of a KAT block vs the matching ViT block.

    python -m benchmarks.models.transformer_step [--widths 192,384] [--seq 197] [--batch 8] [--repeats 15]
                                          [--dtype float32|bfloat16] [--backend auto|xla|pallas]

A KAT block (Yang & Wang 2024) is a pre-norm transformer block whose feed-forward is GR-KAN (rational ->
Linear -> rational -> Linear, 8 groups, mlp_ratio 4); the ViT block is the same with Linear -> GELU ->
Linear. Widths 192 (KAT-T / ViT-T, 3 heads) and 384 (KAT-S / ViT-S, 6 heads), 197 tokens (224 px,
16 px patches + class token). Each contender is a ``kan.train.make_train_step`` step on a mean-squared
loss; the feed-forward blocks alone are timed too. All contenders are compiled first, then timed
interleaved in one process (repeat r times: each contender once), and the median per contender and the
ratios KAT / ViT are printed. On a GPU the group rational runs the fused Pallas kernels (``--backend
auto``), elsewhere the XLA implementation. Writes ``step.csv`` and ``step.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import kan.nn
import kan.train as kt
from benchmarks.tables import write_summary_csv


def _mse(model, batch):
    x, y = batch
    return jnp.mean(jnp.square(model(x).astype(jnp.float32) - y.astype(jnp.float32))), {}


def contenders(width: int, args: argparse.Namespace) -> dict[str, object]:
    """name -> module: KAT/ViT block and their feed-forward blocks at ``width``."""
    key = jax.random.PRNGKey(0)
    heads = max(width // 64, 1)
    opts = dict(rational_backend=args.backend)
    return {
        "KAT block": kan.nn.TransformerBlock(width, heads, key=key, ffn="grkan", ffn_options=opts),
        "ViT block": kan.nn.TransformerBlock(width, heads, key=key, ffn="mlp"),
        "GR-KAN ffn": kan.nn.FeedForward(width, kind="grkan", key=key, rational_backend=args.backend),
        "MLP ffn": kan.nn.FeedForward(width, kind="mlp", key=key),
    }


def time_width(width: int, args: argparse.Namespace) -> list[dict]:
    """Median step time of every contender at ``width``, timed interleaved."""
    mesh = kt.data_mesh(jax.devices()[:1])
    dtype = None if args.dtype == "float32" else jnp.dtype(args.dtype)
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(k1, (args.batch, args.seq, width))
    y = jax.random.normal(k2, (args.batch, args.seq, width))
    batch = kt.shard_batch((x, y), mesh)
    opt = kt.make_optimizer(1e-3, total_steps=1000, warmup_steps=10)
    state = {}
    for name, module in contenders(width, args).items():
        params, static = kt.partition(module)
        step = kt.make_train_step(_mse, opt, static, mesh=mesh, compute_dtype=dtype, donate=True)
        params = kt.replicate(jax.tree_util.tree_map(jnp.copy, params), mesh)
        opt_state = kt.replicate(opt.init(params), mesh)
        start = time.perf_counter()
        for _ in range(2):  # compile, then one warm step
            params, opt_state, metrics = step(params, opt_state, batch)
        jax.block_until_ready(metrics)
        state[name] = [step, params, opt_state, [], time.perf_counter() - start]
    for _ in range(args.repeats):
        for name, entry in state.items():
            step, params, opt_state, times, _ = entry
            start = time.perf_counter()
            params, opt_state, metrics = step(params, opt_state, batch)
            jax.block_until_ready((params, metrics))
            times.append(time.perf_counter() - start)
            entry[1], entry[2] = params, opt_state
    rows = []
    for name, (_, params, _, times, warm) in state.items():
        rows.append({"width": width, "contender": name, "median_ms": 1e3 * statistics.median(times),
                     "min_ms": 1e3 * min(times), "params": sum(p.size for p in jax.tree_util.tree_leaves(params)),
                     "compile_s": warm})
    median = {r["contender"]: r["median_ms"] for r in rows}
    for r in rows:
        base = {"KAT block": "ViT block", "GR-KAN ffn": "MLP ffn"}.get(r["contender"])
        r["ratio"] = median[r["contender"]] / median[base] if base else 1.0
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", default="192,384", help="comma-separated widths (heads = width / 64)")
    parser.add_argument("--seq", type=int, default=197)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--backend", default="auto", choices=("auto", "xla", "pallas", "jnp"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/transformer_step"))
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    rows = [r for w in args.widths.split(",") for r in time_width(int(w), args)]
    args.out.mkdir(parents=True, exist_ok=True)
    keys = ["width", "contender", "median_ms", "min_ms", "ratio", "params", "compile_s"]
    write_summary_csv(args.out / "step.csv", rows, keys)
    lines = [f"Train step (fwd + bwd + AdamW) on {device.platform} ({device.device_kind}), batch {args.batch} x "
             f"{args.seq} tokens, {args.dtype}, rational backend {args.backend}, median of {args.repeats} "
             "interleaved repeats.", "",
             "| width | contender | median ms | min ms | ratio to MLP counterpart | params |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['width']} | {r['contender']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['ratio']:.2f} | "
              f"{r['params']:,} |" for r in rows]
    table = "\n".join(lines)
    (args.out / "step.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
