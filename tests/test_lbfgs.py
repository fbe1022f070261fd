"""kan.train.lbfgs: convergence, the stall rule, and one objective call site in the compiled loop."""

import jax
import jax.numpy as jnp
import numpy as np

from kan.train.lbfgs import lbfgs_init, lbfgs_run


def _with_aux(fn):
    def objective(x):
        f = fn(x)
        return f, (f, jnp.zeros_like(f))
    return jax.value_and_grad(objective, has_aux=True)


def _aux_zeros():
    return (jnp.zeros(()), jnp.zeros(()))


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def test_rosenbrock_converges_and_state_carries_the_last_point():
    run = jax.jit(lambda x, st: lbfgs_run(_with_aux(_rosenbrock), x, st, 20))
    x = jnp.zeros(10)
    state = lbfgs_init(x, _aux_zeros())
    for _ in range(8):
        x, state, stalled = run(x, state)
        if bool(stalled):
            break
    np.testing.assert_allclose(np.asarray(x), 1.0, atol=1e-3)
    assert float(state.value) == float(_rosenbrock(x)) and bool(state.fresh)
    np.testing.assert_allclose(np.asarray(state.grad), np.asarray(jax.grad(_rosenbrock)(x)), atol=1e-5)


def test_quadratic_reaches_its_minimum_to_float32_precision():
    a = jax.random.normal(jax.random.PRNGKey(0), (12, 12))
    h = a @ a.T / 12 + jnp.eye(12)
    b = jax.random.normal(jax.random.PRNGKey(1), (12,))
    fn = lambda x: 0.5 * x @ h @ x - b @ x
    x, state, _ = jax.jit(lambda x, st: lbfgs_run(_with_aux(fn), x, st, 40))(jnp.zeros(12), lbfgs_init(jnp.zeros(12), _aux_zeros()))
    best = np.linalg.solve(np.asarray(h, np.float64), np.asarray(b, np.float64))
    f_best = float(fn(jnp.asarray(best, jnp.float32)))
    assert float(state.value) <= f_best + 1e-6 * abs(f_best)
    np.testing.assert_allclose(np.asarray(x), best, atol=2e-3)  # f is flat near its minimum: sqrt(eps)


def test_nan_objective_stalls_without_moving():
    fn = lambda x: jnp.sum(x ** 2) + jnp.where(jnp.all(x == 1.0), 0.0, jnp.nan)  # NaN off the start
    x0 = jnp.ones(3)
    x, state, stalled = lbfgs_run(_with_aux(fn), x0, lbfgs_init(x0, _aux_zeros()), 5)
    assert bool(stalled)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x0))
    assert float(state.value) == 3.0


def test_the_loop_calls_the_objective_at_one_place():
    calls = []

    def fn(x):
        calls.append(1)  # runs once per trace of a call site
        return _rosenbrock(x)

    x = jnp.zeros(4)
    jax.jit(lambda x, st: lbfgs_run(_with_aux(fn), x, st, 20)).lower(x, lbfgs_init(x, _aux_zeros()))
    assert len(calls) == 1
