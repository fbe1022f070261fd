"""A batch of no rows goes through every layer kind like through an MLP: an empty output of the right
shape and an empty gradient (``reshape(..., -1)`` of the features used to raise ZeroDivisionError)."""

import jax
import jax.numpy as jnp
import pytest

import bases
import kan
from kan.layers.selectable_layer import SelectableKANLayer

KEY = jax.random.PRNGKey(0)
DENSE = {
    "b-spline": lambda: kan.KANLayer(4, 3, bases.BSpline(4, 5), key=KEY),
    "b-spline native": lambda: kan.KANLayer(4, 3, bases.BSpline(4, 5), key=KEY, contraction="native"),
    "fourier": lambda: kan.KANLayer(4, 3, bases.Fourier(4, 3), key=KEY),
    "chebyshev": lambda: kan.KANLayer(4, 3, bases.Chebyshev(4, 3), key=KEY),
    "s-kan": lambda: SelectableKANLayer(4, 3, ["chebyshev", "fourier"], key=KEY),
    "kan model": lambda: kan.KAN([4, 5, 3], key=KEY),
    "pade": lambda: kan.PadeLayer(4, 3, key=KEY),
}


@pytest.mark.parametrize("name", sorted(DENSE))
def test_empty_batch_gives_empty_output_and_gradient(name):
    if name == "b-spline native" and not bases.native_build.available("bspline"):
        pytest.skip("no native kernel here")
    layer = DENSE[name]()
    x = jnp.ones((0, 4))
    assert layer(x).shape == (0, 3)
    assert layer(jnp.ones((2, 0, 4))).shape == (2, 0, 3)
    grad = jax.grad(lambda v: jnp.sum(layer(v) ** 2))(x)
    assert grad.shape == (0, 4)


def test_empty_batch_through_a_convolution():
    layer = kan.ConvKAN2d(3, 4, 3, key=KEY)
    assert layer(jnp.ones((0, 6, 6, 3))).shape == (0, 4, 4, 4)
