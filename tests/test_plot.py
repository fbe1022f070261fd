"""kan.plot and kan.plot_edge write PNGs for numeric and snapped models and reject bad input."""

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest

import kan
import symbolic


@pytest.fixture(scope="module")
def model_and_data():
    model = kan.KAN([2, 3, 1], key=jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (100, 2), minval=-1, maxval=1)
    model = kan.prune_edges(model, x, edge_th=0.0)
    snapped, _ = symbolic.fix_symbolic(model, 0, 1, 0, "sin", x)
    return model, snapped, x


def test_plot_network_png(tmp_path, model_and_data):
    model, snapped, x = model_and_data
    for m, name in ((model, "numeric.png"), (snapped, "snapped.png")):
        path = kan.plot(m, x, tmp_path / name, title=name)
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert np.std(img[..., :3]) > 0.01  # something was drawn
    # the snapped edge is drawn in red: the snapped picture has clearly reddish pixels
    red = lambda im: np.mean((im[..., 0] > 0.6) & (im[..., 1] < 0.45) & (im[..., 2] < 0.45))
    assert red(mpimg.imread(tmp_path / "snapped.png")) > red(mpimg.imread(tmp_path / "numeric.png"))


def test_plot_edge_png(tmp_path, model_and_data):
    _, snapped, x = model_and_data
    path = kan.plot_edge(snapped, 0, 1, 0, x, tmp_path / "edge.png")
    assert mpimg.imread(path).shape[0] > 50
    with pytest.raises(ValueError, match="outside layer"):
        kan.plot_edge(snapped, 0, 5, 0, x, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="shape"):
        kan.plot(snapped, x[:, :1], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="NaN"):
        kan.plot(snapped, x.at[0, 0].set(jnp.nan), tmp_path / "bad.png")
