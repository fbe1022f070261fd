"""Fit the starting coefficients of the safe rational to common activations, *in the form evaluated*.

``python -m bases.rational.fit_init`` prints the table; ``--write`` stores it in
``bases/rational/init_table.py`` (between the GENERATED markers). The fit evaluates exactly
``bases.kernels.rational_math.rational_forward`` (the function every backend computes), in float64,
on a dense grid over ``[-3, 3]``:

1. a linearised least-squares start (``P - f Q = 0`` is linear in the coefficients; in form A the
   denominator coefficients enter as ``|b_j|``, in form B as if ``T >= 0``),
2. Levenberg-Marquardt on the squared error,
3. Lawson-style reweighting (weights times ``|error|``) followed by LM again, keeping the
   coefficients with the smallest maximum error: a cheap approach to the minimax fit.

Points on ``3 < |x| <= 1e4`` (log-spaced) add the hinge ``max(0, |F - f| - 0.6 |x|)`` so the fit cannot buy
accuracy on ``[-3, 3]`` with a cubic tail (stored fits grow at most linearly, as deep stacks need).

KAT's published "gelu" start was fitted for form B but evaluated in form A (F(3) = 1.53 instead of
3); fitting against the evaluated function avoids that mismatch.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np

FIT_RANGE = (-3.0, 3.0)
FIT_POINTS = 2001
TAIL_RANGE = 1.0e4  # points on 3 < |x| <= 1e4 keep the growth outside the fit range linear:
TAIL_POINTS = 200  # a tail point costs only where |F - f| exceeds TAIL_SLACK * |x| (a hinge)
TAIL_SLACK = 0.6
ORDERS = ((5, 4),)
NAMES = ("identity", "relu", "leaky_relu", "gelu", "swish", "tanh", "sigmoid")
LEAKY_SLOPE = 0.01


def target(name: str, x):
    """The activation ``name`` evaluated with ``jax.numpy`` (float64 when x64 is on)."""
    import jax.numpy as jnp
    from jax.scipy.special import erf

    table = {
        "identity": lambda t: t,
        "relu": lambda t: jnp.maximum(t, 0.0),
        "leaky_relu": lambda t: jnp.where(t >= 0, t, LEAKY_SLOPE * t),
        "gelu": lambda t: 0.5 * t * (1.0 + erf(t / math.sqrt(2.0))),
        "swish": lambda t: t / (1.0 + jnp.exp(-t)),
        "tanh": jnp.tanh,
        "sigmoid": lambda t: 1.0 / (1.0 + jnp.exp(-t)),
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(table)}")
    return table[name](x)


def _model(theta, xs, m: int, n: int, form: str):
    from bases.kernels.rational_math import rational_forward

    return rational_forward(xs, [theta[i] for i in range(m + 1)],
                            [theta[m + 1 + j] for j in range(n)], form)


def _linear_start(xs: np.ndarray, f: np.ndarray, m: int, n: int, form: str) -> np.ndarray:
    base = np.abs(xs) if form == "A" else xs
    cols = [xs**i for i in range(m + 1)] + [-f * base ** (j + 1) for j in range(n)]
    theta, *_ = np.linalg.lstsq(np.stack(cols, axis=1), f, rcond=None)
    return theta


def _levenberg_marquardt(residual, jacobian, theta, weights, steps: int = 150):
    lam = 1e-3
    r = weights * residual(theta)
    cost = float(r @ r)
    for _ in range(steps):
        jac = weights[:, None] * jacobian(theta)
        jtj, jtr = jac.T @ jac, jac.T @ r
        step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), -jtr)
        cand = theta + step
        r_new = weights * residual(cand)
        new_cost = float(r_new @ r_new)
        if np.isfinite(new_cost) and new_cost < cost:
            theta, r, lam = cand, r_new, max(lam / 3.0, 1e-12)
            if cost - new_cost < 1e-15 * max(cost, 1e-30):
                break
            cost = new_cost
        else:
            lam *= 4.0
            if lam > 1e12:
                break
    return theta


def fit(name: str, m: int = 5, n: int = 4, form: str = "A", lawson_rounds: int = 25):
    """Best coefficients ``(a (m+1,), b (n,), max_error)`` for activation ``name`` on FIT_RANGE."""
    import jax
    import jax.numpy as jnp

    core = np.linspace(*FIT_RANGE, FIT_POINTS)
    side = np.geomspace(FIT_RANGE[1], TAIL_RANGE, TAIL_POINTS + 1)[1:]
    xs_np = np.concatenate([core, side, -side])
    is_core = np.arange(xs_np.size) < core.size
    xs = jnp.asarray(xs_np, jnp.float64)
    f_np = np.asarray(target(name, xs), np.float64)
    if name == "identity":
        a = np.zeros(m + 1)
        a[1] = 1.0
        return a, np.zeros(n), 0.0
    slack = jnp.asarray(np.where(is_core, 0.0, TAIL_SLACK * np.abs(xs_np)))

    def _res(th):
        r = _model(th, xs, m, n, form) - jnp.asarray(f_np)
        return jnp.where(jnp.asarray(is_core), r, jnp.maximum(jnp.abs(r) - slack, 0.0))

    res_fn = jax.jit(_res)
    jac_fn = jax.jit(jax.jacfwd(_res))
    residual = lambda th: np.asarray(res_fn(jnp.asarray(th)))
    jacobian = lambda th: np.asarray(jac_fn(jnp.asarray(th)))
    rng = np.random.default_rng(0)
    starts = [_linear_start(core, f_np[is_core], m, n, form)]
    poly = np.polynomial.polynomial.polyfit(core, f_np[is_core], m)
    starts.append(np.concatenate([poly, np.zeros(n)]))
    starts += [np.concatenate([poly, 0.05 * rng.standard_normal(n)]) for _ in range(3)]
    best = (None, np.inf)
    for theta in starts:
        lawson = np.ones(core.size)  # weights of the squared errors on the fit range
        for _ in range(lawson_rounds + 1):
            weights = np.concatenate([np.sqrt(lawson), np.ones(2 * TAIL_POINTS)])
            theta = _levenberg_marquardt(residual, jacobian, theta, weights)
            err = np.abs(residual(theta))[is_core]
            if err.max() < best[1]:
                best = (theta.copy(), float(err.max()))
            lawson = lawson * (err / err.max() + 1e-3)
            lawson = lawson / lawson.mean()
    theta, err = best
    return theta[: m + 1], theta[m + 1 :], err


def fit_table() -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    table = {}
    for form in ("A", "B"):
        for m, n in ORDERS:
            for name in NAMES:
                a, b, err = fit(name, m, n, form)
                table[(form, name, m, n)] = (tuple(float(v) for v in a), tuple(float(v) for v in b), err)
    return table


def format_table(table: dict) -> str:
    lines = ["_TABLE = {"]
    for key, (a, b, err) in table.items():
        lines.append(f"    {key!r}: (")
        lines.append(f"        ({', '.join(repr(float(v)) for v in a)}),")
        lines.append(f"        ({', '.join(repr(float(v)) for v in b)}),")
        lines.append(f"        {err:.3e},")
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines)


def write_table(text: str, path: Path | None = None) -> Path:
    path = path or Path(__file__).with_name("init_table.py")
    source = path.read_text()
    pattern = re.compile(r"(# BEGIN GENERATED[^\n]*\n).*?(# END GENERATED)", re.S)
    if not pattern.search(source):
        raise ValueError(f"{path} has no GENERATED markers")
    path.write_text(pattern.sub(lambda mt: mt.group(1) + text + "\n" + mt.group(2), source))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the table in init_table.py")
    args = parser.parse_args(argv)
    table = fit_table()
    for (form, name, m, n), (_, _, err) in table.items():
        print(f"form {form} {name:>10s} ({m}/{n}): max |error| on {FIT_RANGE} = {err:.2e}")
    text = format_table(table)
    print(text)
    if args.write:
        print(f"written to {write_table(text)}")


if __name__ == "__main__":
    main()
