"""The hellokan demo end to end (about half a minute): the issue's acceptance figures."""

import sympy as sp

from kan.demo import run


def test_hellokan_demo_reaches_target_rmse_and_exact_formula():
    result = run(progress=False, verbose=False, compile_cache=False)  # no persistent state from a test
    stages = dict(result.stages)
    assert result.model.widths == (2, 1, 1)
    assert stages["refine G=10 + retrain"] <= 1e-3
    x1, x2 = result.formula.variables
    assert sp.simplify(result.formula.expr - sp.exp(sp.sin(sp.pi * x1) + x2**2)) == 0
    assert stages["formula"] <= 1e-4
