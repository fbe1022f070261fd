"""Small writers shared by the benchmarks' result files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence


def write_summary_csv(path: Path, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """One row per dict, the columns ``keys``; floats written with 4 decimals."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for row in rows:
            writer.writerow([f"{row[k]:.4f}" if isinstance(row[k], float) else row[k] for k in keys])
