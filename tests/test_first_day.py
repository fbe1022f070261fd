"""First-day defects: basis names, array-likes, CLI arguments, warnings, docstrings of public callables."""

import inspect
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bases
import kan
import symbolic


@pytest.mark.parametrize("name, cls", [("rbf", bases.GaussianRBF), ("Chebyshev", bases.Chebyshev),
                                       ("fourier", bases.Fourier), ("ReLU-KAN", bases.ReLUKAN),
                                       ("rational", bases.Rational), ("b_spline", bases.BSpline)])
def test_basis_factory_accepts_names(name, cls):
    model = kan.KAN([2, 2, 1], basis_factory=name, grid_size=4, key=jax.random.PRNGKey(0))
    assert all(isinstance(layer.basis, cls) for layer in model.layers)
    assert model(jnp.ones((3, 2))).shape == (3, 1)


def test_bad_basis_factory_names_what_is_expected():
    with pytest.raises(ValueError, match="unknown basis 'rbff'.*'rbf'"):
        kan.KAN([2, 2, 1], basis_factory="rbff", key=jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="basis name or a callable"):
        kan.KAN([2, 2, 1], basis_factory=3, key=jax.random.PRNGKey(0))


def test_python_list_input_gets_a_clear_error():
    model = kan.KAN([2, 2, 1], key=jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="got list; convert it with jnp.asarray"):
        model([[0.1, 0.2]])


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_cli_rejects_non_positive_steps(steps, capsys):
    from kan.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--steps", steps])
    assert exit_info.value.code == 2 and "must be an integer >= 1" in capsys.readouterr().err


def test_cli_help_describes_every_option(capsys):
    from kan.__main__ import main

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    for option in ("--steps", "--seed", "--no-progress"):
        line = next(l for l in out.splitlines() if l.strip().startswith(option))
        assert len(line.split()) > 2, f"{option} has no help text: {line!r}"


def test_constant_refit_of_an_overflowing_template_warns_nothing():
    from symbolic.constants import _Problem, _rmse, refit
    import sympy as sp

    a, x0 = sp.Symbol("a"), sp.Symbol("x_1")
    problem = _Problem(sp.exp(a * x0 ** 2), (a,), np.array([800.0]), (x0,))
    xs = np.linspace(-2, 2, 32)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        refit(problem, np.array([800.0]), np.array([True]), xs, np.exp(xs[:, 0]), steps=2)
        assert _rmse(np.full(3, np.inf), np.zeros(3)) == float("inf")


def _public_callables():
    for module in (kan, bases, symbolic):
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                        yield f"{module.__name__}.{name}.{attr}", member
            elif callable(obj):
                yield f"{module.__name__}.{name}", obj


def test_every_public_callable_has_a_docstring():
    missing = sorted(name for name, obj in _public_callables()
                     if not (inspect.getdoc(obj) or "").strip())
    assert not missing, f"public callables without a docstring: {missing}"


def test_import_kan_loads_neither_matplotlib_nor_sympy():
    code = "import sys, kan; print(sorted(m for m in ('matplotlib', 'sympy') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_prune_and_auto_symbolic_say_what_they_did(capsys):
    data = kan.create_dataset(lambda x: jnp.sin(x[:, :1]) + x[:, 1:], 2, train_num=64, test_num=8)
    model = kan.KAN([2, 2, 1], key=jax.random.PRNGKey(0))
    pruned = kan.prune(model, data["train_input"], verbose=True)
    symbolic.auto_symbolic(pruned, data["train_input"], verbose=True)
    kan.plot(pruned, data["train_input"], verbose=True)
    out = capsys.readouterr().out
    assert "plot: " in out and "edges of [2," in out
    assert "prune: widths [2, 2, 1] ->" in out and "active edges 6 ->" in out
    assert "auto_symbolic: snapped" in out and " s\n" in out


def test_layers_and_models_drop_into_eqx_sequential():
    import equinox as eqx

    k = jax.random.split(jax.random.PRNGKey(0), 3)
    seq = eqx.nn.Sequential([kan.KANLayer(2, 3, key=k[0]), kan.MLP([3, 2], key=k[1]), kan.KAN([2, 2, 1], key=k[2])])
    assert seq(jnp.ones((4, 2)), key=k[0]).shape == (4, 1)


def test_create_dataset_names_points_where_f_is_not_finite():
    # log of the negative half of [-1, 1] used to come back as NaN labels, without a word.
    with pytest.raises(ValueError, match=r"create_dataset: f gives NaN or inf at \d+ of 50 train points"):
        kan.create_dataset(lambda x: jnp.log(x[:, :1]), 2, train_num=50, test_num=5)
    data = kan.create_dataset(lambda x: jnp.log(x[:, :1]), 2, ranges=(0.5, 2.0), train_num=50, test_num=5)
    assert bool(jnp.all(jnp.isfinite(data["train_label"])))


def test_cli_leaves_without_teardown_after_flushing_its_output():
    """kan.__main__.leave: piped (block-buffered) output still arrives, the exit code is kept, and no
    atexit handler runs (the interpreter's teardown of JAX's runtime is skipped)."""
    code = ("import atexit, sys, jax.numpy as jnp\n"
            "from kan.__main__ import leave\n"
            "atexit.register(lambda: print('teardown ran'))\n"
            "print('result', float(jnp.sum(jnp.arange(4.0))))\n"
            "sys.stderr.write('last words')\n"
            "leave(3)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    assert run.stdout.splitlines() == ["result 6.0"] and run.stderr.endswith("last words")


def test_cli_console_script_is_cli_and_module_help_still_exits_0():
    from pathlib import Path

    # the [project.scripts] entry (read as text: tomllib is Python 3.11+, the package supports 3.10)
    assert 'kan = "kan.__main__:cli"' in (Path(__file__).parents[1] / "pyproject.toml").read_text()
    run = subprocess.run([sys.executable, "-m", "kan", "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "demo" in run.stdout, run.stderr
