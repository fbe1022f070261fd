"""The jnp side of the symbolic function library: domain-safe univariate functions by name.

Every function maps any finite input to a finite output with a finite derivative (no NaN/inf
outside its mathematical domain): arguments are clamped into the domain (``log``, ``sqrt``,
``arcsin``, ...), reciprocals keep ``|x| >= 1e-3``, ``exp`` and powers clamp huge arguments.
Clamping (rather than masking afterwards) matters because symbolic edges select among functions
with ``jnp.where``, and a NaN in an unselected branch would still poison the gradient.

The sympy forms and complexities live in ``symbolic.library`` (layers never import sympy).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

_RECIP_EPS = 1e-3
_ROOT_EPS = 1e-8
_LOG_EPS = 1e-6
_UNIT_EPS = 1e-6
_EXP_MAX = 50.0
_POW_MAX = 1e6


@dataclasses.dataclass(frozen=True)
class SafeFunction:
    """A named univariate function with its normalisation properties.

    degree: ``f(s x) = s**degree f(x)`` for s > 0 (homogeneous functions: powers, roots, abs), so
        ``c f(a x + b) = c |a|**degree f(sign(a) x + b / |a|)``; None when not homogeneous.
    exp_shift: ``f(x + b) = exp(b) f(x)`` (only exp), so ``b`` can be folded into ``c``.
    """

    name: str
    fn: Callable[[Array], Array]
    degree: Optional[float] = None
    exp_shift: bool = False


def _clip_pow(x: Array) -> Array:
    return jnp.clip(x, -_POW_MAX, _POW_MAX)


def _safe_recip_base(x: Array) -> Array:
    """``x`` pushed away from 0 to ``|x| >= 1e-3`` keeping its sign (0 -> +1e-3)."""
    sign = jnp.where(x < 0, -1.0, 1.0).astype(x.dtype)
    return jnp.where(jnp.abs(x) < _RECIP_EPS, sign * _RECIP_EPS, _clip_pow(x))


def _safe_tan(x: Array) -> Array:
    cos = jnp.cos(x)
    sign = jnp.where(cos < 0, -1.0, 1.0).astype(x.dtype)
    return jnp.sin(x) / jnp.where(jnp.abs(cos) < _RECIP_EPS, sign * _RECIP_EPS, cos)


def _clip_unit(x: Array) -> Array:
    return jnp.clip(x, -1.0 + _UNIT_EPS, 1.0 - _UNIT_EPS)


def _zero(x: Array) -> Array:
    return jnp.zeros_like(x)


_BUILTIN = [
    SafeFunction("x", lambda x: x, degree=1.0),
    SafeFunction("x^2", lambda x: _clip_pow(x) ** 2, degree=2.0),
    SafeFunction("x^3", lambda x: _clip_pow(x) ** 3, degree=3.0),
    SafeFunction("x^4", lambda x: _clip_pow(x) ** 4, degree=4.0),
    SafeFunction("x^5", lambda x: _clip_pow(x) ** 5, degree=5.0),
    SafeFunction("1/x", lambda x: 1.0 / _safe_recip_base(x), degree=-1.0),
    SafeFunction("1/x^2", lambda x: 1.0 / _safe_recip_base(x) ** 2, degree=-2.0),
    SafeFunction("1/x^3", lambda x: 1.0 / _safe_recip_base(x) ** 3, degree=-3.0),
    SafeFunction("1/x^4", lambda x: 1.0 / _safe_recip_base(x) ** 4, degree=-4.0),
    SafeFunction("sqrt", lambda x: jnp.sqrt(jnp.clip(x, _ROOT_EPS, _POW_MAX)), degree=0.5),
    SafeFunction("1/sqrt", lambda x: 1.0 / jnp.sqrt(jnp.clip(x, _RECIP_EPS**2, _POW_MAX)), degree=-0.5),
    SafeFunction("exp", lambda x: jnp.exp(jnp.minimum(x, _EXP_MAX)), exp_shift=True),
    SafeFunction("log", lambda x: jnp.log(jnp.clip(x, _LOG_EPS, _POW_MAX))),
    SafeFunction("sin", jnp.sin),
    SafeFunction("cos", jnp.cos),
    SafeFunction("tan", _safe_tan),
    SafeFunction("tanh", jnp.tanh),
    SafeFunction("arcsin", lambda x: jnp.arcsin(_clip_unit(x))),
    SafeFunction("arctan", jnp.arctan),
    SafeFunction("arctanh", lambda x: jnp.arctanh(_clip_unit(x))),
    SafeFunction("abs", lambda x: jnp.abs(_clip_pow(x)), degree=1.0),
    SafeFunction("gaussian", lambda x: jnp.exp(-jnp.minimum(x**2, _EXP_MAX))),
    SafeFunction("0", _zero, degree=None),
]

_REGISTRY: dict[str, SafeFunction] = {f.name: f for f in _BUILTIN}
_BUILTIN_ENTRIES: dict[str, SafeFunction] = dict(_REGISTRY)


def register_jnp_function(name: str, fn: Callable[[Array], Array], *, degree: Optional[float] = None,
                          exp_shift: bool = False, overwrite: bool = False) -> SafeFunction:
    """Add a user function. ``fn`` must be elementwise and finite (value and gradient) for every
    finite input; clamp its argument into its domain as the built-ins do. Replacing a registered one
    (``overwrite=True``) clears JAX's caches, so every program traces the new function (a one-off
    recompile)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_jnp_function: name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"register_jnp_function: fn for {name!r} must be callable")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"register_jnp_function: {name!r} is already registered (pass overwrite=True)")
    probe = fn(jnp.linspace(-3.0, 3.0, 7))
    if probe.shape != (7,):
        raise ValueError(f"register_jnp_function: {name!r} must be elementwise, got output shape {probe.shape}")
    entry = SafeFunction(name, fn, degree, exp_shift)
    replaced = name in _REGISTRY
    _REGISTRY[name] = entry
    if replaced:
        # Compiled programs look functions up by name at trace time (the name is a static argument or a
        # static field): drop every cached trace so none keeps running the function it replaced.
        jax.clear_caches()
    return entry


def is_builtin(name: str) -> bool:
    """Whether ``name`` is one of the package's own functions, not registered or replaced by the user:
    its code is the package's, so a program traced from it can be kept across processes."""
    return name in _BUILTIN_ENTRIES and _REGISTRY.get(name) is _BUILTIN_ENTRIES[name]


def get_jnp_function(name: str) -> SafeFunction:
    """The registered function ``name``; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown symbolic function {name!r}; known: {sorted(_REGISTRY)}") from None


def jnp_function_names() -> tuple[str, ...]:
    """Names of every registered function, built-ins first."""
    return tuple(_REGISTRY)


def evaluate(name: str, x: Float[Array, "..."]) -> Float[Array, "..."]:
    """Domain-safe ``f(x)`` for the function ``name``, elementwise."""
    return get_jnp_function(name).fn(x)
