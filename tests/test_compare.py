"""benchmarks.compare: determinism, no peeking at the test split, statistics, the report and the CLI."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from benchmarks.compare import Task, register_task, run_task
from benchmarks.compare import protocol
from benchmarks.compare.__main__ import main
from benchmarks.compare.report import markdown
from benchmarks.compare.stats import paired

N = 80


def _load(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (N, 2)).astype(np.float32)
    return x, (np.sin(3 * x[:, :1]) + x[:, 1:] ** 2).astype(np.float32)


# One kind keeps this file fast (each kind compiles its own training loop); the two trials differ in lr and
# weight decay, so selection on validation has a real choice to make.
TINY = Task("tiny_test_task", _load, "regression", kinds=("mlp",), budgets=(400,), epochs=3, batch_size=16)
KEYS = ("kind", "seed", "widths", "params", "flops", "trial", "hyper", "val_loss", "epoch")


@pytest.fixture(scope="module", autouse=True)
def fast_prng():
    """The "rbg" generator compiles ~4x faster than threefry on CPU (as in the CLI); restored afterwards."""
    old = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    yield
    jax.config.update("jax_default_prng_impl", old)


@pytest.fixture(scope="module")
def runs(fast_prng):
    return run_task(TINY, seeds=(0, 1, 2), num_trials=2)


def test_same_seed_same_numbers(runs):
    rows, trials = runs
    again, trials2 = run_task(TINY, seeds=(0, 1, 2), num_trials=2)
    assert [{k: r[k] for k in KEYS + ("value",)} for r in rows] == [{k: r[k] for k in KEYS + ("value",)} for r in again]
    assert [t["val_loss"] for t in trials] == [t["val_loss"] for t in trials2]
    assert all(abs(r["params"] / 400 - 1) <= 0.05 for r in rows)
    assert len({r["trial"] for r in trials}) == 2
    # equal tuning effort: every kind gets the same number of trials and the same lr / weight-decay draws
    by_kind = [protocol.trials(TINY, k, 3) for k in ("mlp", "kan", "grkan")]
    assert {len(t) for t in by_kind} == {3}
    assert all([(t["lr"], t["weight_decay"]) for t in ts] == [(t["lr"], t["weight_decay"]) for t in by_kind[0]]
               for ts in by_kind)


def test_test_split_is_never_used_for_selection(runs):
    rows, trials = runs

    def shuffled(seed):
        x, y = _load(seed)
        te = protocol.split(N, seed, TINY.fractions)[2]
        y = y.copy()
        y[te] = np.random.default_rng(99).permutation(y[te]) * 3.0 + 1.0
        return x, y

    rows2, trials2 = run_task(dataclasses.replace(TINY, load=shuffled), seeds=(0, 1, 2), num_trials=2)
    assert [{k: r[k] for k in KEYS} for r in rows] == [{k: r[k] for k in KEYS} for r in rows2]
    assert [t["val_loss"] for t in trials] == [t["val_loss"] for t in trials2]
    assert all(r["value"] != r2["value"] for r, r2 in zip(rows, rows2))  # only the test numbers move


def test_split_fixed_and_disjoint():
    a = protocol.split(100, 3, (0.6, 0.2, 0.2), labels=np.arange(100) % 3)
    b = protocol.split(100, 3, (0.6, 0.2, 0.2), labels=np.arange(100) % 3)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(100))


def test_paired_statistics():
    win = paired([0.9, 0.91, 0.92, 0.93, 0.94], [0.8, 0.8, 0.81, 0.8, 0.82], higher_is_better=True)
    assert win.verdict == "better" and win.t_ci[0] > 0 and win.boot_ci[0] > 0
    rmse = paired([1.0, 1.1, 1.2], [0.5, 0.5, 0.6], higher_is_better=False)  # higher RMSE is worse
    assert rmse.mean < 0
    noisy = paired([1.0, 0.0, 1.0], [0.5, 0.5, 0.5], higher_is_better=True)
    assert noisy.verdict == "no difference shown"


def test_report_and_infeasible_budget(runs):
    rows, _ = runs
    bad, _ = run_task(TINY, seeds=(0,), num_trials=1, kinds=("mlp", "relukan"), budgets=(3,))  # fails before training
    assert all(math.isnan(r["value"]) and "impossible" in r["note"] for r in bad)
    better = [dict(r, kind="kan", value=r["value"] * 0.5) for r in rows]  # a kind with half the RMSE
    table = markdown(rows + better + bad, {TINY.name: TINY})
    assert "| mlp | 2-" in table and "infeasible" in table and "diff vs mlp" in table
    kan_line = next(line for line in table.splitlines() if line.startswith("| kan |"))
    assert kan_line.endswith("| better |") and f"| {rows[0]['params']:,} |" in kan_line


def test_task_validation():
    with pytest.raises(ValueError, match="unknown model kind"):
        Task("x", _load, "regression", kinds=("mlp", "transformer"))
    with pytest.raises(ValueError, match="fractions"):
        Task("x", _load, "regression", fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="needs the 'mlp' baseline"):
        run_task(TINY, kinds=("kan",))


def test_cli_writes_outputs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAN_COMPILE_CACHE", "off")  # leave JAX's global cache setting alone
    register_task(dataclasses.replace(TINY, kinds=("mlp",)), replace=True)
    assert main(["--tasks", TINY.name, "--kinds", "mlp", "--seeds", "3", "--trials", "1", "--out", str(tmp_path),
                 "--quiet"]) == 0
    for name in ("runs.csv", "trials.csv", "results.md", f"pareto_{TINY.name}.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "mean +- std" in capsys.readouterr().out
