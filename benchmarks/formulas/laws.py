"""Made-up laws beside the Feynman set, so that the recovery score is not one collection's.

Written down before ``symbolic.discover`` existed and never changed to suit it: 2-5 variables, mixed
operators, four that no sum or product of one-variable functions can write (``x3 sin(x1 + x2)``,
``log(1 + x1 x2)``, ``tanh(x1 + 2 x2)``, ``exp(x1 x2) / (1 + x3)``), ranges that cross zero.
"""

from __future__ import annotations

from .feynman import Equation

_U = (-1.0, 1.0)

LAWS: list[Equation] = [
    Equation("M1", "x1**2 + sin(x2)", {"x1": _U, "x2": (-2, 2)}, ()),
    Equation("M2", "exp(-x1)*cos(2*x2)", {"x1": (0, 1.5), "x2": _U}, ()),
    Equation("M3", "x1*x2 + x3", {"x1": _U, "x2": _U, "x3": _U}, ()),
    Equation("M4", "x3*sin(x1 + x2)", {"x1": _U, "x2": _U, "x3": (0.5, 2)}, ()),
    Equation("M5", "x1/(1 + x2**2)", {"x1": (-2, 2), "x2": (-2, 2)}, ()),
    Equation("M6", "log(1 + x1*x2)", {"x1": (0, 2), "x2": (0, 2)}, ()),
    Equation("M7", "(x1 + x2**2)/x3", {"x1": _U, "x2": _U, "x3": (1, 2)}, ()),
    Equation("M8", "x1*x2*x3 - x4", {"x1": _U, "x2": _U, "x3": _U, "x4": _U}, ()),
    Equation("M9", "x2**2*cos(x1) + x3/x4", {"x1": (-2, 2), "x2": _U, "x3": _U, "x4": (1, 2)}, ()),
    Equation("M10", "tanh(x1 + 2*x2)", {"x1": _U, "x2": _U}, ()),
    Equation("M11", "x1**3 - 2*x2*x3 + x4*x5", {f"x{i}": _U for i in range(1, 6)}, ()),
    Equation("M12", "exp(x1*x2)/(1 + x3)", {"x1": _U, "x2": _U, "x3": (0, 1)}, ()),
    Equation("M13", "sqrt(x1**2 + x2*x3 + 2)", {"x1": _U, "x2": _U, "x3": _U}, ()),
    Equation("M14", "x1*exp(-x2**2/2) + x3", {"x1": _U, "x2": (-2, 2), "x3": _U}, ()),
]
