import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kan import KAN, MLP, fit


def _data(n=256, seed=0):
    x = jax.random.uniform(jax.random.PRNGKey(seed), (n, 2), minval=-1, maxval=1)
    y = jnp.sin(jnp.pi * x[:, :1]) + x[:, 1:] ** 2
    return x, y


@pytest.fixture(scope="module")
def small_kan():
    return KAN([2, 3, 1], grid_size=5, key=jax.random.PRNGKey(0))


def test_adam_decreases_loss_with_minibatches_and_validation(small_kan):
    train, val = _data(), _data(seed=1)
    model, hist = fit(small_kan, train, steps=60, learning_rate=2e-2, batch_size=64, val_data=val,
                      progress=False)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert hist["val_loss"][-1] < 0.5 * hist["val_loss"][0]
    assert len(hist["step"]) == len(hist["train_loss"]) == len(hist["val_loss"]) == 60


def test_lbfgs_with_regulariser_and_grid_updates(small_kan):
    train = _data()
    model, hist = fit(small_kan, train, steps=6, optimizer="lbfgs", lamb=1e-3, lbfgs_iterations=10,
                      grid_update_every=2, progress=False)
    assert hist["train_loss"][-1] < 0.2 * hist["train_loss"][0]
    assert all(r > 0 for r in hist["reg"])
    assert not model.layers[0].basis.uniform  # the grid was adapted to the data


def test_lbfgs_stops_once_a_line_search_no_longer_lowers_the_loss():
    # A cubic spline represents 0.5 x exactly: L-BFGS reaches float precision within a few steps, after
    # which every further iteration would only spend a failed line search. fit must stop there, keep the
    # best parameters, and with a grid update pending resume after it.
    x = jnp.linspace(-1, 1, 128)[:, None]
    model = KAN([1, 1], grid_size=3, key=jax.random.PRNGKey(0))
    trained, hist = fit(model, (x, 0.5 * x), steps=40, optimizer="lbfgs", update_grid=False, progress=False)
    assert len(hist["step"]) < 40
    final = float(jnp.mean((trained(x) - 0.5 * x) ** 2))
    assert final <= min(hist["train_loss"]) * (1 + 1e-5) and final < 1e-6
    _, hist = fit(model, (x, 0.5 * x), steps=40, optimizer="lbfgs", grid_update_every=10,
                  stop_grid_update_step=25, progress=False)
    assert hist["step"][-1] >= 20 and len(hist["step"]) < 40  # resumed after the grid update at step 20


def test_custom_optax_transformation_and_mlp():
    train = _data()
    model = MLP([2, 16, 1], key=jax.random.PRNGKey(0))
    model, hist = fit(model, train, steps=40, optimizer=optax.sgd(0.1), progress=False)
    assert hist["train_loss"][-1] < hist["train_loss"][0]


def test_early_stopping_returns_best_validation_model(small_kan):
    train, val = _data(), _data(seed=1)
    model, hist = fit(small_kan, train, steps=200, learning_rate=0.5, val_data=val, patience=3,
                      update_grid=False, progress=False)
    assert len(hist["val_loss"]) < 200
    final_val = float(jnp.mean((model(val[0]) - val[1]) ** 2))
    np.testing.assert_allclose(final_val, min(hist["val_loss"]), rtol=1e-4)


def test_grid_and_mask_are_not_trained(small_kan):
    train = _data()
    model, _ = fit(small_kan, train, steps=5, optimizer="adamw", update_grid=False, progress=False)
    np.testing.assert_array_equal(np.asarray(model.layers[0].basis.grid),
                                  np.asarray(small_kan.layers[0].basis.grid))
    np.testing.assert_array_equal(np.asarray(model.layers[0].edge_mask), 1.0)


@pytest.mark.parametrize(
    "data, match",
    [
        ((jnp.ones((4, 2)).at[0, 0].set(jnp.nan), jnp.ones((4, 1))), "NaN or inf"),
        ((jnp.ones((4, 2)), jnp.ones((4, 1)).at[1, 0].set(jnp.inf)), "NaN or inf"),
        ((jnp.ones((0, 2)), jnp.ones((0, 1))), "empty"),
        ((jnp.ones((4, 2)), jnp.ones((3, 1))), "4 samples but y has 3"),
        ((jnp.ones((4, 3)), jnp.ones((4, 1))), "expects 2 input features"),
        ((jnp.ones((4,)), jnp.ones((4, 1))), "2-D"),
    ],
)
def test_bad_data_raises(small_kan, data, match):
    with pytest.raises(ValueError, match=match):
        fit(small_kan, data, steps=1, progress=False)


def test_bad_options_raise(small_kan):
    train = _data(16)
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit(small_kan, train, steps=1, optimizer="sgdd", progress=False)
    # A NaN or negative learning rate used to train anyway (the divergence guard then restored the start).
    for lr in (float("nan"), -1.0, 0.0, float("inf")):
        with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
            fit(small_kan, train, steps=1, learning_rate=lr, progress=False)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        fit(small_kan, train, steps=1, optimizer="adamw", weight_decay=float("nan"), progress=False)
    with pytest.raises(ValueError, match="full-batch"):
        fit(small_kan, train, steps=1, optimizer="lbfgs", batch_size=4, progress=False)
    with pytest.raises(TypeError, match="pair"):
        fit(small_kan, train[0], steps=1, progress=False)


def _train_mse(model, data):
    return float(jnp.mean((model(data[0]) - data[1]) ** 2))


def test_patience_without_validation_returns_the_parameters_of_the_best_loss(small_kan):
    train = _data(128)
    model, hist = fit(small_kan, train, steps=12, learning_rate=10.0, patience=3, update_grid=False,
                      on_divergence="warn", progress=False)
    np.testing.assert_allclose(_train_mse(model, train), min(hist["train_loss"]), rtol=1e-4)
    np.testing.assert_allclose(hist["final_loss"][0], min(hist["train_loss"]), rtol=1e-4)


@pytest.mark.parametrize("optimizer, lr", [("adam", 1e6), ("sgd", 1e6)])
def test_divergence_after_the_last_step_is_caught(small_kan, optimizer, lr):
    train = _data(128)
    opt = optax.sgd(lr) if optimizer == "sgd" else optimizer
    with pytest.warns(RuntimeWarning, match="diverged"):
        model, hist = fit(small_kan, train, steps=2, optimizer=opt, learning_rate=lr, update_grid=False,
                          progress=False)
    returned = _train_mse(model, train)
    assert np.isfinite(returned) and returned <= min(hist["train_loss"]) * (1 + 1e-4)
    assert hist["final_loss"][0] == pytest.approx(returned, rel=1e-4)
    with pytest.raises(FloatingPointError, match="diverged"):
        fit(small_kan, train, steps=2, optimizer=opt, learning_rate=lr, update_grid=False,
            on_divergence="raise", progress=False)


def test_y_with_the_wrong_width_is_refused(small_kan):
    x, y = _data(16)
    with pytest.raises(ValueError, match="outputs 1 values per sample but y has 2 columns"):
        fit(small_kan, (x, jnp.concatenate([y, y], axis=1)), steps=1, progress=False)
    with pytest.raises(ValueError, match="val_data"):
        fit(small_kan, (x, y), val_data=(x, jnp.concatenate([y, y], axis=1)), steps=1, progress=False)


def test_array_likes_pykan_dicts_and_optimizer_names_in_any_case(small_kan):
    x, y = _data(32)
    model, hist = fit(small_kan, (np.asarray(x).tolist(), np.asarray(y).tolist()), steps=2,
                      optimizer="LBFGS", lbfgs_iterations=3, progress=False)
    assert hist["final_loss"][0] < hist["train_loss"][0] * 1.001
    dataset = {"train_input": x, "train_label": y, "test_input": x[:8], "test_label": y[:8]}
    _, hist = fit(small_kan, dataset, steps=2, optimizer="Adam", progress=False)
    assert len(hist["val_loss"]) == 2
    with pytest.raises(KeyError, match="train_label"):
        fit(small_kan, {"train_input": x}, steps=1, progress=False)
    with pytest.raises(TypeError, match="array-like"):
        fit(small_kan, (x, [["a"]] * 32), steps=1, progress=False)
