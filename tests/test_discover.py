"""symbolic.discover: formulas from data alone, the choice rule, the budget, the CSV command."""

import time

import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

from symbolic.discovery import SymbolicRegressor, discover
from symbolic.discovery.pareto import Candidate, choose, complexity, pareto_front
from symbolic.discovery.surrogate import Surrogate, hypothesis_tests
from symbolic.discovery.table import read_csv


def _data(fn, ranges, n=500, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = np.array(ranges, float).T
    x = lo + (hi - lo) * rng.random((n, len(ranges)))
    return x, fn(*x.T)


def _same(result, truth: str) -> bool:
    names = {v.name: v for v in result.variables}
    return sp.simplify(result.expr - sp.sympify(truth, locals=names)) == 0


@pytest.mark.parametrize("truth, fn, ranges", [
    ("x_1*x_2", lambda a, b: a * b, [(-1, 1), (-1, 1)]),
    ("x_1/x_2", lambda a, b: a / b, [(-1, 1), (0.5, 2)]),
    ("x_1**2 + sin(x_2)", lambda a, b: a**2 + np.sin(b), [(-1, 1), (-2, 2)]),
    ("exp(-x_1)*cos(2*x_2)", lambda a, b: np.exp(-a) * np.cos(2 * b), [(0, 1.5), (-1, 1)]),
])
def test_discover_recovers_laws_from_data_alone(truth, fn, ranges):
    x, y = _data(fn, ranges, n=300)
    result = discover(x, y.astype(np.float32), time_budget=20.0, compile_cache=False)
    assert _same(result, truth), result.table()
    assert result.best.test_rmse < 1e-5
    assert result.best in result.front and result.seconds <= 22.0


def test_discover_keeps_to_its_budget():
    x, y = _data(lambda a, b, c: c * np.sin(a + b) + np.exp(a * c), [(-1, 1), (-1, 1), (0.5, 2)], n=800)
    start = time.perf_counter()
    result = discover(x, y, time_budget=5.0, compile_cache=False)
    elapsed = time.perf_counter() - start
    assert elapsed <= 5.5, (elapsed, result.stages)
    assert np.isfinite(result.best.val_rmse)


def test_noisy_constant_is_not_snapped_unless_the_error_allows():
    x, y = _data(lambda a, b: 0.47 * a**2 + np.sin(b), [(-1, 1), (-2, 2)], n=600)
    y = y + 1e-3 * np.random.default_rng(1).standard_normal(y.shape)
    result = discover(x, y, time_budget=20.0, compile_cache=False)
    x1 = result.variables[0]
    coeff = float(sp.expand(result.expr).coeff(x1**2))
    assert abs(coeff - 0.47) < 0.01, result.expr  # 1/2 would cost 30x the noise on validation


def test_several_outputs_give_one_formula_each():
    x, _ = _data(lambda a, b: a, [(0.5, 2), (0.5, 2)], n=400)
    y = np.stack([x[:, 0] * x[:, 1], x[:, 0] + 3 * x[:, 1]], axis=1)
    reg = SymbolicRegressor(time_budget=16.0, variables=["a", "b"]).fit(x, y)
    a, b = sp.symbols("a b", positive=True, real=True)
    assert [sp.simplify(f - t) for f, t in zip(reg.formula_, [a * b, a + 3 * b])] == [0, 0]
    assert reg.predict(x).shape == (400, 2)
    np.testing.assert_allclose(reg.predict(x), y, rtol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        reg.predict(x[:, :1])


def test_bad_input_is_refused_by_name():
    x, y = _data(lambda a, b: a + b, [(0, 1), (0, 1)], n=50)
    x[[3, 7]] = np.nan
    with pytest.raises(ValueError, match=r"2 rows with NaN.*3, 7"):
        discover(x, y)
    with pytest.raises(ValueError, match="rows of x"):
        discover(np.ones((50, 2)), np.ones(49))
    with pytest.raises(ValueError, match="time_budget"):
        discover(np.random.rand(50, 2), np.random.rand(50), time_budget=0)
    with pytest.raises(ValueError, match="distinct"):
        discover(np.random.rand(50, 2), np.random.rand(50), variables=["a", "a"])


def test_choice_rule_takes_the_simplest_formula_within_tolerance():
    a = sp.Symbol("a")
    cands = [Candidate(a, (a,), 1.0e-3, "s"), Candidate(a + sp.sin(a), (a,), 1.05e-7, "s"),
             Candidate(a + sp.sin(a) + sp.Float(0.1) * a**3, (a,), 1.0e-7, "s"),
             Candidate(a**2 + sp.sin(a) + sp.cos(a), (a,), 2.0e-7, "s")]
    front = pareto_front(cands)
    assert [c.val_rmse for c in front] == [1.0e-3, 1.05e-7, 1.0e-7]  # the dominated cos formula is off
    assert choose(front, scale=1e-3).expr == a + sp.sin(a)
    assert choose(front, scale=1e-3, tolerance=0.0).val_rmse == 1.0e-7
    assert choose(front, scale=1.0, tolerance=0.0).expr == a + sp.sin(a)  # float32 floor: 1e-6 * scale
    assert choose(front, scale=1e-3, noise=0.01).expr == a  # within the known noise: simplest of all
    assert complexity(sp.sqrt(2) / (2 * sp.sqrt(sp.pi)) * a) < complexity(sp.Float(0.3989) * a) + 1


class _Analytic:
    """Stands in for a fitted KAN: ``net(z (n, 3)) -> (n, 1)``."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, z):
        return self.fn(z[:, 0], z[:, 1], z[:, 2])[:, None]


@pytest.mark.parametrize("fn, combo, additive, multiplicative", [
    (lambda a, b, c: jnp.sin(a + b) * c, (0, 1, "+"), None, ((2,), (0, 1))),
    (lambda a, b, c: jnp.exp(a - c) + b**2, (0, 2, "-"), ((1,), (0, 2)), None),
])
def test_hypothesis_tests_find_the_planted_structure(fn, combo, additive, multiplicative):
    s = Surrogate(_Analytic(fn), np.zeros(3), np.ones(3), 0.0, 1.0, 0.0, 3)
    x = np.random.default_rng(0).uniform(0.3, 1.0, (64, 3))
    y = s(x)
    h = hypothesis_tests(s, x, y)
    best = min(h.combination, key=h.combination.get)
    assert best == combo and h.combination[best] < 1e-6
    if additive:
        assert min(h.additive, key=h.additive.get) == additive and h.additive[additive] < 1e-6
    if multiplicative:
        assert h.multiplicative[multiplicative] < 1e-6
    assert min(h.additive.values()) > 1e-3 or additive


def test_structure_route_recovers_a_law_no_sum_of_features_writes():
    x, y = _data(lambda a, b, c: c * np.sin(a + b), [(-1, 1), (-1, 1), (0.5, 2)], n=1000)
    result = discover(x, y, time_budget=60.0, compile_cache=False)
    assert _same(result, "x_3*sin(x_1 + x_2)"), result.table()
    assert "surrogate" in result.stages and result.best.network is not None


def test_portfolio_snaps_a_generic_kan_where_no_other_route_applies(tmp_path):
    """cos(a + b^2): not separable, no two-variable combination, not a sparse sum of library features;
    the [d, 1, 1] KAN of the portfolio holds it, and its snapped network is drawn."""
    from symbolic.discovery.budget import Budget
    from symbolic.discovery.portfolio import SHAPES, PortfolioNetwork, portfolio_candidates
    from symbolic.discovery.regression import snap_candidate
    from symbolic.discovery.report import plot_result

    x, y = _data(lambda a, b: np.cos(a + b**2), [(-1, 1), (-1, 1)], n=500)
    a, b = sp.symbols("a b", real=True)
    train, val = (x[:300], y[:300]), (x[300:], y[300:])
    found = portfolio_candidates(train, val, (a, b), Budget(120.0), shapes=SHAPES[:1])
    assert len(found) == 1 and found[0].val_rmse < 1e-6, [(c.expr, c.val_rmse) for c in found]
    snapped = snap_candidate(found[0], train, val, Budget(30.0), seconds=10.0)
    assert sp.simplify(snapped.expr - sp.cos(a + b**2)) == 0, snapped.expr
    network = found[0].network
    assert isinstance(network, PortfolioNetwork)
    assert all(bool(np.all(np.asarray(l.symbolic.active)[np.asarray(l.edge_mask) > 0] > 0)) for l in network.net.layers)

    class Result:  # the parts of a DiscoveryResult the picture reads
        best, front, variables, threshold = snapped, [snapped], (a, b), 1e-6
        expr = snapped.expr

        def predict(self, z):
            return snapped.evaluate(z)

    snapped.network = network
    written = plot_result(Result(), x, y, tmp_path / "f.png")
    assert written[1].endswith("f_network.png") and (tmp_path / "f_network.png").stat().st_size > 5_000


def test_read_csv_names_each_problem(tmp_path):
    good = tmp_path / "d.csv"
    good.write_text("a,b,y\n1,2,3\n2,3,5\n")
    x, y, inputs, targets = read_csv(good, "y")
    assert inputs == ["a", "b"] and targets == ["y"] and x.shape == (2, 2) and y[:, 0].tolist() == [3, 5]
    with pytest.raises(ValueError, match=r"no column named 'z'.*\['a', 'b', 'y'\]"):
        read_csv(good, "z")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,3\n1,,3\nnan,2,2\n4,5,6\n")
    with pytest.raises(ValueError, match=r"2 of 4 rows .*rows 3, 4"):
        read_csv(bad, "y")
    text = tmp_path / "text.csv"
    text.write_text("a,b,y\n1,2,3\n1,abc,3\n")
    with pytest.raises(ValueError, match=r"row 3, column 'b': 'abc' is not a number"):
        read_csv(text, "y")
    with pytest.raises(FileNotFoundError):
        read_csv(tmp_path / "none.csv", "y")


@pytest.fixture
def cli_compile_cache(tmp_path, monkeypatch):
    """The CLI turns on the persistent caches for its process (:func:`kan.compile_cache.enable_compile_cache`):
    here in a folder of the test's, with the session's state back afterwards for the rest of this worker
    (no stored exports of ``kan.trace_cache`` in later tests)."""
    import jax

    import kan.compile_cache as compile_cache

    monkeypatch.setenv("KAN_COMPILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compile_cache, "_enabled", compile_cache._enabled)  # restored at teardown
    previous = jax.config.jax_compilation_cache_dir
    yield tmp_path / "cache"
    jax.config.update("jax_compilation_cache_dir", previous)


def test_discover_command_prints_the_front_and_writes_the_picture(tmp_path, capsys, cli_compile_cache):
    from kan.__main__ import main

    x, y = _data(lambda m, v: m * v**2 / 2, [(1, 2), (1, 2)], n=300)
    path = tmp_path / "energy.csv"
    path.write_text("mass,speed,E\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, y)))
    out = tmp_path / "f.png"
    assert main(["discover", str(path), "--target", "E", "--time-budget", "10", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "chosen: E = mass*speed**2/2" in text and "Pareto front" in text
    assert out.stat().st_size > 10_000
    assert main(["discover", str(path), "--target", "energy"]) == 2
    assert "no column named 'energy'" in capsys.readouterr().err
