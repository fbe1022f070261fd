"""Start-up: the import stages a fresh process pays (benchmarks.startup) and the ml_dtypes pin."""

import importlib.metadata
import re
from pathlib import Path

import pytest

from benchmarks.startup import STAGES, measure, table


def test_startup_rounds_time_every_stage_in_a_fresh_process(tmp_path):
    results = measure(1, alt_path=str(tmp_path), label="empty")  # an empty folder shadows nothing
    assert set(results) == {"installed", "empty"}
    for (run,) in results.values():
        assert list(run["seconds"]) == list(STAGES)
        assert all(s > 0 for s in run["seconds"].values())
        assert run["versions"]["numpy"] == importlib.metadata.version("numpy")
    text = table(results)
    assert "empty/installed" in text and text.splitlines()[-1].startswith("total")
    with pytest.raises(ValueError, match="not a folder"):
        measure(1, alt_path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        measure(0)


def test_installed_ml_dtypes_is_below_the_slow_import_release():
    """pyproject pins ml_dtypes < 0.7 (0.7.0's import took 0.5-0.8 s of every process); a fresh install
    without the pin takes 0.7.0."""
    assert '"ml_dtypes<0.7"' in (Path(__file__).parents[1] / "pyproject.toml").read_text()
    major, minor = (int(p) for p in re.match(r"(\d+)\.(\d+)", importlib.metadata.version("ml_dtypes")).groups())
    assert (major, minor) < (0, 7)
