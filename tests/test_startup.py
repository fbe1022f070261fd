"""Start-up: the import stages a fresh process pays (benchmarks.process.startup) and the ml_dtypes pin."""

import importlib.metadata
import re
from pathlib import Path

import pytest

from benchmarks.process.startup import STAGES, measure, table


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


# A stand-in for the demo: counts the runs its cache folder has seen (a marker file per run).
_COUNTING = ("-c", "import os, pathlib\n"
                   "d = pathlib.Path(os.environ['KAN_COMPILE_CACHE']); d.mkdir(parents=True, exist_ok=True)\n"
                   "n = len(list(d.iterdir())); (d / f'run{n}').touch()\n"
                   "print('formula: fresh' if n == 0 else f'seen {n}', os.environ.get('PYTHONPATH', ''))")


def test_demo_timing_gives_cold_runs_empty_caches_and_warm_runs_a_filled_one(tmp_path):
    from benchmarks.process.demo import Contender, measure, table

    this, other = Contender("this", tmp_path), Contender("against", tmp_path, (str(tmp_path),))
    measure([this, other], cold=2, warm=3, command=_COUNTING, expect="formula: fresh")
    for c in (this, other):
        assert len(c.cold) == 2 and len(c.warm) == 3 and all(s > 0 for s in c.cold + c.warm)
        assert c.recovered == [True, True, False, False, False]  # cold: empty folder; warm: filled first
    assert other.env(tmp_path)["PYTHONPATH"] == str(tmp_path) and "PYTHONPATH" not in this.env(tmp_path)
    text = table([this, other]).splitlines()
    assert text[1].startswith("this") and "2/5" in text[1] and text[1].split()[-2:] == ["1.00", "1.00"]
    with pytest.raises(ValueError, match="some runs"):
        measure([this], cold=0, warm=0)
    with pytest.raises(RuntimeError, match="exited 3"):
        measure([Contender("bad", tmp_path)], cold=1, warm=0, command=("-c", "raise SystemExit(3)"))
