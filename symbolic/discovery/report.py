"""The picture of a discovery result: formula vs data, the Pareto front and, where the chosen formula
came through a network, that network."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import sympy as sp

from .api import DiscoveryResult
from .portfolio import PortfolioNetwork


def plot_result(result: DiscoveryResult, x: np.ndarray, y: np.ndarray, path: "str | os.PathLike",
                target: str = "y", dpi: int = 110) -> list[str]:
    """Write ``path`` (PNG): the chosen formula against the data (``x (n, d)``, ``y (n,)``) and the
    front (complexity vs validation RMSE, chosen formula marked). If the formula came through a
    network, ``<path stem>_network.png`` shows it too (``kan.plot``): the portfolio's snapped KAN (edges
    labelled with their functions) or the surrogate KAN of the structure route. Returns the paths written."""
    from matplotlib.figure import Figure

    pred = result.predict(x)
    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    lo, hi = float(np.min(y)), float(np.max(y))
    ax1.plot([lo, hi], [lo, hi], color="0.6", lw=1)
    ax1.scatter(y, pred, s=6, alpha=0.6)
    ax1.set_xlabel(f"{target} (data)")
    ax1.set_ylabel("formula")
    tex = sp.latex(result.expr, mul_symbol="dot")
    ax1.set_title(f"${tex}$" if len(tex) < 120 else str(result.expr)[:100], fontsize=9)
    comps = [c.complexity for c in result.front]
    errs = [max(c.val_rmse, 1e-16) for c in result.front]
    ax2.semilogy(comps, errs, "o-", ms=4)
    ax2.semilogy([result.best.complexity], [max(result.best.val_rmse, 1e-16)], "r*", ms=14, label="chosen")
    ax2.axhline(max(result.threshold, 1e-16), color="0.6", ls="--", lw=1, label="choice threshold")
    ax2.set_xlabel("complexity (expression nodes)")
    ax2.set_ylabel("validation RMSE")
    ax2.set_title("Pareto front", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    written = [str(path)]
    network = result.best.network
    if network is not None:
        import kan

        stem, _ = os.path.splitext(str(path))
        names = [str(v) for v in result.variables]
        if isinstance(network, PortfolioNetwork):  # the snapped KAN the formula was read from
            z, title = network.inputs(x), f"snapped KAN {network.shape} (inputs mapped to [-1, 1])"
        else:  # the surrogate whose structure tests proposed the formula
            width = network.net.widths[0]
            names += ["(pad)"] * (width - len(names))
            z = (network.pad(np.asarray(x, np.float64)) - network.x_mean) / network.x_std
            title = "surrogate KAN (standardised inputs)"
        kan.plot(network.net, z.astype(np.float32), f"{stem}_network.png", in_vars=names, out_vars=[target],
                 title=title)
        written.append(f"{stem}_network.png")
    return written
