"""kan.train: schedule, weight-decay mask, resumable batches, and (in one 4-device CPU subprocess) the
data-parallel step against the single-device step, bf16 compute and checkpoint resume."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kan.nn
import kan.train as kt


def test_warmup_cosine_schedule():
    lr = kt.warmup_cosine(1.0, total_steps=10, warmup_steps=4, end_ratio=0.1)
    values = [float(lr(t)) for t in range(12)]
    np.testing.assert_allclose(values[:4], [0.25, 0.5, 0.75, 1.0], rtol=1e-6)  # first update not at 0
    assert values[4] == pytest.approx(1.0) and values[7] == pytest.approx(0.55)
    assert values[10] == pytest.approx(0.1) and values[11] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        kt.warmup_cosine(1.0, total_steps=3, warmup_steps=5)
    with pytest.raises(ValueError, match="total_steps is required"):
        kt.make_optimizer(1e-3)
    for peak in (float("inf"), float("nan"), 0.0):  # inf used to pass, and every update was NaN
        with pytest.raises(ValueError, match="peak > 0"):
            kt.warmup_cosine(peak, total_steps=10)
    with pytest.raises(ValueError, match="weight_decay"):
        kt.make_optimizer(1e-3, total_steps=10, weight_decay=float("nan"))


def test_decay_mask_skips_rationals_biases_norms_and_embeddings(key):
    model = kan.nn.vision_transformer("kat-micro", key=key, image_size=8, patch_size=2, channels=1, depth=1,
                                      num_classes=10, width=16, num_heads=2, ffn_options=dict(hidden=32, num_groups=4))
    params, _ = kt.partition(model)
    mask = kt.decay_mask(params)
    ffn, fmask = params.blocks[0].ffn, mask.blocks[0].ffn
    assert fmask.fc2.weight is True and mask.patch_embed.weight is True and mask.blocks[0].attn.qkv.weight is True
    assert fmask.fc2.rational.numerator is False and fmask.fc2.rational.denominator is False
    assert fmask.fc2.bias is False and mask.norm.weight is False
    assert mask.pos_embed is False and mask.cls_token is False
    assert jax.tree_util.tree_structure(mask) == jax.tree_util.tree_structure(params)
    assert ffn.fc2.rational.numerator.shape == (4, 6)


def test_batches_resume_at_their_position():
    x, y = np.arange(20.0)[:, None], np.arange(20)
    a = kt.ArrayBatches((x, y), 6, seed=3)
    first = [next(a)[1] for _ in range(4)]  # crosses an epoch (3 batches per epoch)
    b = kt.ArrayBatches((x, y), 6, seed=3)
    [next(b) for _ in range(2)]
    c = kt.ArrayBatches((x, y), 6, seed=3)
    c.load_state(b.state())
    np.testing.assert_array_equal(next(c)[1], first[2])
    np.testing.assert_array_equal(next(c)[1], first[3])
    w = kt.WindowBatches(np.arange(50), 4, 9, seed=1)
    batches = [next(w) for _ in range(3)]
    assert batches[0].shape == (4, 9) and np.all(np.diff(batches[0], axis=1) == 1)
    w2 = kt.WindowBatches(np.arange(50), 4, 9, seed=1)
    w2.load_state({"position": 2, "seed": 1})
    np.testing.assert_array_equal(next(w2), batches[2])


MULTI_DEVICE_SCRIPT = textwrap.dedent(r"""
    import json, sys, tempfile
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np
    import kan.nn, kan.train as kt

    assert jax.device_count() == 4, jax.devices()
    key = jax.random.PRNGKey(0)
    model = kan.nn.vision_transformer("kat-micro", key=key, image_size=8, patch_size=2, channels=1,
                                      num_classes=10, width=16, num_heads=2, depth=1,
                                      ffn_options=dict(hidden=32, num_groups=4))
    # a non-zero head, so that every parameter receives a gradient in the first step
    model = eqx.tree_at(lambda m: m.head.weight, model, 0.3 * jax.random.normal(key, (10, 16)))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 32)
    opt = kt.make_optimizer(3e-3, total_steps=10, warmup_steps=2)
    params, static = kt.partition(model)
    out = {}
    for name, mesh, dtype in (("one", kt.data_mesh(jax.devices()[:1]), None), ("four", kt.data_mesh(), None),
                              ("bf16", kt.data_mesh(), jnp.bfloat16)):
        # donate=True as in kt.train, so the 4-device program compiled here serves the train() runs below
        step = kt.make_train_step(kt.classification_loss, opt, static, mesh=mesh, compute_dtype=dtype, donate=True)
        p = kt.replicate(jax.tree_util.tree_map(jnp.copy, params), mesh)
        o = kt.replicate(opt.init(params), mesh)
        p, o, metrics = step(p, o, kt.shard_batch((x[:8], y[:8]), mesh))
        out[name] = (kt.to_host(p), {k: float(v) for k, v in kt.to_host(metrics).items()})
    mesh4 = kt.data_mesh()
    evaluate = kt.make_eval_step(kt.classification_loss, static, mesh=mesh4)
    eval_four = {k: float(v) for k, v in kt.to_host(evaluate(kt.replicate(params, mesh4),
                                                             kt.shard_batch((x[:8], y[:8]), mesh4))).items()}
    try:
        kt.shard_batch((x[:6], y[:6]), kt.data_mesh())
        raise AssertionError("a batch of 6 on 4 devices must be refused")
    except ValueError as err:
        assert "multiple of the 4" in str(err)
    leaves = lambda t: jax.tree_util.tree_leaves(t)
    moved = [float(np.max(np.abs(a - b))) for a, b in zip(leaves(out["one"][0]), leaves(params))]
    diffs = [float(np.max(np.abs(a - b) / (np.abs(b) + 1e-6))) for a, b in zip(leaves(out["four"][0]), leaves(out["one"][0]))]
    for a, b in zip(leaves(out["four"][0]), leaves(out["one"][0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert all(a.dtype == np.float32 for a in leaves(out["bf16"][0]))

    # checkpoint resume through kt.train on 4 devices: 2 steps, stop, resume to 5 == 5 straight
    def run(steps, ckpt):
        batches = kt.ArrayBatches((x, y), 8, seed=7)
        return kt.train(model, kt.classification_loss, batches, optimizer=opt, steps=steps,
                        checkpoint_dir=ckpt, log_every=1, progress=False)
    straight = [h["loss"] for h in run(5, None).history]
    ckpt = tempfile.mkdtemp()
    first = run(2, ckpt)
    resumed = run(5, ckpt)
    json.dump({"eval_four": eval_four["loss"], "loss_one": out["one"][1]["loss"], "loss_four": out["four"][1]["loss"],
               "loss_bf16": out["bf16"][1]["loss"], "max_rel_param_diff": max(diffs),
               "min_param_move": min(moved), "straight": straight,
               "stopped": [h["loss"] for h in first.history], "resumed_steps": [h["step"] for h in resumed.history],
               "resumed": [h["loss"] for h in resumed.history],
               "checkpoints": [p.name for p in kt.list_checkpoints(ckpt)]}, sys.stdout)
""")


def test_data_parallel_step_matches_single_device_and_resume_continues():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(r)
    assert r["loss_four"] == pytest.approx(r["loss_one"], rel=1e-5)
    assert r["eval_four"] == pytest.approx(r["loss_one"], rel=1e-5)  # the step reports the pre-update loss
    assert r["max_rel_param_diff"] < 1e-4 and r["min_param_move"] > 0  # every parameter moved
    assert r["loss_bf16"] == pytest.approx(r["loss_one"], rel=2e-2)
    assert r["stopped"] == pytest.approx(r["straight"][:2], rel=1e-6)
    assert r["resumed_steps"] == [3, 4, 5]
    assert r["resumed"] == pytest.approx(r["straight"][2:], rel=1e-6)
    assert r["checkpoints"] == ["step_00000002", "step_00000005"]
