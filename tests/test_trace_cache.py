"""kan.trace_cache: a jitted program stored as a jax.export artefact beside the compilation cache, so a
fresh process calls it without tracing the Python function again."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kan.trace_cache as trace_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A program that counts its traces (a host-side counter bumped while tracing) in a fresh process.
_CHILD = """
import functools, json, sys
import jax, jax.numpy as jnp, numpy as np
from kan.compile_cache import enable_compile_cache
from kan.trace_cache import exported_call
enable_compile_cache(sys.argv[1])
traces = []

@functools.partial(jax.jit, static_argnames=("power",))
def f(x, y, power):
    traces.append(1)
    return jnp.sum(jnp.sin(x) ** power, axis=-1) + y

x = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
out = exported_call(f, "probe", (x, np.float32(0.5)), {"power": int(sys.argv[2])})
print(json.dumps({"traces": len(traces), "out": np.asarray(out).tolist()}))
"""


def _child(folder, power):
    done = subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(power)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_process_calls_the_stored_program_without_tracing_it(tmp_path):
    pytest.importorskip("flatbuffers")
    first = _child(tmp_path, 3)
    stored = list((tmp_path / trace_cache.FOLDER).iterdir())
    assert first["traces"] == 1 and len(stored) == 1 and stored[0].name.startswith("probe-")
    second = _child(tmp_path, 3)
    assert second["traces"] == 0  # loaded: the Python function was not traced
    x = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(second["out"], np.sum(np.sin(x) ** 3, axis=-1) + 0.5, rtol=1e-6)
    assert second["out"] == first["out"]
    third = _child(tmp_path, 2)  # another static argument: a new program, traced
    assert third["traces"] == 1 and len(list((tmp_path / trace_cache.FOLDER).iterdir())) == 2
    stored[0].write_bytes(b"not an export")  # a broken entry is exported again
    fourth = _child(tmp_path, 3)
    assert fourth["traces"] == 1 and fourth["out"] == first["out"]


@functools.partial(jax.jit, static_argnames=("scale",))
def _scaled(x, scale):
    return x * scale


def test_without_the_compilation_cache_it_is_a_plain_call(tmp_path, monkeypatch):
    monkeypatch.setattr(trace_cache, "enabled_dir", lambda: None)
    x = jnp.arange(4.0)
    np.testing.assert_array_equal(trace_cache.exported_call(_scaled, "scaled", (x,), {"scale": 3.0}), x * 3.0)
    monkeypatch.setattr(trace_cache, "enabled_dir", lambda: tmp_path)
    monkeypatch.setattr(trace_cache, "_serialization_available", lambda: False)
    np.testing.assert_array_equal(trace_cache.exported_call(_scaled, "scaled", (x,), {"scale": 2.0}), x * 2.0)
    assert not (tmp_path / trace_cache.FOLDER).exists()
    monkeypatch.undo()
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the cache "folder" is a file: the program runs, exported but unstored
    monkeypatch.setattr(trace_cache, "enabled_dir", lambda: blocked)
    if trace_cache._serialization_available():
        np.testing.assert_array_equal(trace_cache.exported_call(_scaled, "scaled", (x,), {"scale": 5.0}), x * 5.0)


def test_keys_follow_static_arguments_shapes_and_dtypes():
    key = trace_cache.program_key
    x = np.zeros((3, 4), np.float32)
    base = key("p", (x,), {"n": 1})
    assert base == key("p", (np.ones((3, 4), np.float32),), {"n": 1})  # values do not matter
    others = {key("q", (x,), {"n": 1}), key("p", (x,), {"n": 2}), key("p", (x[:2],), {"n": 1}),
              key("p", (x.astype(np.int32),), {"n": 1})}
    assert base not in others and len(others) == 4


# Fits of the curve x^3 to a user function "probe" defined as x^p for each p in argv[2] in turn (a
# redefinition replaces it), with the compilation cache (and so the stored exports) on unless argv[1]
# is "off"; prints the R^2 of each fit.
_USER_FUNCTION_CHILD = """
import json, sys
import numpy as np, sympy as sp
import symbolic
from kan.compile_cache import enable_compile_cache
from symbolic.fit_edges import fit_curves
if sys.argv[1] != "off":
    enable_compile_cache(sys.argv[1])
x = np.linspace(-1.0, 1.0, 40)[None]
r2 = []
for k, power in enumerate(int(p) for p in sys.argv[2].split(",")):
    symbolic.add_function("probe", lambda v, p=power: v ** p, lambda v, p=power: v ** p, 2, overwrite=k > 0)
    r2.append(float(fit_curves(x, x ** 3, ["probe"]).r2[0, 0]))
print(json.dumps(r2))
"""


def _user_function_fits(folder, powers):
    done = subprocess.run([sys.executable, "-c", _USER_FUNCTION_CHILD, str(folder), powers], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_user_function_is_traced_from_its_current_code(tmp_path):
    """The curve fits look library functions up by name while tracing. A user's function is not part of
    the stored program's key (only the package's sources are), so it must not be run from a program
    stored by an earlier process, nor from one traced before it was redefined."""
    (square,) = _user_function_fits(tmp_path, "2")  # x^3 by c (a x + b)^2 + d: about the linear part's 0.84
    cube, square_again = _user_function_fits(tmp_path, "3,2")  # the same name and key, then redefined
    assert square < 0.95 and cube > 0.9999 and square_again == pytest.approx(square, abs=1e-6)
    assert not (tmp_path / trace_cache.FOLDER).exists() or not any(
        p.name.startswith("fit_all-") for p in (tmp_path / trace_cache.FOLDER).iterdir())
