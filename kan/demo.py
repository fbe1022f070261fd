"""The hellokan workflow (pykan's first tutorial): fit exp(sin(pi x) + y^2) with a [2, 5, 1] KAN,
train with the sparsity regulariser, prune, refine the grid and retrain, printing the RMSE."""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp

from .fit import fit
from .grid import refine
from .model import KAN
from .prune import prune


def hellokan_target(x: jax.Array) -> jax.Array:
    """f(x, y) = exp(sin(pi x) + y^2): ``(n, 2) -> (n, 1)``."""
    return jnp.exp(jnp.sin(jnp.pi * x[:, :1]) + x[:, 1:2] ** 2)


def make_dataset(fn, num_inputs: int, num_train: int = 1000, num_test: int = 1000, seed: int = 0):
    """Inputs uniform on [-1, 1]^num_inputs, as pykan's ``create_dataset``."""
    k_train, k_test = jax.random.split(jax.random.PRNGKey(seed))
    x_train = jax.random.uniform(k_train, (num_train, num_inputs), minval=-1.0, maxval=1.0)
    x_test = jax.random.uniform(k_test, (num_test, num_inputs), minval=-1.0, maxval=1.0)
    return (x_train, fn(x_train)), (x_test, fn(x_test))


@eqx.filter_jit
def _rmse(model, x, y):
    return jnp.sqrt(jnp.mean((model(x) - y) ** 2))


def rmse(model, data) -> float:
    """Root-mean-square error of ``model`` on ``data = (x, y)``."""
    return float(_rmse(model, *data))


def run(steps: int = 50, seed: int = 0, progress: bool = True, verbose: bool = True):
    """Run the workflow; returns the final model, the datasets and a list of (stage, test RMSE)."""
    start = time.perf_counter()
    train, test = make_dataset(hellokan_target, 2, seed=seed)
    model = KAN([2, 5, 1], grid_size=3, order=3, key=jax.random.PRNGKey(seed))
    stages = []

    def report(stage):
        stages.append((stage, rmse(model, test)))
        if verbose:
            print(f"{stage:<32s} test RMSE {stages[-1][1]:.3e}   ({time.perf_counter() - start:5.1f} s)")

    model, _ = fit(model, train, steps=steps, optimizer="lbfgs", lamb=1e-3, progress=progress)
    report("train [2,5,1] G=3 with reg")
    model = prune(model, train[0])
    if verbose:
        print(f"pruned widths: {model.widths}")
    model, _ = fit(model, train, steps=steps, optimizer="lbfgs", progress=progress)
    report("prune + retrain")
    model = refine(model, 10, train[0])
    report("refine G=10")
    model, _ = fit(model, train, steps=steps, optimizer="lbfgs", progress=progress)
    report("refine G=10 + retrain")
    return model, (train, test), stages
