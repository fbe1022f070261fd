"""Symbolic regression: formulas from data alone (``discover``), and with KANs: snap edges to library
functions, extract whole-model formulas."""

from .constants import SnapResult, nice_candidates, refit_rmse, snap_constants
from .discovery import Candidate, DiscoveryResult, SymbolicRegressor, discover
from .fit_edges import CurveFits, choose, fit_curves, normalize_affine, scores
from .formula import (Formula, canonicalize, default_variables, edge_expression, extract_formula,
                      model_expressions, simplify)
from .layerwise import snap_layerwise
from .library import BUILTIN_NAMES, Library, LibraryEntry, add_function, function_names, get_entry
from .select import select_by_formula
from .terms import additive_terms, drop_terms
from .snap import (SnapRecord, auto_symbolic, fix_after_products, fix_symbolic, release_after_products,
                   symbolic_status, unfix_symbolic)

__all__ = [
    "BUILTIN_NAMES",
    "Candidate",
    "CurveFits",
    "DiscoveryResult",
    "Formula",
    "Library",
    "LibraryEntry",
    "SnapRecord",
    "SnapResult",
    "SymbolicRegressor",
    "add_function",
    "additive_terms",
    "auto_symbolic",
    "canonicalize",
    "choose",
    "default_variables",
    "discover",
    "drop_terms",
    "edge_expression",
    "extract_formula",
    "fit_curves",
    "fix_after_products",
    "fix_symbolic",
    "function_names",
    "get_entry",
    "model_expressions",
    "nice_candidates",
    "normalize_affine",
    "scores",
    "select_by_formula",
    "simplify",
    "refit_rmse",
    "release_after_products",
    "snap_constants",
    "snap_layerwise",
    "symbolic_status",
    "unfix_symbolic",
]
