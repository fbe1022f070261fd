"""Kolmogorov-Arnold attention, KArAt (Maity et al. 2025, arXiv 2503.10632): the row-wise softmax of
self-attention replaced by a learnable operator built from basis functions of the scores.

    q, k, v = split(x W_qkv^T + b_qkv)                      (..., s, h, d/h) each
    a = q k^T / sqrt(d/h)                                    (..., h, s, s), float32
    full:      z_p = sum_q phi_pq(a_q),  phi_pq(t) = sum_k C[p,q,k] F_k(t)      N x N edges per head
    low rank:  z = P zhat,  zhat_j = sum_q phihat_jq(a_q),  P in R^{N x r}      N x r edges + N r weights
    A = normalise(z) per row (``"none"``, ``"l1"``, ``"signed_l1"``, ``"softmax"``, ``"sparsemax"``)
    y = concat_h(A v) W_o^T + b_o                            (..., s, d)

``F`` is any basis of :mod:`bases` (default Fourier, ``cos(k t), sin(k t)`` for ``k = 1..G``: the paper's
Fourier-KArAt; its best base activation was zero, so there is none here). ``rank=None`` is the full
operator (``N^2`` learnable functions per head, the paper's "regular" KArAt); ``rank=r`` the paper's
modular low-rank form (``N r`` functions and a learnable ``N x r`` back projection; the paper uses
``r = 12``). ``share_heads=True`` uses one operator for all heads (the paper shares operators across
*blocks* in its "universal" mode; here the sharing is within a block, across heads; the paper's default
"blockwise" mode, one operator per head, is ``share_heads=False``).

The operator maps a row of ``seq_len`` scores, so the sequence length is fixed at construction
(``seq_len``, required) and any other length raises a ValueError. Masking (``causal`` and/or a given
``mask``): a masked key's score is dropped from every sum (its features are zeroed, so it cannot leak
into other weights) and its weight is exactly 0; a row with no allowed key gives zero weights.

Init (variance preserving, the paper's ``N(0, 1)`` coefficients would not be): with ``W_qkv ~ N(0, 1/d)``
the scores of a LayerNorm-ed input are about ``N(0, 1)``, so ``E[z_p^2] = Var[C] * sum_q tr M`` with
``M = E[F F^T]`` under ``N(0, 1)`` (the basis's Gaussian second moment). ``Var[C] = target / sum_q tr M``
and ``Var[P] = 1 / r`` make ``E[z_p^2] = target``: ``target = 1 / N`` for ``normalisation="none"`` (so a
row's squared weights sum to about 1 and ``A v`` keeps the variance of ``v``), 1 otherwise (the
normalisations are scale-free). ``W_o ~ N(0, 1/d)``.

Not from the paper (it does not say, or this package chose): the normalisation menu (default ``"l1"``,
rows on the simplex as softmax's), the variance-preserving init, masking, and head sharing.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from bases import Basis, check_last_dim, count_parameters

from .attention import causal_mask, mix_values, project_heads
from .karat_rows import NORM_FLOPS, check_normalisation, normalise_rows
from .layers import Linear

_DEFAULT_GRID = {"fourier": 3}  # the paper's G_3 models; other bases default to 5


def _normal(key: PRNGKeyArray, shape: tuple[int, ...], std: float) -> Array:
    """``N(0, std^2)`` of ``shape``, drawn flat and reshaped (XLA compiles a 1-D draw about 5x faster
    than a 4-D one, which an eager init pays once per shape)."""
    return float(std) * jax.random.normal(key, (int(np.prod(shape)),), jnp.float32).reshape(shape)


def make_row_basis(basis: "str | Basis | Callable[[int], Basis]", seq_len: int, *, grid_size: Optional[int],
                   order: int, grid_range: tuple[float, float]) -> Basis:
    """The basis of the row operator (``in_features = seq_len``) from a name (``kan.BASIS_NAMES``), a
    :class:`bases.Basis` or a callable ``in_features -> Basis``."""
    from ..model import BASIS_NAMES, basis_factory_from_name

    if isinstance(basis, str):
        key = basis.lower().replace("-", "").replace("_", "")
        if key not in BASIS_NAMES and key != "gaussianrbf":
            raise ValueError(f"KolmogorovArnoldAttention: unknown basis {basis!r}; valid: {', '.join(BASIS_NAMES)} "
                             "(or a bases.Basis / a callable in_features -> Basis)")
        g = _DEFAULT_GRID.get(key, 5) if grid_size is None else int(grid_size)
        basis = basis_factory_from_name(key, g, order, grid_range)(seq_len)
    elif not isinstance(basis, Basis) and callable(basis):
        basis = basis(seq_len)
    if not isinstance(basis, Basis):
        raise TypeError(f"KolmogorovArnoldAttention: basis must be a name, a bases.Basis or a callable, "
                        f"got {type(basis).__name__}")
    if basis.in_features != seq_len:
        raise ValueError(f"KolmogorovArnoldAttention: basis has in_features={basis.in_features}, the row "
                         f"operator needs seq_len={seq_len}")
    return basis


class KolmogorovArnoldAttention(eqx.Module):
    """KArAt self-attention ``(..., seq_len, width) -> (..., seq_len, width)`` with ``num_heads`` heads
    (see the module docstring). ``mask`` (optional, broadcastable to ``(..., heads, seq, seq)``,
    True = attend) is combined with the causal mask when ``causal``.

    ``coef`` has shape ``(g, R, N, k)``: ``g`` operators (``num_heads``, or 1 when ``share_heads``),
    ``R`` outputs (``N`` full, ``rank`` low rank), ``N = seq_len`` inputs, ``k`` basis functions;
    ``proj`` ``(g, N, rank)`` (None for the full form).
    """

    qkv: Linear
    q_bias: Optional[Float[Array, " d"]]
    v_bias: Optional[Float[Array, " d"]]
    out: Linear
    basis: Basis
    coef: Float[Array, "g r n k"]
    proj: Optional[Float[Array, "g n r"]]
    width: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    seq_len: int = eqx.field(static=True)
    rank: Optional[int] = eqx.field(static=True)
    share_heads: bool = eqx.field(static=True)
    normalisation: str = eqx.field(static=True)
    causal: bool = eqx.field(static=True)

    def __init__(self, width: int, num_heads: int, *, key: PRNGKeyArray, causal: bool = False,
                 basis: "str | Basis | Callable[[int], Basis]" = "fourier", seq_len: Optional[int] = None,
                 rank: Optional[int] = None, share_heads: bool = False, normalisation: str = "l1",
                 grid_size: Optional[int] = None, order: int = 3, grid_range: tuple[float, float] = (-3.0, 3.0),
                 use_bias: bool = True):
        width, num_heads = int(width), int(num_heads)
        who = "KolmogorovArnoldAttention"
        if width < 1 or num_heads < 1:
            raise ValueError(f"{who}: width and num_heads must be >= 1, got {width}, {num_heads}")
        if width % num_heads:
            raise ValueError(f"{who}: num_heads={num_heads} must divide width={width}")
        if seq_len is None or int(seq_len) < 1:
            raise ValueError(f"{who}: seq_len (the row length the learnable operator maps, fixed at "
                             f"construction) must be given as an integer >= 1, got {seq_len!r}")
        if rank is not None and int(rank) < 1:
            raise ValueError(f"{who}: rank must be None (full operator) or >= 1, got {rank!r}")
        self.width, self.num_heads, self.seq_len, self.causal = width, num_heads, int(seq_len), bool(causal)
        self.rank = None if rank is None else int(rank)
        self.share_heads = bool(share_heads)
        self.normalisation = check_normalisation(normalisation, who)
        self.basis = make_row_basis(basis, self.seq_len, grid_size=grid_size, order=order, grid_range=grid_range)
        k_qkv, k_out, k_coef, k_proj = jax.random.split(key, 4)
        self.qkv = Linear(width, 3 * width, key=k_qkv, use_bias=False)
        self.q_bias = jnp.zeros((width,), jnp.float32) if use_bias else None
        self.v_bias = jnp.zeros((width,), jnp.float32) if use_bias else None
        self.out = Linear(width, width, key=k_out, use_bias=use_bias)
        n, g = self.seq_len, 1 if self.share_heads else num_heads
        r = n if self.rank is None else self.rank
        target = 1.0 / n if self.normalisation == "none" else 1.0
        trace = float(jnp.sum(self.basis.gaussian_second_moment_trace()))
        coef_std = np.sqrt((target if self.rank is None else 1.0) / max(trace, 1e-12))
        self.coef = _normal(k_coef, (g, r, n, self.basis.num_functions), coef_std)
        if self.rank is None:
            self.proj = None
        else:
            self.proj = _normal(k_proj, (g, n, r), np.sqrt(target / r))

    @property
    def head_dim(self) -> int:
        """Width of one head, ``width // num_heads``."""
        return self.width // self.num_heads

    # ----- forward -----------------------------------------------------------------------------
    def _qkv(self, x: Array) -> tuple[Array, Array, Array]:
        who = "KolmogorovArnoldAttention"
        if x.ndim < 2:
            raise ValueError(f"{who}: expected input (..., {self.seq_len}, {self.width}), got {tuple(x.shape)}")
        check_last_dim(x, self.width, who)
        if x.shape[-2] != self.seq_len:
            raise ValueError(f"{who}: the learnable operator maps rows of seq_len={self.seq_len} scores (fixed "
                             f"at construction); got a sequence of length {x.shape[-2]} (input {tuple(x.shape)})")
        return project_heads(self, x)  # (..., s, h, hd)

    def _allowed(self, mask: Optional[Array]) -> Optional[Array]:
        if self.causal:
            cm = causal_mask(self.seq_len)
            mask = cm if mask is None else jnp.logical_and(mask, cm)
        return None if mask is None else jnp.asarray(mask, bool)

    def _scores(self, q: Array, k: Array) -> Array:
        scores = jnp.einsum("...qhd,...khd->...hqk", q, k, preferred_element_type=jnp.float32)
        return scores * (1.0 / jnp.sqrt(jnp.float32(self.head_dim)))

    def operator(self, scores: Float[Array, "... h s s"], allowed: Optional[Bool[Array, "..."]] = None
                 ) -> Float[Array, "... h s s"]:
        """The learnable row operator before normalisation, ``z = Phi(a)`` per row; masked keys'
        scores are dropped from the sums (``allowed`` broadcastable to ``scores``, True = attend)."""
        if allowed is not None:
            allowed = jnp.broadcast_to(allowed, scores.shape)
            scores = jnp.where(allowed, scores, 0.0)
        feats = self.basis(scores)  # (..., h, s, N, k)
        if allowed is not None:
            feats = jnp.where(allowed[..., None], feats, 0.0)
        if self.share_heads:
            z = jnp.einsum("...snk,rnk->...sr", feats, self.coef[0])
        else:
            z = jnp.einsum("...hsnk,hrnk->...hsr", feats, self.coef)
        if self.proj is not None:
            z = (jnp.einsum("...sr,nr->...sn", z, self.proj[0]) if self.share_heads
                 else jnp.einsum("...hsr,hnr->...hsn", z, self.proj))
        return z

    def attention_scores(self, x: Float[Array, "... s d"]) -> Float[Array, "... h s s"]:
        """The scaled dot-product scores ``q k^T / sqrt(d/h)`` per head (the operator's input)."""
        q, k, _ = self._qkv(x)
        return self._scores(q, k)

    def attention_weights(self, x: Float[Array, "... s d"], mask: Optional[Bool[Array, "..."]] = None
                          ) -> Float[Array, "... h s s"]:
        """The attention matrix per head (float32) after the operator and the normalisation."""
        q, k, _ = self._qkv(x)
        return self._weights(q, k, mask)

    def _weights(self, q: Array, k: Array, mask: Optional[Array]) -> Array:
        allowed = self._allowed(mask)
        return normalise_rows(self.operator(self._scores(q, k), allowed), allowed, self.normalisation)

    def __call__(self, x: Float[Array, "... s d"], *, mask: Optional[Bool[Array, "..."]] = None,
                 key: Optional[PRNGKeyArray] = None) -> Float[Array, "... s d"]:
        """``key`` is unused (no dropout); accepted for a uniform calling convention."""
        del key
        q, k, v = self._qkv(x)
        return mix_values(self._weights(q, k, mask), v, self.out, x.shape)

    # ----- inspection ------------------------------------------------------------------------
    def head_coefficients(self, head: int = 0) -> Float[Array, "n n k"]:
        """The row operator of ``head`` as one ``N -> N`` edge sum: ``C[p, q, k]`` (the low-rank form
        folded, ``P @ C_hat``, exactly: a linear map of edge functions is an edge function)."""
        if not 0 <= int(head) < self.num_heads:
            raise ValueError(f"KolmogorovArnoldAttention: head {head} out of range for {self.num_heads} heads")
        g = 0 if self.share_heads else int(head)
        if self.proj is None:
            return self.coef[g]
        return jnp.einsum("pr,rnk->pnk", self.proj[g], self.coef[g])

    def as_kan(self, head: int = 0) -> Any:
        """A one-layer :class:`kan.KAN` view of ``head``'s row operator (no base branch, zero bias):
        ``view(row of scores) == operator(...)`` for an unmasked row, and ``kan.plot(view, rows)`` /
        ``kan.plot_edge(view, 0, p, q, rows)`` draw its ``N^2`` learnable functions. A copy: training
        the view does not change the attention."""
        from ..model import KAN

        view = KAN([self.seq_len, self.seq_len], key=jax.random.PRNGKey(0), basis_factory=lambda d: self.basis,
                   base_activation=None)
        return eqx.tree_at(lambda m: m.layers[0].spline_weight, view, self.head_coefficients(head))

    def as_kan_layer(self, head: int = 0) -> Any:
        """The :class:`kan.KANLayer` of :meth:`as_kan` (``edge_functions(rows) -> (num, N, N)``)."""
        return self.as_kan(head).layers[0]

    # ----- counts ----------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Trainable scalars (buffers excluded)."""
        return count_parameters(self)

    def closed_form_parameters(self) -> int:
        """``4 d^2`` (qkv, out) ``+ 3 d`` (biases) ``+ g R N k`` (+ ``g N r`` low rank) + the basis's own."""
        d, n, k = self.width, self.seq_len, self.basis.num_functions
        g, r = (1 if self.share_heads else self.num_heads), (self.seq_len if self.rank is None else self.rank)
        biases = 3 * d if self.q_bias is not None else 0
        operator = g * r * n * k + (g * n * r if self.rank is not None else 0)
        return 4 * d * d + biases + operator + int(round(self.basis.params_per_input() * n))

    def flops(self) -> int:
        """Forward FLOPs for one sequence of ``seq_len`` tokens, no mask: projections, scores, basis
        features of every score, the operator contraction (``2 N k R`` per row, plus ``2 R N`` for the
        back projection), the normalisation, ``A v`` and the output projection."""
        d, n, h, k = self.width, self.seq_len, self.num_heads, self.basis.num_functions
        r = n if self.rank is None else self.rank
        biases = self.q_bias is not None
        proj = 2 * d * 3 * d * n + (2 * d * n if biases else 0) + 2 * d * d * n + (d * n if biases else 0)
        scores = 2 * n * n * d + h * n * n
        rows = h * n  # one operator application per (head, query)
        operator = rows * (n * self.basis.flops_per_input() + 2 * n * k * r + (2 * r * n if self.rank else 0))
        return proj + scores + operator + rows * n * NORM_FLOPS[self.normalisation] + 2 * n * n * d
