"""The feature library of the sparse-regression search: unary terms of each variable and their products.

A feature is a product of at most three unary terms of different variables (``x1 * cos(2 x2)``,
``sqrt(x1) / x3``); which unary terms a variable gets depends on its range in the data (``log`` and
``sqrt`` only where it stays positive, ``1/x`` only where it avoids 0). The search
(:mod:`symbolic.discover.search`) writes a transformed target as a sparse linear combination of these
features, the idea of FFX (McConaghy 2011) and SINDy (Brunton et al. 2016), with the candidate
structures tested on held-out data.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import sympy as sp


@dataclasses.dataclass(frozen=True)
class UnaryTerm:
    """``fn`` (numpy, float64) and ``sym`` (sympy) of one function of a variable; ``family`` is the
    library name that allows it (``symbolic.BUILTIN_NAMES``); ``needs``: ``"positive"``, ``"nonzero"``
    or ``""`` (any range); ``in_products``: whether it also enters products with other variables."""

    name: str
    family: str
    fn: Callable[[np.ndarray], np.ndarray]
    sym: Callable[[sp.Expr], sp.Expr]
    complexity: int
    needs: str = ""
    in_products: bool = True


UNARY_TERMS: tuple[UnaryTerm, ...] = (
    UnaryTerm("x", "x", lambda x: x, lambda s: s, 1),
    UnaryTerm("x^2", "x^2", lambda x: x**2, lambda s: s**2, 2),
    UnaryTerm("x^3", "x^3", lambda x: x**3, lambda s: s**3, 3, in_products=False),
    UnaryTerm("1/x", "1/x", lambda x: 1 / x, lambda s: 1 / s, 2, "nonzero"),
    UnaryTerm("1/x^2", "1/x^2", lambda x: x**-2, lambda s: s**-2, 3, "nonzero"),
    UnaryTerm("sqrt", "sqrt", np.sqrt, sp.sqrt, 2, "positive"),
    UnaryTerm("1/sqrt", "1/sqrt", lambda x: x**-0.5, lambda s: 1 / sp.sqrt(s), 3, "positive", False),
    UnaryTerm("log", "log", np.log, sp.log, 2, "positive"),
    UnaryTerm("exp", "exp", np.exp, sp.exp, 2),
    UnaryTerm("exp(-x)", "exp", lambda x: np.exp(-x), lambda s: sp.exp(-s), 3),
    UnaryTerm("gaussian", "gaussian", lambda x: np.exp(-x**2), lambda s: sp.exp(-s**2), 4, in_products=False),
    UnaryTerm("sin", "sin", np.sin, sp.sin, 2),
    UnaryTerm("cos", "cos", np.cos, sp.cos, 2),
    UnaryTerm("sin(2x)", "sin", lambda x: np.sin(2 * x), lambda s: sp.sin(2 * s), 3),
    UnaryTerm("cos(2x)", "cos", lambda x: np.cos(2 * x), lambda s: sp.cos(2 * s), 3),
    UnaryTerm("sin(pi x)", "sin", lambda x: np.sin(np.pi * x), lambda s: sp.sin(sp.pi * s), 3, in_products=False),
    UnaryTerm("cos(pi x)", "cos", lambda x: np.cos(np.pi * x), lambda s: sp.cos(sp.pi * s), 3, in_products=False),
    UnaryTerm("tanh", "tanh", np.tanh, sp.tanh, 3, in_products=False),
)


def _allowed(term: UnaryTerm, column: np.ndarray, families: Optional[frozenset[str]]) -> bool:
    if families is not None and term.family not in families:
        return False
    if term.needs == "positive":
        return bool(np.all(column > 0))
    if term.needs == "nonzero":
        return bool(np.all(np.abs(column) > 1e-6 * (1.0 + np.max(np.abs(column)))))
    return bool(np.max(np.abs(column)) < 50.0) if term.family in ("exp", "gaussian") else True


@dataclasses.dataclass(frozen=True)
class Feature:
    """A product of unary terms ``factors = ((variable index, term index), ...)`` (empty: the constant 1)."""

    factors: tuple[tuple[int, int], ...]

    def complexity(self) -> int:
        return sum(UNARY_TERMS[t].complexity for _, t in self.factors) + max(len(self.factors) - 1, 0)

    def expr(self, variables: Sequence[sp.Expr]) -> sp.Expr:
        out: sp.Expr = sp.Integer(1)
        for v, t in self.factors:
            out = out * UNARY_TERMS[t].sym(variables[v])
        return out


@dataclasses.dataclass
class FeatureLibrary:
    """The features of one problem: ``features[j]`` is column ``j`` of :meth:`evaluate`."""

    features: list[Feature]
    num_variables: int

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """``x (n, d)`` -> ``(n, p)`` float64 feature values (nan where a term is undefined)."""
        x = np.asarray(x, np.float64)
        cache: dict[tuple[int, int], np.ndarray] = {}
        out = np.empty((x.shape[0], len(self.features)))
        with np.errstate(all="ignore"):
            for j, feat in enumerate(self.features):
                col = np.ones(x.shape[0])
                for key in feat.factors:
                    if key not in cache:
                        cache[key] = UNARY_TERMS[key[1]].fn(x[:, key[0]])
                    col = col * cache[key]
                out[:, j] = col
        return out

    def complexities(self) -> np.ndarray:
        return np.array([f.complexity() for f in self.features], float)


def build_library(x: np.ndarray, families: Optional[Iterable[str]] = None, max_factors: int = 2,
                  max_features: int = 4000) -> FeatureLibrary:
    """The features for data ``x (n, d)``: the constant, each allowed unary term of each variable,
    products of two terms of different variables (terms with ``in_products``), and products of three
    plain variables. ``families`` restricts the unary terms to those library names. Products are
    dropped (plain-variable ones last) beyond ``max_features``."""
    x = np.asarray(x, np.float64)
    fams = None if families is None else frozenset(families) | {"x"}
    d = x.shape[1]
    per_var = [[t for t, term in enumerate(UNARY_TERMS) if _allowed(term, x[:, v], fams)] for v in range(d)]
    features = [Feature(())]
    features += [Feature(((v, t),)) for v in range(d) for t in per_var[v]]
    if max_factors >= 2:
        mixed = [t for t in range(len(UNARY_TERMS)) if UNARY_TERMS[t].in_products]
        for a, b in itertools.combinations(range(d), 2):
            for ta in per_var[a]:
                for tb in per_var[b]:
                    if ta in mixed and tb in mixed:
                        features.append(Feature(((a, ta), (b, tb))))
    if max_factors >= 3:
        features += [Feature(tuple((v, 0) for v in combo)) for combo in itertools.combinations(range(d), 3)]
    if len(features) > max_features:
        features = features[:max_features]
    return FeatureLibrary(features, d)
