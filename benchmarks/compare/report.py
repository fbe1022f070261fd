"""Outputs: CSV of every run and trial, a Markdown table per task and budget, Pareto plots."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from .stats import paired
from .tasks import Task

_HEADER_NOTE = ("params and FLOPs: of the chosen model (range over seeds); s/epoch: median wall time of "
                "an epoch without compilation; diff: mean per-seed difference vs the MLP, positive = "
                "better than the MLP, with the paired 95% t interval; verdict needs the t and bootstrap "
                "intervals to exclude 0.")


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """All keys of all rows as columns (missing cells empty)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "nan"
    if abs(v) < 1e-12:
        return "0"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _span(values) -> str:
    values = list(values)
    lo, hi = int(min(values)), int(max(values))
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def _groups(rows: Sequence[dict]):
    out = defaultdict(lambda: defaultdict(list))
    for r in rows:
        out[(r["task"], r["budget_metric"], float(r["budget"]))][r["kind"]].append(r)
    return out


def markdown(rows: Sequence[dict], tasks: dict[str, Task]) -> str:
    """One table per (task, budget): mean +- std over seeds with params and FLOPs beside each number."""
    lines = ["# Fair KAN-vs-MLP comparison", "", _HEADER_NOTE, ""]
    for (name, metric, budget), by_kind in _groups(rows).items():
        task = tasks[name]
        arrow = "higher is better" if task.higher_is_better else "lower is better"
        lines += [f"## {name}: {metric} budget {budget:,.0f} ({task.metric_name}, {arrow})", ""]
        cl = task.problem == "continual"
        head = "| kind | widths | params | FLOPs | " + task.metric_name + " mean +- std | "
        head += "forgetting | " if cl else ""
        head += "seeds | s/epoch | diff vs mlp [95% CI] | verdict |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        base = {r["seed"]: r["value"] for r in by_kind.get("mlp", [])}
        for kind, rs in by_kind.items():
            vals = np.array([r["value"] for r in rs], float)
            if not np.isfinite(vals).any():
                lines.append(f"| {kind} | - | - | - | infeasible: {rs[0].get('note', '')[:90]} |"
                             + (" - |" if cl else "") + " - | - | - | - |")
                continue
            widths = sorted({r["widths"] for r in rs})
            sec = [r["sec_per_epoch"] for r in rs if math.isfinite(r["sec_per_epoch"])]
            cell = f"{_fmt(np.nanmean(vals))} +- {_fmt(np.nanstd(vals, ddof=1) if vals.size > 1 else math.nan)}"
            forget = ""
            if cl:
                fv = np.array([r["forgetting"] for r in rs], float)
                forget = f" {_fmt(fv.mean())} +- {_fmt(fv.std(ddof=1) if fv.size > 1 else math.nan)} |"
            diff, verdict = "-", "baseline"
            if kind != "mlp" and base:
                seeds = [r["seed"] for r in rs if r["seed"] in base]
                pr = paired([next(r["value"] for r in rs if r["seed"] == s) for s in seeds],
                            [base[s] for s in seeds], task.higher_is_better)
                diff = f"{_fmt(pr.mean)} [{_fmt(pr.t_ci[0])}, {_fmt(pr.t_ci[1])}]"
                verdict = pr.verdict
            lines.append(f"| {kind} | {', '.join(widths)} | {_span(r['params'] for r in rs)} | "
                         f"{_span(r['flops'] for r in rs)} | {cell} |{forget} {len(rs)} | "
                         f"{_fmt(float(np.median(sec))) if sec else '-'} | {diff} | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def pareto_plots(rows: Sequence[dict], tasks: dict[str, Task], out: Path) -> list[Path]:
    """Per task: metric vs parameters and vs FLOPs (log x), mean +- std per kind and budget, single
    seeds faint, the Pareto front of the means dashed. Returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    by_task = defaultdict(list)
    for r in rows:
        if math.isfinite(r["value"]):
            by_task[r["task"]].append(r)
    for name, rs in by_task.items():
        task = tasks[name]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        kinds = sorted({r["kind"] for r in rs}, key=lambda k: (k != "mlp", k))
        colors = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(kinds)}
        for ax, col, label in zip(axes, ("params", "flops"), ("parameters", "forward FLOPs per sample")):
            means = []
            for kind in kinds:
                groups = defaultdict(list)
                for r in rs:
                    if r["kind"] == kind:
                        groups[(r["budget_metric"], r["budget"])].append(r)
                for i, g in enumerate(groups.values()):
                    xs = np.array([r[col] for r in g], float)
                    ys = np.array([r["value"] for r in g], float)
                    ax.scatter(xs, ys, color=colors[kind], alpha=0.25, s=12)
                    ax.errorbar(xs.mean(), ys.mean(), yerr=ys.std(ddof=1) if ys.size > 1 else 0, fmt="o",
                                color=colors[kind], capsize=3, label=kind if i == 0 else None)
                    means.append((xs.mean(), ys.mean()))
            pts = sorted(means)
            front, best = [], -math.inf if task.higher_is_better else math.inf
            for x, y in pts:
                if (y > best) if task.higher_is_better else (y < best):
                    front.append((x, y))
                    best = y
            if front:
                ax.plot(*zip(*front), "k--", lw=0.8, label="Pareto front")
            xs_all = [r[col] for r in rs]
            if max(xs_all) > 3 * min(xs_all):  # log axis only where counts span a range
                ax.set_xscale("log")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useOffset=False)
            if not task.higher_is_better:
                ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(f"test {task.metric_name}")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{name}: test {task.metric_name} ({'higher' if task.higher_is_better else 'lower'} "
                     "is better), mean +- std over seeds")
        path = out / f"pareto_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
