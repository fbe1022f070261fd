"""MixtureOfExperts (MLP-KAN): routing, the Switch balancing loss, init, counts, persistence, training, plots."""

import json
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bases
import kan
from kan.nn import MixtureOfExperts, switch_balance_loss

W, H = 8, 6
KINDS = ("mlp", "mlp", "rbf", "rbf")  # MLP-KAN's mixture (the B-spline "kan" expert plots the same way)


@pytest.fixture(scope="module")
def moe():
    return MixtureOfExperts(W, H, key=jax.random.PRNGKey(0), experts=KINDS, top_k=2)


@pytest.fixture(scope="module")
def soft():
    return MixtureOfExperts(W, H, key=jax.random.PRNGKey(1), experts=KINDS, router="soft")


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.PRNGKey(2), (2, 5, W))


@eqx.filter_jit
def route_and_gates(m, x):
    return m.route(x), m.gates(x)


@eqx.filter_jit
def apply(m, x):
    return m(x)


@eqx.filter_jit
def each_expert(m, x):
    return jnp.stack([expert(x) for expert in m.experts])


def test_shapes_and_any_leading_batch(moe, soft, x):
    for m in (moe, soft):
        (y, aux), _ = route_and_gates(m, x)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert aux["load"].shape == aux["importance"].shape == (len(KINDS),)
        np.testing.assert_allclose(float(aux["load"].sum()), 1.0, rtol=1e-6)
    (single, _), _ = route_and_gates(moe, x[-1, -1])  # (W,): no batch at all
    np.testing.assert_allclose(single, route_and_gates(moe, x)[0][0][-1, -1], rtol=1e-5, atol=1e-6)


def test_topk_gates_have_k_nonzero_weights_summing_to_one(moe, soft, x):
    gates, probs = route_and_gates(moe, x)[1]
    assert np.all(np.asarray((gates > 0).sum(-1)) == 2)
    np.testing.assert_allclose(np.asarray(gates.sum(-1)), 1.0, rtol=1e-6)
    # the chosen experts are the two most probable ones, weighted p_i / (p_a + p_b)
    p = np.asarray(probs).reshape(-1, len(KINDS))
    g = np.asarray(gates).reshape(-1, len(KINDS))
    top = np.argsort(-p, axis=-1)[:, :2]
    expect = np.zeros_like(p)
    chosen = np.take_along_axis(p, top, -1)
    np.put_along_axis(expect, top, chosen / chosen.sum(-1, keepdims=True), -1)
    np.testing.assert_allclose(g, expect, rtol=1e-5, atol=1e-7)
    soft_gates, soft_probs = route_and_gates(soft, x)[1]
    np.testing.assert_array_equal(np.asarray(soft_gates), np.asarray(soft_probs))
    assert np.all(np.asarray(soft_gates) > 0)


def test_equals_a_per_token_loop(moe, x):
    tokens = np.asarray(x).reshape(-1, W)[:6]
    y = np.asarray(route_and_gates(moe, x)[0][0]).reshape(-1, W)[:6]
    wr = np.asarray(moe.router.weight, np.float64)
    for t, token in enumerate(tokens):
        outputs = np.asarray(each_expert(moe, jnp.asarray(token)))  # each expert on this one token
        logits = wr @ token
        chosen = np.argsort(-logits)[:2]
        weights = np.exp(logits[chosen] - logits[chosen].max())
        weights /= weights.sum()
        ref = sum(w * outputs[i] for w, i in zip(weights, chosen))
        np.testing.assert_allclose(y[t], moe.gain * ref, rtol=2e-4, atol=2e-5)


def test_balance_loss_is_switch_formula_and_one_at_uniform_routing(moe, soft, x):
    (_, aux), (gates, probs) = route_and_gates(moe, x)
    n = len(KINDS)
    chosen = np.asarray(gates > 0).reshape(-1, n)
    f = chosen.sum(0) / chosen.sum()  # fraction of the T*k assignments per expert
    p = np.asarray(probs).reshape(-1, n).mean(0)
    np.testing.assert_allclose(np.asarray(aux["load"]), f, rtol=1e-6)
    np.testing.assert_allclose(float(aux["balance"]), n * np.sum(f * p), rtol=1e-5)
    (_, soft_aux), (_, soft_probs) = route_and_gates(soft, x)
    ps = np.asarray(soft_probs).reshape(-1, n).mean(0)
    np.testing.assert_allclose(float(soft_aux["balance"]), n * np.sum(ps * ps), rtol=1e-5)
    # a zero router: uniform probabilities, loss exactly 1 (ties pick the same experts: any f gives 1)
    uniform = eqx.tree_at(lambda m: m.router.weight, moe, jnp.zeros_like(moe.router.weight))
    np.testing.assert_allclose(float(route_and_gates(uniform, x)[0][1]["balance"]), 1.0, rtol=1e-6)
    # collapse onto one expert: N; soft form N sum P^2 >= 1 for any routing, 1 only at uniform P
    one_hot = jax.nn.one_hot(jnp.zeros(10, jnp.int32), n)
    assert float(switch_balance_loss(one_hot, one_hot)) == pytest.approx(n)
    logits = 3 * np.random.default_rng(3).standard_normal((64, 16, n))
    rand = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    losses = jax.jit(jax.vmap(lambda q: switch_balance_loss(q, q)))(jnp.asarray(rand, jnp.float32))
    assert float(losses.min()) > 1.0
    with pytest.raises(ValueError, match="equal shapes"):
        switch_balance_loss(one_hot, one_hot[:, :2])


def test_gradient_matches_finite_differences(moe, x):
    model = MixtureOfExperts(W, H, key=jax.random.PRNGKey(4), experts=KINDS, router_std=1.0)
    r = jax.random.normal(jax.random.PRNGKey(5), x.shape)

    def loss(m):
        y, aux = m.route(x)
        return jnp.sum(y * r) + aux["balance"]

    params, static = eqx.partition(model, bases.trainable_filter(model))  # buffers (grids) stay fixed
    value_and_grad = jax.jit(jax.value_and_grad(lambda p: loss(eqx.combine(p, static))))
    f = lambda p: value_and_grad(p)[0]  # noqa: E731
    grad = value_and_grad(params)[1]
    rng = np.random.default_rng(6)  # numpy here: no eager jax op (and compilation) per leaf shape
    v = jax.tree_util.tree_map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
    eps = 1e-3

    def shift(sign):
        return jax.tree_util.tree_map(lambda p, d: jnp.asarray(np.asarray(p) + sign * eps * d), params, v)

    gates = lambda p: np.asarray(route_and_gates(eqx.combine(p, static), x)[1][0] > 0)  # noqa: E731
    assert np.array_equal(gates(shift(1.0)), gates(shift(-1.0)))  # no routing flip inside the step
    numeric = (float(f(shift(1.0))) - float(f(shift(-1.0)))) / (2 * eps)
    analytic = sum(float(np.vdot(np.asarray(g), d)) for g, d in zip(jax.tree_util.tree_leaves(grad),
                                                                   jax.tree_util.tree_leaves(v)))
    assert numeric == pytest.approx(analytic, rel=2e-2)
    # the router learns through the gate values
    assert float(jnp.abs(grad.router.weight).max()) > 0


def test_init_preserves_variance_through_an_8_deep_stack():
    width = 32  # at width 8 one layer's ratio scatters by +-40% from its random weights alone
    x = jax.random.normal(jax.random.PRNGKey(7), (2048, width))
    stack = [MixtureOfExperts(width, width, key=k, experts=KINDS) for k in jax.random.split(jax.random.PRNGKey(8), 8)]

    fresh = np.array([float(jnp.mean(apply(layer, x) ** 2)) for layer in stack])  # each on N(0, 1) input
    deep, h = [], x
    for layer in stack:  # one compiled layer serves all eight (same structure)
        h = apply(layer, h)
        deep.append(float(jnp.mean(h**2)))
    deep = np.array(deep)
    assert 0.8 <= fresh.mean() <= 1.25 and np.all((fresh >= 0.6) & (fresh <= 1.6)), fresh
    assert np.all((deep >= 0.5) & (deep <= 2.0)), deep
    # without the sqrt(k) gain the top-2 mixture halves the variance of its (independent) experts
    assert 0.35 <= float(np.mean(fresh / stack[0].gain**2)) <= 0.65


def _kan_layer_params(i, o, g):
    return i * o * g + i * o + o  # spline weights, residual weights, bias


def test_parameters_and_flops(moe, soft):
    e, g = len(KINDS), 5
    mlp = 2 * W * H + H + W
    kan_expert = lambda k: _kan_layer_params(W, H, k) + _kan_layer_params(H, W, k)  # noqa: E731
    closed = W * e + 2 * mlp + 2 * kan_expert(g)  # RBF: G bumps per input (a B-spline expert: G + 3)
    assert kan.count_parameters(moe) == moe.num_parameters() == closed
    expert_flops = [kan.count_flops(ex) for ex in moe.experts]
    router = 2 * W * e + 7 * e
    # top-k count: router, top-k renormalisation, k experts (uniform load by default), the weighted sum
    assert moe.flops() == kan.count_flops(moe) == round(router + 7 * 2 + 2 * np.mean(expert_flops) + 2 * 2 * W + W)
    load = [0.4, 0.1, 0.3, 0.2]
    assert moe.flops(load) == round(router + 7 * 2 + 2 * np.dot(load, expert_flops) + 2 * 2 * W + W)
    assert soft.flops() == round(router + sum(kan.count_flops(ex) for ex in soft.experts) + 2 * e * W + W)
    # XLA counts what runs: every expert on every token (dense_flops), not the top-k work
    xs = jax.random.normal(jax.random.PRNGKey(9), (64, W))
    cost = kan.xla_flops(moe, xs, optimized=False)
    assert 0.8 <= (cost.flops + cost.transcendentals) / moe.dense_flops() <= 1.25
    assert moe.flops() < 0.75 * moe.dense_flops()
    with pytest.raises(ValueError, match="load must be"):
        moe.flops([0.5, 0.5])


@pytest.fixture(scope="module")
def trained_gpt():
    """A one-block GPT with a top-1 MLP / RBF-KAN mixture, 25 Adam steps on a periodic sequence with the
    balancing loss in the loss: ``(model, tokens, first ce, last ce, last aux)``."""
    vocab, seq = 7, 8
    model = kan.nn.GPT(vocab, seq, key=jax.random.PRNGKey(10), width=W, depth=1, num_heads=2, ffn="moe",
                       ffn_options=dict(hidden=H, experts=("mlp", "rbf"), top_k=1))
    tokens = jnp.asarray((np.arange(16 * (seq + 1)).reshape(16, seq + 1) * 3) % vocab, jnp.int32)

    def loss_fn(m, t):
        logits, aux = m(t[:, :-1], return_aux=True)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, t[:, 1:]).mean()
        return ce + 0.01 * aux["balance"], (ce, aux)

    opt = optax.adam(1e-2)
    params, static = eqx.partition(model, bases.trainable_filter(model))

    @jax.jit
    def step(p, state):
        (_, (ce, aux)), g = jax.value_and_grad(lambda q: loss_fn(eqx.combine(q, static), tokens), has_aux=True)(p)
        updates, state = opt.update(g, state, p)
        return optax.apply_updates(p, updates), state, ce, aux

    state, ces = opt.init(params), []
    for _ in range(25):
        params, state, ce, aux = step(params, state)
        ces.append(float(ce))
    return eqx.combine(params, static), tokens, ces[0], ces[-1], aux


def test_gpt_with_experts_trains_and_collects_the_balance_loss(trained_gpt):
    model, tokens, first, last, aux = trained_gpt
    assert all(isinstance(b.ffn, MixtureOfExperts) for b in model.blocks)
    assert last < 0.7 * first, (first, last)
    assert len(aux["load"]) == 1 and float(aux["balance"]) >= 0.9  # one block; top-1 Switch loss about >= 1
    logits = apply(model, tokens[:, :-1])  # the plain call is unchanged: logits only
    assert logits.shape == (16, 8, 7)
    block = kan.nn.TransformerBlock(W, 2, key=jax.random.PRNGKey(0), ffn="mlp")  # no experts: aux is {}
    y, aux = eqx.filter_eval_shape(lambda b, v: b(v, return_aux=True), block, jnp.ones((3, W)))
    assert aux == {} and y.shape == (3, W)


@eqx.filter_jit
def both_ways(net, expert, x):
    return net(x), expert(x)


def test_each_kan_expert_plots(moe, x):
    from matplotlib.figure import Figure

    xs = np.asarray(x).reshape(-1, W)
    plotted = 0
    for ex in moe.experts:
        if ex.kind in ("kan", "rbf"):
            net = ex.as_kan()
            as_kan, direct = both_ways(net, ex, xs)
            np.testing.assert_allclose(np.asarray(as_kan), np.asarray(direct), rtol=1e-5, atol=1e-6)
            assert isinstance(kan.plot_edge(net, 0, 1, 2, xs, num_points=20), Figure)
            plotted += 1
    assert plotted == 2
    with pytest.raises(ValueError, match="only 'kan' and 'rbf'"):
        moe.experts[0].as_kan()


def test_bad_configurations_raise(moe):
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="unknown expert kind"):
        MixtureOfExperts(W, key=key, experts=("mlp", "lstm"))
    with pytest.raises(ValueError, match="unknown router"):
        MixtureOfExperts(W, key=key, router="hash")
    with pytest.raises(ValueError, match="top_k=5"):
        MixtureOfExperts(W, key=key, top_k=5)
    with pytest.raises(ValueError, match="not among the experts"):
        MixtureOfExperts(W, key=key, expert_options={"grkan": {}})
    with pytest.raises(ValueError, match="shape"):
        moe(jnp.ones((3, W + 1)))
    with pytest.raises(TypeError, match="floating-point"):
        moe(jnp.ones((3, W), jnp.int32))
    with pytest.raises(ValueError, match="kan.nn.MixtureOfExperts"):
        kan.nn.FeedForward(W, kind="moe", key=key)


def test_save_load_in_a_fresh_process(tmp_path, moe, trained_gpt):
    gpt, tokens = trained_gpt[:2]
    xs = np.asarray(jax.random.normal(jax.random.PRNGKey(12), (4, W)))
    models = {"topk": (moe, xs), "gpt": (gpt, np.asarray(tokens[:, :-1]))}  # outputs through one jit each
    for name, (model, inp) in models.items():
        kan.save(tmp_path / f"{name}.eqx", model)
        np.save(tmp_path / f"{name}.in.npy", inp)
        np.save(tmp_path / f"{name}.expected.npy", np.asarray(apply(model, jnp.asarray(inp))))
    script = textwrap.dedent(f"""
        import json, pathlib, numpy as np, equinox as eqx, jax.numpy as jnp, kan
        d = pathlib.Path({str(tmp_path)!r}); report = {{}}
        for path in sorted(d.glob("*.eqx")):
            model = kan.load(path)
            out = eqx.filter_jit(lambda m, v: m(v))(model, jnp.asarray(np.load(d / (path.stem + ".in.npy"))))
            np.save(d / (path.stem + ".loaded.npy"), np.asarray(out))
            report[path.stem] = type(model).__name__
        print(json.dumps(report))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"topk": "MixtureOfExperts", "gpt": "GPT"}
    for name in models:
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.loaded.npy"),
                                      np.load(tmp_path / f"{name}.expected.npy"), err_msg=name)
