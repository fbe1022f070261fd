"""Formulas from data alone: ``discover(x, y)`` (structure found from the data, then the pieces fitted).

Modules: ``data`` (checks, split), ``features`` / ``transforms`` / ``search`` / ``regression`` (the
sparse-regression route), ``surrogate`` / ``engine`` (structure from a KAN surrogate, recursion),
``pareto`` (front and choice rule), ``budget`` (time limits), ``api`` (``discover``,
``SymbolicRegressor``), ``table`` (CSV files), ``report`` (the PNG of a result).
"""

from .api import DiscoveryResult, SymbolicRegressor, discover
from .pareto import Candidate, choose, pareto_front

__all__ = ["Candidate", "DiscoveryResult", "SymbolicRegressor", "choose", "discover", "pareto_front"]
