"""Saving and loading models with ``eqx.tree_serialise_leaves``.

The file holds one JSON header line (class name, widths, the pytree structure as text) and then the
leaves. ``load`` needs a skeleton model of the same structure (build it as you built the original,
e.g. ``KAN([2, 5, 1], key=...)``; for a pruned model, prune the skeleton the same way or use
``widths`` from :func:`read_header`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax


def _structure(model: Any) -> str:
    return str(jax.tree_util.tree_structure(eqx.filter(model, eqx.is_array)))


def save(path: str | Path, model: Any) -> None:
    """Write ``model`` to ``path``."""
    header = {"class": type(model).__name__, "widths": list(getattr(model, "widths", []) or []),
              "structure": _structure(model)}
    with open(path, "wb") as f:
        f.write((json.dumps(header) + "\n").encode())
        eqx.tree_serialise_leaves(f, model)


def read_header(path: str | Path) -> dict:
    """The JSON header of a saved model (class name, widths, structure)."""
    with open(path, "rb") as f:
        return json.loads(f.readline().decode())


def load(path: str | Path, like: Any) -> Any:
    """Read a model saved by :func:`save` into the skeleton ``like``; raises ValueError if the
    skeleton's structure differs from the saved one."""
    with open(path, "rb") as f:
        header = json.loads(f.readline().decode())
        if header["structure"] != _structure(like):
            raise ValueError(f"load: skeleton does not match the saved {header['class']} with widths "
                             f"{header['widths']}; build the skeleton with the same widths and bases")
        return eqx.tree_deserialise_leaves(f, like)
