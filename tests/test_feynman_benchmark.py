"""The Feynman benchmark's equation table and exactness check (the benchmark itself is not run here)."""

import numpy as np
import sympy as sp

from benchmarks.formulas.feynman import EQUATIONS, _symbols, is_exact, make_data


def test_equation_table_is_well_formed():
    assert len(EQUATIONS) >= 20
    assert len({eq.name for eq in EQUATIONS}) == len(EQUATIONS)
    for eq in EQUATIONS:
        assert 2 <= len(eq.ranges) <= 6 and eq.widths[0] == len(eq.ranges), eq.name
        x, y = make_data(eq, 64, 0)
        lo, hi = np.array(list(eq.ranges.values()), float).T
        assert np.all((x >= lo - 1e-6) & (x <= hi + 1e-6)), eq.name
        assert y.shape == (64, 1) and np.all(np.isfinite(y)), eq.name


def test_exactness_check_accepts_equivalent_forms_and_rejects_look_alikes():
    a, b = sp.symbols("a b", real=True)
    x = np.random.default_rng(0).uniform(-0.9, 0.9, (100, 2))
    truth = (a + b) / (1 + a * b)
    assert is_exact(sp.tanh(sp.atanh(a) + sp.atanh(b)), truth, x, (a, b))
    assert is_exact(sp.Rational(1, 2) - sp.tanh(sp.log(a + 2) / 2 + sp.log(b + 2) / 2) / 2,
                    1 / (1 + (a + 2) * (b + 2)), x, (a, b))
    assert not is_exact(sp.tanh(4 * (a + b) / 3), truth, x, (a, b))
    assert not is_exact(truth + sp.Float(1e-3) * a, truth, x, (a, b))


def test_symbols_are_positive_on_positive_ranges():
    eq = next(e for e in EQUATIONS if e.name == "I.12.1")
    assert all(s.is_positive for s in _symbols(eq))

