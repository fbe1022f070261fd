import pytest

from benchmarks.timing import medians, paired_rounds, ratio_quantiles, time_rounds


def test_rounds_call_every_contender_once_per_round_after_warmup():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    rounds = time_rounds(fns, repeats=3, warmup=2)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up, per contender
    assert calls[6:] == ["a", "b", "c"] * 3  # then round-robin
    assert {k: len(v) for k, v in rounds.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for ts in rounds.values() for t in ts)


def test_ratios_are_taken_per_round():
    # The machine slows down 100x during the run, in the middle of round 2 (after the contender's
    # call): per round the contender stays 5x the baseline except there, and the per-round median
    # says 5x, where the ratio of the two medians says 0.05x.
    rounds = {"mlp": [1.0, 1.0, 100.0, 100.0, 100.0], "kan": [5.0, 5.0, 5.0, 500.0, 500.0]}
    meds = medians(rounds)
    assert meds["kan"] / meds["mlp"] == pytest.approx(0.05)
    p25, p50, p75 = ratio_quantiles(rounds, "kan", "mlp")
    assert (p25, p50, p75) == (5.0, 5.0, 5.0)
    steady = {"mlp": [1.0, 2.0, 4.0, 8.0], "kan": [2.0, 4.0, 8.0, 16.0]}
    assert ratio_quantiles(steady, "kan", "mlp") == (2.0, 2.0, 2.0)


def test_ratio_spread_and_errors():
    rounds = {"base": [1.0] * 5, "x": [1.0, 2.0, 3.0, 4.0, 5.0]}
    assert ratio_quantiles(rounds, "x", "base") == (2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="same"):
        ratio_quantiles({"base": [1.0], "x": [1.0, 2.0]}, "x", "base")
    with pytest.raises(ValueError, match="repeats"):
        time_rounds({"a": lambda: None}, repeats=0)


def test_paired_rounds_time_each_contender_with_the_baseline_alone():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("mlp", "a", "b")}
    pairs = paired_rounds(fns, "mlp", repeats=2, warmup=1)
    assert set(pairs) == {"a", "b"} and all(set(r) == {"mlp", name} for name, r in pairs.items())
    # pair (mlp, a): warm-up then rounds, then pair (mlp, b): "b" never runs between the mlp and "a"
    assert calls == ["mlp", "a", "mlp", "a", "mlp", "a", "mlp", "b", "mlp", "b", "mlp", "b"]
    assert all(len(ts) == 2 for r in pairs.values() for ts in r.values())
    with pytest.raises(ValueError, match="baseline"):
        paired_rounds(fns, "missing", repeats=1)


def test_layer_table_pairs_every_layer_with_the_mlp():
    import jax

    from benchmarks.layers import _mlp_layer, paired_ratios

    key = jax.random.PRNGKey(0)
    layers = {"mlp": _mlp_layer(4, 3, key), "other": _mlp_layer(4, 3, jax.random.PRNGKey(1))}
    table = paired_ratios(layers, jax.random.normal(key, (8, 4)), repeats=3, base="mlp")
    assert list(table) == ["mlp", "other"] and table["mlp"]["ratio"] == 1.0
    other = table["other"]
    assert other["ratio"] == other["seconds"] / other["base_seconds"] and other["low"] <= other["high"]


def test_floor_contenders_count_each_layer_kind_s_multiply_adds():
    """``--floor``: dense layers get in * (functions + residual) features, the local-kernel layers
    in * (k + 2) (their k + 1 pieces and the residual), other layers none; a floor's matmul has that
    many multiply-adds per output."""
    import jax
    import jax.numpy as jnp

    from bases import BSpline, Fourier, ReLUKAN
    from benchmarks.layer_floors import GemmFloor, dense_width, local_width
    from benchmarks.layers import _mlp_layer
    from kan import KANLayer

    key = jax.random.PRNGKey(0)
    spline = KANLayer(6, 5, BSpline(6, grid_size=7, order=2), key=key)
    relu = KANLayer(6, 5, ReLUKAN(6, 5, 3), key=key, base_activation=None)
    fourier = KANLayer(6, 5, Fourier(6, 4), key=key)
    assert (local_width(spline), local_width(relu), local_width(fourier)) == (4, 4, None)
    assert (dense_width(spline), dense_width(fourier), local_width(_mlp_layer(6, 5, key))) == (None, 9, None)
    floor = GemmFloor(jnp.ones((5, 6 * 4)), 4)
    assert floor(jnp.ones((3, 6))).shape == (3, 5) and float(floor(jnp.ones((1, 6)))[0, 0]) == 24.0
