"""Snapping one layer at a time with a refit after each (the loop pykan's tutorials run by hand).

In a KAN, how a function is split among consecutive edges is not unique: in a chain of single nodes
``g(h(z))`` only the composition is fixed by data, so a hidden edge ``h`` can fit every library
candidate only roughly (R^2 ~0.99 for ``1/(1 + ab)`` in a [2, 1, 1, 1] KAN) until the edges before
it are fixed. Snapping layer 0, refitting, then snapping layer 1, ..., lets each later layer absorb
what the snapped ones fixed and pins the later edges to functions that do fit.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from jaxtyping import Array, Float

from .library import Library
from .snap import SnapRecord, auto_symbolic


def snap_layerwise(
    model: Any,
    data: tuple[Float[Array, "n in"], Float[Array, "n out"]],
    library: Library | Sequence[str] | None = None,
    *,
    refit_steps: int = 10,
    optimizer: str = "lbfgs",
    **snap_options: Any,
) -> tuple[Any, list[SnapRecord]]:
    """For each layer in order: :func:`symbolic.auto_symbolic` on that layer, then ``refit_steps``
    steps of :func:`kan.fit` (grids frozen) on ``data = (x (n, in), y (n, out))``. ``snap_options``
    go to ``auto_symbolic`` (``complexity_weight``, ``min_r2``, ...). Returns the model and the
    records of every layer, in order."""
    from kan.train.fit import fit  # the symbolic package does not need the trainer unless asked

    if refit_steps < 0:
        raise ValueError(f"snap_layerwise: refit_steps must be >= 0, got {refit_steps}")
    if "layers" in snap_options:
        raise TypeError("snap_layerwise: snaps every layer in order; use auto_symbolic(layers=...) for a subset")
    records: list[SnapRecord] = []
    for layer in range(len(model.layers)):
        model, recs = auto_symbolic(model, data[0], library, layers=[layer], **snap_options)
        records += recs
        if refit_steps:
            model, _ = fit(model, data, steps=refit_steps, optimizer=optimizer, update_grid=False, progress=False)
    return model, records
