"""Padé neurons (PAON: Keleş & Tekalp, "PAON: A New Neuron Model using Padé Approximants", ICIP 2024,
arXiv 2403.11791; "Padé Neurons for Efficient Neural Models", arXiv 2601.04005), dense form.

A Padé neuron of order ``[K/L]`` is a ratio of polynomial responses of its inputs. With elementwise
powers ``x^k`` and one weight matrix per power (``*`` is a matrix product here, a convolution in
:class:`kan.PadeConv2d`), as in the paper::

    P_K = a_0 + sum_{k=1..K} W_k * x^k        T_L = sum_{l=1..L} B_l * x^l

    form "plain":   y = P_K / Q_L
    form "smooth":  y = (Q_L P_K + Q_{L-1} P_{K-1}) / (Q_L^2 + Q_{L-1}^2)     (the paper's PaonS)

where ``P_{K-1}``, ``Q_{L-1}`` drop the top-degree term (same weights) and ``Q_0 = 1``. The paper's
denominator ``Q_L = 1 + T_L`` can reach 0; here it is one of the package's safe denominators
(:mod:`bases.kernels.rational_math`), both ``>= 1``, so neither form has a pole:

* ``denominator="B"`` (default): ``Q_L = 1 + |sum_l B_l * x^l|`` (the paper's response, sign removed);
* ``denominator="A"``: ``Q_L = 1 + sum_l |B_l| * |x|^l``.

Inputs are clipped to ``|x| <= 1e25 ** (1 / max(K, L))`` so every power stays far below the float32
maximum; the smooth form is evaluated as ``(u P_K + v P_{K-1}) / (s (u^2 + v^2))`` with
``s = max(Q_L, Q_{L-1})``, ``u = Q_L / s``, ``v = Q_{L-1} / s`` (no ``Q^2`` overflow).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from bases import check_last_dim, count_parameters, merge_last_two

FORMS = ("plain", "smooth")
DENOMINATORS = ("A", "B")
MAX_POWER = 1.0e25  # the largest |x|^k the clip allows


def check_config(who: str, numerator_degree: int, denominator_degree: int, form: str, denominator: str,
                 higher_share: float) -> tuple[int, int]:
    """Validate the neuron's settings; returns ``(K, L)`` as ints."""
    if form not in FORMS:
        raise ValueError(f"{who}: unknown form {form!r}; expected one of {FORMS}")
    if denominator not in DENOMINATORS:
        raise ValueError(f"{who}: unknown denominator {denominator!r}; expected one of {DENOMINATORS}")
    k, l = int(numerator_degree), int(denominator_degree)
    if k < 1 or l < 1:
        raise ValueError(f"{who}: need numerator_degree >= 1 and denominator_degree >= 1, got {k}/{l}")
    if not 0.0 <= higher_share < 1.0:
        raise ValueError(f"{who}: higher_share must be in [0, 1), got {higher_share}")
    return k, l


def power_stds(degree: int, fan_in: int, form: str, higher_share: float) -> np.ndarray:
    """Init standard deviations ``(K,)`` of the numerator weights: ``E[y^2] = 1`` for x ~ N(0, 1).

    Power ``k`` gets the share ``c_k`` of the output variance, ``Var[W_k] = c_k / (fan_in E[x^{2k}])``
    with ``E[x^{2k}] = (2k - 1)!!``: ``c_1 = 1 - higher_share``, the rest split ``higher_share``. At init
    ``Q = 1``, so the plain form is ``P_K`` and the smooth form ``P_K - W_K * x^K / 2``: there the top
    power's variance is multiplied by 4 to keep its share.
    """
    shares = np.full(degree, higher_share / max(degree - 1, 1))
    shares[0] = 1.0 if degree == 1 else 1.0 - higher_share
    if form == "smooth":
        shares[-1] *= 4.0
    moments = np.array([np.prod(np.arange(1, 2 * k, 2)) for k in range(1, degree + 1)], np.float64)
    return np.sqrt(shares / (fan_in * moments))


def init_numerator(key: PRNGKeyArray, out: int, fan_in: int, degree: int, form: str, higher_share: float,
                   init_scale: float = 1.0) -> Float[Array, "out K fan_in"]:
    """Numerator weights ``(out, K, fan_in)`` with the variances of :func:`power_stds`: ``W_1`` a scaled
    (semi-)orthogonal matrix (Saxe et al. 2014, as :class:`kan.MLP`: rows of fixed norm, so deep
    stacks do not random-walk their variance), higher powers Gaussian."""
    if not (np.isfinite(init_scale) and init_scale >= 0):
        raise ValueError(f"PadeLayer: init_scale must be a finite number >= 0, got {init_scale}")
    stds = init_scale * power_stds(degree, fan_in, form, higher_share)
    noise = np.asarray(jax.random.normal(key, (out, degree, fan_in)), np.float64)
    # W_1: the Gaussian draw orthogonalised by QR on the host (no XLA QR to compile per shape)
    tall = noise[:, 0, :] if out >= fan_in else noise[:, 0, :].T
    q, r = np.linalg.qr(tall)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    first = (q if out >= fan_in else q.T) * stds[0] * np.sqrt(fan_in * max(1.0, out / fan_in))
    weights = np.concatenate([first[:, None, :], noise[:, 1:, :] * stds[None, 1:, None]], axis=1)
    return jnp.asarray(weights, jnp.float32)


def input_powers(x: Array, degree: int) -> Array:
    """Clipped elementwise powers ``(..., d) -> (..., degree, d)``: ``x^1 .. x^degree``."""
    bound = MAX_POWER ** (1.0 / degree)
    x = jnp.clip(x.astype(jnp.float32), -bound, bound)
    out = [x]
    for _ in range(degree - 1):
        out.append(out[-1] * x)
    return jnp.stack(out, axis=-2)


def pade_combine(contract: Callable[[Array, Array, int, int], Array], powers: Array, numerator: Array,
                 denominator: Array, bias: Array, k: int, l: int, form: str, den_form: str) -> Array:
    """The neuron's output from the shared pieces. ``contract(powers, weight, lo, hi)`` is the
    response of powers ``lo+1 .. hi`` (``powers[..., lo:hi, :]``) to the matching weight slice; ``bias``
    broadcasts against it."""
    den_powers, den_weight = (powers, denominator) if den_form == "B" else (jnp.abs(powers), jnp.abs(denominator))
    safe = (lambda t: 1.0 + jnp.abs(t)) if den_form == "B" else (lambda t: 1.0 + t)
    if form == "plain":
        p = contract(powers, numerator, 0, k) + bias
        return p / safe(contract(den_powers, den_weight, 0, l))
    top_p = contract(powers, numerator, k - 1, k)
    low_p = (contract(powers, numerator, 0, k - 1) + bias) if k > 1 else bias
    top_t = contract(den_powers, den_weight, l - 1, l)
    if l > 1:
        low_t = contract(den_powers, den_weight, 0, l - 1)
        q_low = safe(low_t)
        q_full = safe(low_t + top_t)
    else:
        q_low, q_full = jnp.ones_like(top_t), safe(top_t)
    s = jnp.maximum(q_full, q_low)
    u, v = q_full / s, q_low / s
    return (u * (low_p + top_p) + v * low_p) / (s * (u * u + v * v))


def combine_flops(k: int, l: int, fan_in: int, out: int, form: str, den_form: str) -> int:
    """Per-sample FLOPs of :func:`pade_combine` for ``out`` outputs over ``fan_in`` inputs per output
    (contractions ``2 fan_in`` per power and output); weight-only work (``|B|``) is per call, not counted."""
    contract = 2 * (k + l) * fan_in * out
    safe = 2 if den_form == "B" else 1  # 1 + |t| or 1 + t
    if form == "plain":
        return contract + out * (2 + safe)  # bias, Q, divide
    low = 1 if k > 1 else 0  # low_p + bias
    q = (1 + 2 * safe) if l > 1 else safe  # low_t + top_t and two Q's, or one Q
    return contract + out * (low + q + 12)  # max, 2 divides, 4 for u (low + top) + v low, 3 for u^2 + v^2, s *, /


def power_flops(d: int, k: int, l: int, den_form: str) -> int:
    """Per-sample FLOPs of :func:`input_powers` (clip 2, a multiply per extra power) and, for form A,
    ``|x^j|`` of the powers."""
    m = max(k, l)
    return d * (2 + (m - 1) + (m if den_form == "A" else 0))


class PadeLayer(eqx.Module):
    """Dense Padé neurons ``(..., in) -> (..., out)`` (see the module docstring for the formula).

    Parameters: ``numerator (out, K, in)`` (``W_k`` for ``k = 1..K``), ``bias (out,)`` (``a_0``) and
    ``denominator (out, L, in)`` (``B_l``). Init: ``W_1`` (scaled orthogonal) carries the unit gain,
    higher powers share ``higher_share`` of the output variance (:func:`power_stds`), ``a_0 = 0`` and
    ``B = 0``, so every ``Q`` starts at exactly 1: the neuron starts as a nearly linear polynomial
    (gradients still reach ``B``: ``d|t|/dt = 1`` at 0 in JAX). Polynomials compound their tails over
    depth: with the default ``higher_share = 0.003`` 8-deep stacks of [3/2] and [5/4] neurons keep
    their output variance within 1% of the input's; ``0.01`` is still fine for [3/2] but not for [5/4].
    """

    numerator: Float[Array, "out K in"]
    bias: Float[Array, " out"]
    denominator: Float[Array, "out L in"]
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    form: str = eqx.field(static=True)
    denominator_form: str = eqx.field(static=True)

    def __init__(self, in_features: int, out_features: int, numerator_degree: int = 3,
                 denominator_degree: int = 2, *, key: PRNGKeyArray, form: str = "plain",
                 denominator: str = "B", higher_share: float = 0.003, init_scale: float = 1.0):
        k, l = check_config("PadeLayer", numerator_degree, denominator_degree, form, denominator, higher_share)
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"PadeLayer: in_features and out_features must be >= 1, got {in_features}, "
                             f"{out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.form, self.denominator_form = form, denominator
        self.numerator = init_numerator(key, self.out_features, self.in_features, k, form, higher_share,
                                        init_scale)
        self.bias = jnp.zeros((self.out_features,))
        self.denominator = jnp.zeros((self.out_features, l, self.in_features))

    @property
    def numerator_degree(self) -> int:
        """``K``, the numerator's highest power."""
        return self.numerator.shape[1]

    @property
    def denominator_degree(self) -> int:
        """``L``, the denominator's highest power."""
        return self.denominator.shape[1]

    @staticmethod
    def _contract(powers: Array, weight: Array, lo: int, hi: int) -> Array:
        p = powers[..., lo:hi, :]
        p = merge_last_two(p)
        return p @ weight[:, lo:hi, :].reshape(weight.shape[0], -1).T

    @eqx.filter_jit
    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``(..., in) -> (..., out)``; ``key`` is unused (accepted for ``eqx.nn.Sequential``)."""
        del key
        check_last_dim(x, self.in_features, "PadeLayer")
        k, l = self.numerator_degree, self.denominator_degree
        powers = input_powers(x, max(k, l))
        return pade_combine(self._contract, powers, self.numerator, self.denominator, self.bias, k, l,
                            self.form, self.denominator_form)

    def edge_functions(self, x: Float[Array, "... in"], reference: Optional[Float[Array, " in"]] = None
                       ) -> Float[Array, "... out in"]:
        """Slices of each neuron for plotting: entry ``[..., o, i]`` is output ``o`` when input ``i``
        takes the value ``x[..., i]`` and every other input sits at ``reference`` (default 0).

        A Padé neuron is not a sum of edge functions, so these are 1-D cuts through a multivariate
        function, not a decomposition; ``kan.plot_edge(PadeStack([layer]), 0, o, i, x)`` draws one.
        """
        check_last_dim(x, self.in_features, "PadeLayer.edge_functions")
        ref = jnp.zeros((self.in_features,)) if reference is None else jnp.asarray(reference, jnp.float32)
        if ref.shape != (self.in_features,):
            raise ValueError(f"PadeLayer.edge_functions: reference must have shape ({self.in_features},), "
                             f"got {tuple(ref.shape)}")
        eye = jnp.eye(self.in_features, dtype=jnp.float32)
        # points[..., i, :] = reference with coordinate i replaced by x[..., i]
        points = ref * (1.0 - eye) + x[..., :, None] * eye
        return jnp.swapaxes(self(points), -1, -2)

    def num_parameters(self) -> int:
        """``out (K + L) in + out``."""
        return count_parameters(self)

    def flops(self) -> int:
        """Forward FLOPs per sample: powers of the inputs, ``2 in`` per power and output for the
        contractions, and the elementwise combination (:func:`combine_flops`)."""
        k, l = self.numerator_degree, self.denominator_degree
        return (power_flops(self.in_features, k, l, self.denominator_form)
                + combine_flops(k, l, self.in_features, self.out_features, self.form, self.denominator_form))


class PadeStack(eqx.Module):
    """Padé layers (or any ``(..., i) -> (..., o)`` layers with ``flops()``) applied in turn, with
    ``activations(x)`` so :func:`kan.plot_edge` can draw a neuron's slice (:meth:`PadeLayer.edge_functions`)."""

    layers: tuple[Any, ...]

    def __init__(self, layers: Sequence[Any]):
        layers = tuple(layers)
        if not layers:
            raise ValueError("PadeStack: needs at least one layer")
        for i, layer in enumerate(layers):
            if not callable(layer) or not hasattr(layer, "flops"):
                raise TypeError(f"PadeStack: layer {i} ({type(layer).__name__}) must be callable with flops()")
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            if getattr(a, "out_features", None) != getattr(b, "in_features", None):
                raise ValueError(f"PadeStack: layer {i} gives {getattr(a, 'out_features', None)} features, "
                                 f"layer {i + 1} takes {getattr(b, 'in_features', None)}")
        self.layers = layers

    @property
    def widths(self) -> tuple[int, ...]:
        """Sizes ``(in, hidden..., out)``."""
        return (self.layers[0].in_features,) + tuple(layer.out_features for layer in self.layers)

    def activations(self, x: Float[Array, "... in"]) -> list[Array]:
        """Inputs of every layer and the final output: ``len(layers) + 1`` arrays."""
        acts = [x]
        for layer in self.layers:
            acts.append(layer(acts[-1]))
        return acts

    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``key`` is unused."""
        del key
        return self.activations(x)[-1]

    def num_parameters(self) -> int:
        """Trainable scalars of every layer."""
        return count_parameters(self)

    def flops(self) -> int:
        """Sum of the layers' ``flops()``."""
        return sum(int(layer.flops()) for layer in self.layers)
