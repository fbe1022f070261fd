"""Formula-level clean-up: dropping redundant additive terms, time limits on constant snapping and
formula extraction, and the Feynman benchmark's stop once a formula is data-exact."""

import time
from types import SimpleNamespace

import numpy as np
import sympy as sp

import symbolic
from benchmarks.formulas import feynman

A, B = sp.symbols("a b", real=True)


def _data(n: int, seed: int, fn):
    x = np.random.default_rng(seed).uniform(0.2, 2.0, (n, 2))
    return x, fn(x[:, 0], x[:, 1])


def test_drop_terms_removes_a_redundant_term_and_keeps_the_needed_ones():
    fn = lambda a, b: 2.0 * np.sin(a) + 0.3 * b
    train, val = _data(300, 0, fn), _data(300, 1, fn)
    # a spurious cubic beside the right terms; refitting alone leaves its coefficient at ~1e-9, not 0
    expr = sp.Float(2.01) * sp.sin(sp.Float(0.99) * A) + sp.Float(0.31) * B + sp.Float(0.003) * A**3
    dropped = symbolic.drop_terms(expr, (A, B), train, val)
    assert len(symbolic.additive_terms(dropped)) == 2
    assert not dropped.has(A**3)
    assert dropped.has(sp.sin) and dropped.has(B)  # 0.3 b is small but needed: kept
    pred = sp.lambdify((A, B), dropped, "numpy")(*val[0].T)
    assert np.sqrt(np.mean((pred - val[1]) ** 2)) < 1e-8


def test_drop_terms_lets_the_refit_leave_a_poor_minimum():
    # The whole-model formula of a [2, 2, 1] network trained on I.37.4 (1 + a + 2 sqrt(a) cos b),
    # constants as float32 values: cos(u)**2 is redundant beside cos(eps*sin(v)) (~ 1 - c*sin(b)**2);
    # with both, the refit stops at RMSE ~4e-4 and snapping takes 1.995 for 5*sqrt(2)/(2*sqrt(pi))
    eq = next(e for e in feynman.EQUATIONS if e.name == "I.37.4")
    a, b = feynman._symbols(eq)
    f = [sp.Float(v, 17) for v in (-177.15613341331482, -6.4093337059021, -0.7622313741594553,
                                   -0.6179758757352829, -0.1501547903753817, -0.023015154438326135,
                                   0.03136352472938597, 0.7319932579994202, 1.0287561789155006,
                                   1.410441279411316, 1.5651034731417894, 2.537802092730999, 5.773270606994629,
                                   180.4528045654297)]
    u, root = f[7] * b + f[1], sp.sqrt(1.0 * a + f[5])
    expr = (f[0] + f[10] * sp.cos(u) ** 2 + f[11] * root * sp.cos(u) + f[13] * sp.cos(f[4] + f[6] * sp.sin(f[9] * b + f[12]))
            + f[2] * sp.cos(u) + f[3] * root + f[8] * a)
    train, val = feynman.make_data(eq, 600, 0), feynman.make_data(eq, 600, 1)
    train, val = (train[0], train[1][:, 0]), (val[0], val[1][:, 0])
    assert symbolic.refit_rmse(expr, (a, b), train, val) > 1e-4  # the poor minimum
    dropped = symbolic.drop_terms(expr, (a, b), train, val)
    assert len(symbolic.additive_terms(dropped)) < len(symbolic.additive_terms(expr))
    snapped = symbolic.snap_constants(dropped, (a, b), train, val)
    assert snapped.rmse_after < 1e-6
    assert sp.simplify(sp.nsimplify(snapped.expr) - (1 + a + 2 * sp.sqrt(a) * sp.cos(b))) == 0


def test_drop_terms_and_snapping_keep_to_their_time_limit():
    fn = lambda a, b: 1.5 * np.exp(-a) + np.cos(2.0 * b)
    train = _data(300, 0, fn)
    expr = sp.Float(1.49) * sp.exp(sp.Float(-1.01) * A) + sp.Float(0.99) * sp.cos(sp.Float(2.01) * B)
    assert symbolic.snap_constants(expr, (A, B), train).snapped  # 1.5, -1, 1, 2 snap without a limit
    limited = symbolic.snap_constants(expr, (A, B), train, max_seconds=0.0)
    assert limited.snapped == [] and limited.rmse_after < 1e-6  # out of time: refitted, not snapped
    many = sum(sp.Float(0.01 * (k + 1)) * sp.cos(sp.Float(0.5 + 0.1 * k) * B) for k in range(12))
    start = time.perf_counter()
    symbolic.drop_terms(expr + many, (A, B), train, max_seconds=0.5)
    assert time.perf_counter() - start < 0.5 + 5.0  # the first refit and the trial running at the limit


def test_feynman_stops_once_a_formula_is_data_exact(monkeypatch):
    eq = next(e for e in feynman.EQUATIONS if e.name == "I.12.1")
    calls = []

    class _Formula:
        def __init__(self, rmse):
            a, b = feynman._symbols(eq)
            self.expr, self.rmse, self.network_rmse = a * b, rmse, rmse

        def evaluate_numpy(self, x):
            return x[:, 0] * x[:, 1]

    def fake_pipeline(model, train, val, syms, steps, release=False):
        calls.append(model)
        return model, [], _Formula(1e-9)

    first, second = SimpleNamespace(widths=(2, 1, 1)), SimpleNamespace(widths=(2, 1, 1))
    monkeypatch.setattr(feynman, "train_networks", lambda *a, **k: [first, second])
    monkeypatch.setattr(feynman, "_pipeline", fake_pipeline)
    monkeypatch.setattr(feynman.kan, "prune", lambda model, x: model)
    monkeypatch.setattr(feynman, "_has_fixed_edges", lambda model: True)
    row = feynman.run_equation(eq)
    assert calls == [first] and row["exact"]
    calls.clear()
    monkeypatch.setattr(feynman, "_pipeline", lambda model, *a, **k: (calls.append(model), (model, [], _Formula(1e-2)))[1])
    feynman.run_equation(eq)
    assert calls == [first, first, second, second]  # not exact: every network, both ways
