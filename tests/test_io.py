"""Self-describing checkpoints: saved in this process, loaded in a fresh one, outputs bit-identical."""

import json
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
import symbolic


@pytest.fixture(scope="module")
def built():
    key = jax.random.PRNGKey(0)
    k = jax.random.split(key, 12)
    x2 = jax.random.uniform(k[0], (64, 2), minval=-1, maxval=1)
    plain = kan.KAN([2, 5, 1], key=k[1])
    refined = kan.refine(kan.update_grid(plain, x2 * 0.8), 7, x2)  # non-uniform grid, then G=7
    mult = kan.KAN([2, 2, 1], mult_nodes=[1], key=k[2])
    snapped = symbolic.fix_symbolic(kan.KAN([2, 2, 1], key=k[3]), 0, 1, 0, "sin", x2)[0]
    pruned = kan.prune_edges(kan.KAN([2, 3, 1], key=k[4]), x2, edge_th=0.3)
    selectable = kan.SelectableKANLayer(2, 3, key=k[5])
    models = {
        "plain": plain, "refined": refined, "mult": mult, "snapped": snapped, "pruned": pruned,
        "rbf": kan.KAN([2, 3, 1], key=k[6], basis_factory=lambda d: bases.GaussianRBF(d, 4)),
        "rbf_cutoff": kan.KANLayer(2, 3, bases.GaussianRBF(2, 8, cutoff=2.0), key=k[7]),  # compact bumps
        "chebyshev": kan.KANLayer(2, 3, bases.Chebyshev(2, 4), key=k[7]),
        "fourier": kan.KANLayer(2, 3, bases.Fourier(2, 3), key=k[7]),
        "relukan": kan.KANLayer(2, 3, bases.ReLUKAN(2, 4), key=k[7]),
        "rational": kan.KANLayer(2, 3, bases.Rational(2, 1), key=k[7], base_activation=None),
        "grkan": kan.GroupKANLayer(2, 3, num_groups=2, init="swish", key=k[8]),
        "afkan": kan.AFKANLayer(2, 3, key=k[9]),
        "selectable": selectable,
        "selected": selectable.finalize(),
        "mlp": kan.MLP([2, 4, 1], key=k[10], activation=jax.nn.relu),
        "tuple_of_things": (kan.KANLayer(2, 2, key=k[11]), {"steps": 3, "name": "x"}),
    }
    return models, x2


def _outputs(model, x):
    if isinstance(model, tuple):
        return np.asarray(model[0](x))
    return np.asarray(model(x))


def test_checkpoints_load_in_a_fresh_process(tmp_path, built):
    models, x = built
    np.save(tmp_path / "x.npy", np.asarray(x))
    for name, model in models.items():
        kan.save(tmp_path / f"{name}.eqx", model)
        np.save(tmp_path / f"{name}.expected.npy", _outputs(model, x))
    script = textwrap.dedent(f"""
        import json, pathlib, numpy as np, kan
        d = pathlib.Path({str(tmp_path)!r}); x = np.load(d / "x.npy"); report = {{}}
        for path in sorted(d.glob("*.eqx")):
            model = kan.load(path)
            out = np.asarray((model[0] if isinstance(model, tuple) else model)(x))
            np.save(d / (path.stem + ".loaded.npy"), out)
            report[path.stem] = type(model).__name__
        print(json.dumps(report))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(report) == set(models)
    for name, model in models.items():
        assert report[name] == type(model).__name__
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.loaded.npy"),
                                      np.load(tmp_path / f"{name}.expected.npy"), err_msg=name)


def test_loaded_model_keeps_structure_and_settings(tmp_path, built):
    models, x = built
    for name in ("refined", "snapped", "mult"):
        kan.save(tmp_path / "m.eqx", models[name])
        loaded = kan.load(tmp_path / "m.eqx")
        assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(models[name]), name
    kan.save(tmp_path / "r.eqx", models["refined"])
    refined = kan.load(tmp_path / "r.eqx")
    assert refined.layers[0].basis.grid_size == 7 and not refined.layers[0].basis.uniform
    kan.save(tmp_path / "s.eqx", models["snapped"])
    assert kan.load(tmp_path / "s.eqx").layers[0].symbolic.names[1][0] == "sin"
    header = kan.read_header(tmp_path / "s.eqx")
    assert header["version"] == kan.io.VERSION and header["widths"] == [2, 2, 1]
    assert "0x" not in json.dumps(header["tree"])  # no memory addresses


def test_like_skeleton_names_the_difference(tmp_path):
    model = kan.KAN([2, 5, 1], key=jax.random.PRNGKey(0))
    kan.save(tmp_path / "m.eqx", model)
    same = kan.load(tmp_path / "m.eqx", like=kan.KAN([2, 5, 1], key=jax.random.PRNGKey(3)))
    x = jnp.ones((3, 2))
    np.testing.assert_array_equal(np.asarray(same(x)), np.asarray(model(x)))
    with pytest.raises(ValueError, match=r"layers\[0\]\.basis\.grid"):
        kan.load(tmp_path / "m.eqx", like=kan.KAN([2, 5, 1], grid_size=3, key=jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match="spline_weight"):
        kan.load(tmp_path / "m.eqx", like=kan.KAN([2, 4, 1], key=jax.random.PRNGKey(0)))


def test_lambda_needs_a_skeleton_and_future_versions_are_refused(tmp_path):
    act = lambda v: jnp.tanh(v)  # noqa: E731 - a callable without an importable name
    model = kan.KANLayer(2, 2, key=jax.random.PRNGKey(0), base_activation=act)
    kan.save(tmp_path / "l.eqx", model)
    with pytest.raises(ValueError, match="like="):
        kan.load(tmp_path / "l.eqx")
    loaded = kan.load(tmp_path / "l.eqx", like=kan.KANLayer(2, 2, key=jax.random.PRNGKey(1), base_activation=act))
    np.testing.assert_array_equal(np.asarray(loaded(jnp.ones((2, 2)))), np.asarray(model(jnp.ones((2, 2)))))
    header = kan.read_header(tmp_path / "l.eqx")
    raw = (tmp_path / "l.eqx").read_bytes()
    header["version"] = kan.io.VERSION + 1
    (tmp_path / "f.eqx").write_bytes(json.dumps(header).encode() + b"\n" + raw.split(b"\n", 1)[1])
    with pytest.raises(ValueError, match="format version"):
        kan.load(tmp_path / "f.eqx")
    (tmp_path / "junk.eqx").write_bytes(b"\x00\xff not a checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint"):
        kan.load(tmp_path / "junk.eqx")


def test_untrusted_package_is_not_imported(tmp_path):
    model = kan.KAN([2, 2, 1], key=jax.random.PRNGKey(0))
    kan.save(tmp_path / "m.eqx", model)
    header = kan.read_header(tmp_path / "m.eqx")
    raw = (tmp_path / "m.eqx").read_bytes().split(b"\n", 1)[1]
    header["tree"]["module"] = "os:system"
    (tmp_path / "evil.eqx").write_bytes(json.dumps(header).encode() + b"\n" + raw)
    with pytest.raises(ValueError, match="not trusted"):
        kan.load(tmp_path / "evil.eqx")


def test_bfloat16_arrays_round_trip(tmp_path):
    layer = kan.KANLayer(2, 2, key=jax.random.PRNGKey(0))
    layer = eqx.tree_at(lambda l: l.spline_weight, layer, layer.spline_weight.astype(jnp.bfloat16))
    kan.save(tmp_path / "b.eqx", layer)
    loaded = kan.load(tmp_path / "b.eqx")
    assert loaded.spline_weight.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(loaded.spline_weight, np.float32),
                                  np.asarray(layer.spline_weight, np.float32))


def test_classes_are_stored_by_their_public_name_and_local_ones_need_a_skeleton(tmp_path):
    model = kan.KAN([2, 2, 1], key=jax.random.PRNGKey(0))
    kan.save(tmp_path / "m.eqx", model)
    tree = json.dumps(kan.read_header(tmp_path / "m.eqx")["tree"])
    assert '"kan:KAN"' in tree and '"kan:KANLayer"' in tree and '"bases:BSpline"' in tree

    class Local(eqx.Module):
        weight: jax.Array

        def __call__(self, x):
            return x @ self.weight

    local = Local(jnp.arange(4.0).reshape(2, 2))
    kan.save(tmp_path / "local.eqx", local)
    with pytest.raises(ValueError, match="not trusted.*like="):
        kan.load(tmp_path / "local.eqx")
    loaded = kan.load(tmp_path / "local.eqx", like=Local(jnp.zeros((2, 2))))
    np.testing.assert_array_equal(np.asarray(loaded.weight), np.asarray(local.weight))
