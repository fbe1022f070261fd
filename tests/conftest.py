"""Shared fixtures, and one persistent compilation cache for the whole test session.

Most of the suite's time is XLA compiling. The test processes (two pytest-xdist workers, and the
subprocesses of the fresh-process tests) compile many of the same programs, so the session shares JAX's
persistent compilation cache in a new temporary folder (empty at the start, removed at the end: no state
is carried between runs, and the user's own cache is never read). ``KAN_TEST_COMPILE_CACHE=off`` turns
it off; a ``JAX_COMPILATION_CACHE_DIR`` already set is used as it is.

The slowest files are collected first, so that pytest-xdist (``--dist loadfile`` hands out whole files in
collection order) starts them early and the two workers finish together instead of one running the
longest file alone at the end (longest-first scheduling; the list holds the files measured slowest).
"""

import os
import shutil
import tempfile

import jax
import pytest

_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
# slowest first (seconds on 2 idle cores, 2026-12: 150, 60, 55, 50, 50, 40, 30, 28, 28, 25)
SLOWEST_FILES = ("test_symbolic_recovery.py", "test_demo.py", "test_discover.py", "test_io.py",
                 "test_symbolic_model.py", "test_grid_prune_io.py", "test_selectable.py", "test_nn.py",
                 "test_train_step.py", "test_bspline_fast.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: n for n, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FILES)))  # stable: file order kept


def pytest_configure(config):
    if os.environ.get("KAN_TEST_COMPILE_CACHE", "").lower() == "off":
        return
    if _CACHE_ENV not in os.environ:  # the controller (or a plain run): workers and subprocesses inherit it
        os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="kan-test-jax-cache-")
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        config._kan_owned_cache = os.environ[_CACHE_ENV]
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")))


def pytest_unconfigure(config):
    owned = getattr(config, "_kan_owned_cache", None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
