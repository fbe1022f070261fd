"""Kolmogorov-Arnold attention (kan.nn.KolmogorovArnoldAttention): shapes, row normalisations, exact-zero
masking without leaks, gradients, variance-preserving init, counts, save/load, plotting, errors."""

import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kan
import kan.nn

W, H, N = 16, 2, 6  # width, heads, sequence length (the row length of the operator)

CONFIGS = {  # name -> options: every form, sharing and normalisation, two bases (Fourier, B-spline)
    "full_l1": dict(),
    "lowrank_sparsemax": dict(rank=2, normalisation="sparsemax"),
    "shared_softmax": dict(rank=3, share_heads=True, normalisation="softmax"),
    "none_bspline": dict(normalisation="none", basis="bspline"),
    "causal_signed_l1": dict(rank=2, causal=True, normalisation="signed_l1"),
}


@pytest.fixture(scope="module")
def modules():
    keys = jax.random.split(jax.random.PRNGKey(0), len(CONFIGS))
    return {name: kan.nn.KolmogorovArnoldAttention(W, H, key=k, seq_len=N, **opts)
            for (name, opts), k in zip(CONFIGS.items(), keys)}


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.PRNGKey(1), (3, N, W))


@eqx.filter_jit
def outputs(models, x, mask):
    """Per module: batched output, single-sequence output, weights without / with the mask, output
    with the mask (one compilation for all the tests that change ``x``)."""
    out = {name: (m(x), m.attention_weights(x), m.attention_weights(x, mask), m(x, mask=mask))
           for name, m in models.items()}
    out["single"] = models["full_l1"](x[-1])
    return out


def _mask():
    """Key ``1`` hidden from every query, and query 4 sees only keys 0 and 4."""
    mask = np.ones((N, N), bool)
    mask[:, 1] = False
    mask[4] = False
    mask[4, [0, 4]] = True
    return jnp.asarray(mask)


@pytest.fixture(scope="module")
def results(modules, x):
    return outputs(modules, x, _mask())


def test_shapes_rows_and_exact_zero_masks(modules, results):
    mask = np.asarray(_mask())
    single = results["single"]
    assert single.shape == (N, W)
    np.testing.assert_allclose(results["full_l1"][0][-1], single, rtol=1e-5, atol=1e-5)
    for name in modules:
        batched, weights, masked, _ = results[name]
        assert batched.shape == (3, N, W), name
        assert weights.shape == (3, H, N, N) and masked.shape == (3, H, N, N)
        assert np.all(np.isfinite(weights)) and np.all(np.isfinite(batched))
        masked = np.asarray(masked)
        assert np.all(masked[..., ~mask] == 0.0), name  # exactly zero, not small
        norm = modules[name].normalisation
        if modules[name].causal:
            assert np.all(np.triu(np.asarray(weights), k=1) == 0.0)
        for w in (np.asarray(weights), masked):
            if norm in ("l1", "softmax", "sparsemax"):
                assert np.all(w >= 0.0), name
                np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
            elif norm == "signed_l1":
                np.testing.assert_allclose(np.abs(w).sum(-1), 1.0, atol=1e-5)
                assert np.any(w < 0)
            else:  # none: signed, unnormalised
                assert np.any(w < 0) and not np.allclose(w.sum(-1), 1.0)
    sparse = np.asarray(results["lowrank_sparsemax"][1])
    assert np.mean(sparse == 0.0) > 0.1  # sparsemax gives exact zeros even without a mask


def test_masked_keys_do_not_leak(modules, x, results):
    """Changing a masked-out token changes no output that may not see it (the features of masked
    scores are dropped from every sum, not just their weights)."""
    mask = _mask()
    changed_x = x.at[:, 1].add(3.0)  # token 1 is hidden from every query (its own row included)
    changed = outputs(modules, changed_x, mask)
    for name in modules:
        before, after = np.asarray(results[name][3]), np.asarray(changed[name][3])
        others = [i for i in range(N) if i != 1]
        np.testing.assert_array_equal(after[:, others], before[:, others], err_msg=name)
        if not modules[name].causal:  # (causal: row 1 sees only key 0, whose weight is 1 either way)
            assert np.max(np.abs(after[:, 1] - before[:, 1])) > 1e-4  # its own output changes (query)


def test_causal_hides_the_future(modules, x, results):
    t = 3
    changed = outputs(modules, x.at[:, t].add(2.0), _mask())["causal_signed_l1"][0]
    base = results["causal_signed_l1"][0]
    np.testing.assert_array_equal(np.asarray(changed[:, :t]), np.asarray(base[:, :t]))
    assert float(jnp.max(jnp.abs(changed[:, t] - base[:, t]))) > 1e-5


def test_gradient_matches_finite_differences(modules, x):
    """The derivative along a direction of the parameters, by autodiff through a masked, low-rank,
    head-shared operator with softmax rows, against a central difference: along a random direction of
    all parameters and along the operator's coefficients alone (one compiled function of the step
    ``t`` and the direction; sparsemax, whose support makes kinks, gets its own check below)."""
    model = modules["shared_softmax"]
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(0)
    raw = [rng.standard_normal(leaf.shape).astype(np.float32) for leaf in leaves]
    norm = np.sqrt(sum(float(np.sum(r * r)) for r in raw))
    everything = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(r / norm) for r in raw])
    zeros = jax.tree_util.tree_unflatten(treedef, [jnp.zeros(leaf.shape) for leaf in leaves])
    coef_only = eqx.tree_at(lambda m: m.coef, zeros, everything.coef)
    target = jax.random.normal(jax.random.PRNGKey(3), x.shape)
    mask = _mask()

    @jax.jit
    def along(t, direction):
        def loss(t):
            moved = jax.tree_util.tree_map(lambda p, u: p + t * u, params, direction)
            return jnp.mean((eqx.combine(moved, static)(x, mask=mask) - target) ** 2)
        return jax.value_and_grad(loss)(t)

    eps = 1e-2
    for direction in (everything, coef_only):
        analytic = float(along(0.0, direction)[1])
        numeric = (float(along(eps, direction)[0]) - float(along(-eps, direction)[0])) / (2 * eps)
        assert np.isfinite(analytic) and abs(analytic) > 1e-4
        assert abs(numeric - analytic) < 2e-2 * abs(analytic) + 1e-5, (numeric, analytic)


def test_sparsemax_gradient_and_rows():
    z = jax.random.normal(jax.random.PRNGKey(10), (64, N))
    allowed = jax.random.uniform(jax.random.PRNGKey(11), (64, N)) > 0.3
    c = jax.random.normal(jax.random.PRNGKey(12), (64, N))
    u = jax.random.normal(jax.random.PRNGKey(13), (64, N))

    @jax.jit
    def value_grad_and_rows(z):
        value, grad = jax.value_and_grad(lambda z: jnp.sum(kan.nn.sparsemax(z, allowed) * c))(z)
        return value, grad, kan.nn.sparsemax(z, allowed)

    _, grad, rows = value_grad_and_rows(z)
    rows, ok = np.asarray(rows), np.asarray(allowed)
    assert np.all(rows >= 0) and np.all(rows[~ok] == 0.0)
    np.testing.assert_allclose(rows.sum(-1)[ok.any(-1)], 1.0, atol=1e-5)
    eps = 1e-4  # small: the support of a row changes (a kink) within larger steps
    numeric = (float(value_grad_and_rows(z + eps * u)[0]) - float(value_grad_and_rows(z - eps * u)[0])) / (2 * eps)
    analytic = float(jnp.sum(grad * u))
    assert abs(numeric - analytic) < 1e-2 * abs(analytic) + 1e-3, (numeric, analytic)


def test_init_keeps_branch_variances_bounded_over_8_blocks():
    """8 pre-norm blocks with KArAt attention (width 32, 2 heads, 17 tokens): with
    ``normalisation="none"`` the attention branch keeps unit variance (squared weights of a row sum
    to ~1); the residual stream grows by about one unit per branch (linear, never geometric)."""
    n, width = 17, 32
    x = jax.random.normal(jax.random.PRNGKey(5), (8, n, width))
    blocks = [kan.nn.TransformerBlock(width, 2, key=k, attention="karat",
                                      attention_options=dict(seq_len=n, normalisation="none"))
              for k in jax.random.split(jax.random.PRNGKey(6), 8)]
    step = eqx.filter_jit(lambda b, x: b.branches(x))  # one compilation: the blocks share a structure
    stream, attn = [float(jnp.var(x))], []
    for block in blocks:
        a, _, x = step(block, x)
        attn.append(float(jnp.var(a)))
        stream.append(float(jnp.var(x)))
    attn, stream = np.array(attn), np.array(stream)
    print("attention branch variance:", np.round(attn, 2).tolist(), "stream:", np.round(stream, 2).tolist())
    assert np.all((attn > 0.5) & (attn < 2.0)), attn
    increments = np.diff(stream)
    assert np.all(increments > 1.0) and np.all(increments < 3.5), increments
    assert stream[-1] / stream[0] < 2.0 * 8 + 1  # at most ~2 per block


def test_parameters_and_flops_match_the_pytree_and_xla(modules, x):
    for name, m in modules.items():
        assert m.closed_form_parameters() == kan.count_parameters(m) == m.num_parameters(), name
        assert kan.count_flops(m) == m.flops()
    for name in ("full_l1", "lowrank_sparsemax", "none_bspline"):
        m = modules[name]
        ratio = kan.xla_flops(m, x, optimized=False).flops / m.flops()
        assert 0.8 < ratio < 1.25, (name, ratio)  # tolerance: elementwise and trig ops counted differently


def test_kan_view_matches_the_operator_and_plots(modules, x):
    from matplotlib.figure import Figure

    m = modules["lowrank_sparsemax"]  # the low-rank form folds exactly into an N x N edge sum
    view = m.as_kan(1)

    @eqx.filter_jit
    def rows_and_both(m, view, x):
        scores = m.attention_scores(x)[:, 1].reshape(-1, N)  # head 1's score rows, (3 N, N)
        return scores, view(scores), m.operator(m.attention_scores(x))[:, 1].reshape(-1, N)

    rows, from_view, from_module = rows_and_both(m, view, x)
    np.testing.assert_allclose(from_view, from_module, rtol=1e-4, atol=1e-5)
    assert isinstance(kan.plot_edge(view, 0, 2, 3, rows), Figure)
    assert isinstance(m.as_kan_layer(0), kan.KANLayer) and m.as_kan_layer(0).in_features == N


def test_save_load_in_a_fresh_process(modules, x, results, tmp_path):
    names = ("lowrank_sparsemax", "none_bspline")  # low rank + Fourier; full + B-spline (grid buffers)
    np.save(tmp_path / "x.npy", np.asarray(x))
    for name in names:
        kan.save(tmp_path / f"{name}.eqx", modules[name])
        np.save(tmp_path / f"{name}.npy", np.asarray(results[name][0]))
    script = textwrap.dedent(f"""
        import pathlib, equinox as eqx, numpy as np, kan
        d = pathlib.Path({str(tmp_path)!r})
        x = np.load(d / "x.npy")
        models = {{n: kan.load(d / f"{{n}}.eqx") for n in {list(names)!r}}}
        assert all(type(m).__name__ == "KolmogorovArnoldAttention" for m in models.values())
        run = eqx.filter_jit(lambda ms, x: {{n: m(x) for n, m in ms.items()}})
        for n, y in run(models, x).items():
            np.testing.assert_allclose(np.asarray(y), np.load(d / f"{{n}}.npy"), rtol=1e-6, atol=1e-6)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_clear_errors(modules, x):
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="seq_len=6.*length 5"):
        modules["full_l1"](x[:, :5])
    with pytest.raises(ValueError, match="seq_len"):
        kan.nn.KolmogorovArnoldAttention(W, H, key=key)
    with pytest.raises(ValueError, match="unknown basis 'wavelet'"):
        kan.nn.KolmogorovArnoldAttention(W, H, key=key, seq_len=N, basis="wavelet")
    with pytest.raises(ValueError, match="unknown normalisation 'entmax'"):
        kan.nn.KolmogorovArnoldAttention(W, H, key=key, seq_len=N, normalisation="entmax")
    with pytest.raises(ValueError, match="rank"):
        kan.nn.KolmogorovArnoldAttention(W, H, key=key, seq_len=N, rank=0)
    with pytest.raises(ValueError, match="must divide width"):
        kan.nn.KolmogorovArnoldAttention(10, 3, key=key, seq_len=N)
    with pytest.raises(ValueError, match="head 5 out of range"):
        modules["full_l1"].as_kan(5)
    with pytest.raises(ValueError, match="unknown attention kind"):
        kan.nn.make_attention("linear", W, H, key=key)
    block = kan.nn.TransformerBlock(W, H, key=key, attention="karat", attention_options=dict(seq_len=N))
    assert isinstance(block.attn, kan.nn.KolmogorovArnoldAttention)
