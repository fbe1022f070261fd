"""Mixture of MLP and KAN experts as a transformer feed-forward: MLP-KAN (He et al. 2024, arXiv 2410.03027).

    p = softmax(x W_r^T)                                   router probabilities      (..., E)
    g = renormalised top-k of p  (router="topk")           g_i = p_i / sum_{j in top-k} p_j, else 0
      = p                        (router="soft")           every expert, weighted by p
    y = gain * sum_i g_i E_i(x)                                                        (..., width)

Each expert ``E_i`` is a :class:`kan.nn.FeedForward` of its kind: ``"mlp"`` (MLP-KAN's representation
experts), ``"rbf"`` (the RBF-basis KAN; MLP-KAN's function experts are FasterKAN), ``"kan"`` (B-spline),
``"grkan"``, ``"afkan"``. ``router="soft"`` here is dense softmax gating per token, not Puigcerver et al.'s
slot-based Soft MoE, which mixes tokens across the sequence (and so would break a causal GPT).

Computation: every expert runs on every token and the gates mask the unused ones (``E / k`` times the
top-k work). At the sizes this package trains on a CPU that is cheaper than gathering tokens per expert,
and it keeps the layer one fixed-shape, jit-friendly program; there is no capacity limit and no token
is dropped. :meth:`MixtureOfExperts.flops` counts the top-k work (what a dispatching implementation
does), :meth:`MixtureOfExperts.dense_flops` what this one executes (what XLA counts).

Load balancing (:func:`switch_balance_loss`): the Switch Transformer's auxiliary loss (Fedus et al. 2021,
arXiv 2101.03961, eq. 4) extended to top-k, ``N sum_i f_i P_i`` with ``f_i`` the fraction of the ``T k``
token-to-expert assignments that go to expert ``i`` and ``P_i`` the mean router probability. It equals 1
whenever the router probabilities are uniform and ``N`` when every token goes to one expert with
probability 1. For ``router="soft"`` ``f = P`` (every expert is used with weight ``p``), giving
``N sum_i P_i^2 >= 1``, equality exactly at uniform ``P``. :meth:`MixtureOfExperts.route` returns it
beside the output; ``TransformerBlock`` / ``GPT`` / ``VisionTransformer`` take ``return_aux=True`` to sum it
over their blocks, so no global state is needed and the training loss adds it with a weight (Switch: 0.01).

Init: every expert is variance preserving on its own (see :mod:`kan.nn.feedforward`). The router starts
small (logit std ``router_std`` = 0.1 by default), so gates start near-uniform: ``1/k`` on the k chosen
experts (``1/E`` for soft). Independent experts then add to variance ``sum_i g_i^2 = 1/k``, which the
static ``gain = sqrt(k)`` (``sqrt(E)`` for soft) restores to 1.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from bases import check_last_dim, count_parameters

from ..count.counting import count_flops
from .feedforward import FF_KINDS, FeedForward, hidden_width
from .layers import Linear

ROUTERS = ("topk", "soft")
_EXP_FLOPS = 4  # a transcendental counted like a sigmoid, as in bases
_SOFTMAX_FLOPS = 3 + _EXP_FLOPS  # per entry: subtract the max, exp, add to the sum, divide


def switch_balance_loss(probs: Float[Array, "... E"], assigned: Float[Array, "... E"]) -> Float[Array, ""]:
    """``N sum_i f_i P_i`` (Fedus et al. 2021, eq. 4; top-k form): ``probs`` are the router
    probabilities, ``assigned`` marks each token's chosen experts (k ones per token) or, for soft
    routing, is ``probs`` itself. ``f_i = mean(assigned_i) / mean(sum_j assigned_j)``, ``P_i = mean(p_i)``,
    means over every leading axis (all tokens of the batch)."""
    if probs.shape != assigned.shape or probs.ndim < 1:
        raise ValueError(f"switch_balance_loss: probs {probs.shape} and assigned {assigned.shape} must be "
                         "equal shapes (..., E)")
    n = probs.shape[-1]
    p = probs.reshape(-1, n).astype(jnp.float32)
    a = jax.lax.stop_gradient(assigned.reshape(-1, n).astype(jnp.float32))
    f = a.mean(axis=0) / a.sum(axis=-1).mean()
    return n * jnp.sum(f * p.mean(axis=0))


class MixtureOfExperts(eqx.Module):
    """``(..., width) -> (..., width)``: a routed mixture of :class:`kan.nn.FeedForward` experts.

    ``experts`` names each expert's kind (repeat a kind for several experts). ``hidden`` (else
    ``round(mlp_ratio * width)``) is every expert's hidden width; ``options`` go to every expert
    (``grid_size``, ``grid_range``, ``activation``, ``num_groups``, ...) and ``expert_options[kind]``
    override them for one kind. ``top_k`` experts per token for ``router="topk"``; all for ``"soft"``.
    See the module docstring for the formula, the balancing loss and the init.
    """

    router: Linear
    experts: tuple[FeedForward, ...]
    kinds: tuple[str, ...] = eqx.field(static=True)
    top_k: int = eqx.field(static=True)
    routing: str = eqx.field(static=True)
    gain: float = eqx.field(static=True)
    width: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        hidden: Optional[int] = None,
        *,
        key: PRNGKeyArray,
        experts: Sequence[str] = ("mlp", "mlp", "rbf", "rbf"),
        top_k: int = 2,
        router: str = "topk",
        mlp_ratio: float = 4.0,
        router_std: float = 0.1,
        expert_options: Optional[dict[str, dict]] = None,
        **options: Any,
    ):
        kinds = tuple(experts) if not isinstance(experts, str) else (experts,)
        if not kinds:
            raise ValueError("MixtureOfExperts: needs at least one expert")
        for kind in kinds:
            if kind not in FF_KINDS:
                raise ValueError(f"MixtureOfExperts: unknown expert kind {kind!r}; valid: {', '.join(FF_KINDS)}")
        if router not in ROUTERS:
            raise ValueError(f"MixtureOfExperts: unknown router {router!r}; valid: {', '.join(ROUTERS)}")
        if router == "topk" and not 1 <= int(top_k) <= len(kinds):
            raise ValueError(f"MixtureOfExperts: top_k={top_k} must be in [1, number of experts = {len(kinds)}]")
        if not (math.isfinite(router_std) and router_std >= 0):
            raise ValueError(f"MixtureOfExperts: router_std must be a finite number >= 0, got {router_std}")
        expert_options = dict(expert_options or {})
        for kind in expert_options:
            if kind not in kinds:
                raise ValueError(f"MixtureOfExperts: expert_options for {kind!r}, which is not among the "
                                 f"experts {kinds}")
        self.width = int(width)
        self.hidden = hidden_width(self.width, mlp_ratio, hidden)
        self.kinds = kinds
        self.routing = router
        self.top_k = int(top_k) if router == "topk" else len(kinds)
        self.gain = float(math.sqrt(self.top_k))
        k_router, *k_experts = jax.random.split(key, len(kinds) + 1)
        self.router = Linear(self.width, len(kinds), key=k_router, std=float(router_std) / math.sqrt(self.width),
                             use_bias=False)
        self.experts = tuple(
            FeedForward(self.width, self.hidden, kind=kind, key=k, **{**options, **expert_options.get(kind, {})})
            for kind, k in zip(kinds, k_experts)
        )

    @property
    def num_experts(self) -> int:
        """``E``, the number of experts."""
        return len(self.experts)

    def gates(self, x: Float[Array, "... d"]) -> tuple[Float[Array, "... E"], Float[Array, "... E"]]:
        """``(gates, probs)``: the mixing weights (top-k: k non-zero per token, summing to 1) and the
        router's softmax probabilities, both float32."""
        check_last_dim(x, self.width, "MixtureOfExperts")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"MixtureOfExperts: expected a floating-point input, got dtype {x.dtype}")
        logits = self.router(x).astype(jnp.float32)
        probs = jax.nn.softmax(logits, axis=-1)
        if self.routing == "soft" or self.top_k == self.num_experts:
            return probs, probs
        top, index = jax.lax.top_k(logits, self.top_k)
        weights = jax.nn.softmax(top, axis=-1)  # = p_i / sum of the chosen p_j
        gates = jnp.sum(jax.nn.one_hot(index, self.num_experts, dtype=jnp.float32) * weights[..., None], axis=-2)
        return gates, probs

    def route(self, x: Float[Array, "... d"]) -> tuple[Float[Array, "... d"], dict[str, Array]]:
        """``(y, aux)``: the output and ``aux = {"balance": switch_balance_loss, "load": f (E,),
        "importance": P (E,)}`` over all tokens of ``x``; ``f`` sums to 1 (fraction of assignments)."""
        gates, probs = self.gates(x)
        outputs = jnp.stack([expert(x) for expert in self.experts], axis=-2)  # (..., E, d)
        y = jnp.einsum("...e,...ed->...d", gates.astype(outputs.dtype), outputs) * self.gain
        assigned = probs if self.routing == "soft" else (gates > 0).astype(jnp.float32)
        n = self.num_experts
        a = jax.lax.stop_gradient(assigned.reshape(-1, n))
        aux = {"balance": switch_balance_loss(probs, assigned), "load": a.mean(axis=0) / a.sum(-1).mean(),
               "importance": probs.reshape(-1, n).mean(axis=0)}
        return y.astype(x.dtype), aux

    def __call__(self, x: Float[Array, "... d"], *, key: Optional[PRNGKeyArray] = None) -> Float[Array, "... d"]:
        """The output only (see :meth:`route` for the balancing loss); ``key`` is unused."""
        del key
        return self.route(x)[0]

    def num_parameters(self) -> int:
        """Trainable scalars: router ``width * E`` plus every expert (all of them, not only the top-k)."""
        return count_parameters(self)

    def _router_flops(self) -> int:
        e, k = self.num_experts, self.top_k
        renorm = _SOFTMAX_FLOPS * k if self.routing == "topk" and k < e else 0
        return 2 * self.width * e + _SOFTMAX_FLOPS * e + renorm

    def flops(self, load: Optional[Sequence[float]] = None) -> int:
        """Forward FLOPs per token counting only the experts a token uses: the router (matmul, softmax,
        top-k renormalisation), ``k`` experts and the weighted sum (``2 k width + width`` for the gain).
        Experts of different kinds cost differently, so the k used ones are averaged over ``load``
        (fractions ``f_i`` of assignments, e.g. ``route(x)[1]["load"]``), uniform ``1/E`` by default:
        ``k * sum_i f_i flops(E_i)``. Top-k selection (comparisons) is not counted."""
        e, k = self.num_experts, self.top_k
        f = [1.0 / e] * e if load is None else [float(v) for v in load]
        if len(f) != e or any(v < 0 for v in f) or abs(sum(f) - 1.0) > 1e-3:
            raise ValueError(f"MixtureOfExperts.flops: load must be {e} fractions >= 0 summing to 1, got {load}")
        experts = k * sum(fi * count_flops(ex) for fi, ex in zip(f, self.experts))
        return int(round(self._router_flops() + experts + 2 * k * self.width + self.width))

    def dense_flops(self) -> int:
        """Forward FLOPs per token of this implementation, which runs every expert on every token and
        masks (what ``kan.xla_flops`` measures): router, all ``E`` experts, ``2 E width + width`` to mix."""
        e = self.num_experts
        return int(self._router_flops() + sum(count_flops(ex) for ex in self.experts) + 2 * e * self.width
                   + self.width)
