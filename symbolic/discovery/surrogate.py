"""A smooth surrogate of ``f`` (a KAN fitted to the data) and the hypothesis tests run on its derivatives.

Tests (as in AI Feynman, Udrescu & Tegmark 2020, and pykan's hypothesis tests), each a relative
mismatch in [0, 1] (0: the hypothesis holds exactly for the surrogate), averaged over the data points:

- ``dependence``: how much f varies with x_i, ``mean(f_i^2) / mean(|grad f|^2)``;
- ``combination``: f depends on x_i, x_j only through ``x_i + x_j`` (f_i = f_j), ``x_i - x_j``
  (f_i = -f_j), ``x_i x_j`` (x_i f_i = x_j f_j) or ``x_i / x_j`` (x_i f_i = -x_j f_j);
- ``separability``: the mixed second derivatives between two groups of variables vanish, for ``f``
  (additive: f = g(A) + h(B)) or for ``log|f|`` where f keeps one sign (multiplicative: f = g(A) h(B)).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

COMBINATIONS = ("+", "-", "*", "/")


@dataclasses.dataclass
class Surrogate:
    """A KAN fitted to standardised data: ``f(x) = y_mean + y_std * net((pad(x) - x_mean) / x_std)``."""

    net: Any
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    val_rel_rmse: float
    num_inputs: int

    def pad(self, x):
        """``x (..., d)`` with zero columns appended to the network's input width."""
        extra = self.x_mean.shape[0] - self.num_inputs
        if not extra:
            return x
        lib = jnp if isinstance(x, jax.Array) else np
        return lib.concatenate([x, lib.zeros(x.shape[:-1] + (extra,), x.dtype)], axis=-1)

    def scalar(self, x: jax.Array) -> jax.Array:
        """``x (d,) -> f(x)`` (for autodiff)."""
        z = (self.pad(x) - self.x_mean) / self.x_std
        return self.y_mean + self.y_std * self.net(z[None, :])[0, 0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x (n, d) -> (n,)``."""
        z = jnp.asarray((self.pad(np.asarray(x, np.float64)) - self.x_mean) / self.x_std, jnp.float32)
        return np.asarray(self.y_mean + self.y_std * self.net(z)[:, 0], np.float64)


_PADDED_WIDTH = 6  # inputs are padded to this many columns so that one compiled fit serves every problem


def fit_surrogate(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
                  hidden: int = 9, steps: int = 50, seed: int = 0) -> Surrogate:
    """A KAN ``[w, hidden, 1]``, grid 8, fitted by L-BFGS (``steps`` x 20 iterations) to standardised
    ``train``; its relative validation RMSE is recorded. Problems with up to 6 variables are padded
    with constant zero columns to ``w = 6`` inputs (a zero column adds a constant, nothing else), so
    the recursion's sub-problems and every later run reuse one compiled fit (most of a cold fit's time
    is XLA compiling it); wider problems get ``w = d``."""
    import kan  # symbolic sits above kan; imported here so the regression route does not need it

    x, y = train
    d = x.shape[1]
    width = max(d, _PADDED_WIDTH)
    x_mean = np.concatenate([x.mean(0), np.zeros(width - d)])
    x_std = np.concatenate([x.std(0) + 1e-12, np.ones(width - d)])
    y_mean, y_std = float(y.mean()), float(y.std() + 1e-12)
    s = Surrogate(None, x_mean, x_std, y_mean, y_std, float("nan"), d)
    z = jnp.asarray((s.pad(x) - x_mean) / x_std, jnp.float32)
    t = jnp.asarray(((y - y_mean) / y_std)[:, None], jnp.float32)
    net = kan.KAN((width, hidden, 1), grid_size=8, grid_range=(-2.0, 2.0), key=jax.random.PRNGKey(seed))
    s.net, _ = kan.fit(net, (z, t), steps=steps, optimizer="lbfgs", progress=False, update_grid=False)
    vx, vy = val
    s.val_rel_rmse = float(np.sqrt(np.mean((s(vx) - vy) ** 2)) / y_std)
    return s


def _derivatives(s: Surrogate, x: np.ndarray, log: bool) -> tuple[np.ndarray, np.ndarray]:
    """Gradients ``(n, d)`` and Hessians ``(n, d, d)`` of ``f`` (or ``log|f|``) at the points ``x``."""
    fn = (lambda p: jnp.log(jnp.abs(s.scalar(p)))) if log else s.scalar
    pts = jnp.asarray(x, jnp.float32)
    grads = jax.vmap(jax.grad(fn))(pts)
    hess = jax.vmap(jax.jacrev(jax.grad(fn)))(pts)  # reverse over reverse: custom_vjp layers allow it
    return np.asarray(grads, np.float64), np.asarray(hess, np.float64)


@dataclasses.dataclass
class Hypotheses:
    """Test statistics on the surrogate: ``dependence[i]``, ``combination[(i, j, op)]``,
    ``additive[(A, B)]``, ``multiplicative[(A, B)]`` (groups as index tuples)."""

    dependence: np.ndarray
    combination: dict[tuple[int, int, str], float]
    additive: dict[tuple[tuple[int, ...], tuple[int, ...]], float]
    multiplicative: dict[tuple[tuple[int, ...], tuple[int, ...]], float]


def _mixed(hess: np.ndarray, a: tuple[int, ...], b: tuple[int, ...]) -> float:
    cross = hess[:, list(a)][:, :, list(b)]
    total = float(np.mean(np.sum(hess**2, axis=(1, 2)))) + 1e-30
    return float(np.mean(np.sum(cross**2, axis=(1, 2)))) * 2 / total


def _splits(d: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    out = []
    for size in range(1, d // 2 + 1):
        for a in itertools.combinations(range(d), size):
            b = tuple(i for i in range(d) if i not in a)
            if size * 2 == d and a > b:
                continue
            out.append((a, b))
    return out


def hypothesis_tests(s: Surrogate, x: np.ndarray, y: np.ndarray) -> Hypotheses:
    """All the tests at the points ``x (n, d)`` (a few hundred are plenty); ``y`` decides whether the
    multiplicative tests apply (f of one sign, away from 0)."""
    grads, hess = _derivatives(s, x, log=False)
    d = x.shape[1]
    g2 = np.mean(grads**2, axis=0)
    dependence = g2 / (g2.sum() + 1e-30)
    combination = {}
    for i, j in itertools.combinations(range(d), 2):
        gi, gj, xi, xj = grads[:, i], grads[:, j], x[:, i], x[:, j]
        pairs = {"+": (gi, gj), "-": (gi, -gj), "*": (xi * gi, xj * gj), "/": (xi * gi, -xj * gj)}
        for op, (u, v) in pairs.items():
            combination[(i, j, op)] = float(np.mean((u - v) ** 2) / (np.mean(u**2 + v**2) + 1e-30))
    additive = {split: _mixed(hess, *split) for split in _splits(d)}
    multiplicative = {}
    if np.all(y > 0) or np.all(y < 0):
        _, log_hess = _derivatives(s, x, log=True)
        multiplicative = {split: _mixed(log_hess, *split) for split in _splits(d)}
    return Hypotheses(dependence, combination, additive, multiplicative)
