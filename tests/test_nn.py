"""kan.nn: shapes, causal masking, variance-preserving init, configuration errors, save/load."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kan
import kan.nn

W, H, HEADS = 16, 32, 2  # one set of shapes for most tests (few compilations)


@eqx.filter_jit
def run_batched_and_single(module, x):
    """``module`` on a batch and on its last element, in one compilation (eager op-by-op dispatch
    would compile every small op separately)."""
    return module(x), module(x[-1])


@pytest.mark.parametrize("kind", kan.nn.FF_KINDS)
def test_block_keeps_shapes_for_every_feed_forward_kind(kind, key):
    block = kan.nn.TransformerBlock(W, HEADS, key=key, ffn=kind, ffn_options=dict(hidden=H, num_groups=4)
                                    if kind == "grkan" else dict(hidden=H))
    assert isinstance(block.ffn, kan.nn.FeedForward) and block.ffn.kind == kind
    x = jax.random.normal(key, (2, 5, W))
    batched, single = run_batched_and_single(block, x)  # (batch, seq, d) and (seq, d)
    assert batched.shape == (2, 5, W) and single.shape == (5, W)
    np.testing.assert_allclose(batched[-1], single, rtol=1e-5, atol=1e-5)
    assert bool(jnp.all(jnp.isfinite(batched)))


def test_causal_mask_hides_the_future(key):
    model = kan.nn.GPT(11, 8, key=key, width=W, depth=1, num_heads=HEADS, ffn="grkan",
                       ffn_options=dict(hidden=H, num_groups=4))
    # a non-zero head so the logits see the residual stream
    model = eqx.tree_at(lambda m: m.head.weight, model, jax.random.normal(key, (11, W)))
    tokens = jnp.array([1, 2, 3, 4, 5, 6, 7, 8]) % 11

    @eqx.filter_jit
    def logits_and_weights(m, t):
        return m(t), m.blocks[0].attn.attention_weights(m.embed(t))

    base, weights = logits_and_weights(model, tokens)
    for t in (2, 5, 7):
        changed, _ = logits_and_weights(model, tokens.at[t].set((tokens[t] + 3) % 11))
        np.testing.assert_array_equal(np.asarray(changed[:t]), np.asarray(base[:t]))
        assert float(jnp.max(jnp.abs(changed[t] - base[t]))) > 1e-6
    assert weights.shape == (HEADS, 8, 8)
    assert float(jnp.max(jnp.triu(weights, k=1))) == 0.0


def test_gpt_shapes_tied_embedding_and_sampling(key):
    model = kan.nn.GPT(11, 8, key=key, width=W, depth=1, num_heads=HEADS, tie_embedding=True,
                       ffn_options=dict(hidden=H))
    assert model.head is None
    tokens = jnp.zeros((3, 6), jnp.int32)
    batched, single = run_batched_and_single(model, tokens)
    assert batched.shape == (3, 6, 11) and single.shape == (6, 11)
    out = kan.nn.sample(model, jnp.array([1, 2]), 9, key=key)  # runs past max_len
    assert out.shape == (11,) and int(out.max()) < 11
    untied = kan.nn.GPT(11, 8, key=key, width=W, depth=1, num_heads=HEADS, ffn_options=dict(hidden=H))
    assert untied.num_parameters() == model.num_parameters() + 11 * W + 11
    with pytest.raises(ValueError, match="max_len"):
        model(jnp.zeros((9,), jnp.int32))
    # An id outside the vocabulary was clamped to another token by the embedding gather.
    for bad in (jnp.array([1, 11, 3]), jnp.array([1, -1, 3])):
        with pytest.raises(ValueError, match=r"token ids must be in \[0, 11\)"):
            model(bad)
        with pytest.raises(ValueError, match=r"sample: token ids must be in \[0, 11\)"):
            kan.nn.sample(model, bad, 2, key=key)


def test_vit_shapes_and_save_load(key, tmp_path):
    model = kan.nn.vision_transformer("kat-micro", key=key, image_size=8, patch_size=2, channels=1,
                                      num_classes=10, width=W, num_heads=HEADS, depth=1,
                                      ffn_options=dict(hidden=H, num_groups=4))
    model = eqx.tree_at(lambda m: m.head.weight, model, jax.random.normal(key, (10, W)))
    images = jax.random.normal(key, (3, 8, 8, 1))
    logits, single = run_batched_and_single(model, images)
    assert logits.shape == (3, 10) and single.shape == (10,)
    kan.save(tmp_path / "vit.kan", model)
    loaded = kan.load(tmp_path / "vit.kan")
    np.testing.assert_array_equal(np.asarray(run_batched_and_single(loaded, images)[0]), np.asarray(logits))
    with pytest.raises(ValueError, match="expected images"):
        model(jnp.zeros((3, 8, 8)))


def test_bad_configurations_raise(key):
    with pytest.raises(ValueError, match="must divide width"):
        kan.nn.MultiHeadAttention(10, 3, key=key)
    with pytest.raises(ValueError, match="unknown kind"):
        kan.nn.FeedForward(W, kind="moe", key=key)
    with pytest.raises(ValueError, match="num_groups"):
        kan.nn.FeedForward(4, 8, kind="grkan", key=key, num_groups=8)
    with pytest.raises(ValueError, match="unknown configuration"):
        kan.nn.vit_config("kat-xl")
    with pytest.raises(ValueError, match="patch_size"):
        kan.nn.VisionTransformer(key=key, image_size=10, patch_size=4)
    with pytest.raises(ValueError, match="layer_scale"):
        kan.nn.TransformerBlock(W, HEADS, key=key, layer_scale=0.0)
    assert kan.nn.vit_config("KAT_T") == dict(width=192, depth=12, num_heads=3, ffn="grkan")
    assert kan.nn.vit_config("kat-s")["width"] == 384 and kan.nn.vit_config("kat-b")["num_heads"] == 12


@pytest.fixture(scope="module")
def kat_t():
    """12 blocks at KAT-T width (192, 3 heads, GR-KAN with 8 groups), on 8x8 images: 17 tokens."""
    return kan.nn.vision_transformer("kat-t", key=jax.random.PRNGKey(1), image_size=8, patch_size=2,
                                     channels=1, num_classes=10)


def test_grkan_weight_scale_is_set_by_the_rational_and_kept(kat_t):
    assert len(kat_t.blocks) == 12
    for block in kat_t.blocks:
        fc1, fc2 = block.ffn.fc1, block.ffn.fc2
        assert fc1.rational.num_groups == 8 and fc2.rational.num_groups == 8
        moment = float(jnp.mean(fc2.rational.gaussian_second_moment_trace()))
        assert abs(moment - 1 / 2.81) < 0.01  # the swish-start rational: gain^2 = 2.81
        expected = 1.0 / np.sqrt(768 * moment)  # 0.0605, not KAT's overwritten 0.02
        assert abs(float(jnp.std(fc2.weight)) / expected - 1) < 0.02
        assert abs(float(jnp.std(fc1.weight)) * np.sqrt(192) - 1) < 0.02  # identity start: E[x^2] = 1
    mlp = kan.nn.FeedForward(192, kind="mlp", key=jax.random.PRNGKey(2))
    gelu_moment = kan.nn.activation_second_moment("gelu")
    assert abs(gelu_moment - 1 / 2.35) < 0.01
    assert abs(float(jnp.std(mlp.fc2.weight)) * np.sqrt(768 * gelu_moment) - 1) < 0.02


def test_kat_t_residual_variance_stays_bounded(kat_t):
    images = jax.random.normal(jax.random.PRNGKey(3), (2, 8, 8, 1))

    @eqx.filter_jit
    def per_block(model, images):
        x = model.tokens(images)
        stream, attn, ffn = [jnp.var(x)], [], []
        for block in model.blocks:
            a, f, x = block.branches(x)
            stream.append(jnp.var(x)), attn.append(jnp.var(a)), ffn.append(jnp.var(f))
        return jnp.stack(stream), jnp.stack(attn), jnp.stack(ffn)

    stream, attn, ffn = (np.asarray(v) for v in per_block(kat_t, images))
    print("residual variance per block:", np.round(stream, 2).tolist())
    print("attention / feed-forward branch variance:", np.round(attn, 3).tolist(), np.round(ffn, 3).tolist())
    assert np.all(np.isfinite(stream))
    assert 0.5 < stream[0] < 2.0
    # each block adds about one unit (two unit-variance branches at most): linear, not geometric growth
    increments = np.diff(stream)
    assert np.all(increments > 0.2) and np.all(increments < 2.5), increments
    assert np.all((ffn > 0.5) & (ffn < 2.0)), ffn
    assert np.all(attn < 2.0), attn
