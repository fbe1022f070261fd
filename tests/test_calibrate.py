"""kan.calibrate: LSUV-style data-dependent rescaling (Mishkin & Matas 2016) of deep stacks."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bases import BSpline, Chebyshev, Fourier, GaussianRBF, Rational, ReLUKAN
from bases.symbolic_edges import SymbolicEdges
from kan import KAN, MLP, AFKANLayer, GroupKANLayer, KANLayer, SelectableKANLayer
from kan.edit.calibrate import CalibrationRecord, calibrate, layer_variances, register_layer_kind
from kan.edit.calibrate import _forward_jit as forward  # the layer's own call, compiled as calibrate compiles it
from kan.edit.surgery import replace_fields

KEY = jax.random.PRNGKey(0)


def _run(stack, x):
    for layer in stack:  # Equinox's Linear takes one sample
        x = jax.vmap(layer)(x) if isinstance(layer, eqx.nn.Linear) else layer(x)
    return x


def _var(stack, x):
    return float(jnp.var(_run(stack, x) if isinstance(stack, (list, tuple)) else stack(x)))


ROWS = 2048  # calibration rows of the small tests: one batch shape, so compiled forwards are shared


def _batches(width, seed, rows=4096):
    k_cal, k_eval = jax.random.split(jax.random.PRNGKey(100 + seed))
    return jax.random.normal(k_cal, (rows, width)), jax.random.normal(k_eval, (4096, width))


# ----- the reported drift, and its fix -------------------------------------------------------------
WIDTH, DEPTH = 32, 32
DRIFTING = {  # kind -> (layer factory(index, key), seed whose stack drifts without calibration)
    "kan_rational": (lambda i, k: KANLayer(WIDTH, WIDTH, Rational(WIDTH), key=k), 0),
    "gr_kan_swish": (lambda i, k: GroupKANLayer(WIDTH, WIDTH, init="swish", key=k, backend="xla"), 1),
    "kat_alternation": (lambda i, k: GroupKANLayer(WIDTH, WIDTH, init="swish" if i % 2 else "identity",
                                                   key=k, backend="xla"), 4),
}


@pytest.mark.parametrize("kind", sorted(DRIFTING))
def test_calibrate_fixes_drifting_32_layer_rational_stacks(kind):
    make, seed = DRIFTING[kind]
    stack = [make(i, k) for i, k in enumerate(jax.random.split(jax.random.PRNGKey(seed), DEPTH))]
    x_cal, x_eval = _batches(WIDTH, seed)
    before = _var(stack, x_eval)
    assert before > 2.0, f"{kind}: the uncalibrated stack no longer drifts ({before:.3g}); pick one that does"
    calibrated, records = calibrate(stack, x_cal, return_records=True)
    assert isinstance(calibrated, list) and len(records) == DEPTH
    assert all(isinstance(r, CalibrationRecord) and abs(r.variance_after - 1.0) <= 1e-3 for r in records)
    after = _var(calibrated, x_eval)  # held-out N(0, 1) inputs, not the calibration batch
    assert 0.5 <= after <= 2.0, (kind, before, after)


W = 16  # the small tests share one width (and candidate list) so compiled code is reused
SKAN = ["rbf", "rational"]
OTHER = {
    "bspline": lambda w, i, k: KANLayer(w, w, BSpline(w), key=k),
    "rbf": lambda w, i, k: KANLayer(w, w, GaussianRBF(w), key=k),
    "chebyshev": lambda w, i, k: KANLayer(w, w, Chebyshev(w), key=k),
    "fourier": lambda w, i, k: KANLayer(w, w, Fourier(w, 3), key=k),
    "relu_kan": lambda w, i, k: KANLayer(w, w, ReLUKAN(w), key=k),
    "af_kan": lambda w, i, k: AFKANLayer(w, w, key=k),
    "s_kan": lambda w, i, k: SelectableKANLayer(w, w, SKAN, key=k),
}


@pytest.mark.parametrize("kind", sorted(OTHER) + ["mlp_gelu"])
def test_other_kinds_stay_in_range_after_calibration(kind):
    width, depth = W, 8  # these kinds do not drift (benchmarks.models.deep_variance has 32 layers); 8 keep it short
    if kind == "mlp_gelu":
        stack = MLP([width] * (depth + 1), key=KEY)
    else:
        stack = [OTHER[kind](width, i, k) for i, k in enumerate(jax.random.split(KEY, depth))]
    x_cal, x_eval = _batches(width, 0, rows=ROWS)
    calibrated = calibrate(stack, x_cal)
    trace = [v for _, v in layer_variances(calibrated, x_eval)]
    assert len(trace) == depth and all(0.5 <= v <= 2.0 for v in trace), trace


# ----- models: KAN with products, MLP, mixed sequences --------------------------------------------
def test_kan_with_multiplication_nodes_calibrates_the_node_values():
    model = KAN([W] * 5, mult_nodes=[5, 5, 5], key=KEY)
    x_cal, x_eval = _batches(W, 0, rows=ROWS)
    with warnings.catch_warnings():  # one exact round per layer: no warning even at max_iters=1
        warnings.simplefilter("error")
        calibrated, records = calibrate(model, x_cal, tol=1e-4, max_iters=1, return_records=True)
    assert jax.tree_util.tree_structure(calibrated) == jax.tree_util.tree_structure(model)
    assert [r.path for r in records] == ["layers[0]", "layers[1]", "layers[2]", "layers[3]"]
    # the statistic is the next layer's input: node values after the products
    for h in calibrated.activations(x_cal)[1:]:  # the model's own forward
        assert float(jnp.var(h)) == pytest.approx(1.0, abs=2e-3)
    assert all(r.rounds == 1 for r in records)  # products scale as s^2: solved exactly (a quartic)
    assert 0.5 <= layer_variances(calibrated, x_eval)[-1][1] <= 2.0
    np.testing.assert_array_equal(calibrated.layers[1].edge_mask, model.layers[1].edge_mask)


def test_mixed_sequences_keep_their_container_and_structure():
    k = jax.random.split(KEY, 8)
    layers = [
        KANLayer(W, W, GaussianRBF(W), key=k[0]),
        GroupKANLayer(W, W, init="swish", key=k[1], backend="xla"),
        AFKANLayer(W, W, key=k[2]),
        SelectableKANLayer(W, W, SKAN, key=k[3]),
        eqx.nn.Lambda(jax.nn.gelu),
        eqx.nn.Linear(W, W, key=k[4]),
        jnp.tanh,
        MLP([W, W, W], key=k[5]),
        KAN([W, W, W], key=k[6]),
    ]
    x = jax.random.normal(k[7], (ROWS, W))
    model = eqx.nn.Sequential(layers)
    calibrated, records = calibrate(model, x, return_records=True)
    assert type(calibrated) is eqx.nn.Sequential
    assert jax.tree_util.tree_structure(calibrated) == jax.tree_util.tree_structure(model)
    assert len(records) == 5 + 2 + 2  # MLP and KAN count their layers
    assert records[0].path == "layers[0]" and records[-1].path == "layers[8].layers[1]"
    assert all(abs(r.variance_after - 1.0) <= 1e-3 for r in records)
    assert [p for p, _ in layer_variances(calibrated, x)] == [r.path for r in records]
    assert layer_variances(calibrated, x)[-1][1] == pytest.approx(1.0, abs=1e-3)
    for container in (list, tuple):  # same scales, same container back
        again = calibrate(container(layers[:3]), x)
        assert type(again) is container
        np.testing.assert_array_equal(again[2].weight, calibrated.layers[2].weight)


# ----- only scales change ---------------------------------------------------------------------------
_SCALED = ("spline_weight", "base_weight", "weight", "weights", "affine")


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(eqx.filter(tree, eqx.is_array))[0]


def _assert_only_output_weights_scaled(old, new, scale):
    for (path, a), (path_b, b) in zip(_leaves(old), _leaves(new)):
        assert path == path_b
        name = jax.tree_util.keystr(path)
        a, b = np.asarray(a), np.asarray(b)
        if any(f".{field}" in name for field in _SCALED):  # not norm_weight, score_weight, ...
            if name.endswith(".affine"):  # symbolic edges: c and d of active edges only
                continue
            np.testing.assert_allclose(b, scale * a, rtol=1e-6, atol=1e-7, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{name} must not change")


@pytest.mark.parametrize("kind", ["kan_layer", "gr_kan", "af_kan", "s_kan", "selected", "linear"])
def test_only_output_weights_are_scaled_biases_masks_grids_kept(kind):
    k1, k2 = jax.random.split(KEY)
    layer = {  # the shapes of the other tests, so compiled code is shared
        "kan_layer": lambda: KANLayer(W, W, BSpline(W), key=k1),
        "gr_kan": lambda: GroupKANLayer(W, W, init="swish", key=k1, backend="xla"),
        "af_kan": lambda: AFKANLayer(W, W, key=k1),
        "s_kan": lambda: SelectableKANLayer(W, W, SKAN, key=k1),
        "selected": lambda: eqx.tree_at(lambda m: m.logits, SelectableKANLayer(W, W, SKAN, key=k1),
                                        jnp.tile(jnp.array([[4.0, 0.0]]), (W, 1))
                                        ).finalize(),  # every node keeps rbf: one group
        "linear": lambda: eqx.nn.Linear(W, W, key=k1),
    }[kind]()
    if getattr(layer, "bias", None) is not None:  # a bias the variance ignores
        layer = eqx.tree_at(lambda m: m.bias, layer, jnp.full_like(layer.bias, 3.0))
    x = 2.0 * jax.random.normal(k2, (ROWS, W))
    new, (record,) = calibrate(layer, x, target=0.25, return_records=True)
    assert record.scale != pytest.approx(1.0, abs=1e-3)
    _assert_only_output_weights_scaled(layer, new, record.scale)
    y, y_new = forward(layer, x), forward(new, x)
    assert float(jnp.var(y_new)) == pytest.approx(0.25, rel=1e-3)  # reachable despite the bias
    offset = layer.groups[0].bias if kind == "selected" else getattr(layer, "bias", 0.0)
    np.testing.assert_allclose(y_new - offset, record.scale * (y - offset), rtol=1e-4, atol=1e-4)


def test_symbolic_edges_are_scaled_with_the_numeric_ones():
    layer = KANLayer(W, 2, BSpline(W), key=KEY)
    sym = SymbolicEdges.empty(2, W).with_edge(0, 1, "sin", (2.0, 0.5, 1.5, 0.3))
    layer = replace_fields(layer, symbolic=sym, bias=jnp.array([1.0, -2.0]))
    x = jax.random.normal(KEY, (ROWS, W))
    new, (record,) = calibrate(layer, x, target=4.0, return_records=True)
    s = record.scale
    np.testing.assert_allclose(new(x) - layer.bias, s * (layer(x) - layer.bias), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new.symbolic.affine[0, 1], [2.0, 0.5, 1.5 * s, 0.3 * s], rtol=1e-6)
    np.testing.assert_array_equal(new.symbolic.affine[1], sym.affine[1])  # inactive edges untouched
    assert new.symbolic.names == sym.names


def test_register_layer_kind():
    class Scaled(eqx.Module):
        w: jax.Array

        def __call__(self, x):
            return x @ self.w.T + 1.0

    register_layer_kind(Scaled, lambda l, s: eqx.tree_at(lambda m: m.w, l, l.w * s))
    x = jax.random.normal(KEY, (ROWS, W))
    new = calibrate([Scaled(jnp.ones((3, W)) * 5.0)], x)
    assert float(jnp.var(new[0](x))) == pytest.approx(1.0, rel=1e-3)


# ----- errors ---------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    model = KAN([W, W], key=KEY)
    x = jax.random.normal(KEY, (ROWS, W))
    with pytest.raises(ValueError, match=r"shape \(batch, 16\).*\(2048, 5\)"):
        calibrate(model, jnp.ones((ROWS, 5)))
    with pytest.raises(ValueError, match=r"shape \(batch, 16\)"):
        calibrate(model, jnp.ones((W,)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        calibrate(model, jnp.ones((1, W)))
    with pytest.raises(ValueError, match="1 NaN or inf"):
        calibrate(model, x.at[3, 1].set(jnp.nan))
    with pytest.raises(ValueError, match="2 NaN or inf"):
        calibrate(model, x.at[0, 0].set(jnp.inf).at[1, 0].set(-jnp.inf))
    with pytest.raises(TypeError, match="floating-point"):
        calibrate(model, jnp.ones((ROWS, W), jnp.int32))
    for bad in (dict(target=0.0), dict(target=float("nan")), dict(tol=-1.0), dict(max_iters=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            calibrate(model, x, **bad)


def test_unknown_layer_kind_is_named():
    class Mystery(eqx.Module):
        w: jax.Array

        def __call__(self, x):
            return x @ self.w

    x = jax.random.normal(KEY, (ROWS, W))
    with pytest.raises(TypeError, match=r"unknown layer kind Mystery at \[1\].*KANLayer"):
        calibrate([KANLayer(W, W, key=KEY), Mystery(jnp.ones((W, W)))], x)
    with pytest.raises(TypeError, match="unknown layer kind Conv1d at layers"):
        calibrate(eqx.nn.Sequential([eqx.nn.Conv1d(W, W, 1, key=KEY)]), x)


def test_zero_variance_or_weightless_layers_are_errors():
    dead = KANLayer(W, W, key=KEY)
    dead = eqx.tree_at(lambda l: (l.spline_weight, l.base_weight), dead,
                       (jnp.zeros_like(dead.spline_weight), jnp.zeros_like(dead.base_weight)))
    x = jax.random.normal(KEY, (ROWS, W))
    with pytest.raises(ValueError, match=r"layer \[1\] \(KANLayer\) has output variance 0"):
        calibrate([KANLayer(W, W, key=KEY), dead], x)
    biased = eqx.tree_at(lambda l: l.bias, dead, jnp.arange(W, dtype=jnp.float32))
    with pytest.raises(ValueError, match="does not depend on its weights"):
        calibrate(biased, x)
    live = eqx.tree_at(lambda l: l.bias, KANLayer(W, W, key=KEY), 10.0 * jnp.arange(W, dtype=jnp.float32))
    with pytest.raises(ValueError, match=r"cannot reach output variance 1 .* stays >= 21\d\d"):
        calibrate(live, x)  # the biases alone have variance 2125


class _Saturating(eqx.Module):
    """Output not affine in the weight scale: the exact solve misses, LSUV's rounds take over."""

    w: jax.Array

    def __call__(self, x):
        return jnp.tanh(x @ self.w.T)


register_layer_kind(_Saturating, lambda l, s: eqx.tree_at(lambda m: m.w, l, l.w * s))


def test_lsuv_rounds_for_a_kind_whose_output_is_not_affine_in_the_scale():
    layer = _Saturating(0.3 * jax.random.normal(KEY, (W, W)))
    x = jax.random.normal(KEY, (ROWS, W))
    new, (record,) = calibrate(layer, x, target=0.5, tol=1e-3, max_iters=50, return_records=True)
    assert record.rounds > 1 and float(jnp.var(new(x))) == pytest.approx(0.5, rel=1e-3)
    with pytest.warns(RuntimeWarning, match="after 1 rescalings"):
        calibrate(layer, x, target=0.5, tol=1e-6, max_iters=1)
