"""Reading a CSV file (header row, numeric cells) into ``x``, ``y`` and variable names for ``discover``."""

from __future__ import annotations

import csv
import os
from typing import Optional, Sequence

import numpy as np


def read_csv(path: "str | os.PathLike", target: "str | Sequence[str]",
             inputs: Optional[Sequence[str]] = None) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(x (n, d), y (n, m), input names, target names)`` from the CSV at ``path``.

    target: a column name, a comma-separated list or a sequence of names; inputs: the input columns
    (default: every other column). Errors name the problem: a missing file or column (with the columns
    there are), a non-numeric cell (row, column and text), rows with empty or NaN cells (how many and
    which rows; rows are numbered as in a spreadsheet, the header being row 1)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such CSV file: {path}")
    targets = [t.strip() for t in target.split(",")] if isinstance(target, str) else [str(t) for t in target]
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: the file is empty (expected a header row, then numeric rows)")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: repeated column names in the header {header}")
    missing = [t for t in targets if t not in header]
    if missing:
        raise ValueError(f"{path}: no column named {', '.join(map(repr, missing))}; the columns are {header}")
    inputs = [h for h in header if h not in targets] if inputs is None else list(inputs)
    missing = [c for c in inputs if c not in header]
    if missing:
        raise ValueError(f"{path}: no input column named {', '.join(map(repr, missing))}; the columns are {header}")
    if not inputs:
        raise ValueError(f"{path}: no input columns besides the target {targets}")
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    values = np.empty((len(body), len(header)))
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {r + 2} has {len(row)} cells, the header has {len(header)}")
        for c, cell in enumerate(row):
            text = cell.strip()
            if text == "" or text.lower() in ("nan", "na", "n/a"):
                values[r, c] = np.nan
                continue
            try:
                values[r, c] = float(text)
            except ValueError:
                raise ValueError(f"{path}: row {r + 2}, column {header[c]!r}: {text!r} is not a number") from None
    cols = [header.index(c) for c in inputs + targets]
    bad = np.flatnonzero(~np.all(np.isfinite(values[:, cols]), axis=1))
    if bad.size:
        where = ", ".join(str(b + 2) for b in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ValueError(f"{path}: {bad.size} of {len(body)} rows have empty, NaN or infinite cells "
                         f"(rows {where}); remove or fill them")
    x = values[:, [header.index(c) for c in inputs]]
    y = values[:, [header.index(t) for t in targets]]
    return x, y, inputs, targets
