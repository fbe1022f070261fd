"""ConvKAN2d and S-ConvKAN (SelectableConvKAN2d): shapes, the edge sum per receptive field against a
direct loop, gradients in float64, init variance, counts against the pytree and XLA, save/load in a
fresh process, plotting through the KAN adapter, the planted per-channel selection, clear errors."""

import json
import math
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bases
import kan
from kan.layers.selectable_spaces import InputAffine

# The two planted spaces: "sin" holds sin(pi x) exactly, "step" holds tanh(5 x) exactly; neither the other.
PLANTED = (("step", lambda d: InputAffine(bases.Chebyshev(d, 1), scale=5.0)),
           ("sin", lambda d: bases.Fourier(d, 1, frequency=math.pi)))


@pytest.fixture(scope="module")
def conv():
    """A 2 -> 2 channel layer with every geometry option off the default. Every layer of this file has
    18 patch features and 2 outputs where it can, so the inner layer's init compiles once."""
    return kan.ConvKAN2d(2, 2, 3, key=jax.random.PRNGKey(0), stride=(2, 1), padding=((1, 0), (0, 2)),
                         dilation=(1, 2), image_size=(5, 6))


@pytest.fixture(scope="module")
def image():
    return jax.random.normal(jax.random.PRNGKey(1), (4, 5, 6, 2))


@pytest.fixture(scope="module")
def planted():
    """A SelectableConvKAN2d fitted to a target whose channel 0 enters through sin(pi x) and channel 1
    through tanh(5 x), at every offset of a 2x2 kernel."""
    x = np.random.default_rng(0).uniform(-1, 1, (64, 5, 5, 2)).astype(np.float32)  # numpy: no compiles
    a = np.array([[1.0, -0.5], [0.7, 0.4]])
    b = np.array([[0.6, 0.8], [-1.0, 0.5]])
    s, t = np.sin(math.pi * x[..., 0]), np.tanh(5 * x[..., 1])
    y = sum(a[i, j] * s[:, i:i + 4, j:j + 4] + b[i, j] * t[:, i:i + 4, j:j + 4]
            for i in range(2) for j in range(2))[..., None].astype(np.float32)
    x, y = jnp.asarray(x), jnp.asarray(y)
    model = kan.SelectableConvKAN2d(2, 1, 2, PLANTED, key=jax.random.PRNGKey(0), base_activation=None)
    fitted, history = kan.fit_selectable_conv(model, (x, y), steps=80, learning_rate=3e-2, ridge=1e-2)
    return model, fitted, history, x, y


def _lax_shape(x, kernel, stride, padding, dilation, c_out):
    """Output shape of jax.lax's convolution with the same geometry (an independent reference)."""
    w = jax.ShapeDtypeStruct(kernel + (x.shape[-1], c_out), jnp.float32)
    lead = x.shape[:-3]
    flat = jax.ShapeDtypeStruct((int(np.prod(lead)),) + x.shape[-3:], jnp.float32)
    out = jax.eval_shape(lambda a, b: jax.lax.conv_general_dilated(
        a, b, stride, padding, rhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC")), flat, w)
    return lead + out.shape[1:]


@pytest.mark.parametrize("kernel,stride,padding,dilation", [
    ((3, 3), (1, 1), "VALID", (1, 1)), ((3, 3), (2, 2), "SAME", (1, 1)), ((3, 3), (1, 2), "SAME", (2, 1)),
    ((1, 9), (3, 1), ((2, 0), (1, 1)), (1, 1)), ((9, 1), (2, 2), "SAME", (1, 1))])
def test_output_shapes_match_lax_with_leading_batch_dims(conv, kernel, stride, padding, dilation):
    layer = kan.ConvKAN2d(2, 2, kernel, layer=conv.layer, stride=stride, padding=padding, dilation=dilation)
    x = jax.ShapeDtypeStruct((2, 3, 7, 8, 2), jnp.float32)
    expected = _lax_shape(x, kernel, stride, padding, dilation, 2)
    assert jax.eval_shape(layer, x).shape == expected
    assert layer.output_size((7, 8)) == expected[-3:-1]
    unbatched = jax.ShapeDtypeStruct((7, 8, 2), jnp.float32)
    assert jax.eval_shape(layer, unbatched).shape == expected[-3:]


def test_integer_padding_and_vmap(conv, image):
    layer = kan.ConvKAN2d(2, 2, 3, key=jax.random.PRNGKey(0), padding=1)
    assert jax.eval_shape(layer, image).shape == (4, 5, 6, 2)
    assert jax.eval_shape(jax.vmap(conv), image).shape == jax.eval_shape(conv, image).shape


def test_edge_sum_equals_a_direct_loop_over_positions(conv, image):
    x = np.asarray(image[0], np.float64)  # (5, 6, 2)
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    xp = np.pad(x, (conv.padding[0], conv.padding[1], (0, 0)))
    ho, wo = conv.output_size((5, 6))
    layer = conv.layer
    expected = np.zeros((ho, wo, 2))
    for r in range(ho):
        for s in range(wo):
            patch = np.array([xp[r * sh + i * dh, s * sw + j * dw, c]
                              for i in range(kh) for j in range(kw) for c in range(2)], np.float32)
            phi = np.asarray(layer.edge_functions(jnp.asarray(patch)))  # (out, P)
            expected[r, s] = phi.sum(axis=1) + np.asarray(layer.bias)
    np.testing.assert_allclose(np.asarray(conv(image))[0], expected, rtol=1e-5, atol=1e-5)
    # The documented feature order against jax.lax's patches (channel-major: c * kh * kw + i * kw + j).
    lax_patches = jax.lax.conv_general_dilated_patches(
        image, (kh, kw), (sh, sw), conv.padding, rhs_dilation=(dh, dw), dimension_numbers=("NHWC", "OIHW", "NHWC"))
    order = [c * kh * kw + i * kw + j for i in range(kh) for j in range(kw) for c in range(2)]
    np.testing.assert_allclose(np.asarray(conv.patches(image)), np.asarray(lax_patches)[..., order], atol=1e-6)


def test_gradients_in_float64(conv, image):
    """Reverse-mode gradients (input and spline weights) against central differences along random
    directions, in float64."""
    with jax.enable_x64(True):
        to64 = lambda a: jnp.asarray(np.asarray(a), jnp.float64) if eqx.is_inexact_array(a) else a
        layer, x = jax.tree_util.tree_map(to64, conv), jnp.asarray(0.6 * np.asarray(image[:1]), jnp.float64)
        args = (x, layer.layer.spline_weight)

        def f(x, w):
            return jnp.sum(jnp.sin(eqx.tree_at(lambda m: m.layer.spline_weight, layer, w)(x)))

        value_and_grad = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))  # one compiled program for all calls
        grads = value_and_grad(*args)[1]
        rng, eps = np.random.default_rng(0), 1e-5
        for _ in range(3):
            dirs = [rng.standard_normal(a.shape) for a in args]
            plus = value_and_grad(*(jnp.asarray(np.asarray(a) + eps * v) for a, v in zip(args, dirs)))[0]
            minus = value_and_grad(*(jnp.asarray(np.asarray(a) - eps * v) for a, v in zip(args, dirs)))[0]
            numeric = float((plus - minus) / (2 * eps))
            analytic = float(sum(np.vdot(np.asarray(g), v) for g, v in zip(grads, dirs)))
            assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def test_init_variance_of_an_8_deep_stack():
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    layers = [kan.ConvKAN2d(2, 2, 3, key=k, padding="SAME") for k in keys]
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 10, 10, 2))
    h = x
    for layer in layers:
        h = layer(h)
    ratio = float(jnp.var(h) / jnp.var(x))
    assert 0.5 <= ratio <= 2.0, ratio


def test_parameter_count_closed_form_and_flops_against_xla(conv, image, planted):
    layer = conv.layer
    k = layer.basis.num_functions
    closed = 2 * 18 * k + 2 * 18 + 2  # spline weights, base weights, bias (P = 2 * 3 * 3 = 18)
    assert kan.count_parameters(conv) == conv.num_parameters() == closed
    ho, wo = conv.output_size((5, 6))
    assert kan.count_flops(conv) == conv.flops() == ho * wo * layer.flops()
    # Stated tolerance (as tests/test_count.py): XLA's cost analysis of the lowered forward (flops +
    # transcendentals per sample) within [0.7, 1.4] of the analytic count.
    cost = kan.xla_flops(conv, image, optimized=False)
    assert 0.7 <= (cost.flops + cost.transcendentals) / conv.flops() <= 1.4
    # The convolution adds nothing to its inner layer's cost but the positions (slicing counts 0): XLA's
    # count of the whole layer is H' W' times XLA's count of the inner layer per patch, within 2%.
    model, *_ = planted
    for m, x in ((conv, image), (model, planted[3][:8])):
        whole = kan.xla_flops(m, x, optimized=False)
        inner = kan.xla_flops(m.layer, m.conv.patches(x).reshape(-1, m.conv.patch_features) if m is model
                              else m.patches(x).reshape(-1, m.patch_features), optimized=False)
        ho, wo = m.output_size(x.shape[1:3])
        ratio = (whole.flops + whole.transcendentals) / (ho * wo * (inner.flops + inner.transcendentals))
        assert ratio == pytest.approx(1.0, abs=0.02), (type(m).__name__, ratio)
        assert m.flops(x.shape[1:3]) == ho * wo * m.layer.flops()
    # S-ConvKAN: every candidate's weights, per-channel logits (not per feature), base weight, bias.
    sizes = sum(b.num_functions for b in model.conv.layer.bases)
    assert kan.count_parameters(model) == 1 * 4 * 2 * sizes + 2 * len(PLANTED) + 1


def test_save_load_in_a_fresh_process(tmp_path, conv, image, planted):
    model, fitted, *_ = planted
    small = planted[3][:2]
    models = {"conv": (conv, image), "selectable": (fitted, small)}
    for name, (m, x) in models.items():
        kan.save(tmp_path / f"{name}.eqx", m)
        np.save(tmp_path / f"{name}.x.npy", np.asarray(x))
        np.save(tmp_path / f"{name}.expected.npy", np.asarray(m(x)))
    script = textwrap.dedent(f"""
        import json, pathlib, numpy as np, kan
        d = pathlib.Path({str(tmp_path)!r}); report = {{}}
        for path in sorted(d.glob("*.eqx")):
            model = kan.load(path)
            np.save(d / (path.stem + ".loaded.npy"), np.asarray(model(np.load(d / (path.stem + ".x.npy")))))
            report[path.stem] = type(model).__name__
        print(json.dumps(report))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {name: type(m).__name__ for name, (m, _) in models.items()}
    for name in models:
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.loaded.npy"),
                                      np.load(tmp_path / f"{name}.expected.npy"), err_msg=name)


def test_plot_edge_through_the_kan_adapter(conv, image):
    from matplotlib.figure import Figure

    patches = conv.patches(image).reshape(-1, conv.patch_features)
    view = conv.as_kan()
    fig = kan.plot_edge(view, 0, 1, 5, patches)
    assert isinstance(fig, Figure)
    np.testing.assert_allclose(np.asarray(view(patches)), np.asarray(conv(image)).reshape(-1, 2), atol=1e-5)
    assert eqx.tree_equal(conv.with_layer(view), conv)


def test_selection_picks_the_planted_space_per_channel(planted):
    model, fitted, history, x, y = planted
    assert model.selection().probabilities == pytest.approx(np.full((2, 2), 0.5))  # uniform start
    sel = fitted.selection()
    assert sel.names == ("sin", "step"), sel.probabilities
    assert np.all(sel.weight > 0.9), sel.probabilities
    assert history["train_loss"][-1] < 0.05 * history["train_loss"][0]
    final = fitted.finalize()
    assert isinstance(final, kan.ConvKAN2d) and final.layer.node_families == ("sin", "step") * 4
    mse = float(jnp.mean((final(x) - y) ** 2))
    assert mse < 0.05 * float(jnp.var(y)), mse
    assert final.flops((5, 5)) < fitted.flops((5, 5))


def test_clear_errors(conv, image):
    with pytest.raises(ValueError, match="expected 2 input channels"):
        conv(jnp.zeros((5, 6, 3)))
    with pytest.raises(ValueError, match="expected an image"):
        conv(jnp.zeros((6, 2)))
    with pytest.raises(TypeError, match="floating-point"):
        conv(jnp.zeros((5, 6, 2), jnp.int32))
    with pytest.raises(ValueError, match="larger than the padded image"):
        conv(jnp.zeros((1, 6, 2)))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        kan.ConvKAN2d(2, 2, 3, key=jax.random.PRNGKey(0), stride=0)
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        kan.ConvKAN2d(2, 2, (3, 3, 3), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="padding must be"):
        kan.ConvKAN2d(2, 2, 3, key=jax.random.PRNGKey(0), padding="FULL")
    with pytest.raises(ValueError, match="padding must be >= 0"):
        kan.ConvKAN2d(2, 2, 3, key=jax.random.PRNGKey(0), padding=-1)
    with pytest.raises(ValueError, match="in_channels must be an int >= 1"):
        kan.ConvKAN2d(0, 3, 3, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="C_in\\*kh\\*kw = 18"):
        kan.ConvKAN2d(2, 2, 3, bases.BSpline(9), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="depends on the image size"):
        kan.ConvKAN2d(2, 2, 3, layer=conv.layer).flops()
    with pytest.raises(ValueError, match="contains no SelectableConvKAN2d"):
        kan.fit_selectable_conv(conv, (image, image))
    with pytest.raises(ValueError, match="unknown candidate"):
        kan.SelectableConvKAN2d(2, 2, 3, ("bspline", "nope"), key=jax.random.PRNGKey(0))
