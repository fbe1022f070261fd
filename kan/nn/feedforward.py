"""Position-wise feed-forward blocks ``(..., width) -> (..., width)`` of any layer kind.

Kinds (``FF_KINDS``), each two layers ``width -> hidden -> width`` with ``hidden = mlp_ratio * width``
unless given:

- ``"mlp"``: ``Linear -> act -> Linear`` (the ViT / GPT baseline, GELU by default).
- ``"grkan"``: KAT's GR-KAN block (Yang & Wang 2024, arXiv 2409.10594):
  ``rational (identity start) -> Linear -> rational (swish start) -> Linear``, i.e. two
  :class:`kan.GroupKANLayer` with ``num_groups`` (8) contiguous channel groups each.
- ``"kan"``: two B-spline :class:`kan.KANLayer` (Liu et al. 2024, arXiv 2404.19756) with a SiLU
  residual branch; grid over ``grid_range`` (default ``(-3, 3)``, where LayerNorm-ed inputs live).
- ``"rbf"``: two :class:`kan.KANLayer` on a :class:`bases.GaussianRBF` basis (``grid_size`` bumps over
  ``grid_range``) with the SiLU residual branch: FastKAN (Li 2024, arXiv 2405.06721), the RBF-basis KAN that
  FasterKAN and MLP-KAN's function experts build on (FasterKAN's sech^2 bump is replaced by the Gaussian).
- ``"afkan"``: two :class:`kan.AFKANLayer` (Ta et al. 2025, arXiv 2503.06112).

:func:`make_feed_forward` (and so ``TransformerBlock(ffn=...)``) also takes ``"moe"``
(:data:`BLOCK_FFN_KINDS`): a :class:`kan.nn.MixtureOfExperts` of these kinds (MLP-KAN, He et al. 2024).

Variance-preserving init: every layer draws its weights so that a unit-variance input gives a
unit-variance output. For ``"grkan"`` the second Linear's weight std is
``1 / sqrt(hidden * E[F(z)^2])``, ``z ~ N(0, 1)``, with ``F`` the swish-start rational, as set by
``GroupKANLayer``; nothing in this package re-initialises it afterwards (KAT's timm code overwrote it
with a fixed ``trunc_normal(0.02)``). For ``"mlp"`` the second Linear uses ``E[act(z)^2]`` the same way.
"""

from __future__ import annotations

from typing import Any, Optional

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from bases import BSpline, GaussianRBF, check_last_dim, count_parameters, get_activation

from ..layers.afkan_layer import AFKANLayer
from ..layers.group_layer import GroupKANLayer
from ..layers.layer import KANLayer
from ..model import KAN
from .layers import Linear, activation_second_moment

FF_KINDS = ("mlp", "grkan", "kan", "rbf", "afkan")
BLOCK_FFN_KINDS = FF_KINDS + ("moe",)  # what make_feed_forward / TransformerBlock(ffn=...) accept by name


def hidden_width(width: int, mlp_ratio: float, hidden: Optional[int] = None) -> int:
    """``hidden`` if given, else ``round(mlp_ratio * width)``; ValueError if below 1."""
    h = int(hidden) if hidden is not None else int(round(float(mlp_ratio) * int(width)))
    if h < 1:
        raise ValueError(f"FeedForward: hidden width must be >= 1, got {h} (width={width}, mlp_ratio={mlp_ratio})")
    return h


class FeedForward(eqx.Module):
    """``(..., width) -> (..., width)``: ``fc2(act(fc1(x)))`` for ``kind="mlp"``, ``fc2(fc1(x))`` for
    the KAN kinds (their nonlinearity lives inside the layers). See the module docstring."""

    fc1: Any
    fc2: Any
    kind: str = eqx.field(static=True)
    activation: Optional[str] = eqx.field(static=True)
    width: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: Optional[int] = None,
        *,
        kind: str = "mlp",
        key: PRNGKeyArray,
        mlp_ratio: float = 4.0,
        activation: str = "gelu",
        num_groups: int = 8,
        rational_backend: str = "auto",
        grid_size: int = 5,
        order: int = 3,
        grid_range: tuple[float, float] = (-3.0, 3.0),
    ):
        if kind not in FF_KINDS:
            hint = "; for a mixture of experts use kan.nn.MixtureOfExperts" if kind == "moe" else ""
            raise ValueError(f"FeedForward: unknown kind {kind!r}; valid kinds: {', '.join(FF_KINDS)}{hint}")
        width = int(width)
        if width < 1:
            raise ValueError(f"FeedForward: width must be >= 1, got {width}")
        h = hidden_width(width, mlp_ratio, hidden)
        self.kind, self.width, self.hidden = kind, width, h
        self.activation = None
        k1, k2 = jax.random.split(key)
        if kind == "mlp":
            get_activation(activation)  # ValueError for an unknown name
            self.activation = activation
            self.fc1 = Linear(width, h, key=k1)
            self.fc2 = Linear(h, width, key=k2, input_second_moment=activation_second_moment(activation))
        elif kind == "grkan":
            if not 1 <= int(num_groups) <= min(width, h):
                raise ValueError(f"FeedForward: num_groups={num_groups} must be in [1, min(width, hidden)] = "
                                 f"[1, {min(width, h)}]")
            opts = dict(num_groups=int(num_groups), backend=rational_backend)
            self.fc1 = GroupKANLayer(width, h, init="identity", key=k1, **opts)
            self.fc2 = GroupKANLayer(h, width, init="swish", key=k2, **opts)
        elif kind == "kan":
            self.fc1 = KANLayer(width, h, BSpline(width, grid_size, order, grid_range), key=k1)
            self.fc2 = KANLayer(h, width, BSpline(h, grid_size, order, grid_range), key=k2)
        elif kind == "rbf":
            self.fc1 = KANLayer(width, h, GaussianRBF(width, grid_size, grid_range), key=k1)
            self.fc2 = KANLayer(h, width, GaussianRBF(h, grid_size, grid_range), key=k2)
        else:  # afkan
            if width < 2 or h < 2:
                raise ValueError(f"FeedForward: kind 'afkan' needs width and hidden >= 2, got {width}, {h}")
            self.fc1 = AFKANLayer(width, h, grid_size=grid_size, order=order, key=k1)
            self.fc2 = AFKANLayer(h, width, grid_size=grid_size, order=order, key=k2)

    def __call__(self, x: Float[Array, "... d"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... d"]:
        """``key`` is unused (no dropout); accepted for a uniform calling convention."""
        del key
        check_last_dim(x, self.width, "FeedForward")
        h = self.fc1(x)
        if self.activation is not None:
            h = get_activation(self.activation)(h)
        return self.fc2(h).astype(x.dtype)

    def num_parameters(self) -> int:
        """Trainable scalars of both layers (buffers such as spline grids excluded)."""
        return count_parameters(self)

    def as_kan(self) -> Any:
        """The two layers as a :class:`kan.KAN` ``[width, hidden, width]`` (sharing this block's arrays),
        for :func:`kan.plot` / :func:`kan.plot_edge`; only for the edge-sum kinds ``"kan"`` and ``"rbf"``."""
        if self.kind not in ("kan", "rbf"):
            raise ValueError(f"FeedForward.as_kan: kind {self.kind!r} has no edge-sum layers; only 'kan' and 'rbf'")
        skeleton = KAN([1, 1, 1], key=jax.random.PRNGKey(0))
        return eqx.tree_at(lambda m: m.layers, skeleton, (self.fc1, self.fc2))


def make_feed_forward(kind: str | eqx.Module, width: int, *, key: PRNGKeyArray, **options: Any) -> eqx.Module:
    """A :class:`FeedForward` of ``kind`` (options forwarded), a :class:`kan.nn.MixtureOfExperts` for
    ``kind="moe"`` (options such as ``experts``, ``top_k``, ``router``, ``hidden`` forwarded), or ``kind``
    itself if it is already a module (any callable ``(..., width) -> (..., width)``)."""
    if isinstance(kind, eqx.Module):
        return kind
    if not isinstance(kind, str):
        raise TypeError(f"make_feed_forward: kind must be one of {BLOCK_FFN_KINDS} or an eqx.Module, "
                        f"got {type(kind).__name__}")
    if kind == "moe":
        from .experts import MixtureOfExperts  # lazily: experts.py builds on FeedForward

        return MixtureOfExperts(width, key=key, **options)
    return FeedForward(width, kind=kind, key=key, **options)
