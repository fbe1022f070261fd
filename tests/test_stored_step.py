"""kan.fit's L-BFGS step through a stored program (kan.train.stored_step): a fresh process with the
compilation cache on runs it without tracing the step, with the same results; structures whose code the
key does not cover (a lambda activation, a user's class) are never stored."""

import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import bases.symbolic_functions
import kan
import kan.trace_cache as trace_cache
import symbolic
import symbolic.library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Fits a [2, 3, 1] KAN by L-BFGS once per activation in argv[2] ("silu" or "lambda", comma-separated),
# counting the traces of the step's body (kan.train.fit.lbfgs_run runs only while the step is traced);
# argv[1]: the compilation cache folder, or "off".
_CHILD = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
import kan
import kan.train.fit as fit_module
from kan.compile_cache import enable_compile_cache
if sys.argv[1] != "off":
    enable_compile_cache(sys.argv[1])
traces = []
plain_run = fit_module.lbfgs_run
def counted(*args, **kwargs):
    traces.append(1)
    return plain_run(*args, **kwargs)
fit_module.lbfgs_run = counted
x = np.random.default_rng(0).uniform(-1, 1, (64, 2)).astype(np.float32)
y = (np.sin(np.pi * x[:, :1]) + x[:, 1:] ** 2).astype(np.float32)
fits = []
for name in sys.argv[2].split(","):
    traces.clear()
    act = jax.nn.silu if name == "silu" else (lambda v: jnp.tanh(v))
    model = kan.KAN([2, 3, 1], key=jax.random.PRNGKey(0), base_activation=act)
    model, history = kan.fit(model, (x, y), steps=3, optimizer="lbfgs", progress=False, update_grid=False)
    leaves = [np.asarray(leaf).tolist() for leaf in jax.tree_util.tree_leaves(model)]
    fits.append({"traces": len(traces), "loss": history["train_loss"], "leaves": leaves})
print(json.dumps(fits))
"""


def _fits(folder, activations="silu"):
    done = subprocess.run([sys.executable, "-c", _CHILD, str(folder), activations], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stored(folder):
    exported = folder / trace_cache.FOLDER
    return sorted(p.name for p in exported.iterdir() if p.name.startswith("lbfgs_step-")) if exported.is_dir() else []


def test_a_fresh_process_runs_the_stored_step_without_tracing_it(tmp_path):
    pytest.importorskip("flatbuffers")
    (first,) = _fits(tmp_path)
    assert first["traces"] >= 1 and len(_stored(tmp_path)) == 1
    second, lam = _fits(tmp_path, "silu,lambda")
    assert second["traces"] == 0  # the stored program ran: the step's Python was not traced
    assert second["loss"] == first["loss"] and second["leaves"] == first["leaves"]
    assert lam["traces"] >= 1 and len(_stored(tmp_path)) == 1  # a lambda's code is in no key: never stored
    # The plain jitted step (here, without the compilation cache): the same fit.
    x = np.random.default_rng(0).uniform(-1, 1, (64, 2)).astype(np.float32)
    y = (np.sin(np.pi * x[:, :1]) + x[:, 1:] ** 2).astype(np.float32)
    model = kan.KAN([2, 3, 1], key=jax.random.PRNGKey(0))
    model, history = kan.fit(model, (x, y), steps=3, optimizer="lbfgs", progress=False, update_grid=False)
    np.testing.assert_allclose(first["loss"], history["train_loss"], rtol=1e-5, atol=1e-9)
    for a, b in zip(first["leaves"], jax.tree_util.tree_leaves(model)):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)


class _UserScale(eqx.Module):
    """A user's own module: its code is not the package's."""

    scale: jax.Array

    def __call__(self, x):
        return self.scale * x


def test_the_description_names_structure_and_settings_not_values():
    describe = trace_cache.portable_description
    base = describe(kan.KAN([2, 3, 1], key=jax.random.PRNGKey(0)))
    assert base is not None and "0x" not in base
    assert describe(kan.KAN([2, 3, 1], key=jax.random.PRNGKey(1))) == base  # other values, same program
    assert describe(kan.KAN([2, 3, 1], grid_size=7, key=jax.random.PRNGKey(0))) != base
    assert describe(kan.KAN([2, 4, 1], key=jax.random.PRNGKey(0))) != base
    assert describe(kan.KAN([2, 3, 1], key=jax.random.PRNGKey(0), base_activation=jax.nn.gelu)) != base
    assert describe(kan.KAN([2, 3, 1], key=jax.random.PRNGKey(0), base_activation=lambda v: v)) is None
    assert describe((_UserScale(jnp.ones(2)),)) is None
    scale = 2.0
    assert describe((lambda v: scale * v,)) is None
    # A symbolic edge's function is looked up by name while tracing: only the package's own may be stored.
    snapped, _ = symbolic.fix_symbolic(kan.KAN([2, 3, 1], key=jax.random.PRNGKey(0)), 0, 1, 0, "sin")
    assert describe(snapped) is not None and describe(snapped) != base
    symbolic.add_function("stored_step_probe", jnp.sin, sp.sin, 2)
    try:
        user, _ = symbolic.fix_symbolic(snapped, 0, 2, 1, "stored_step_probe")
        assert describe(user) is None
    finally:  # out of the registry again, for the rest of this test process
        for registry in (bases.symbolic_functions._REGISTRY, symbolic.library._SYMPY):
            registry.pop("stored_step_probe", None)


def test_an_export_jax_refuses_is_remembered(tmp_path, monkeypatch):
    pytest.importorskip("flatbuffers")
    monkeypatch.setattr(trace_cache, "enabled_dir", lambda: tmp_path)
    monkeypatch.setattr(trace_cache, "_calls", {})
    attempts = []

    def refuse(fn):
        attempts.append(1)
        raise ValueError("refused")

    monkeypatch.setattr(jax.export, "export", refuse)
    double = jax.jit(lambda v: 2.0 * v)
    x = jnp.arange(3.0)
    np.testing.assert_array_equal(trace_cache.exported_call(double, "twice", (x,)), 2.0 * x)
    assert attempts == [1] and [p.suffix for p in (tmp_path / trace_cache.FOLDER).iterdir()] == [".refused"]
    monkeypatch.setattr(trace_cache, "_calls", {})  # as in a new process: the marker alone says so
    np.testing.assert_array_equal(trace_cache.exported_call(double, "twice", (x,)), 2.0 * x)
    assert attempts == [1]
