"""Tests for kan.AFKANLayer (AF-KAN, Ta et al. 2025)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kan.layers.afkan_layer import AFKANLayer

KEY = jax.random.PRNGKey(0)
apply = eqx.filter_jit(lambda module, x: module(x))


def test_parameter_count_matches_the_paper():
    layers = [AFKANLayer(784, 64, 3, 3, key=KEY), AFKANLayer(64, 10, 3, 3, key=KEY)]
    assert sum(layer.num_parameters() for layer in layers) == 52_552
    for d_in, d_out, g, k in [(5, 3, 4, 2), (17, 9, 3, 3)]:
        count = AFKANLayer(d_in, d_out, g, k, key=KEY).num_parameters()
        assert count == d_out * d_in + 2 * d_in + 3 * (g + k) + 2
    # fixed points drop the 2K point parameters; spatial attention trades v, c for a depthwise conv
    assert AFKANLayer(5, 3, 3, 3, key=KEY, trainable_points=False).num_parameters() == 15 + 10 + 6 + 2
    assert AFKANLayer(5, 3, 3, 3, key=KEY, reduction="spatial_attn").num_parameters() == 15 + 10 + 12 + 24 + 1
    assert AFKANLayer(5, 3, 3, 3, key=KEY, reduction="linear").num_parameters() == 15 + 10 + 12 + 7


@pytest.mark.parametrize("reduction", ["global_attn", "spatial_attn", "linear"])
def test_shapes_independence_and_training(reduction):
    layer = AFKANLayer(6, 4, key=KEY, reduction=reduction)
    x = jax.random.normal(KEY, (3, 5, 6))
    y = apply(layer, x)
    assert y.shape == (3, 5, 4) and bool(jnp.all(jnp.isfinite(y)))
    # default per-sample normalisation: a sample's output does not depend on its batch
    np.testing.assert_allclose(apply(layer, x[0, :1]), y[0, :1], rtol=1e-5, atol=1e-6)
    # a few gradient steps on a smooth target lower the loss; the phase points get gradients
    target = jnp.sin(x[..., :4]) + 0.5 * x[..., 1:5] ** 2
    loss_and_grad = eqx.filter_value_and_grad(lambda m: jnp.mean((m(x) - target) ** 2))

    @eqx.filter_jit
    def sgd_step(m):
        loss, grads = loss_and_grad(m)
        return eqx.apply_updates(m, jax.tree_util.tree_map(lambda g: -0.1 * g, grads)), loss, grads

    _, first, grads = sgd_step(layer)
    assert float(jnp.abs(grads.basis.start).sum()) > 0
    for _ in range(60):
        layer, loss, _ = sgd_step(layer)
    assert float(loss) < 0.8 * float(first)


def test_batch_normalisation_depends_on_the_batch():
    x = jax.random.normal(KEY, (16, 6))
    # sharp attention scores (as after training): the min-max statistics then change the weights
    sharp = lambda m: eqx.tree_at(lambda l: l.score_weight, m, jnp.linspace(-8.0, 8.0, 6))
    batch = sharp(AFKANLayer(6, 4, key=KEY, normalization="batch"))
    per_sample = sharp(AFKANLayer(6, 4, key=KEY))
    crowd = jnp.concatenate([x[:1], 4.0 * x[1:]])  # the same first sample among wider ones
    assert float(jnp.abs(apply(batch, x[:1]) - apply(batch, crowd)[:1]).max()) > 2e-4  # float noise ~1e-6
    np.testing.assert_allclose(apply(per_sample, crowd)[:1], apply(per_sample, x[:1]), rtol=1e-5, atol=1e-6)
    # one sample alone: the batch statistics are that sample's own, so the two modes agree
    np.testing.assert_allclose(apply(batch, x[:1]), apply(per_sample, x[:1]), rtol=1e-5, atol=1e-6)
    feats = per_sample.normalize(per_sample.basis(x))
    np.testing.assert_allclose(feats.min(axis=(-2, -1)), 0.0, atol=1e-6)
    np.testing.assert_allclose(feats.max(axis=(-2, -1)), 1.0, atol=1e-5)


def test_attention_weights_are_distributions():
    x = jax.random.normal(KEY, (16, 6))
    glob = AFKANLayer(6, 4, key=KEY)
    feats = glob.normalize(glob.basis(x))
    z, w = glob.reduce(feats)
    assert w.shape == (16, 6)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(z, w * feats.sum(-1), rtol=1e-5)
    spatial = AFKANLayer(6, 4, key=KEY, reduction="spatial_attn")
    _, w = spatial.reduce(feats)
    assert w.shape == (16, 6, 6)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    # the temperature acts through max(tau, 1): below 1 it no longer changes the output
    low = eqx.tree_at(lambda m: m.temperature, glob, jnp.asarray(0.5))
    lower = eqx.tree_at(lambda m: m.temperature, glob, jnp.asarray(0.1))
    np.testing.assert_allclose(apply(low, x), apply(lower, x), rtol=1e-6)


def test_32_layer_stack_preserves_variance():
    keys = jax.random.split(KEY, 33)
    h = jax.random.normal(keys[32], (512, 64))
    for k in keys[:32]:
        h = apply(AFKANLayer(64, 64, key=k), h)
    assert 0.5 <= float(jnp.var(h)) <= 2.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(reduction="mean"), "unknown reduction 'mean'; valid: global_attn, spatial_attn, linear"),
    (dict(normalization="l2"), "unknown normalization 'l2'"),
    (dict(activation="swish"), "unknown activation 'swish'.*silu"),
    (dict(function_type="quad9"), "unknown function type 'quad9'"),
    (dict(grid_size=0), "grid_size must be an integer >= 1"),
])
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AFKANLayer(4, 2, key=KEY, **kwargs)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="in_features >= 2"):
        AFKANLayer(1, 2, key=KEY)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        AFKANLayer(4, 2, key=KEY)(jnp.zeros((3, 5)))


def _reference_forward(layer: AFKANLayer, x):
    """The layer's math written plainly: jax.nn's logistic SiLU, no rematerialisation, the normalised
    feature tensor formed before the reduction."""
    start, end = layer.basis.points()
    xe = x[..., None]
    a, b = jax.nn.silu(xe - start), jax.nn.silu(end - xe)
    feats = (a * b) ** 2
    z, _ = layer.reduce(layer.normalize(feats))
    mean, var = jnp.mean(z, -1, keepdims=True), jnp.var(z, -1, keepdims=True)
    z = (z - mean) * jax.lax.rsqrt(var + 1e-5) * layer.norm_weight + layer.norm_bias
    return jax.nn.silu(z) @ layer.weight.T


def test_fast_path_matches_plain_math_values_and_gradients():
    layer = AFKANLayer(7, 5, key=KEY)  # silu / quad1 / global attention, trainable shared points
    x = 1.5 * jax.random.normal(jax.random.PRNGKey(3), (16, 7))
    x = x.at[0, 0].set(layer.basis.points()[0][0, 2]).at[1, 1].set(9.0)  # on a window edge; far outside
    loss = lambda m, f, x: jnp.sum(jnp.sin(f(m, x)))
    fast = eqx.filter_value_and_grad(lambda m, x: loss(m, lambda m, x: m(x), x))(layer, x)
    plain = eqx.filter_value_and_grad(lambda m, x: loss(m, _reference_forward, x))(layer, x)
    np.testing.assert_allclose(fast[0], plain[0], rtol=1e-5)
    for g_fast, g_plain in zip(jax.tree_util.tree_leaves(fast[1]), jax.tree_util.tree_leaves(plain[1])):
        np.testing.assert_allclose(g_fast, g_plain, rtol=2e-4, atol=2e-5)
    dx_fast = jax.grad(lambda x: loss(layer, lambda m, x: m(x), x))(x)
    dx_plain = jax.grad(lambda x: loss(layer, _reference_forward, x))(x)
    np.testing.assert_allclose(dx_fast, dx_plain, rtol=2e-4, atol=2e-5)
