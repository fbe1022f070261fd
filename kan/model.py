"""Stacks of layers: the KAN and its MLP baseline, with the same calling convention."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from bases import Basis, BSpline, Chebyshev, Fourier, GaussianRBF, Rational, ReLUKAN, check_last_dim

from .layers.layer import KANLayer, _activation_second_moment
from .layers.mult import check_mult_nodes, layer_output_to_nodes


def _check_widths(widths: Sequence[int], who: str) -> tuple[int, ...]:
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise ValueError(f"{who}: widths must list >= 2 positive sizes (input, ..., output), got {widths}")
    return widths


BASIS_NAMES = ("bspline", "rbf", "chebyshev", "fourier", "relukan", "rational")


def basis_factory_from_name(name: str, grid_size: int, order: int,
                            grid_range: tuple[float, float]) -> Callable[[int], Basis]:
    """``in_features -> Basis`` for a basis name (case, "-" and "_" ignored): "bspline" (``grid_size``
    intervals, ``order``), "rbf" (``grid_size`` Gaussian centres), "chebyshev" (degree ``grid_size``),
    "fourier" (frequencies 1..``grid_size``), "relukan" (``grid_size``, ``order``), "rational" (P5/Q4,
    one group per input)."""
    key = str(name).lower().replace("-", "").replace("_", "")
    makers = {
        "bspline": lambda d: BSpline(d, grid_size, order, grid_range),
        "rbf": lambda d: GaussianRBF(d, grid_size, grid_range),
        "gaussianrbf": lambda d: GaussianRBF(d, grid_size, grid_range),
        "chebyshev": lambda d: Chebyshev(d, grid_size, grid_range),
        "fourier": lambda d: Fourier(d, grid_size),
        "relukan": lambda d: ReLUKAN(d, grid_size, order, grid_range),
        "rational": lambda d: Rational(d, d),
    }
    if key not in makers:
        raise ValueError(f"KAN: unknown basis {name!r}; use one of {BASIS_NAMES} or a callable "
                         "in_features -> bases.Basis")
    return makers[key]


class KAN(eqx.Module):
    """A stack of :class:`KANLayer` of sizes ``widths`` (e.g. ``[2, 5, 1]``): ``(..., w0) -> (..., w-1)``.

    ``basis_factory(in_features) -> Basis`` chooses the basis of every layer; by default a B-spline
    with ``grid_size``, ``order`` and ``grid_range``. It may also be a basis name (``"rbf"``,
    ``"chebyshev"``, ... see :func:`basis_factory_from_name`), built with the same three settings.

    ``mult_nodes`` (one count per hidden layer, default none) makes the last ``m`` nodes of a hidden
    layer multiplication nodes (pykan's MultKAN, Liu et al. 2024 "KAN 2.0"): the layer before outputs
    ``width + m`` subnodes and each product node multiplies two of them (see :mod:`kan.layers.mult`), e.g.
    ``KAN([2, 1, 1], mult_nodes=[1], ...)`` holds ``a * sin(b)`` exactly. ``widths`` counts nodes.
    """

    layers: tuple[KANLayer, ...]
    mult_nodes: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        widths: Sequence[int],
        *,
        key: PRNGKeyArray,
        basis_factory: Optional[Callable[[int], Basis] | str] = None,
        grid_size: int = 5,
        order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        base_activation: Optional[Callable[[Array], Array]] = jax.nn.silu,
        init_scale: float = 1.0,
        spline_share: float = 0.5,
        mult_nodes: Optional[Sequence[int]] = None,
    ):
        widths = _check_widths(widths, "KAN")
        self.mult_nodes = check_mult_nodes(widths, mult_nodes, "KAN")
        if basis_factory is None or isinstance(basis_factory, str):
            basis_factory = basis_factory_from_name(basis_factory or "bspline", grid_size, order, grid_range)
        elif not callable(basis_factory):
            raise TypeError(f"KAN: basis_factory must be a basis name or a callable in_features -> "
                            f"bases.Basis, got {type(basis_factory).__name__}")
        keys = jax.random.split(key, len(widths) - 1)
        outputs = [w + m for w, m in zip(widths[1:-1], self.mult_nodes)] + [widths[-1]]
        self.layers = tuple(
            KANLayer(i, o, basis_factory(i), key=k, base_activation=base_activation, init_scale=init_scale,
                     spline_share=spline_share)
            for i, o, k in zip(widths[:-1], outputs, keys)
        )

    @property
    def widths(self) -> tuple[int, ...]:
        """Nodes per layer boundary: ``(in, hidden..., out)`` (subnodes of products not counted)."""
        return tuple(layer.in_features for layer in self.layers) + (self.layers[-1].out_features,)

    @eqx.filter_jit
    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``(..., in) -> (..., out)``; ``key`` is unused (accepted for ``eqx.nn.Sequential``)."""
        for l, layer in enumerate(self.layers):
            x = layer_output_to_nodes(self, l, layer(x))
        return x

    def activations(self, x: Float[Array, "... in"]) -> list[Float[Array, "... w"]]:
        """Inputs of every layer (node values, after products) followed by the output: ``[x, h1, ..., y]``."""
        acts = [x]
        for l, layer in enumerate(self.layers):
            acts.append(layer_output_to_nodes(self, l, layer(acts[-1])))
        return acts

    def num_parameters(self) -> int:
        """Trainable scalars of all layers (bases included; grids and masks are buffers, not counted)."""
        return sum(layer.num_parameters() for layer in self.layers)

    def flops(self) -> int:
        """Forward FLOPs for one sample, summed over layers (see :meth:`KANLayer.flops`)."""
        return sum(layer.flops() for layer in self.layers)


class MLP(eqx.Module):
    """Multi-layer perceptron baseline ``(..., w0) -> (..., w-1)``: Linear, activation, ..., Linear.

    Variance-preserving init: scaled orthogonal weights with the variance of N(0, 1 / (fan_in * E[a^2]))
    where ``E[a^2]`` is the second moment of the layer input (1 for the raw input, ``E[act(z)^2]`` for z ~ N(0, 1) after an
    activation); biases start at 0. Each layer keeps the second moment of N(0, 1) input at 1; deep
    stacks stay there for positively homogeneous activations (ReLU), while for GELU/SiLU the layer-to-layer
    variance map has an unstable fixed point at 1, so 32-layer stacks drift (a property of the
    activation, not of the init).
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]
    activation: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(
        self,
        widths: Sequence[int],
        *,
        key: PRNGKeyArray,
        activation: Callable[[Array], Array] = jax.nn.gelu,
    ):
        widths = _check_widths(widths, "MLP")
        self.activation = activation
        act_moment = _activation_second_moment(activation)
        keys = jax.random.split(key, len(widths) - 1)
        weights = []
        for idx, (i, o, k) in enumerate(zip(widths[:-1], widths[1:], keys)):
            input_moment = 1.0 if idx == 0 else act_moment
            # Scaled (semi-)orthogonal matrix (Saxe et al. 2014): rows of squared norm 1 / E[a^2]
            # exactly, so finite-width fluctuations do not random-walk the variance of deep stacks.
            scale = np.sqrt(max(1.0, o / i) / input_moment)
            weights.append(jax.nn.initializers.orthogonal(scale)(k, (o, i)))
        self.weights = tuple(weights)
        self.biases = tuple(jnp.zeros((o,)) for o in widths[1:])

    @property
    def widths(self) -> tuple[int, ...]:
        """Sizes ``(in, hidden..., out)``."""
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    @eqx.filter_jit
    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``(..., in) -> (..., out)``; ``key`` is unused (accepted for ``eqx.nn.Sequential``)."""
        check_last_dim(x, self.weights[0].shape[1], "MLP")
        for idx, (w, b) in enumerate(zip(self.weights, self.biases)):
            if idx > 0:
                x = self.activation(x)
            x = x @ w.T + b
        return x

    def num_parameters(self) -> int:
        """Weights and biases of all layers."""
        return sum(w.size + b.size for w, b in zip(self.weights, self.biases))

    def flops(self, activation_flops: int = 14) -> int:
        """Forward FLOPs for one sample (activation cost default: GELU = 14, as in Yu et al. 2024)."""
        widths = self.widths
        matmul = sum(2 * i * o + o for i, o in zip(widths[:-1], widths[1:]))
        return matmul + activation_flops * sum(widths[1:-1])
