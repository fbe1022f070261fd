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


@pytest.mark.parametrize("activation, function_type, shared", [
    ("silu", "quad1", False), ("relu", "quad1", True), ("gelu", "cubic1", True), ("tanh", "sum_prod", False)])
def test_feature_stats_match_autodiff_of_the_plain_features(activation, function_type, shared):
    from bases.activation_pair import ACTIVATIONS, FUNCTION_TYPES, ActivationPair, pair_feature_stats

    basis = ActivationPair(5, 3, 2, activation=activation, function_type=function_type, trainable=True,
                           shared=shared)
    start, end = basis.points()
    x = 1.5 * jax.random.normal(jax.random.PRNGKey(4), (2, 9, 5))
    x = x.at[0, 0, 0].set(start[0, 1]).at[1, 2, 3].set(-7.0)  # on a window edge; far outside (relu ties)
    weights = jax.random.normal(jax.random.PRNGKey(5), (basis.num_functions,))
    probes = jax.random.normal(jax.random.PRNGKey(6), (4,) + x.shape)

    def plain(x, s, e, v):
        act = ACTIVATIONS[activation]
        feats = FUNCTION_TYPES[function_type](act(x[..., None] - s), act(e - x[..., None]))
        return feats @ v, feats.sum(-1), feats.min(-1), feats.max(-1)

    def fused(x, s, e, v):
        return pair_feature_stats(activation, function_type, x, s, e, v)

    def score(f):  # linear in every output: the same non-zero cotangents reach both backward passes
        return lambda *a: sum(jnp.sum(o * p) for o, p in zip(f(*a), probes))

    for out, ref in zip(fused(x, start, end, weights), plain(x, start, end, weights)):
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    grads = jax.grad(score(fused), argnums=(0, 1, 2, 3))(x, start, end, weights)
    grads_ref = jax.grad(score(plain), argnums=(0, 1, 2, 3))(x, start, end, weights)
    for name, g, g_ref in zip(("x", "start", "end", "weights"), grads, grads_ref):
        assert g.shape == g_ref.shape, name
        np.testing.assert_allclose(g, g_ref, rtol=2e-4, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("normalization, reduction", [("batch", "global_attn"), ("none", "linear"),
                                                      ("per_sample", "linear")])
def test_fast_path_matches_plain_math_for_other_normalisations(normalization, reduction):
    layer = AFKANLayer(6, 3, key=KEY, normalization=normalization, reduction=reduction, trainable_points=True)
    x = 1.2 * jax.random.normal(jax.random.PRNGKey(7), (3, 4, 6))

    def plain(m, x):
        feats = m.basis(x)
        if m.normalization != "none":
            axes = (-2, -1) if m.normalization == "per_sample" else None
            lo = jnp.min(feats, axis=axes, keepdims=True)
            feats = (feats - lo) / (jnp.max(feats, axis=axes, keepdims=True) - lo + 1e-6)
        z, _ = m.reduce(feats)
        z = (z - jnp.mean(z, -1, keepdims=True)) * jax.lax.rsqrt(jnp.var(z, -1, keepdims=True) + 1e-5)
        return jax.nn.silu(z * m.norm_weight + m.norm_bias) @ m.weight.T

    loss = lambda f: lambda m, x: jnp.sum(jnp.sin(f(m, x)))
    (v, g), (v_ref, g_ref) = (eqx.filter_value_and_grad(loss(f))(layer, x)
                              for f in (lambda m, x: m(x), plain))
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_forward_mode_and_hessians_go_through_the_layer():
    """PINN-style use needs forward mode (jax.jvp, jax.hessian) through the fused reduction too."""
    layer = AFKANLayer(3, 2, key=KEY)
    f = lambda p: jnp.sum(jnp.sin(layer(p[None, :])))
    grad = jax.grad(f)
    h = 1e-3

    @jax.jit
    def derivatives(p):
        tangent = jax.jvp(f, (p,), (jnp.array([1.0, 0.0, 0.0]),))[1]
        fd = jax.vmap(lambda e: (grad(p + h * e) - grad(p - h * e)) / (2 * h))(jnp.eye(3))
        return jax.hessian(f)(p), tangent, grad(p), fd, jax.jacrev(grad)(p)

    hess, tangent, g, fd, rev = derivatives(jnp.array([0.3, -0.45, 0.8]))
    np.testing.assert_allclose(hess, fd, atol=5e-3, rtol=1e-2)
    np.testing.assert_allclose(tangent, g[0], rtol=1e-5)
    np.testing.assert_allclose(rev, hess, atol=1e-4)
