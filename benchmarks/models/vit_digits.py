"""ViT vs KAT vs KArAt on scikit-learn's bundled digits (8x8 grey images, 10 classes, no download).

    python -m benchmarks.models.vit_digits [--seeds 3] [--epochs 40] [--out benchmarks/results/vit_digits]
    python -m benchmarks.models.vit_digits --quick        # smoke run: 1 seed, 2 epochs
    python -m benchmarks.models.vit_digits --coordinator host0:12355 --num-processes 2 --process-id 0   # host 0 of 2

All models are the same transformer (2x2 patches -> 16 tokens + class token, same depth, width and
heads) and differ in the feed-forward: ``"mlp"`` (ViT, GELU) or ``"grkan"`` (KAT: rational ->
Linear -> rational -> Linear, 8 groups), or in the attention: KArAt (Maity et al. 2025) is the ViT with
Fourier-KArAt attention (``--karat-grid`` G = 3, low rank ``--karat-rank`` r = 4, one operator per head,
``--karat-norm`` rows, see :mod:`kan.nn.karat`) in place of softmax. The ViT's and KArAt's hidden sizes
are chosen so that their parameter counts match KAT's (within 5%; the rationals add 160 coefficients per
block, KArAt's operators ``h (N r 2G + N r)`` per block, paid for with a smaller MLP). Protocol: a fixed 70/15/15
train/validation/test split; AdamW with warm-up + cosine; accuracy on validation and test after every
epoch; the reported test accuracy is at the epoch with the best *validation* accuracy (never chosen on
test); mean +- std over seeds. Writes ``curves.csv``, ``summary.csv``, ``summary.md`` and
``curves.png`` to ``--out``. Needs scikit-learn (``pip install scikit-learn``).
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

import kan.nn
import kan.train as kt
from benchmarks.tables import write_summary_csv


def load_digits_split(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "val", "test"}`` -> ``(images (n, 8, 8, 1) float32, labels (n,) int32)``, 70/15/15,
    standardised with the training split's pixel mean and std."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise SystemExit("benchmarks.models.vit_digits needs scikit-learn: pip install scikit-learn") from None
    data = load_digits()
    x, y = data.images.astype(np.float32)[..., None], data.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    n_train, n_val = int(0.7 * len(y)), int(0.15 * len(y))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    mean, std = x[parts["train"]].mean(), x[parts["train"]].std()
    return {name: ((x[idx] - mean) / std, y[idx]) for name, idx in parts.items()}


def build(ffn: str, hidden: int, args: argparse.Namespace, key: jax.Array,
          attention: str = "softmax") -> kan.nn.VisionTransformer:
    """The digits transformer with feed-forward ``ffn`` of ``hidden`` units and ``attention``
    (``"softmax"`` or ``"karat"``: Fourier-KArAt over the 17 tokens)."""
    options = None
    if attention == "karat":
        options = dict(seq_len=(8 // 2) ** 2 + 1, basis="fourier", grid_size=args.karat_grid,
                       rank=args.karat_rank or None, normalisation=args.karat_norm)
    return kan.nn.VisionTransformer(key=key, image_size=8, patch_size=2, channels=1, num_classes=10,
                                    width=args.width, depth=args.depth, num_heads=args.heads, ffn=ffn,
                                    ffn_options=dict(hidden=hidden), attention=attention,
                                    attention_options=options)


def matched_hidden(args: argparse.Namespace, attention: str = "softmax") -> tuple[int, int, int]:
    """``(kat hidden, hidden, kat params)``: the MLP hidden size of the ViT with ``attention`` whose
    parameter count is closest to KAT's."""
    kat_hidden = args.mlp_ratio * args.width
    kat = build("grkan", kat_hidden, args, jax.random.PRNGKey(0)).num_parameters()
    vit0 = build("mlp", kat_hidden, args, jax.random.PRNGKey(0), attention).num_parameters()
    per_unit = args.depth * (2 * args.width + 1)  # one hidden unit: a row of fc1, its bias, a column of fc2
    vit_hidden = kat_hidden + int(round((kat - vit0) / per_unit))
    if vit_hidden < 1:
        raise RuntimeError(f"no MLP hidden size matches KAT's {kat} parameters with {attention} attention")
    vit = build("mlp", vit_hidden, args, jax.random.PRNGKey(0), attention).num_parameters()
    if abs(vit - kat) > 0.05 * kat:
        raise RuntimeError(f"parameter counts differ by more than 5%: KAT {kat}, ViT ({attention}) {vit}")
    return kat_hidden, vit_hidden, kat


@eqx.filter_jit
def _accuracy_and_loss(model, x, y):
    logits = model(x)
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    return jnp.mean(jnp.argmax(logits, -1) == y), loss


def train_on_digits(model, name: str, seed: int, data: dict, args: argparse.Namespace):
    """Train ``model`` on ``data["train"]`` for ``args.epochs`` (AdamW with ``args.lr``,
    ``args.weight_decay``, one epoch of warm-up; validation and test numbers every epoch); returns the
    ``kt.train`` result (its evals carry their ``epoch``) and the validation-selected eval."""
    batches = kt.ArrayBatches(data["train"], args.batch, seed=seed)
    steps = args.epochs * batches.batches_per_epoch
    opt = kt.make_optimizer(args.lr, total_steps=steps, warmup_steps=batches.batches_per_epoch,
                            weight_decay=args.weight_decay)

    def evaluate(m):
        out = {}
        for split in ("val", "test"):
            acc, loss = _accuracy_and_loss(m, *(jnp.asarray(a) for a in data[split]))
            out[f"{split}_acc"], out[f"{split}_loss"] = float(acc), float(loss)
        return out

    result = kt.train(model, kt.classification_loss, batches, optimizer=opt, steps=steps, eval_fn=evaluate,
                      eval_every=batches.batches_per_epoch, log_every=batches.batches_per_epoch,
                      progress=not args.no_progress, desc=f"{name} seed {seed}")
    for e in result.evals:
        e["epoch"] = e["step"] // batches.batches_per_epoch
    best = max(result.evals, key=lambda e: (e["val_acc"], -e["val_loss"]))  # validation only
    return result, best


def run_one(name: str, ffn: str, hidden: int, seed: int, data: dict, args: argparse.Namespace,
            attention: str = "softmax") -> dict:
    """Train one model; per-epoch curves and the validation-selected result."""
    model = build(ffn, hidden, args, jax.random.PRNGKey(seed), attention)
    result, best = train_on_digits(model, name, seed, data, args)
    return {"model": name, "seed": seed, "params": model.num_parameters(), "hidden": hidden,
            "best_epoch": best["epoch"], "val_acc": best["val_acc"], "test_acc": best["test_acc"],
            "final_test_acc": result.evals[-1]["test_acc"], "samples_per_s": result.throughput,
            "history": result.history, "evals": result.evals}


def write_outputs(runs: list[dict], out: Path, args: argparse.Namespace, seconds: float) -> str:
    """curves.csv, summary.csv, summary.md, curves.png; returns the Markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "seed", "step", "epoch", "train_loss", "val_loss", "val_acc", "test_acc"])
        for r in runs:
            losses = {h["step"]: h["loss"] for h in r["history"]}
            for e in r["evals"]:
                w.writerow([r["model"], r["seed"], e["step"], e["epoch"], f"{losses.get(e['step'], float('nan')):.5f}",
                            f"{e['val_loss']:.5f}", f"{e['val_acc']:.4f}", f"{e['test_acc']:.4f}"])
    keys = ["model", "seed", "params", "hidden", "best_epoch", "val_acc", "test_acc", "final_test_acc", "samples_per_s"]
    write_summary_csv(out / "summary.csv", runs, keys)
    lines = [f"ViT vs KAT vs KArAt on sklearn digits (8x8, 2x2 patches): width {args.width}, depth {args.depth}, "
             f"heads {args.heads}, {args.epochs} epochs, batch {args.batch}, lr {args.lr}, {len(args.seed_list)} "
             f"seed(s), {seconds:.0f} s in total. Test accuracy at the best-validation epoch. KArAt: Fourier "
             f"G={args.karat_grid}, rank {args.karat_rank or 'full'}, {args.karat_norm} rows.", "",
             "| model | params | hidden | val acc | test acc | best epoch | samples/s |", "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == name]
        ms = lambda k: f"{np.mean([r[k] for r in rs]):.4f} +- {np.std([r[k] for r in rs]):.4f}"
        lines.append(f"| {name} | {rs[0]['params']} | {rs[0]['hidden']} | {ms('val_acc')} | {ms('test_acc')} | "
                     f"{np.mean([r['best_epoch'] for r in rs]):.1f} | {np.mean([r['samples_per_s'] for r in rs]):,.0f} |")
    table = "\n".join(lines)
    (out / "summary.md").write_text(table + "\n")
    _plot(runs, out / "curves.png")
    return table


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for i, name in enumerate(dict.fromkeys(r["model"] for r in runs)):
        for j, r in enumerate(rs for rs in runs if rs["model"] == name):
            steps = [h["step"] for h in r["history"]]
            ax_loss.plot(steps, [h["loss"] for h in r["history"]], color=f"C{i}", alpha=0.7,
                         label=name if j == 0 else None)
            epochs = [e["epoch"] for e in r["evals"]]
            ax_acc.plot(epochs, [e["val_acc"] for e in r["evals"]], color=f"C{i}", alpha=0.7,
                        label=f"{name} (val)" if j == 0 else None)
    ax_loss.set(xlabel="step", ylabel="train loss", yscale="log", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    ax_loss.legend(), ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp-ratio", type=int, default=4)
    parser.add_argument("--karat-grid", type=int, default=3, help="Fourier-KArAt grid size G")
    parser.add_argument("--karat-rank", type=int, default=4, help="KArAt low rank r (0: full operator)")
    parser.add_argument("--karat-norm", default="l1", choices=kan.nn.ROW_NORMALISATIONS,
                        help="KArAt row normalisation")
    parser.add_argument("--models", default="kat,vit,karat", help="comma-separated subset of kat,vit,karat")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vit_digits"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 epochs, depth 1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--coordinator", help="host:port of process 0, to train on several hosts")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args(argv)
    if args.coordinator:  # before any other JAX call
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    if args.quick:
        args.seeds, args.epochs, args.depth = 1, 2, 1
    args.seed_list = list(range(args.seeds))
    start = time.perf_counter()
    data = load_digits_split()
    kat_hidden, vit_hidden, _ = matched_hidden(args)
    _, karat_hidden, _ = matched_hidden(args, "karat")
    contenders = {"kat": ("KAT (GR-KAN)", "grkan", kat_hidden, "softmax"),
                  "vit": ("ViT (MLP)", "mlp", vit_hidden, "softmax"),
                  "karat": ("KArAt (Fourier, MLP)", "mlp", karat_hidden, "karat")}
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in contenders]
    if unknown or not chosen:
        raise SystemExit(f"--models: unknown {unknown}; choose from {', '.join(contenders)}")
    runs = []
    for seed in args.seed_list:  # interleave the contenders seed by seed
        for m in chosen:
            name, ffn, hidden, attention = contenders[m]
            runs.append(run_one(name, ffn, hidden, seed, data, args, attention))
    if jax.process_index() == 0:
        print(write_outputs(runs, args.out, args, time.perf_counter() - start))
        print(f"wrote {args.out}/curves.csv, summary.csv, summary.md, curves.png "
              f"({jax.process_count()} process(es), {jax.device_count()} device(s))")


if __name__ == "__main__":
    main()
