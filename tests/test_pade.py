"""Padé neurons (kan.PadeLayer, kan.PadeConv2d): shapes, the formula against a direct NumPy evaluation,
gradients, safety at the denominator's worst case, init variance, counts, plotting, errors, and one
fresh-process save/load for every kind of this family and of kan.RationalMLP."""

import json
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kan

KEY = jax.random.PRNGKey(0)


def _normal(seed, shape):
    """N(0, 1) float32 data drawn on the host (no XLA program to compile per shape)."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _perturbed(model, scale=0.3, seed=1):
    """The model with every float leaf moved by N(0, scale^2) noise (non-trivial denominators)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda leaf: leaf + jnp.asarray(scale * rng.normal(size=leaf.shape), leaf.dtype)
        if eqx.is_inexact_array(leaf) else leaf, model)


@pytest.fixture(scope="module")
def dense():
    """Perturbed [3/2] layers 3 -> 4 (one random draw shape, compiled once) in three settings."""
    return {(form, den): _perturbed(kan.PadeLayer(3, 4, 3, 2, key=KEY, form=form, denominator=den))
            for form, den in (("plain", "B"), ("smooth", "A"), ("smooth", "B"))}


def _direct(layer, x):
    """PAON by hand, float64: P_K, T_L per power, then the plain or smooth combination."""
    x = np.asarray(x, np.float64)
    w, b, bias = (np.asarray(v, np.float64) for v in (layer.numerator, layer.denominator, layer.bias))
    k, l = w.shape[1], b.shape[1]
    r = [x ** (j + 1) @ w[:, j].T for j in range(k)]
    if layer.denominator_form == "B":
        t = [x ** (j + 1) @ b[:, j].T for j in range(l)]
        q = lambda n: 1.0 + np.abs(sum(t[:n], np.zeros_like(r[0])))
    else:
        t = [np.abs(x) ** (j + 1) @ np.abs(b[:, j]).T for j in range(l)]
        q = lambda n: 1.0 + sum(t[:n], np.zeros_like(r[0]))
    p = lambda n: bias + sum(r[:n], np.zeros_like(r[0]))
    if layer.form == "plain":
        return p(k) / q(l)
    return (q(l) * p(k) + q(l - 1) * p(k - 1)) / (q(l) ** 2 + q(l - 1) ** 2)


def test_dense_formula_shapes_and_gradient(dense):
    x = _normal(2, (2, 5, 3))
    for (form, den), layer in dense.items():
        y = layer(x)
        assert y.shape == (2, 5, 4) and y.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(y), _direct(layer, x), rtol=2e-4, atol=2e-5, err_msg=form + den)
    low = _perturbed(kan.PadeLayer(3, 4, 1, 1, key=KEY, form="smooth"))  # P_0 = a_0, Q_0 = 1
    np.testing.assert_allclose(np.asarray(low(x)), _direct(low, x), rtol=2e-4, atol=2e-5)
    # gradient check: <grad, v> against a central difference along a random direction v (one program)
    layer, v = dense["smooth", "B"], _perturbed(dense["smooth", "B"], 0.1, seed=7)
    v = jax.tree_util.tree_map(lambda a, b: b - a, layer, v)
    loss = lambda m: jnp.sum(jnp.sin(m(x)))
    move = lambda t: jax.tree_util.tree_map(lambda p, d: p + t * d, layer, v)

    @jax.jit
    def both(eps):
        grad = jax.grad(loss)(layer)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(v)))
        return analytic, (loss(move(eps)) - loss(move(-eps))) / (2 * eps)

    analytic, numeric = both(1e-2)
    assert abs(float(analytic) - float(numeric)) <= 2e-2 * abs(float(analytic)) + 1e-3, (analytic, numeric)


def test_conv_shapes_stride_padding_and_formula():
    conv = _perturbed(kan.PadeConv2d(2, 3, 3, 2, 2, key=KEY, stride=2, padding=1, form="smooth"))
    x = _normal(3, (2, 1, 7, 6, 2))
    y = conv(x)
    assert y.shape == (2, 1, 4, 3, 3) == x.shape[:2] + conv.output_size((7, 6)) + (3,)
    assert conv(x[0, 0]).shape == (4, 3, 3)
    # one output pixel = the dense neuron on its (padded) 3x3x2 patch
    dense = eqx.tree_at(lambda m: (m.numerator, m.denominator, m.bias),
                        kan.PadeLayer(18, 3, 2, 2, key=KEY, form="smooth"),
                        (conv.numerator.transpose(4, 2, 0, 1, 3).reshape(3, 2, 18),
                         conv.denominator.transpose(4, 2, 0, 1, 3).reshape(3, 2, 18), conv.bias))
    padded = jnp.pad(x[0, 0], ((1, 1), (1, 1), (0, 0)))
    patch = padded[2:5, 4:7, :].reshape(18)  # output (1, 2) with stride 2
    np.testing.assert_allclose(np.asarray(y[0, 0, 1, 2]), _direct(dense, patch[None])[0], rtol=2e-4, atol=2e-5)
    assert kan.PadeConv2d(2, 3, 3, 2, 2, key=KEY, padding="SAME")(x[0]).shape == (1, 7, 6, 3)


def test_no_nan_or_inf_at_the_denominators_worst_case(dense):
    # T = x_0 - x_0^2 vanishes at x_0 = 1 (where the paper's 1 + T with B = -B would have its pole)
    den = jnp.zeros((4, 2, 3)).at[:, 0, 0].set(1.0).at[:, 1, 0].set(-1.0)
    for form in ("plain", "smooth"):
        layer = eqx.tree_at(lambda m: m.denominator, dense[form, "A" if form == "smooth" else "B"], den)
        x = jnp.array([[1.0, 0, 0], [0, 0, 0], [1e30, -1e30, 1], [jnp.inf, -jnp.inf, 0], [-2.0, 3.0, 1e4]])
        y, g = jax.jit(lambda m: (m(x), jax.grad(lambda n: jnp.sum(n(x)))(m)))(layer)
        assert bool(jnp.all(jnp.isfinite(y))), form
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(g)), form


def test_init_variance_of_an_8_deep_stack():
    x = _normal(4, (2048, 32))
    for form in ("plain", "smooth"):
        keys = jax.random.split(jax.random.PRNGKey(5), 8)
        stack = kan.PadeStack([kan.PadeLayer(32, 32, 3, 2, key=k, form=form) for k in keys])
        ratio = float(jnp.var(stack(x)) / jnp.var(x))
        assert 0.5 <= ratio <= 2.0, (form, ratio)


def test_counts_against_the_pytree_and_xla(dense):
    x = _normal(6, (64, 3))
    for layer in dense.values():
        assert kan.count_parameters(layer) == layer.num_parameters() == 4 * 3 * 5 + 4
        cost = kan.xla_flops(layer, x, optimized=False)
        assert abs(cost.flops + cost.transcendentals - kan.count_flops(layer)) <= 0.02 * layer.flops()
    stack = kan.PadeStack([dense["plain", "B"], dense["smooth", "B"].__class__(4, 3, key=KEY)])
    assert kan.count_flops(stack) == sum(layer.flops() for layer in stack.layers)
    conv = kan.PadeConv2d(2, 3, 3, 2, 2, key=KEY, padding=0, stride=2)
    assert kan.count_parameters(conv) == 3 * 3 * 2 * 3 * 4 + 3
    img = _normal(7, (4, 9, 8, 2))
    cost = kan.xla_flops(conv, img, optimized=False)
    assert abs(cost.flops - conv.flops((9, 8))) <= 0.02 * conv.flops((9, 8))  # exact without padding
    padded = kan.PadeConv2d(2, 3, 3, 2, 2, key=KEY, padding="SAME")
    # XLA skips the taps that fall on zero padding; the closed form counts full kernels (<= 25% more)
    ratio = padded.flops((9, 8)) / kan.xla_flops(padded, img, optimized=False).flops
    assert 1.0 <= ratio <= 1.25


def test_plot_edge_draws_a_neuron_slice(dense):
    from matplotlib.figure import Figure

    layer = dense["plain", "B"]
    x = _normal(8, (16, 3))
    phi = layer.edge_functions(x)
    assert phi.shape == (16, 4, 3)
    point = jnp.zeros((16, 3)).at[:, 1].set(x[:, 1])
    np.testing.assert_allclose(np.asarray(phi[:, :, 1]), np.asarray(layer(point)), rtol=1e-5, atol=1e-6)
    fig = kan.plot_edge(kan.PadeStack([layer]), 0, 1, 2, x)
    assert isinstance(fig, Figure) and fig.axes[0].lines
    # the convolution's neurons, as a dense layer over receptive fields: the same outputs, plottable
    conv = _perturbed(kan.PadeConv2d(2, 3, 3, 2, 2, key=KEY))
    img = _normal(9, (2, 5, 5, 2))
    dense_view = conv.as_pade_layer()
    patches = kan.ConvKAN2d(2, 3, 3, key=KEY).patches(img)
    np.testing.assert_allclose(np.asarray(dense_view(patches)), np.asarray(conv(img)), rtol=1e-4, atol=1e-5)
    fig = kan.plot_edge(kan.PadeStack([dense_view]), 0, 2, 5, patches.reshape(-1, 18))
    assert isinstance(fig, Figure) and fig.axes[0].lines


def test_clear_errors(dense):
    layer = dense["plain", "B"]
    with pytest.raises(ValueError, match="form"):
        kan.PadeLayer(2, 2, key=KEY, form="round")
    with pytest.raises(ValueError, match="denominator"):
        kan.PadeLayer(2, 2, key=KEY, denominator="C")
    with pytest.raises(ValueError, match="degree"):
        kan.PadeLayer(2, 2, 0, 2, key=KEY)
    with pytest.raises(ValueError, match="init_scale"):
        kan.PadeLayer(2, 2, key=KEY, init_scale=float("nan"))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        layer(jnp.ones((4, 2)))
    with pytest.raises(TypeError, match="floating"):
        layer(jnp.ones((4, 3), jnp.int32))
    with pytest.raises(ValueError, match="padding"):
        kan.PadeConv2d(2, 2, key=KEY, padding="FULL")
    with pytest.raises(ValueError, match="kernel_size"):
        kan.PadeConv2d(2, 2, (3, 0), key=KEY)
    conv = kan.PadeConv2d(2, 3, 3, 2, 2, key=KEY)
    with pytest.raises(ValueError, match="H, W, 2"):
        conv(jnp.ones((4, 4, 3)))
    with pytest.raises(ValueError, match="larger than the padded image"):
        conv(jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="image size"):
        kan.count_flops(conv)
    sized = kan.PadeConv2d(2, 3, 3, 2, 2, key=KEY, image_size=(9, 8))
    assert kan.count_flops(sized) == sized.flops((9, 8)) == conv.flops((9, 8))
    with pytest.raises(ValueError, match="layer 0 gives 4"):
        kan.PadeStack([layer, layer])
    with pytest.raises(ValueError, match="reference"):
        layer.edge_functions(jnp.ones((3, 3)), reference=jnp.ones(2))


def test_checkpoints_load_in_a_fresh_process(tmp_path, dense):
    models = {
        "pade_plain": dense["plain", "B"],
        "conv": _perturbed(kan.PadeConv2d(2, 3, 3, 2, 2, key=KEY, stride=2, padding=((1, 0), (0, 1)))),
        "rational_shared": _perturbed(kan.RationalMLP([3, 4, 4, 2], key=KEY, sharing="shared"), 0.05),
        "rational_per_layer": _perturbed(kan.RationalMLP([3, 4, 4, 2], key=KEY, sharing="per_layer"), 0.05),
    }
    x = _normal(9, (2, 5, 5, 3))
    for name, model in models.items():
        inputs = x[..., :2] if name == "conv" else x
        np.save(tmp_path / f"{name}.x.npy", np.asarray(inputs))
        kan.save(tmp_path / f"{name}.eqx", model)
        np.save(tmp_path / f"{name}.expected.npy", np.asarray(model(inputs)))
    script = textwrap.dedent(f"""
        import json, pathlib, numpy as np, kan
        d = pathlib.Path({str(tmp_path)!r}); report = {{}}
        for path in sorted(d.glob("*.eqx")):
            model = kan.load(path)
            np.save(d / (path.stem + ".loaded.npy"), np.asarray(model(np.load(d / (path.stem + ".x.npy")))))
            report[path.stem] = [type(model).__name__, len(model.activations) if isinstance(model, kan.RationalMLP) else 0]
        print(json.dumps(report))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["rational_shared"] == ["RationalMLP", 1]  # still one shared coefficient set
    assert report["rational_per_layer"] == ["RationalMLP", 2]
    for name, model in models.items():
        assert report[name][0] == type(model).__name__
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.loaded.npy"),
                                      np.load(tmp_path / f"{name}.expected.npy"), err_msg=name)
