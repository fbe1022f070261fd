"""Small bookkeeping arrays are made on the host: building a model, starting L-BFGS, checking data and
cutting nodes compile no XLA program for a new shape (each such program costs 10-40 ms of a short job)."""

import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import BSpline, host_array, trainable_filter
from bases.symbolic_edges import SymbolicEdges
from kan import KAN
from kan.edit.prune import keep_hidden_nodes, mask_hidden_nodes
from kan.edit.surgery import replace_fields
from kan.train.fit import _lbfgs_init, check_data


def _compiled(caplog, fn):
    """Names of the XLA programs compiled while running ``fn()``."""
    caplog.clear()
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        fn()
    return [r.getMessage().split(" with ")[0] for r in caplog.records if r.getMessage().startswith("Compiling")]


def test_host_array_makes_no_program_keeps_dtype_and_passes_tracers(caplog):
    assert _compiled(caplog, lambda: host_array(np.arange(13.0).reshape(13, 1))) == []
    assert host_array(np.zeros(3)).dtype == jnp.float32
    assert host_array([1, 2], np.int32).dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(host_array(np.float64(0.1) * np.ones(2))), np.float32(0.1))
    doubled = jax.jit(lambda v: host_array(v) * 2)(jnp.arange(3.0))
    np.testing.assert_array_equal(np.asarray(doubled), [0.0, 2.0, 4.0])


def test_model_construction_and_lbfgs_start_compile_nothing_for_new_shapes(caplog):
    KAN([2, 3, 1], grid_size=3, key=jax.random.PRNGKey(0))  # the shape-free programs, once per process
    programs = _compiled(caplog, lambda: KAN([3, 7, 2], grid_size=4, key=jax.random.PRNGKey(1)))
    assert programs == [], programs
    model = KAN([3, 7, 2], grid_size=4, key=jax.random.PRNGKey(1))
    params, _ = eqx.partition(model, trainable_filter(model))
    state = None

    def start():
        nonlocal state
        state = _lbfgs_init(params)

    assert _compiled(caplog, start) == []
    n = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    assert state.s.shape == (10, n) and state.grad.shape == (n,) and state.s.dtype == jnp.float32
    assert not bool(state.fresh) and int(state.head) == 0
    x, y = jnp.ones((29, 3)), jnp.zeros((29, 2))
    assert _compiled(caplog, lambda: check_data((x, y), 3)) == []
    with pytest.raises(ValueError, match="NaN"):
        check_data((x.at[4, 1].set(jnp.nan), y), 3)


def test_cutting_and_masking_nodes_compile_nothing(caplog):
    model = KAN([2, 6, 3], grid_size=3, key=jax.random.PRNGKey(2))
    layer = model.layers[1]
    sym = SymbolicEdges.empty(3, 6).with_edge(1, 4, "sin", (2.0, 0.5, 1.5, -1.0))
    model = eqx.tree_at(lambda m: m.layers[1], model, replace_fields(layer, symbolic=sym))
    keep = np.array([1, 4])
    narrow = None

    def cut():
        nonlocal narrow
        narrow = keep_hidden_nodes(model, 1, keep)
        mask_hidden_nodes(model, 1, keep)

    assert _compiled(caplog, cut) == []
    np.testing.assert_array_equal(np.asarray(narrow.layers[0].spline_weight),
                                  np.asarray(model.layers[0].spline_weight)[keep])
    np.testing.assert_array_equal(np.asarray(narrow.layers[1].spline_weight),
                                  np.asarray(model.layers[1].spline_weight)[:, keep])
    np.testing.assert_array_equal(np.asarray(narrow.layers[1].basis.grid), np.asarray(layer.basis.grid)[keep])
    assert narrow.layers[1].symbolic.names[1] == ("0", "sin")
    np.testing.assert_array_equal(np.asarray(narrow.layers[1].symbolic.affine[1, 1]), [2.0, 0.5, 1.5, -1.0])
    x = jax.random.uniform(jax.random.PRNGKey(3), (16, 2), minval=-1, maxval=1)
    masked = mask_hidden_nodes(model, 1, keep)
    np.testing.assert_allclose(np.asarray(narrow(x)), np.asarray(masked(x)), rtol=1e-5, atol=1e-6)
    assert isinstance(narrow.layers[1].basis, BSpline)
