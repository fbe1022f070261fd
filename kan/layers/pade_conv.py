"""Convolutional Padé neurons (PAON, Keleş & Tekalp, ICIP 2024, arXiv 2403.11791): the neuron of
:mod:`kan.layers.pade` with every weight product ``W_k * x^k`` a 2-D convolution of the elementwise
power ``x^k``, channels last. The powers are stacked on the channel axis, so each polynomial response
is one convolution over ``K C`` channels (two in the smooth form: powers ``1..K-1`` and power ``K``).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from bases import count_parameters, merge_last_two

from .conv import Padding, Pads, check_padding, output_size, pair, resolve_pads
from .pade import PadeLayer, check_config, combine_flops, init_numerator, input_powers, pade_combine, power_flops

class PadeConv2d(eqx.Module):
    """Padé-neuron convolution ``(..., H, W, in_channels) -> (..., H', W', out_channels)``.

    Parameters: ``numerator (kh, kw, K, in, out)``, ``bias (out,)``, ``denominator (kh, kw, L, in, out)``.
    Forms, safe denominators and init as in :class:`kan.PadeLayer` with fan-in ``kh kw in``.
    """

    numerator: Float[Array, "kh kw K cin cout"]
    bias: Float[Array, " cout"]
    denominator: Float[Array, "kh kw L cin cout"]
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    kernel_size: tuple[int, int] = eqx.field(static=True)
    stride: tuple[int, int] = eqx.field(static=True)
    padding: Union[str, Pads] = eqx.field(static=True)
    image_size: Optional[tuple[int, int]] = eqx.field(static=True)
    form: str = eqx.field(static=True)
    denominator_form: str = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Sequence[int]] = 3,
                 numerator_degree: int = 3, denominator_degree: int = 2, *, key: PRNGKeyArray,
                 stride: Union[int, Sequence[int]] = 1, padding: Padding = 0, form: str = "plain",
                 denominator: str = "B", higher_share: float = 0.003, init_scale: float = 1.0,
                 image_size: Optional[Sequence[int]] = None):
        k, l = check_config("PadeConv2d", numerator_degree, denominator_degree, form, denominator, higher_share)
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ValueError(f"PadeConv2d: channels must be >= 1, got {in_channels}, {out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "PadeConv2d")
        self.stride = pair(stride, "stride", "PadeConv2d")
        self.padding = check_padding(padding, "PadeConv2d")
        self.image_size = None if image_size is None else pair(tuple(image_size), "image_size", "PadeConv2d")
        self.form, self.denominator_form = form, denominator
        kh, kw = self.kernel_size
        w = init_numerator(key, self.out_channels, kh * kw * self.in_channels, k, form, higher_share,
                           init_scale)  # (out, K, kh kw in), fan-in ordered as the kernel's (kh, kw, in)
        self.numerator = w.reshape(self.out_channels, k, kh, kw, self.in_channels).transpose(2, 3, 1, 4, 0)
        self.bias = jnp.zeros((self.out_channels,))
        self.denominator = jnp.zeros((kh, kw, l, self.in_channels, self.out_channels))

    @property
    def numerator_degree(self) -> int:
        """``K``, the numerator's highest power."""
        return self.numerator.shape[2]

    @property
    def denominator_degree(self) -> int:
        """``L``, the denominator's highest power."""
        return self.denominator.shape[2]

    def _pads(self, image_size: Sequence[int]) -> Pads:
        return resolve_pads(self.padding, tuple(image_size), self.kernel_size, self.stride, (1, 1))

    def output_size(self, image_size: Sequence[int]) -> tuple[int, int]:
        """``(H', W')`` of the output for an input image of ``image_size = (H, W)`` (ValueError when the
        kernel is larger than the padded image)."""
        size = pair(tuple(image_size), "image_size", "PadeConv2d")
        return output_size(size, self.kernel_size, self.stride, (1, 1), self._pads(size), "PadeConv2d")

    def _contract(self, powers: Array, weight: Array, lo: int, hi: int) -> Array:
        p = powers[..., lo:hi, :]
        p = merge_last_two(p)
        w = weight[:, :, lo:hi]
        w = w.reshape(w.shape[:2] + (-1, w.shape[-1]))
        return jax.lax.conv_general_dilated(p, w, self.stride, self._pads(p.shape[-3:-1]),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @eqx.filter_jit
    def __call__(self, x: Float[Array, "... H W cin"], *, key: Optional[PRNGKeyArray] = None
                 ) -> Float[Array, "... Ho Wo cout"]:
        """``(..., H, W, in) -> (..., H', W', out)``; ``key`` is unused."""
        del key
        if not hasattr(x, "ndim") or x.ndim < 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"PadeConv2d: expected input of shape (..., H, W, {self.in_channels}), got "
                             f"{tuple(getattr(x, 'shape', ()))}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"PadeConv2d: expected a floating-point input, got dtype {x.dtype}")
        kh, kw = self.kernel_size
        height, width = self.output_size(x.shape[-3:-1])
        lead = x.shape[:-3]
        x4 = x.reshape((-1,) + x.shape[-3:])
        k, l = self.numerator_degree, self.denominator_degree
        powers = input_powers(x4, max(k, l))
        y = pade_combine(self._contract, powers, self.numerator, self.denominator, self.bias, k, l,
                         self.form, self.denominator_form)
        return y.reshape(lead + (height, width, self.out_channels))

    def as_pade_layer(self) -> PadeLayer:
        """The same neurons as a dense :class:`kan.PadeLayer` over receptive fields of
        ``kh kw in`` features (ordered ``(i kw + j) in + c``, as :class:`kan.ConvKAN2d`'s patches), for
        plotting a neuron's slices: ``kan.plot_edge(PadeStack([conv.as_pade_layer()]), 0, o, p, patches)``
        with ``patches = kan.ConvKAN2d``-style receptive fields of the input."""
        kh, kw = self.kernel_size
        k, l = self.numerator_degree, self.denominator_degree
        dense = PadeLayer(kh * kw * self.in_channels, self.out_channels, k, l, key=jax.random.PRNGKey(0),
                          form=self.form, denominator=self.denominator_form)

        def flat(w, degree):  # (kh, kw, degree, in, out) -> (out, degree, kh kw in)
            return jnp.transpose(w, (4, 2, 0, 1, 3)).reshape(self.out_channels, degree, -1)

        return eqx.tree_at(lambda m: (m.numerator, m.bias, m.denominator), dense,
                           (flat(self.numerator, k), self.bias, flat(self.denominator, l)))

    def num_parameters(self) -> int:
        """``kh kw in out (K + L) + out``."""
        return count_parameters(self)

    def flops(self, image_size: Optional[Sequence[int]] = None) -> int:
        """Forward FLOPs per sample for an input image of ``image_size = (H, W)`` (default: the
        constructor's): powers of every input element, ``2 kh kw in`` per power, output channel and output
        position, and the elementwise combination. Counts every kernel tap, also those on zero padding
        (XLA's cost analysis skips those)."""
        size = self.image_size if image_size is None else image_size
        if size is None:
            raise ValueError("PadeConv2d.flops: the count depends on the image size; pass image_size=(H, W) "
                             "here or to the constructor")
        height, width = pair(tuple(size), "image_size", "PadeConv2d")
        kh, kw = self.kernel_size
        ho, wo = self.output_size((height, width))
        k, l = self.numerator_degree, self.denominator_degree
        return (power_flops(height * width * self.in_channels, k, l, self.denominator_form)
                + combine_flops(k, l, kh * kw * self.in_channels, ho * wo * self.out_channels, self.form,
                                self.denominator_form))
