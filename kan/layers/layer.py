"""The KAN edge-sum layer (Liu et al. 2024, arXiv 2404.19756), for any basis.

    y_o = sum_d m[o,d] * (w_base[o,d] * b(x_d) + sum_k W[o,d,k] F_k(x_d)) + bias_o

``F = basis(x)`` are the basis features, ``b`` the residual base activation (silu, as in the KAN paper)
and ``m`` the per-edge pruning mask. Every edge function ``phi_od(x) = w_base[o,d] b(x) + sum_k W[o,d,k]
F_k(x)`` can be read out with :meth:`KANLayer.edge_functions`. Edges may be replaced by symbolic edges
(``symbolic`` field): those are masked out of the numeric sum and evaluated by the symbolic module.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from bases import (Basis, BSpline, GaussianRBF, ReLUKAN, buffer_field, bspline_edge_sum, check_last_dim,
                   gaussian_expectation, host_array, merge_last_two)
import bases.bspline.contract as bspline_contract
from bases.bspline.native import (block_rows, map_row_blocks, native_rbf_sum, native_relukan_sum,
                                  native_spline_sum)
from bases.rbf import MAX_LOCAL_TERMS
from bases.init_random import scaled_normal


class _SquaredActivation(eqx.Module):
    fn: Callable[[Array], Array] = eqx.field(static=True)

    def __call__(self, xs: Array) -> Array:
        return self.fn(xs[:, 0]) ** 2


def _activation_second_moment(fn: Callable[[Array], Array]) -> float:
    """E[fn(x)^2] for x ~ N(0, 1)."""
    return float(gaussian_expectation(_SquaredActivation(fn), 1))


class KANLayer(eqx.Module):
    """KAN layer ``(..., in_features) -> (..., out_features)`` over any :class:`bases.Basis`.

    Variance-preserving init: under x ~ N(0, 1) the residual and basis parts each contribute half of
    the output variance, ``Var[w_base] = 1 / (2 in E[b(x)^2])`` and ``Var[W] = 1 / (2 sum_d tr E[F F^T])``.
    ``spline_share`` (default 1/2) moves that split: a small share (0.1) starts every edge close to a
    scaled SiLU, like pykan's init, which trains small symbolic-regression KANs more reliably; the
    even split keeps deep stacks stable (a SiLU-dominated 32-layer stack drifts ~17x).

    With ``contraction="auto"`` (default), a B-spline layer on the CPU whose grid is fine enough for it
    to pay (:func:`bases.bspline.contract.choose_contraction`: G + k >= 3 (k + 1), enough rows) runs the
    native kernel of :mod:`bases.bspline.native` (work follows the k + 1 non-zero functions per input,
    not G + k); so do a ReLU-KAN layer with fixed windows (its bumps are as local) and a Gaussian RBF
    layer with a cut-off (``GaussianRBF(..., cutoff=r)``: ``local_terms`` bumps per input); large
    batches run it in rematerialised row blocks (:func:`bases.bspline.native.block_rows`). Otherwise a
    batch whose ``(batch, in, k)`` features fit in :data:`bases.bspline.contract.FULL_BYTES` (64 MiB) runs the plain dense path (one matmul, autodiff;
    see ``_fits_whole``); a larger one runs the same path in rematerialised row blocks, so training
    never holds its whole feature tensor (every basis). With a :class:`bases.BSpline` basis,
    ``contraction="native"`` forces the kernel, and ``"dense"`` or ``"local"`` run
    :func:`bases.bspline_edge_sum` (features from the ``k + 1`` local pieces) in that form.
    """

    basis: Basis
    spline_weight: Float[Array, "out in k"]
    base_weight: Optional[Float[Array, "out in"]]
    bias: Optional[Float[Array, " out"]]
    edge_mask: Float[Array, "out in"] = buffer_field()
    symbolic: Any = None
    base_activation: Optional[Callable[[Array], Array]] = eqx.field(static=True, default=None)
    in_features: int = eqx.field(static=True, default=0)
    out_features: int = eqx.field(static=True, default=0)
    contraction: str = eqx.field(static=True, default="auto")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        basis: Basis | None = None,
        *,
        key: PRNGKeyArray,
        base_activation: Optional[Callable[[Array], Array]] = jax.nn.silu,
        use_bias: bool = True,
        init_scale: float = 1.0,
        spline_share: float = 0.5,
        contraction: str = "auto",
    ):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"KANLayer: in_features and out_features must be >= 1, got "
                             f"{in_features}, {out_features}")
        basis = BSpline(in_features) if basis is None else basis
        if not isinstance(basis, Basis):
            raise TypeError(f"KANLayer: basis must be a bases.Basis, got {type(basis).__name__}")
        if basis.in_features != in_features:
            raise ValueError(f"KANLayer: basis has in_features={basis.in_features}, layer has {in_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        if contraction not in bspline_contract.CONTRACTIONS:
            raise ValueError(f"KANLayer: contraction must be one of {bspline_contract.CONTRACTIONS}, "
                             f"got {contraction!r}")
        if contraction != "auto":  # left at the class default otherwise (checkpoints stay as they were)
            self.contraction = contraction
        self.basis = basis
        self.base_activation = base_activation
        key_spline, key_base = jax.random.split(key)
        if not 0.0 < spline_share <= 1.0:
            raise ValueError(f"KANLayer: spline_share must be in (0, 1], got {spline_share}")
        if not (np.isfinite(init_scale) and init_scale >= 0):
            raise ValueError(f"KANLayer: init_scale must be a finite number >= 0, got {init_scale}")
        basis_share = spline_share if base_activation is not None else 1.0
        trace = float(np.sum(np.asarray(basis.gaussian_second_moment_trace())))
        spline_std = init_scale * np.sqrt(basis_share / max(trace, 1e-12))
        shape = (out_features, in_features, basis.num_functions)
        self.spline_weight = scaled_normal(key_spline, shape, spline_std)
        if base_activation is not None:
            base_std = init_scale * np.sqrt((1.0 - basis_share) / (in_features * _activation_second_moment(base_activation)))
            self.base_weight = scaled_normal(key_base, (out_features, in_features), base_std)
        else:
            self.base_weight = None
        self.bias = host_array(np.zeros(out_features, np.float32)) if use_bias else None
        self.edge_mask = host_array(np.ones((out_features, in_features), np.float32))  # no float64 transient

    # ----- forward -----------------------------------------------------------------------------
    def _numeric_mask(self) -> Array:
        mask = jax.lax.stop_gradient(self.edge_mask)
        if self.symbolic is not None:
            mask = mask * (1.0 - jax.lax.stop_gradient(self.symbolic.active))
        return mask

    @eqx.filter_jit
    def __call__(self, x: Float[Array, "... in"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... out"]:
        """``(..., in) -> (..., out)``; ``key`` is unused (accepted so the layer drops into
        ``eqx.nn.Sequential``)."""
        check_last_dim(x, self.in_features, "KANLayer")
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # every path in float32 (or wider)
        mask = self._numeric_mask()
        if self._uses_native(x):
            y = self._native_sum(x, mask)
        elif isinstance(self.basis, BSpline) and self.contraction != "auto":
            y = self._bspline_sum(x, self.spline_weight * mask[..., None], mask)
        else:
            y = self._features_sum(x, mask)
        if self.symbolic is not None:
            sym_mask = jax.lax.stop_gradient(self.edge_mask * self.symbolic.active)
            y = y + jnp.sum(self.symbolic(x) * sym_mask, axis=-1)
        if self.bias is not None:
            y = y + self.bias
        return y

    def _local_terms(self) -> Optional[int]:
        """Non-zero functions per input the CPU kernel would do (:mod:`bases.bspline.native`): ``k + 1``
        for B-splines and fixed ReLU-KAN windows, ``local_terms`` for a Gaussian RBF with a cut-off;
        ``None`` for bases it does not take."""
        if isinstance(self.basis, BSpline) or (isinstance(self.basis, ReLUKAN) and not self.basis.trainable):
            return self.basis.order + 1
        if isinstance(self.basis, GaussianRBF) and self.basis.local_terms is not None:
            return self.basis.local_terms if 2 <= self.basis.local_terms <= MAX_LOCAL_TERMS else None
        return None

    def _uses_native(self, x: Array) -> bool:
        """Whether this call runs the CPU kernel (:mod:`bases.bspline.native`): forced with
        ``contraction="native"``, or chosen by :func:`bases.bspline.contract.choose_contraction` under
        ``"auto"`` (B-spline bases, ReLU-KAN bases with fixed windows, Gaussian RBFs with a cut-off)."""
        terms = self._local_terms()
        if terms is None and self.contraction == "native":
            if isinstance(self.basis, ReLUKAN):
                raise ValueError("KANLayer: contraction='native' needs fixed ReLU-KAN windows "
                                 "(ReLUKAN(trainable=False)); trainable windows run the dense path")
            if isinstance(self.basis, GaussianRBF):
                raise ValueError(f"KANLayer: contraction='native' needs a GaussianRBF with a cut-off whose "
                                 f"local_terms is 2..{MAX_LOCAL_TERMS} (GaussianRBF(..., cutoff=r)), got "
                                 f"local_terms={self.basis.local_terms}")
        if terms is None:
            return False
        if self.contraction != "auto":
            return self.contraction == "native"
        rows = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
        return bspline_contract.choose_contraction(
            self.basis.num_functions, terms - 1, rows, None, self.in_features, self.out_features,
            jnp.promote_types(x.dtype, jnp.float32),
            kind="rbf" if isinstance(self.basis, GaussianRBF) else "bspline") == "native"

    def _native_sum(self, x: Array, mask: Array) -> Array:
        """The spline part on the CPU kernel (the mask applied inside it), the residual as one matmul.
        Forward-mode and higher-order autodiff go through the dense reference
        (:mod:`bases.kernel_ad`)."""
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features).astype(jnp.float32)
        block = block_rows(flat.shape[0], self.in_features, self._local_terms())
        y = map_row_blocks(lambda rows: self._native_rows(rows, mask), flat, block)  # residual in blocks too
        return y.reshape(lead + (self.out_features,))

    def _native_rows(self, flat: Array, mask: Array) -> Array:
        """:meth:`_native_sum` of ``(rows, in)``."""
        if isinstance(self.basis, ReLUKAN):
            y = native_relukan_sum(flat, *self.basis.points(), self.spline_weight, order=self.basis.order,
                                   mask=mask)
        elif isinstance(self.basis, GaussianRBF):
            y = native_rbf_sum(flat, self.basis.centers, self.basis.inv_width, self.spline_weight,
                               cutoff=self.basis.cutoff, terms=self.basis.local_terms, mask=mask)
        else:
            y = native_spline_sum(flat, self.basis.grid, self.spline_weight, order=self.basis.order,
                                  uniform=self.basis.uniform, mask=mask)
        if self.base_weight is not None:
            y = y + self.base_activation(flat) @ (self.base_weight * mask).T
        return y

    def _features_sum(self, x: Array, mask: Array) -> Array:
        """The edge sum from the basis features: whole where they fit (:meth:`_fits_whole`), else in
        rematerialised row blocks (:meth:`_blocked_dense_sum`)."""
        dense = self._dense_sum if self._fits_whole(x) else self._blocked_dense_sum
        return dense(x, self.spline_weight * mask[..., None], mask)

    def _fits_whole(self, x: Array) -> bool:
        """Whether the ``(rows, in, k)`` features of this batch fit in
        :data:`bases.bspline.contract.FULL_BYTES` (64 MiB): then the plain dense path runs (features by
        ``self.basis``, one matmul, autodiff); larger batches run it in rematerialised row blocks
        (:meth:`_blocked_dense_sum`), so training never holds their features.

        For B-splines this replaced the local-piece edge sum of :func:`bases.bspline_edge_sum` as the
        "auto" path: fwd+bwd w.r.t. parameters and input on 2 CPU cores, interleaved, dense/edge-sum
        time 0.99x (128 -> 128, G=5, batch 1024), 0.75x (256, G=10, 1024), 0.92x (256, G=10, 4096),
        0.93x (512, G=20, 1024), with no more XLA memory (148 vs 176 MiB at 512, G=20, 1024); in row
        blocks 0.88-0.97x (128 G=5 and 256 G=10 at batch 32768, 256 G=10 at 8192) at 0.78-1.0x the
        XLA memory (167 vs 174 MiB at 256, G=10, 32768). Without the custom JVP an L-BFGS fit also
        compiles about twice as fast (7.9 s vs 14.5 s for a [2, 5, 1] KAN on 1000 rows, 3 steps)."""
        rows = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
        itemsize = jnp.dtype(jnp.promote_types(x.dtype, jnp.float32)).itemsize
        return rows * self.in_features * self.spline_weight.shape[-1] * itemsize <= bspline_contract.FULL_BYTES

    def _blocked_dense_sum(self, x: Array, weight: Array, mask: Array) -> Array:
        """:meth:`_dense_sum` over row blocks of about :data:`bases.bspline.contract.BLOCK_BYTES` of
        features, each under ``jax.checkpoint`` (the backward rebuilds a block's features from ``x``)."""
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        width = self.spline_weight.shape[-1] + (self.base_weight is not None)  # features per input
        chunk = bspline_contract.chunk_rows(self.in_features, width, flat.shape[0], self.out_features)
        blocks, rows = bspline_contract.row_blocks(flat, chunk)
        block = jax.checkpoint(lambda xb: self._dense_sum(xb, weight, mask))
        y = jax.lax.map(block, blocks).reshape(-1, self.out_features)[:rows]
        return y.reshape(lead + (self.out_features,))

    def _bspline_sum(self, x: Array, weight: Array, mask: Array) -> Array:
        activation = None
        if self.base_weight is not None:
            weight = jnp.concatenate([(self.base_weight * mask)[..., None], weight], axis=-1)
            activation = self.base_activation
        return bspline_edge_sum(x, self.basis.grid, weight, order=self.basis.order, uniform=self.basis.uniform,
                                activation=activation, contraction=self.contraction)

    def _dense_sum(self, x: Array, weight: Array, mask: Array) -> Array:
        feats = self.basis(x)  # (..., in, k)
        if self.base_weight is not None:
            # Fold the residual branch into the same contraction: one matmul over in*(k+1).
            feats = jnp.concatenate([self.base_activation(x)[..., None].astype(feats.dtype), feats], -1)
            weight = jnp.concatenate([(self.base_weight * mask)[..., None], weight], axis=-1)
        flat = merge_last_two(feats)
        return flat @ weight.reshape(self.out_features, -1).T.astype(flat.dtype)

    @eqx.filter_jit
    def edge_functions(self, x: Float[Array, "... in"]) -> Float[Array, "... out in"]:
        """Value of every edge function ``phi_od(x_d)`` (masked edges give 0)."""
        check_last_dim(x, self.in_features, "KANLayer.edge_functions")
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        phi = jnp.einsum("...dk,odk->...od", self.basis(x), self.spline_weight)
        if self.base_weight is not None:
            phi = phi + self.base_activation(x)[..., None, :] * self.base_weight
        phi = phi * self._numeric_mask()
        if self.symbolic is not None:
            phi = phi + self.symbolic(x) * jax.lax.stop_gradient(self.edge_mask * self.symbolic.active)
        return phi

    # ----- counts ----------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Trainable scalars of the layer, basis included."""
        from bases import count_parameters

        return count_parameters(self)

    def flops(self) -> int:
        """Forward FLOPs for one sample: basis evaluation, base activation (5 for silu) and the
        contraction over ``in * (k + 1)``."""
        k = self.basis.num_functions + (1 if self.base_weight is not None else 0)
        act = 5 * self.in_features if self.base_weight is not None else 0
        return (self.in_features * self.basis.flops_per_input() + act
                + 2 * self.in_features * k * self.out_features + self.out_features)
