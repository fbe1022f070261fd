"""kan.plot and kan.plot_edge return matplotlib Figures (saved only when given a path), name the
variables, lay out wide layers without overlapping thumbnails, keep the legend off the curve, and
reject bad input; matplotlib is imported only when drawing."""

import ast
from itertools import combinations
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

import kan
import symbolic
from kan.edit.surgery import replace_fields


@pytest.fixture(scope="module")
def model_and_data():
    model = kan.KAN([2, 3, 1], key=jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (32, 2), minval=-1, maxval=1)
    first = model.layers[0]  # prune edge 1 -> 2: it is not drawn
    first = replace_fields(first, edge_mask=first.edge_mask.at[2, 1].set(0.0))
    model = replace_fields(model, layers=(first,) + tuple(model.layers[1:]))
    snapped, _ = symbolic.fix_symbolic(model, 0, 1, 0, "sin")  # exactly sin(x): no fitting
    return model, snapped, x


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


def _thumbnails(fig):
    """Every axes other than the network's background axes (inset axes included)."""
    axes = list(fig.axes) + [c for ax in fig.axes for c in ax.child_axes]
    return [ax for ax in axes if ax.get_label() != "kan-network"]


def test_plot_returns_figure_saves_only_with_path(tmp_path, monkeypatch, model_and_data):
    _, snapped, x = model_and_data
    monkeypatch.chdir(tmp_path)
    fig = kan.plot(snapped, x)
    assert isinstance(fig, Figure)
    edge = kan.plot_edge(snapped, 0, 1, 0, x)
    assert isinstance(edge, Figure)
    assert list(tmp_path.iterdir()) == []  # nothing written without a path
    # the path is still accepted positionally (and by keyword); the figure is returned either way
    assert isinstance(kan.plot(snapped, x, tmp_path / "snapped.png", title="snapped"), Figure)
    assert isinstance(kan.plot(snapped, x, path=str(tmp_path / "kw.pdf")), Figure)
    assert isinstance(kan.plot_edge(snapped, 0, 1, 0, x, tmp_path / "edge.png"), Figure)
    assert edge._repr_png_().startswith(b"\x89PNG")  # Jupyter shows it even without an inline backend
    assert (tmp_path / "kw.pdf").stat().st_size > 0
    for name in ("snapped.png", "edge.png"):
        img = mpimg.imread(tmp_path / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert np.std(img[..., :3]) > 0.01  # something was drawn
    # the snapped edge is drawn in red, the others in black
    img = mpimg.imread(tmp_path / "snapped.png")
    assert np.mean((img[..., 0] > 0.6) & (img[..., 1] < 0.45) & (img[..., 2] < 0.45)) > 1e-4
    colors = {ax.get_label(): to_hex(ax.lines[0].get_color()) for ax in _thumbnails(fig)}
    assert colors.pop("edge 0,1,0") == to_hex("tab:red") and set(colors.values()) == {to_hex("black")}
    assert "snapped" in _texts(kan.plot(snapped, x, title="snapped"))


def test_plot_variable_names(model_and_data):
    _, snapped, x = model_and_data
    texts = _texts(kan.plot(snapped, x))
    assert {"x_1", "x_2", "y_1"} <= set(texts)
    fig = kan.plot(snapped, x, in_vars=["a", "sin(b)"], out_vars=("f",))
    texts = _texts(fig)
    assert {"a", "sin(b)", "f"} <= set(texts) and "x_1" not in texts
    assert "sin" in texts  # the snapped edge keeps its label
    # inputs are named below the input nodes, outputs above the output nodes
    ax = next(a for a in fig.axes if a.get_label() == "kan-network")
    pos = {t.get_text(): t.get_position()[1] for t in ax.texts}
    assert pos["a"] < pos["f"] and pos["sin(b)"] < pos["f"]
    with pytest.raises(ValueError, match="in_vars has 3 names"):
        kan.plot(snapped, x, in_vars=["a", "b", "c"])
    with pytest.raises(ValueError, match="out_vars has 2 names"):
        kan.plot(snapped, x, out_vars=["f", "g"])


def _assert_no_overlap(fig, model):
    fig.draw_without_rendering()
    thumbs = _thumbnails(fig)
    num_edges = sum(int(np.sum(np.asarray(layer.edge_mask) > 0)) for layer in model.layers)
    assert len(thumbs) == num_edges  # one thumbnail per edge, so the check below is not vacuous
    boxes = [ax.get_window_extent() for ax in thumbs]
    page = fig.bbox
    for box in boxes:  # inside the figure
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    for (i, a), (j, b) in combinations(enumerate(boxes), 2):
        dx = min(a.x1, b.x1) - max(a.x0, b.x0)
        dy = min(a.y1, b.y1) - max(a.y0, b.y0)
        assert dx <= 0 or dy <= 0, f"thumbnails {thumbs[i].get_label()} and {thumbs[j].get_label()} overlap"


@pytest.mark.parametrize("widths, mult", [([3, 8], None), ([2, 3, 1], [1])])
def test_plot_thumbnails_do_not_overlap(model_and_data, widths, mult):
    # the code before this test overlapped 59 pairs at [3, 8] and 7 with the product node; [10, 10, 1]
    # and [3, 8, 8, 2] were checked by hand (input widths 2 and 3 keep the layer init cached)
    _, snapped, x = model_and_data
    small = kan.plot(snapped, x)
    _assert_no_overlap(small, snapped)  # with a pruned and a snapped edge
    wide = kan.KAN(widths, mult_nodes=mult, key=jax.random.PRNGKey(0))
    fig = kan.plot(wide, jax.random.uniform(jax.random.PRNGKey(1), (32, widths[0])), num_points=16)
    _assert_no_overlap(fig, wide)
    if mult:
        assert _texts(fig).count("×") == 1
    else:
        assert fig.get_size_inches()[0] > small.get_size_inches()[0]  # a wider layer widens the figure


def test_plot_edge_legend_and_title(model_and_data):
    _, snapped, x = model_and_data
    fig = kan.plot_edge(snapped, 0, 1, 0, x)
    fig.draw_without_rendering()
    (ax,) = fig.axes
    title = ax.get_title()
    assert "layer 0" in title and "0 → 1" in title and "sin" in title
    legends = fig.legends + [ax.get_legend()] * (ax.get_legend() is not None)
    assert len(legends) == 1 and len(legends[0].get_texts()) == 2  # learned edge and formula
    legend, frame = legends[0].get_window_extent(), ax.get_window_extent()
    assert legend.y1 <= frame.y0 or legend.x0 >= frame.x1 or legend.y0 >= frame.y1  # outside the axes
    assert "numeric" in kan.plot_edge(snapped, 0, 0, 1, x).axes[0].get_title()
    assert kan.plot_edge(snapped, 0, 0, 1, x, title="my edge").axes[0].get_title() == "my edge"


def test_plot_rejects_bad_input(tmp_path, model_and_data):
    _, snapped, x = model_and_data
    with pytest.raises(ValueError, match="outside layer"):
        kan.plot_edge(snapped, 0, 5, 0, x)
    with pytest.raises(ValueError, match="out of range"):
        kan.plot_edge(snapped, 3, 0, 0, x)
    with pytest.raises(ValueError, match="shape"):
        kan.plot(snapped, x[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        kan.plot(snapped, x.at[0, 0].set(jnp.nan), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_imports_matplotlib_lazily():
    # kan/plot.py imports matplotlib (and kan.plot_figure, which does) only inside its functions;
    # a TYPE_CHECKING block is fine (it is an `if`, not a top-level import)
    source = Path(kan.__file__).parent / "plot.py"
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.split(".")[0] in ("matplotlib", "plot_figure") for n in names), ast.dump(node)


def test_plot_of_a_constant_layer_input_does_not_warn():
    import warnings

    model = kan.KAN([2, 2, 1], key=jax.random.PRNGKey(0))
    x = jnp.stack([jnp.linspace(-1, 1, 16), jnp.full(16, 0.3)], axis=1)  # second input constant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kan.plot(model, x)
