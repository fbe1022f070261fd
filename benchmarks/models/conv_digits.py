"""ConvKAN vs CNN on scikit-learn's bundled digits (8x8 grey images, 10 classes, no download).

    python -m benchmarks.models.conv_digits [--seeds 3] [--epochs 30] [--out benchmarks/results/conv_digits]
    python -m benchmarks.models.conv_digits --quick        # smoke run: 1 seed, 2 epochs

Both classifiers have the same shape: 3x3 "SAME" convolution -> 2x2 average pool -> 3x3 "SAME"
convolution -> global average pool -> Linear(10). The ConvKAN uses :class:`kan.ConvKAN2d` (cubic
B-splines, 5 intervals on [-2, 2], SiLU residual; no activation between layers, the edge functions are
the nonlinearity); the CNN uses plain convolutions with ReLU. ConvKAN widths are ``--kan-channels``;
the CNN's (``w``, ``2 w``) take the ``w`` whose parameter count (:func:`kan.count_parameters`) is closest
to the ConvKAN's, within 10%. Protocol (as :mod:`benchmarks.models.vit_digits`): a fixed 70/15/15
train/validation/test split, AdamW with warm-up + cosine, accuracy on validation and test after every
epoch, the reported test accuracy at the epoch of best *validation* accuracy, mean +- std over seeds.
FLOPs per sample by :func:`kan.count_flops` (each model's ``flops()``). Writes ``summary.csv`` and
``summary.md`` to ``--out``. Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import kan
from bases import BSpline
from benchmarks.tables import write_summary_csv
from benchmarks.models.vit_digits import load_digits_split, train_on_digits


def _pool2(h: jax.Array) -> jax.Array:
    """2x2 average pool ``(..., H, W, C) -> (..., H/2, W/2, C)``."""
    *lead, hh, ww, c = h.shape
    return h.reshape(*lead, hh // 2, 2, ww // 2, 2, c).mean(axis=(-4, -2))


class Conv2d(eqx.Module):
    """Plain 2-D convolution, channels last, "SAME" padding, stride 1: ``(n, H, W, C_in) -> (n, H, W, C_out)``."""

    weight: jax.Array  # (kh, kw, C_in, C_out)
    bias: jax.Array

    def __init__(self, c_in: int, c_out: int, size: int, *, key: jax.Array):
        self.weight = jax.random.normal(key, (size, size, c_in, c_out)) * np.sqrt(2.0 / (size * size * c_in))
        self.bias = jnp.zeros((c_out,))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(x, self.weight, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + self.bias

    def flops(self, image_size: tuple[int, int]) -> int:
        kh, kw, c_in, c_out = self.weight.shape
        return image_size[0] * image_size[1] * (2 * kh * kw * c_in * c_out + c_out)


class DigitsNet(eqx.Module):
    """conv -> pool -> conv -> global pool -> Linear(10) on ``(n, 8, 8, 1)`` images; ``flops()`` per sample."""

    conv1: eqx.Module
    conv2: eqx.Module
    head: eqx.nn.Linear
    activation: Optional[Callable] = eqx.field(static=True)

    def __call__(self, x: jax.Array) -> jax.Array:
        act = self.activation or (lambda h: h)
        h = _pool2(act(self.conv1(x)))
        h = act(self.conv2(h)).mean(axis=(-3, -2))
        return h @ self.head.weight.T + self.head.bias

    def num_parameters(self) -> int:
        return kan.count_parameters(self)

    def flops(self) -> int:
        act = 1 if self.activation is not None else 0  # relu: 1 FLOP (kan.count convention)
        c1 = int(self.conv1.bias.shape[0]) if isinstance(self.conv1, Conv2d) else self.conv1.out_channels
        c2 = self.head.in_features
        return (self.conv1.flops((8, 8)) + act * 64 * c1 + 64 * c1  # conv, activation, 2x2 pool (4 ops per output)
                + self.conv2.flops((4, 4)) + act * 16 * c2 + 16 * c2  # conv, activation, global pool
                + 2 * c2 * 10 + 10)


def build_kan(c1: int, c2: int, key: jax.Array) -> DigitsNet:
    k1, k2, k3 = jax.random.split(key, 3)
    basis = lambda d: BSpline(d, 5, 3, (-2.0, 2.0))
    return DigitsNet(kan.ConvKAN2d(1, c1, 3, basis, key=k1, padding="SAME"),
                     kan.ConvKAN2d(c1, c2, 3, basis, key=k2, padding="SAME"),
                     eqx.nn.Linear(c2, 10, key=k3), None)


def build_cnn(width: int, key: jax.Array) -> DigitsNet:
    k1, k2, k3 = jax.random.split(key, 3)
    return DigitsNet(Conv2d(1, width, 3, key=k1), Conv2d(width, 2 * width, 3, key=k2),
                     eqx.nn.Linear(2 * width, 10, key=k3), jax.nn.relu)


def cnn_parameters(width: int) -> int:
    """Closed-form parameter count of :func:`build_cnn` (checked against the pytree in :func:`matched_width`)."""
    return (9 * width + width) + (9 * width * 2 * width + 2 * width) + (2 * width * 10 + 10)


def matched_width(kan_params: int) -> int:
    """The CNN width ``w`` (channels ``w, 2w``) whose parameter count is closest to ``kan_params``."""
    width = min(range(1, 257), key=lambda w: abs(cnn_parameters(w) - kan_params))
    counted = kan.count_parameters(build_cnn(width, jax.random.PRNGKey(0)))
    if counted != cnn_parameters(width):
        raise RuntimeError(f"CNN parameter count: closed form {cnn_parameters(width)}, pytree {counted}")
    if abs(counted - kan_params) > 0.1 * kan_params:
        raise RuntimeError(f"parameter counts differ by more than 10%: ConvKAN {kan_params}, CNN {counted}")
    return width


def run_one(name: str, build: Callable[[jax.Array], DigitsNet], seed: int, data: dict,
            args: argparse.Namespace) -> dict:
    """Train one model; the validation-selected result."""
    model = build(jax.random.PRNGKey(seed))
    start = time.perf_counter()
    result, best = train_on_digits(model, name, seed, data, args)
    seconds = time.perf_counter() - start
    return {"model": name, "seed": seed, "params": kan.count_parameters(model), "flops": kan.count_flops(model),
            "best_epoch": best["epoch"], "val_acc": best["val_acc"], "test_acc": best["test_acc"],
            "final_test_acc": result.evals[-1]["test_acc"], "seconds": seconds}


def write_outputs(runs: list[dict], out: Path, args: argparse.Namespace, seconds: float) -> str:
    """summary.csv and summary.md; returns the Markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    keys = ["model", "seed", "params", "flops", "best_epoch", "val_acc", "test_acc", "final_test_acc", "seconds"]
    write_summary_csv(out / "summary.csv", runs, keys)
    lines = [f"ConvKAN vs CNN on sklearn digits (8x8): {args.epochs} epochs, batch {args.batch}, lr {args.lr}, "
             f"{len(args.seed_list)} seed(s), {seconds:.0f} s in total. Test accuracy at the best-validation "
             "epoch; seconds: training time per run (compile included).", "",
             "| model | params | FLOPs/sample | val acc | test acc | best epoch | seconds |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == name]
        ms = lambda k: f"{np.mean([r[k] for r in rs]):.4f} +- {np.std([r[k] for r in rs]):.4f}"
        lines.append(f"| {name} | {rs[0]['params']} | {rs[0]['flops']:,} | {ms('val_acc')} | {ms('test_acc')} | "
                     f"{np.mean([r['best_epoch'] for r in rs]):.1f} | {np.mean([r['seconds'] for r in rs]):.1f} |")
    table = "\n".join(lines)
    (out / "summary.md").write_text(table + "\n")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-2,
                        help="peak learning rate (3e-3, 1e-2, 3e-2 tried; 3e-2 best on validation for both, seed 0)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--kan-channels", type=int, nargs=2, default=(4, 8), metavar=("C1", "C2"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/conv_digits"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 epochs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 2
    args.seed_list = list(range(args.seeds))
    start = time.perf_counter()
    data = load_digits_split()
    c1, c2 = args.kan_channels
    kan_params = kan.count_parameters(build_kan(c1, c2, jax.random.PRNGKey(0)))
    width = matched_width(kan_params)
    runs = []
    for seed in args.seed_list:  # interleave the contenders seed by seed
        runs.append(run_one(f"ConvKAN ({c1}, {c2})", lambda k: build_kan(c1, c2, k), seed, data, args))
        runs.append(run_one(f"CNN ({width}, {2 * width})", lambda k: build_cnn(width, k), seed, data, args))
    print(write_outputs(runs, args.out, args, time.perf_counter() - start))
    print(f"wrote {args.out}/summary.csv, summary.md")


if __name__ == "__main__":
    main()
