"""Character-level GPT with an MLP, a GR-KAN or an MLP-KAN feed-forward, on text that ships with Python.

    python -m benchmarks.models.char_gpt [--steps 1000] [--seeds 1] [--out benchmarks/results/char_gpt]
    python -m benchmarks.models.char_gpt --models grkan,mlp,mlp-kan --steps 300
    python -m benchmarks.models.char_gpt --quick          # smoke run: 30 steps

The text is ``pydoc_data.topics`` (Python's help topics, ~465k characters; the first 90% trains, the
last 10% validates). The models are the same causal transformer and differ only in the feed-forward:
``"mlp"`` (GPT, GELU), ``"grkan"`` (KAT's rational -> Linear -> rational -> Linear, 8 groups) or
``"mlp-kan"`` (MLP-KAN, He et al. 2024: a mixture of 2 MLP and 2 RBF-KAN experts, top-2 routing, the
Switch load-balancing loss added to the training loss with weight ``--balance-weight``). The MLP's
hidden size, and the experts' common hidden size, match GR-KAN's parameter count within 5% (total
parameters: a top-2 mixture uses about half of its experts' parameters per token). For MLP-KAN the
summary also gives each block's expert load (fraction of token-to-expert assignments on the
validation windows, experts in the order mlp, mlp, rbf, rbf). Reported: validation bits per character
(mean next-character cross-entropy / ln 2 over fixed, evenly spaced validation windows), training
tokens/s during training (after the compiling first step; the runs are sequential, so on a busy
machine compare the interleaved figure instead), training tokens/s measured interleaved after training
(the two models' steps alternate in one loop) and a few sampled lines per model. Writes ``curves.csv``,
``summary.csv``, ``summary.md``, ``samples.txt`` and ``curves.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import kan.nn
import kan.train as kt
from benchmarks.tables import write_summary_csv


def load_text() -> str:
    """Python's bundled help topics as one string."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


def encode_text(text: str) -> tuple[np.ndarray, list[str]]:
    """``(tokens int32, vocabulary)``: one token per distinct character, in sorted order."""
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    return np.fromiter((index[c] for c in text), np.int32, len(text)), vocab


MOE_EXPERTS = ("mlp", "mlp", "rbf", "rbf")
MODELS = {"grkan": ("GR-KAN", "grkan"), "mlp": ("MLP", "mlp"), "mlp-kan": ("MLP-KAN", "moe")}


def build(ffn: str, hidden: int, vocab_size: int, args: argparse.Namespace, key: jax.Array) -> kan.nn.GPT:
    """The character model with feed-forward ``ffn`` of ``hidden`` units (per expert for ``"moe"``)."""
    options = dict(hidden=hidden)
    if ffn == "moe":
        options.update(experts=MOE_EXPERTS, top_k=2)
    return kan.nn.GPT(vocab_size, args.context, key=key, width=args.width, depth=args.depth, num_heads=args.heads,
                      ffn=ffn, ffn_options=options, tie_embedding=args.tie)


def matched_expert_hidden(target: int, vocab_size: int, args: argparse.Namespace) -> int:
    """The experts' hidden size whose MLP-KAN parameter count is closest to ``target`` (linear in it)."""
    count = lambda h: build("moe", h, vocab_size, args, jax.random.PRNGKey(0)).num_parameters()  # noqa: E731
    c1, c2 = count(1), count(2)
    hidden = max(1, int(round(1 + (target - c1) / (c2 - c1))))
    if abs(count(hidden) - target) > 0.05 * target:
        raise RuntimeError(f"parameter counts differ by more than 5%: target {target}, MLP-KAN {count(hidden)}")
    return hidden


def moe_loss(weight: float):
    """Next-token cross-entropy plus ``weight`` times the blocks' summed balancing loss; ``bits`` stays
    the cross-entropy alone, so it compares with the other models."""

    def loss_fn(model, tokens):
        logits, aux = model(tokens[..., :-1], return_aux=True)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), tokens[..., 1:]).mean()
        return ce + weight * aux["balance"], {"bits": ce / jnp.log(2.0), "balance": aux["balance"]}

    return loss_fn


@eqx.filter_jit
def _load(model, windows):
    return model(windows[..., :-1], return_aux=True)[1]["load"]


def expert_load(model, windows) -> str:
    """Each block's load fractions on ``windows``, e.g. ``"0.27/0.23/0.26/0.24; 0.30/0.20/0.25/0.25"``."""
    return "; ".join("/".join(f"{float(v):.2f}" for v in np.asarray(block)) for block in _load(model, windows))


def matched_hidden(vocab_size: int, args: argparse.Namespace) -> tuple[int, int]:
    """GR-KAN hidden (``mlp_ratio * width``) and the MLP hidden closest to its parameter count."""
    kat_hidden = args.mlp_ratio * args.width
    kat = build("grkan", kat_hidden, vocab_size, args, jax.random.PRNGKey(0)).num_parameters()
    mlp0 = build("mlp", kat_hidden, vocab_size, args, jax.random.PRNGKey(0)).num_parameters()
    mlp_hidden = kat_hidden + int(round((kat - mlp0) / (args.depth * (2 * args.width + 1))))
    mlp = build("mlp", mlp_hidden, vocab_size, args, jax.random.PRNGKey(0)).num_parameters()
    if abs(mlp - kat) > 0.05 * kat:
        raise RuntimeError(f"parameter counts differ by more than 5%: GR-KAN {kat}, MLP {mlp}")
    return kat_hidden, mlp_hidden


@eqx.filter_jit
def _bits(model, windows):
    return kt.language_model_loss(model, windows)[1]["bits"]


def validation_windows(tokens: np.ndarray, length: int, count: int) -> np.ndarray:
    """``(count, length)`` evenly spaced windows: a fixed validation set."""
    starts = np.linspace(0, tokens.size - length, count).astype(np.int64)
    return tokens[starts[:, None] + np.arange(length)]


def run_one(name: str, ffn: str, hidden: int, seed: int, train_tokens: np.ndarray, val: np.ndarray,
            vocab: list[str], args: argparse.Namespace) -> dict:
    """Train one model; curves, final validation bits/char, tokens/s and samples."""
    model = build(ffn, hidden, len(vocab), args, jax.random.PRNGKey(seed))
    loss_fn = moe_loss(args.balance_weight) if ffn == "moe" else kt.language_model_loss
    batches = kt.WindowBatches(train_tokens, args.batch, args.context + 1, seed=seed)
    opt = kt.make_optimizer(args.lr, total_steps=args.steps, warmup_steps=max(args.steps // 20, 1),
                            weight_decay=args.weight_decay)
    val = jnp.asarray(val)
    result = kt.train(model, loss_fn, batches, optimizer=opt, steps=args.steps,
                      eval_fn=lambda m: {"val_bpc": float(_bits(m, val))}, eval_every=args.eval_every,
                      log_every=args.eval_every, items_per_batch=args.batch * args.context, unit="tokens",
                      progress=not args.no_progress, desc=f"{name} seed {seed}")
    prompt = np.array([vocab.index(c) for c in "The "], np.int32)
    tokens = kan.nn.sample(result.model, prompt, args.sample_chars, key=jax.random.PRNGKey(100 + seed),
                           temperature=0.8)
    text = "".join(vocab[int(t)] for t in tokens)
    load = expert_load(result.model, val) if ffn == "moe" else ""
    return {"model": name, "seed": seed, "params": model.num_parameters(), "hidden": hidden, "load": load,
            "loss_fn": loss_fn,
            "val_bpc": result.evals[-1]["val_bpc"], "tokens_per_s": result.throughput,
            "compile_s": result.compile_seconds, "history": result.history, "evals": result.evals, "sample": text,
            "trained": result.model}


def interleaved_tokens_per_s(runs: list[dict], train_tokens: np.ndarray, args: argparse.Namespace,
                             rounds: int = 5, steps_per_round: int = 5) -> None:
    """Add ``tokens_per_s_interleaved`` to each run: train steps of all models alternate, round by round,
    so load from other processes hits every contender alike (median over rounds)."""
    batches = kt.WindowBatches(train_tokens, args.batch, args.context + 1, seed=123)
    mesh = kt.data_mesh()
    batch = kt.shard_batch(next(batches), mesh)
    opt = kt.make_optimizer(1e-4, total_steps=10_000)
    states = []
    for r in runs:
        params, static = kt.partition(r["trained"])
        step = kt.make_train_step(r["loss_fn"], opt, static, mesh=mesh, donate=True)
        params = kt.replicate(jax.tree_util.tree_map(jnp.copy, params), mesh)
        opt_state = kt.replicate(opt.init(params), mesh)
        for _ in range(2):  # compile and warm up
            params, opt_state, metrics = step(params, opt_state, batch)
        jax.block_until_ready(metrics)
        states.append([step, params, opt_state, []])
    for _ in range(rounds):
        for entry in states:
            step, params, opt_state, times = entry
            start = time.perf_counter()
            for _ in range(steps_per_round):
                params, opt_state, metrics = step(params, opt_state, batch)
            jax.block_until_ready((params, metrics))
            times.append(time.perf_counter() - start)
            entry[1], entry[2] = params, opt_state
    for r, (_, _, _, times) in zip(runs, states):
        r["tokens_per_s_interleaved"] = args.batch * args.context * steps_per_round / float(np.median(times))


def write_outputs(runs: list[dict], out: Path, args: argparse.Namespace, seconds: float) -> str:
    """curves.csv, summary.csv, summary.md, samples.txt, curves.png; returns the Markdown summary."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "seed", "step", "train_bits", "val_bpc"])
        for r in runs:
            val = {e["step"]: e["val_bpc"] for e in r["evals"]}
            for h in r["history"]:
                w.writerow([r["model"], r["seed"], h["step"], f"{h['bits']:.5f}",
                            f"{val[h['step']]:.5f}" if h["step"] in val else ""])
    keys = ["model", "seed", "params", "hidden", "val_bpc", "tokens_per_s", "tokens_per_s_interleaved", "compile_s",
            "load"]
    write_summary_csv(out / "summary.csv", runs, keys)
    lines = [f"Character GPT on pydoc_data.topics: width {args.width}, depth {args.depth}, heads {args.heads}, "
             f"context {args.context}, batch {args.batch}, {args.steps} steps, lr {args.lr}, "
             f"{len(args.seed_list)} seed(s), {seconds:.0f} s in total.", "",
             "| feed-forward | params | hidden | val bits/char | tokens/s (training run) | tokens/s (interleaved) |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == name]
        bpc = [r["val_bpc"] for r in rs]
        lines.append(f"| {name} | {rs[0]['params']} | {rs[0]['hidden']} | {np.mean(bpc):.4f} +- {np.std(bpc):.4f} | "
                     f"{np.mean([r['tokens_per_s'] for r in rs]):,.0f} | "
                     f"{np.mean([r['tokens_per_s_interleaved'] for r in rs]):,.0f} |")
    loads = [f"{r['model']} seed {r['seed']} expert load per block (mlp/mlp/rbf/rbf): {r['load']}"
             for r in runs if r["load"]]
    if loads:
        lines += [""] + loads
    samples = []
    for r in runs:
        shown = [line for line in r["sample"].splitlines() if line.strip()][:4]
        samples.append(f"--- {r['model']}, seed {r['seed']} ---\n" + "\n".join(shown))
    (out / "samples.txt").write_text("\n\n".join(samples) + "\n")
    table = "\n".join(lines)
    (out / "summary.md").write_text(table + "\n\nSamples (prompt 'The ', temperature 0.8):\n\n```\n"
                                    + "\n\n".join(samples) + "\n```\n")
    _plot(runs, out / "curves.png")
    return table + "\n\n" + "\n\n".join(samples)


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(dict.fromkeys(r["model"] for r in runs)):
        for j, r in enumerate(rs for rs in runs if rs["model"] == name):
            ax.plot([h["step"] for h in r["history"]], [h["bits"] for h in r["history"]], color=f"C{i}",
                    alpha=0.5, label=f"{name} train" if j == 0 else None)
            ax.plot([e["step"] for e in r["evals"]], [e["val_bpc"] for e in r["evals"]], "o-", color=f"C{i}",
                    label=f"{name} validation" if j == 0 else None)
    ax.set(xlabel="step", ylabel="bits per character", title="character GPT: feed-forward kinds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp-ratio", type=int, default=4)
    parser.add_argument("--tie", action="store_true", help="tie the output layer to the token embedding")
    parser.add_argument("--models", default="grkan,mlp,mlp-kan", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--balance-weight", type=float, default=0.01, help="MLP-KAN's balancing-loss weight")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--val-windows", type=int, default=256)
    parser.add_argument("--sample-chars", type=int, default=240)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/char_gpt"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 steps, depth 1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.depth, args.eval_every, args.val_windows, args.sample_chars = 30, 1, 10, 32, 80
    args.seed_list = list(range(args.seeds))
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        parser.error(f"--models: unknown {unknown or names}; valid: {', '.join(MODELS)}")
    start = time.perf_counter()
    tokens, vocab = encode_text(load_text())
    split = int(0.9 * tokens.size)
    val = validation_windows(tokens[split:], args.context + 1, args.val_windows)
    kat_hidden, mlp_hidden = matched_hidden(len(vocab), args)
    hiddens = {"grkan": kat_hidden, "mlp": mlp_hidden}
    if "mlp-kan" in names:
        target = build("grkan", kat_hidden, len(vocab), args, jax.random.PRNGKey(0)).num_parameters()
        hiddens["mlp-kan"] = matched_expert_hidden(target, len(vocab), args)
    runs = []
    for seed in args.seed_list:  # interleave the contenders seed by seed
        for m in names:
            label, ffn = MODELS[m]
            runs.append(run_one(label, ffn, hiddens[m], seed, tokens[:split], val, vocab, args))
    interleaved_tokens_per_s(runs, tokens[:split], args)
    print(write_outputs(runs, args.out, args, time.perf_counter() - start))
    print(f"wrote {args.out}/curves.csv, summary.csv, summary.md, samples.txt, curves.png")


if __name__ == "__main__":
    main()
