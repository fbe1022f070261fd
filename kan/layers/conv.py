"""Convolutional KAN layer: the KAN edge sum over every receptive field (Bodner et al. 2024,
"Convolutional Kolmogorov-Arnold Networks", arXiv 2406.13155).

A KAN convolution replaces each kernel weight ``w[o, c, i, j]`` of a CNN by a learnable univariate
function ``phi[o, c, i, j]``. At output position ``(r, s)``

    y[r, s, o] = sum_{i, j, c} phi[o, (i, j, c)](x[r*sh + i*dh - pt, s*sw + j*dw - pl, c]) + bias_o

which is a :class:`~kan.layers.layer.KANLayer` with ``C_in * kh * kw`` inputs applied to every patch.
:class:`ConvKAN2d` extracts the patches (strided slices of the zero-padded image, one per kernel offset,
stacked; no FLOPs in XLA's count and, measured on CPU, 4-10x faster in the backward pass than
``jax.lax.conv_general_dilated_patches``, which XLA runs as a convolution with an identity kernel) and
applies that one inner layer. Init, masks, ``edge_functions``, symbolic snapping and plots are the inner
layer's; :meth:`ConvKAN2d.as_kan` wraps it for :func:`kan.plot` / :func:`kan.plot_edge`.

**Patch feature order**: offset-major, channel fastest, ``p = (i * kw + j) * C_in + c`` for kernel row
``i``, kernel column ``j`` and input channel ``c`` (the flattening of an ``(kh, kw, C_in)`` HWC kernel).
Padding is with zeros, so a border edge sees ``phi(0)`` (not 0) where the kernel leaves the image.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from bases import Basis, BSpline, merge_last_two

from .layer import KANLayer

Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]
Pads = tuple[tuple[int, int], tuple[int, int]]


def pair(value: Any, name: str, who: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= minimum``, as a pair."""
    items = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{who}: {name} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def check_padding(padding: Padding, who: str) -> Union[str, Pads]:
    """``"VALID"``, ``"SAME"``, or explicit zero padding ``((top, bottom), (left, right))`` from an int
    (all sides), a pair ``(rows, cols)`` (both sides of each) or two pairs."""
    if isinstance(padding, str):
        if padding.upper() not in ("VALID", "SAME"):
            raise ValueError(f"{who}: padding must be 'VALID', 'SAME', an int or pairs, got {padding!r}")
        return padding.upper()
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        pads = tuple(pair(p, "padding", who, minimum=0) for p in padding)
        return pads[0], pads[1]
    rows, cols = pair(padding, "padding", who, minimum=0)
    return (rows, rows), (cols, cols)


def resolve_pads(padding: Union[str, Pads], size: tuple[int, int], kernel: tuple[int, int],
                 stride: tuple[int, int], dilation: tuple[int, int]) -> Pads:
    """Explicit pads for an image of ``size = (H, W)``; "SAME" gives ``ceil(H / stride)`` outputs, the
    extra row/column at the bottom/right (as ``jax.lax`` does)."""
    if padding == "VALID":
        return (0, 0), (0, 0)
    if padding == "SAME":
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads[0], pads[1]
    return padding


def output_size(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                dilation: tuple[int, int], pads: Pads, who: str = "ConvKAN2d") -> tuple[int, int]:
    """``(H', W')`` of the output; a clear error when the dilated kernel is larger than the padded image."""
    out = []
    for axis, n, k, s, d, (lo, hi) in zip(("height", "width"), size, kernel, stride, dilation, pads):
        span, padded = d * (k - 1) + 1, n + lo + hi
        if span > padded:
            raise ValueError(f"{who}: kernel {axis} {k} (dilation {d}: spans {span}) is larger than the padded "
                             f"image {axis} {padded} ({n} + padding {lo}+{hi})")
        out.append((padded - span) // s + 1)
    return out[0], out[1]


def extract_patches(x: Float[Array, "... H W C"], kernel: tuple[int, int], stride: tuple[int, int],
                    dilation: tuple[int, int], pads: Pads) -> Float[Array, "... Ho Wo P"]:
    """Receptive fields ``(..., H', W', kh * kw * C)`` in the feature order ``(i * kw + j) * C + c``."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    ho, wo = output_size(x.shape[-3:-1], kernel, stride, dilation, pads)
    if any(p for pair in pads for p in pair):
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [pads[0], pads[1], (0, 0)])
    parts = [x[..., i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw, :]
             for i in range(kh) for j in range(kw)]
    stacked = jnp.stack(parts, axis=-2)  # (..., H', W', kh*kw, C)
    return merge_last_two(stacked)


class ConvKAN2d(eqx.Module):
    """KAN convolution ``(..., H, W, C_in) -> (..., H', W', C_out)`` (channels last, any leading batch shape).

    ``basis``: a :class:`bases.Basis` with ``in_features = C_in * kh * kw``, a factory
    ``in_features -> Basis``, a basis name of :func:`kan.basis_factory_from_name` (default grid settings),
    or None (cubic B-spline, 5 intervals on ``[-1, 1]``). ``layer_options`` (``base_activation``,
    ``use_bias``, ``init_scale``, ``spline_share``, ``contraction``) go to the inner
    :class:`KANLayer`, whose variance-preserving init makes unit-variance inputs give about
    unit-variance outputs. ``padding``: "VALID" (default), "SAME", an int, ``(rows, cols)`` or
    ``((top, bottom), (left, right))``. ``image_size = (H, W)`` (optional) is only the default for
    :meth:`flops`. ``layer`` (instead of ``key``): a prebuilt inner layer (``in_features == C_in*kh*kw``).
    """

    layer: Any
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    kernel_size: tuple[int, int] = eqx.field(static=True)
    stride: tuple[int, int] = eqx.field(static=True)
    padding: Union[str, Pads] = eqx.field(static=True)
    dilation: tuple[int, int] = eqx.field(static=True)
    image_size: Optional[tuple[int, int]] = eqx.field(static=True, default=None)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Sequence[int]],
                 basis: Union[Basis, Callable[[int], Basis], str, None] = None, *,
                 key: Optional[PRNGKeyArray] = None, stride: Union[int, Sequence[int]] = 1,
                 padding: Padding = "VALID", dilation: Union[int, Sequence[int]] = 1,
                 image_size: Optional[Sequence[int]] = None, layer: Any = None, **layer_options: Any):
        who = type(self).__name__
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{who}: {name} must be an int >= 1, got {v!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", who)
        self.stride = pair(stride, "stride", who)
        self.dilation = pair(dilation, "dilation", who)
        self.padding = check_padding(padding, who)
        self.image_size = None if image_size is None else pair(tuple(image_size), "image_size", who)
        features = self.patch_features
        if layer is None:
            if key is None:
                raise ValueError(f"{who}: pass key= (or a prebuilt layer=)")
            layer = KANLayer(features, self.out_channels, _basis(basis, features, who), key=key, **layer_options)
        elif basis is not None or layer_options:
            raise ValueError(f"{who}: give either layer= or basis/layer options, not both")
        if getattr(layer, "in_features", None) != features or _out_features(layer) != self.out_channels:
            raise ValueError(f"{who}: layer must map {features} = C_in*kh*kw patch features to "
                             f"{self.out_channels} channels, got {type(layer).__name__} "
                             f"{getattr(layer, 'in_features', '?')} -> {_out_features(layer)}")
        self.layer = layer

    @property
    def patch_features(self) -> int:
        """Inputs of the inner layer: ``C_in * kh * kw``."""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def output_size(self, image_size: Sequence[int]) -> tuple[int, int]:
        """``(H', W')`` for an input image of ``image_size = (H, W)``."""
        size = pair(tuple(image_size), "image_size", type(self).__name__)
        pads = resolve_pads(self.padding, size, self.kernel_size, self.stride, self.dilation)
        return output_size(size, self.kernel_size, self.stride, self.dilation, pads, type(self).__name__)

    @eqx.filter_jit
    def patches(self, x: Float[Array, "... H W C_in"]) -> Float[Array, "... Ho Wo P"]:
        """The receptive fields ``(..., H', W', C_in*kh*kw)`` the inner layer sees (module docstring order)."""
        who = type(self).__name__
        if not hasattr(x, "ndim") or x.ndim < 3:
            raise ValueError(f"{who}: expected an image (..., H, W, {self.in_channels}), got shape "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"{who}: expected {self.in_channels} input channels (last axis, channels last), "
                             f"got input of shape {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{who}: expected a floating-point image, got dtype {x.dtype}")
        pads = resolve_pads(self.padding, x.shape[-3:-1], self.kernel_size, self.stride, self.dilation)
        output_size(x.shape[-3:-1], self.kernel_size, self.stride, self.dilation, pads, who)  # clear error first
        return extract_patches(x, self.kernel_size, self.stride, self.dilation, pads)

    @eqx.filter_jit
    def __call__(self, x: Float[Array, "... H W C_in"], *,
                 key: Optional[PRNGKeyArray] = None) -> Float[Array, "... Ho Wo C_out"]:
        """``(..., H, W, C_in) -> (..., H', W', C_out)``; ``key`` is unused."""
        del key
        return self.layer(self.patches(x))

    def edge_functions(self, patches: Float[Array, "... P"]) -> Float[Array, "... C_out P"]:
        """Every edge function ``phi[o, p](patches[..., p])`` of the inner layer, at patch values."""
        return self.layer.edge_functions(patches)

    def as_kan(self) -> Any:
        """A one-layer :class:`kan.KAN` holding the inner layer, for :func:`kan.plot`, :func:`kan.plot_edge`
        and symbolic snapping on patches ``(n, C_in*kh*kw)``; put an edited layer back with
        :meth:`with_layer`. Only for a :class:`KANLayer` inner layer."""
        from ..model import KAN

        if not isinstance(self.layer, KANLayer):
            raise TypeError(f"{type(self).__name__}.as_kan: needs a KANLayer inner layer, got "
                            f"{type(self.layer).__name__} (use edge_functions on patches instead)")
        # A skeleton of the inner layer's shape (its init programs are those the layer compiled already).
        skeleton = KAN([self.patch_features, self.out_channels], key=jax.random.PRNGKey(0))
        return eqx.tree_at(lambda m: m.layers, skeleton, (self.layer,))

    def with_layer(self, layer: Any) -> "ConvKAN2d":
        """The same convolution over another inner layer (e.g. ``as_kan()`` after snapping: ``.layers[0]``)."""
        layer = layer.layers[0] if hasattr(layer, "layers") and len(layer.layers) == 1 else layer
        if getattr(layer, "in_features", None) != self.patch_features or _out_features(layer) != self.out_channels:
            raise ValueError(f"{type(self).__name__}.with_layer: layer must map {self.patch_features} -> "
                             f"{self.out_channels}, got {type(layer).__name__}")
        return eqx.tree_at(lambda m: m.layer, self, layer)

    def num_parameters(self) -> int:
        """Trainable scalars (the inner layer's)."""
        from bases import count_parameters

        return count_parameters(self)

    def flops(self, image_size: Optional[Sequence[int]] = None) -> int:
        """Forward FLOPs per sample: output positions ``H' W'`` x the inner layer's ``flops()`` (patch
        extraction is data movement). ``image_size = (H, W)`` defaults to the constructor's."""
        size = self.image_size if image_size is None else image_size
        if size is None:
            raise ValueError(f"{type(self).__name__}.flops: the count depends on the image size; pass "
                             "image_size=(H, W) here or to the constructor")
        ho, wo = self.output_size(size)
        return ho * wo * int(self.layer.flops())


def _out_features(layer: Any) -> Optional[int]:
    """Output width of an inner layer (SelectedKANLayer keeps it on its groups)."""
    if hasattr(layer, "out_features"):
        return layer.out_features
    groups = getattr(layer, "groups", None)
    return groups[0].out_features if groups else None


def _basis(basis: Any, features: int, who: str) -> Basis:
    if basis is None:
        return BSpline(features)
    if isinstance(basis, Basis):
        if basis.in_features != features:
            raise ValueError(f"{who}: basis has in_features={basis.in_features}, the layer needs "
                             f"C_in*kh*kw = {features} (one input per channel and kernel offset)")
        return basis
    if isinstance(basis, str):
        from ..model import basis_factory_from_name

        basis = basis_factory_from_name(basis, 5, 3, (-1.0, 1.0))
    if callable(basis):
        built = basis(features)
        if not isinstance(built, Basis):
            raise TypeError(f"{who}: the basis factory must return a bases.Basis, got {type(built).__name__}")
        return _basis(built, features, who)
    raise TypeError(f"{who}: basis must be a bases.Basis, a factory in_features -> Basis, a name or None, "
                    f"got {type(basis).__name__}")

