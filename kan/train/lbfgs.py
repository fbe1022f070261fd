"""Full-batch L-BFGS with a strong-Wolfe line search, written as one loop with one objective call.

Nocedal & Wright, *Numerical Optimization* (2nd ed.): the two-loop recursion (Alg. 7.4) with the initial
Hessian scaled by ``s'y / y'y`` (eq. 7.20), and the bracketing / zoom line search for the strong Wolfe
conditions (Alg. 3.5 and 3.6) with safeguarded cubic interpolation (eq. 3.59). The constants follow
torch's ``LBFGS(line_search_fn="strong_wolfe")``, which pykan trains with: ``c1 = 1e-4``, ``c2 = 0.9``,
first step ``min(1, 1 / |g|_1)``, later steps 1, at most 25 evaluations per line search.

Why not ``optax.lbfgs``: its zoom line search calls the objective (value and gradient) at three or four
places of the program, and XLA compiles each; small fits spend most of their time compiling. Here every
trip of a single ``while_loop`` evaluates the objective once at a trial point and then either moves the
line search on or accepts the point (memory update, next direction): one call site, a program about as
large as the objective's gradient itself.

Shapes: parameters are one flat vector ``(n,)``; the memory holds ``m`` pairs ``(m, n)``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bases import host_array

C1, C2 = 1e-4, 0.9
MAX_LINE_SEARCH = 25
#: A line search stops (as failed unless it found a lower point) once its interval is this narrow,
#: measured as ``|a_hi - a_lo| * max|d|`` (torch's ``tolerance_change``, scaled to float32).
TOLERANCE_CHANGE = 1e-9


class LBFGSState(NamedTuple):
    """Curvature memory (``s``, ``y``: ``(m, n)``; ``rho``: ``(m,)``, 0 where empty; ``head``: the next slot
    to write) and the objective at the current point (``value``, ``grad``: ``(n,)``, ``aux``; ``fresh``:
    False until they were computed)."""

    s: Array
    y: Array
    rho: Array
    head: Array
    value: Array
    grad: Array
    aux: object
    fresh: Array


def lbfgs_init(flat: Float[Array, " n"], aux_shape: object, memory: int = 10) -> LBFGSState:
    """Empty memory for parameters ``flat`` (an array or a ``jax.ShapeDtypeStruct``: only its shape and
    dtype are read); ``aux_shape`` is a pytree of zeros shaped like the objective's auxiliary output (it
    is filled on the first evaluation). The zeros are made on the host (no XLA program per shape)."""
    n, dtype = flat.shape[0], np.dtype(flat.dtype)
    zeros = host_array(np.zeros((memory, n)), dtype)
    return LBFGSState(zeros, zeros, host_array(np.zeros(memory), dtype), host_array(0, np.int32),
                      host_array(0, dtype), host_array(np.zeros(n), dtype), aux_shape, host_array(False, bool))


def _direction(state: LBFGSState, grad: Array) -> Array:
    """``-H grad`` by the two-loop recursion over the stored pairs (newest first, then oldest first)."""
    m = state.rho.shape[0]
    order = (state.head - 1 - jnp.arange(m)) % m  # newest .. oldest

    def first(q, j):
        alpha = state.rho[j] * jnp.dot(state.s[j], q)
        return q - alpha * state.y[j], alpha

    q, alphas = jax.lax.scan(first, grad, order)
    newest = order[0]
    yy = jnp.dot(state.y[newest], state.y[newest])
    gamma = jnp.where(state.rho[newest] > 0, 1.0 / (state.rho[newest] * jnp.where(yy > 0, yy, 1.0)), 1.0)

    def second(r, j_alpha):
        j, alpha = j_alpha
        beta = state.rho[j] * jnp.dot(state.y[j], r)
        return r + (alpha - beta) * state.s[j], None

    r, _ = jax.lax.scan(second, gamma * q, (order[::-1], alphas[::-1]))
    return -r


def _descent_direction(state: LBFGSState, grad: Array) -> tuple[Array, Array]:
    """``(d, grad . d)`` with ``d = -H grad``; steepest descent where round-off makes that no descent."""
    d = _direction(state, grad)
    dg = jnp.dot(grad, d)
    bad = ~(dg < 0)
    return jnp.where(bad, -grad, d), jnp.where(bad, -jnp.dot(grad, grad), dg)


def _cubic_min(a1, f1, g1, a2, f2, g2, lo, hi):
    """Minimiser of the cubic through (a1, f1, f'1) and (a2, f2, f'2), clipped to [lo, hi]; the midpoint
    of [lo, hi] where the cubic has none (Nocedal & Wright eq. 3.59)."""
    d1 = g1 + g2 - 3.0 * (f1 - f2) / jnp.where(a1 == a2, 1.0, a1 - a2)
    disc = d1 * d1 - g1 * g2
    d2 = jnp.sign(a2 - a1) * jnp.sqrt(jnp.maximum(disc, 0.0))
    den = g2 - g1 + 2.0 * d2
    t = a2 - (a2 - a1) * (g2 + d2 - d1) / jnp.where(den == 0, 1.0, den)
    ok = (disc >= 0) & (den != 0) & jnp.isfinite(t)
    return jnp.where(ok, jnp.clip(t, lo, hi), 0.5 * (lo + hi))


class _Carry(NamedTuple):
    it: Array          # accepted iterations
    evals: Array       # objective evaluations (all)
    x: Array           # current point
    f: Array
    g: Array
    aux: object
    d: Array           # search direction
    dg0: Array         # g . d at the current point (< 0)
    a: Array           # next trial step
    zoom: Array        # False: bracketing, True: zooming inside [lo, hi]
    ls: Array          # evaluations of the current line search
    a_lo: Array        # bracketing: the previous trial (starts at 0); zoom: the best end
    f_lo: Array
    g_lo: Array
    a_hi: Array
    f_hi: Array
    g_hi: Array
    best_a: Array      # lowest sufficient-decrease point of this line search (a = 0: none yet)
    best_f: Array
    best_g: Array
    best_aux: object
    state: LBFGSState
    stalled: Array
    init: Array        # the first trip evaluates the start point (a = 0) instead of a trial


def lbfgs_run(
    value_and_grad: Callable[[Array], tuple[tuple[Array, object], Array]],
    flat: Float[Array, " n"],
    state: LBFGSState,
    iterations: int | Array,
) -> tuple[Float[Array, " n"], LBFGSState, Array]:
    """Up to ``iterations`` L-BFGS iterations from ``flat``; ``value_and_grad(x) -> ((f, aux), g)``.

    Returns ``(x, state, stalled)``: ``stalled`` is True when a line search found no lower point (the
    point and memory are then those before it: converged to float precision, or a NaN objective).
    ``state.value``/``grad``/``aux`` describe the returned point. No new line search starts after
    ``1.25 * iterations`` evaluations (torch's ``max_eval`` default; one more for a state that has not seen
    the objective yet); one that has started runs to its end (at most :data:`MAX_LINE_SEARCH`)."""
    dtype = flat.dtype
    zero = jnp.zeros((), dtype)
    # Trip 0 evaluates the start point, unless the state carries it (the previous call's last point).
    f0, g0 = state.value.astype(dtype), state.grad.astype(dtype)
    blank = _Carry(
        it=jnp.zeros((), jnp.int32), evals=jnp.zeros((), jnp.int32), x=flat, f=f0, g=g0, aux=state.aux,
        d=jnp.zeros_like(flat), dg0=zero, a=jnp.ones((), dtype), zoom=jnp.zeros((), bool),
        ls=jnp.zeros((), jnp.int32), a_lo=zero, f_lo=f0, g_lo=zero, a_hi=zero, f_hi=f0, g_hi=zero,
        best_a=zero, best_f=f0, best_g=g0, best_aux=state.aux, state=state,
        stalled=jnp.zeros((), bool), init=jnp.ones((), bool))
    started = _start(blank, f0, state.aux, g0)._replace(evals=jnp.zeros((), jnp.int32))
    carry = jax.tree_util.tree_map(lambda s, b: jnp.where(state.fresh, s, b), started, blank)
    max_evals = iterations + iterations // 4 + 1  # Python int or traced

    def cond(c: _Carry):  # a line search, once started, runs to its end (as torch's does)
        return (c.it < iterations) & ((c.evals < max_evals) | (c.ls > 0)) & ~c.stalled

    def body(c: _Carry) -> _Carry:
        step = jnp.where(c.init, zero, c.a)
        x_t = c.x + step * c.d
        (f_t, aux_t), g_t = value_and_grad(x_t)
        f_t, g_t = f_t.astype(dtype), g_t.astype(dtype)
        aux_t = jax.tree_util.tree_map(lambda a, ref: jnp.asarray(a, ref.dtype), aux_t, c.aux)
        return jax.lax.cond(c.init, _start, _line_search_trip, c, f_t, aux_t, g_t)

    c = jax.lax.while_loop(cond, body, carry)
    state = c.state._replace(value=c.f, grad=c.g, aux=c.aux, fresh=jnp.ones((), bool))
    return c.x, state, c.stalled


def _start(c: _Carry, f: Array, aux: object, g: Array) -> _Carry:
    """Trip 0: the objective at the start point; first trial step ``min(1, 1/|g|_1)`` with an empty
    memory (torch's first iteration), else 1."""
    d = _direction(c.state, g)
    dg0 = jnp.dot(g, d)
    empty = ~jnp.any(c.state.rho > 0)
    a = jnp.where(empty, jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.sum(jnp.abs(g)), 1e-30)), 1.0).astype(f.dtype)
    zero = jnp.zeros((), f.dtype)
    return c._replace(evals=c.evals + 1, f=f, g=g, aux=aux, d=d, dg0=dg0, a=a, f_lo=f, g_lo=dg0, f_hi=f,
                      g_hi=dg0, best_a=zero, best_f=f, best_g=g, best_aux=aux,
                      stalled=~(dg0 < 0) | ~jnp.isfinite(f), init=jnp.zeros((), bool))


def _line_search_trip(c: _Carry, f_t: Array, aux_t: object, g_t: Array) -> _Carry:
    """One trial of the strong-Wolfe line search along ``c.d`` at step ``c.a``: accept it (memory update,
    next direction), or narrow / extend the bracket and choose the next trial."""
    dtype = c.f.dtype
    dg_t = jnp.dot(g_t, c.d)
    finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t))
    armijo = finite & (f_t <= c.f + C1 * c.a * c.dg0)
    curvature = jnp.abs(dg_t) <= -C2 * c.dg0
    # Bracketing (N&W Alg. 3.5): lo is the previous trial; zoom (Alg. 3.6): lo is the best end.
    worse_than_lo = ~armijo | ((f_t >= c.f_lo) & ((c.ls > 0) | c.zoom))
    accept = ~worse_than_lo & curvature
    # New interval when not accepted.
    to_hi = worse_than_lo  # [lo, t]
    flip = ~worse_than_lo & ~curvature & (dg_t * (c.a - c.a_lo) >= 0)  # zoom: hi <- lo; bracket: [t, lo]
    extrapolate = ~c.zoom & ~worse_than_lo & ~curvature & ~flip
    new_hi_a = jnp.where(to_hi, c.a, jnp.where(flip, c.a_lo, c.a_hi))
    new_hi_f = jnp.where(to_hi, f_t, jnp.where(flip, c.f_lo, c.f_hi))
    new_hi_g = jnp.where(to_hi, dg_t, jnp.where(flip, c.g_lo, c.g_hi))
    moved_lo = ~worse_than_lo  # t becomes lo (bracketing: the previous trial moves on too)
    new_lo_a = jnp.where(moved_lo, c.a, c.a_lo)
    new_lo_f = jnp.where(moved_lo, f_t, c.f_lo)
    new_lo_g = jnp.where(moved_lo, dg_t, c.g_lo)
    zoom = c.zoom | to_hi | flip
    # Next trial: extrapolate (cubic step clipped to [t + 0.01 (t - prev), 10 t]) or interpolate
    # (cubic in the interval, kept 10% away from its ends, else bisection).
    ext = _cubic_min(c.a_lo, c.f_lo, c.g_lo, c.a, f_t, dg_t, c.a + 0.01 * (c.a - c.a_lo), 10.0 * c.a)
    width = jnp.abs(new_hi_a - new_lo_a)
    lo_end, hi_end = jnp.minimum(new_lo_a, new_hi_a), jnp.maximum(new_lo_a, new_hi_a)
    inner = _cubic_min(new_lo_a, new_lo_f, new_lo_g, new_hi_a, new_hi_f, new_hi_g, lo_end, hi_end)
    inside = (inner > lo_end + 0.1 * width) & (inner < hi_end - 0.1 * width)
    inner = jnp.where(inside, inner, 0.5 * (lo_end + hi_end))
    next_a = jnp.where(extrapolate, ext, inner)
    # Best sufficient-decrease point so far (the fallback when the search runs out).
    better = armijo & (f_t < c.best_f)
    best_a = jnp.where(better, c.a, c.best_a)
    best_f = jnp.where(better, f_t, c.best_f)
    best_g = jnp.where(better, g_t, c.best_g)
    best_aux = jax.tree_util.tree_map(lambda n, o: jnp.where(better, n, o), aux_t, c.best_aux)
    ls = c.ls + 1
    narrow = zoom & (width * jnp.max(jnp.abs(c.d)) < TOLERANCE_CHANGE)
    give_up = ~accept & ((ls >= MAX_LINE_SEARCH) | narrow | ~jnp.isfinite(next_a))
    # Take the accepted point, else (giving up) the best one if it lowered the objective.
    take_best = give_up & (best_a > 0)
    done = accept | take_best
    stalled = give_up & ~take_best
    a_new = jnp.where(accept, c.a, best_a)
    f_new = jnp.where(accept, f_t, best_f)
    g_new = jnp.where(accept, g_t, best_g)
    aux_new = jax.tree_util.tree_map(lambda n, o: jnp.where(accept, n, o), aux_t, best_aux)
    x_new = c.x + a_new * c.d
    s_vec, y_vec = a_new * c.d, g_new - c.g
    sy = jnp.dot(s_vec, y_vec)
    store = done & (sy > 1e-10)
    # Write one memory row (the old one back when nothing is stored: store implies done).
    st, slot = c.state, c.state.head
    st = st._replace(
        s=st.s.at[slot].set(jnp.where(store, s_vec, st.s[slot])),
        y=st.y.at[slot].set(jnp.where(store, y_vec, st.y[slot])),
        rho=st.rho.at[slot].set(jnp.where(store, 1.0 / jnp.where(sy > 0, sy, 1.0), st.rho[slot])),
        head=jnp.where(store, (slot + 1) % st.rho.shape[0], slot))
    # The next direction only once the point is taken (a trial that is not taken keeps c.d).
    d, dg0 = jax.lax.cond(done, _descent_direction, lambda st, g: (c.d, c.dg0), st, g_new)

    def pick(new, old):
        return jax.tree_util.tree_map(lambda n, o: jnp.where(done, n, o), new, old)

    x, f, g, aux = pick((x_new, f_new, g_new, aux_new), (c.x, c.f, c.g, c.aux))
    zero = jnp.zeros((), dtype)
    return _Carry(
        it=c.it + done.astype(jnp.int32), evals=c.evals + 1, x=x, f=f, g=g, aux=aux, d=d, dg0=dg0,
        a=jnp.where(done, jnp.ones((), dtype), next_a), zoom=zoom & ~done, ls=jnp.where(done, 0, ls),
        a_lo=jnp.where(done, zero, new_lo_a), f_lo=jnp.where(done, f, new_lo_f),
        g_lo=jnp.where(done, dg0, new_lo_g), a_hi=jnp.where(done, zero, new_hi_a),
        f_hi=jnp.where(done, f, new_hi_f), g_hi=jnp.where(done, dg0, new_hi_g),
        best_a=jnp.where(done, zero, best_a), best_f=jnp.where(done, f, best_f),
        best_g=jnp.where(done, g, best_g), best_aux=pick(aux, best_aux),
        state=st,
        stalled=stalled | (~(dg0 < 0) & done), init=jnp.zeros((), bool))
