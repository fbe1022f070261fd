"""The symbolic function library: sympy form and complexity of every function, and the user registry.

The jnp (domain-safe) side lives in ``bases.symbolic_functions`` so layers can evaluate snapped edges
without sympy. Complexities follow pykan's table (Liu et al. 2024): 0 costs 0, x costs 1, squares,
reciprocals, roots, exp, log, sin, cos 2, higher powers, abs, tan, tanh, the gaussian 3, 1/x^4 and
the inverse trigonometric / hyperbolic functions 4. The library order is the tie-break order when two
candidates fit equally well (polynomials before trigonometric look-alikes such as cos(small a x)).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Optional, Sequence

import sympy as sp

from bases.symbolic_functions import get_jnp_function, register_jnp_function


@dataclasses.dataclass(frozen=True)
class LibraryEntry:
    """One candidate: ``name`` (shared with the jnp registry), sympy form ``x -> expr`` and complexity."""

    name: str
    sympy_fn: Callable[[sp.Expr], sp.Expr]
    complexity: float


_SYMPY: dict[str, LibraryEntry] = {}


def _add(name: str, sympy_fn: Callable[[sp.Expr], sp.Expr], complexity: float) -> None:
    _SYMPY[name] = LibraryEntry(name, sympy_fn, float(complexity))


_add("0", lambda x: sp.Integer(0), 0)
_add("x", lambda x: x, 1)
_add("x^2", lambda x: x**2, 2)
_add("1/x", lambda x: 1 / x, 2)
_add("sqrt", sp.sqrt, 2)
_add("exp", sp.exp, 2)
_add("log", sp.log, 2)
_add("sin", sp.sin, 2)
_add("cos", sp.cos, 2)
_add("1/x^2", lambda x: x**-2, 2)
_add("1/sqrt", lambda x: 1 / sp.sqrt(x), 2)
_add("x^3", lambda x: x**3, 3)
_add("x^4", lambda x: x**4, 3)
_add("x^5", lambda x: x**5, 3)
_add("1/x^3", lambda x: x**-3, 3)
_add("abs", sp.Abs, 3)
_add("tan", sp.tan, 3)
_add("tanh", sp.tanh, 3)
_add("gaussian", lambda x: sp.exp(-x**2), 3)
_add("1/x^4", lambda x: x**-4, 4)
_add("arcsin", sp.asin, 4)
_add("arctan", sp.atan, 4)
_add("arctanh", sp.atanh, 4)

BUILTIN_NAMES: tuple[str, ...] = tuple(_SYMPY)


def get_entry(name: str) -> LibraryEntry:
    """The library entry ``name``; ValueError listing the known names otherwise."""
    if not isinstance(name, str) or name not in _SYMPY:
        raise ValueError(f"unknown symbolic function {name!r}; known: {sorted(_SYMPY)}")
    return _SYMPY[name]


def function_names() -> tuple[str, ...]:
    """All registered names in tie-break order (built-ins first, then user functions)."""
    return tuple(_SYMPY)


def add_function(name: str, jnp_fn: Callable, sympy_fn: Callable[[sp.Expr], sp.Expr], complexity: float, *,
                 degree: Optional[float] = None, overwrite: bool = False) -> LibraryEntry:
    """Register a user function on both sides, e.g.
    ``add_function("sinc", lambda x: jnp.sinc(x / jnp.pi), lambda x: sp.sin(x) / x, 3)``.
    ``jnp_fn`` must be finite (value and gradient) for every finite input."""
    if complexity < 0:
        raise ValueError(f"add_function: complexity must be >= 0, got {complexity}")
    if name in _SYMPY and not overwrite:
        raise ValueError(f"add_function: {name!r} is already in the library (pass overwrite=True)")
    probe = sympy_fn(sp.Symbol("x"))
    if not isinstance(probe, sp.Basic):
        raise TypeError(f"add_function: sympy_fn for {name!r} must return a sympy expression")
    register_jnp_function(name, jnp_fn, degree=degree, overwrite=overwrite)
    _add(name, sympy_fn, complexity)
    return _SYMPY[name]


class Library:
    """An ordered selection of library functions used as snapping candidates.

    ``Library()`` holds every registered function; ``Library(["x", "x^2", "sin"])`` a subset
    (unknown names raise ValueError).
    """

    def __init__(self, names: Optional[Iterable[str]] = None):
        names = function_names() if names is None else tuple(names)
        if not names:
            raise ValueError("Library: needs at least one function")
        for name in names:
            get_entry(name)
            get_jnp_function(name)
        if len(set(names)) != len(names):
            raise ValueError(f"Library: duplicate names in {names}")
        self.names: tuple[str, ...] = names

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Library({list(self.names)})"

    @property
    def complexities(self) -> tuple[float, ...]:
        """Complexity of each function, in the order of ``names`` (pykan's scale: x is 1, sin 2, ...)."""
        return tuple(get_entry(n).complexity for n in self.names)

    def sympy(self, name: str, arg: sp.Expr) -> sp.Expr:
        """The library function ``name`` applied to the sympy expression ``arg``."""
        return get_entry(name).sympy_fn(arg)


def as_library(library: "Library | Sequence[str] | None") -> Library:
    """Accept a Library, a list of names or None (everything)."""
    if isinstance(library, Library):
        return library
    return Library(library)
