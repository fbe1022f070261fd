"""The native kernels' calls (:mod:`bases.native_build`) and the dense reference they must equal, for
:mod:`bases.bspline.native`: local pieces by XLA (:func:`terms`), the forward and the fused backward
kernel (:func:`forward`, :func:`backward`), and :func:`dense` (features scattered from the same pieces,
one einsum: what forward-mode and higher-order autodiff differentiate, :mod:`bases.kernel_ad`), all
as ``(cfg, x, weight, grid, mask)``. ``local_sum`` puts them together.

Measured slower and left out (128 -> 128, G = 5, batch 1024, fwd+bwd on 2 cores, A/B in one process
or alternating processes): the pieces computed by a native pass (``uniform_terms``: 0.4 ms alone
against XLA's 1-2 ms, yet the step 10-20% slower: XLA then ran the step on one thread), or in the
kernels themselves (no gain); the pieces in ``(d, k + 1, rows)`` planes (rows 4 KiB apart alias in the
cache); the pieces as XLA makes them, ``(k + 1, rows, d)`` planes with no transpose (XLA's part 1.0
against 2.0 ms), regathered per input by the kernel (its grouping 0.56 -> 1.5-2 ms on one thread, the
step 30% slower); ``dx`` written by the kernel as ``(rows, d)`` instead of transposed by XLA (2-7%
slower); a backward that dots each weight row with ``dy`` before weighting by the slopes (one
multiply-add per output fewer, 13-19% slower for its larger per-row buffer).

Also measured and left out (same shape; ``python -m benchmarks.native_profile`` gives the parts): the
terms computed once and kept from the forward for the backward (a ``prepare`` hook in
:func:`bases.kernel_ad.kernel_op`: XLA already shares them, 11 fusions either way, 5.79x against 5.71x
the MLP); with the terms made free (constants) the step took 6.22 against 6.24 ms, so they are off the
critical path and a native or in-kernel pieces pass has nothing to win; the forward's rows in
L1-sized chunks of 64 (buckets keyed by chunk and start: its tiles 2.2-2.3 against 1.9 ms on one
thread); the kernels reading ``V`` and ``D`` through the permutation instead of sorted copies (the
backward's grouping 0.3 against 1.0 ms, its tiles 5.2 against 4.1 ms); the forward split over row
parts as well as output tiles (1.86 against 1.47 ms at 128 -> 128; 0.67 against 0.72 ms at 64 -> 64).
On one thread the tiles ran at 61% (forward) and about 75% (backward) of the measured multiply-add
peak, 58 lane-FMAs per ns.

Measured later and left out too (kernels alone A/B in one process against a second build, or the layer
step; 2 cores): the backward's sorted values and slopes interleaved in one array (its grouping had been
10-30% faster on one thread; on 2 cores the backward took 1.02-1.10x, 128 -> 128, G = 5 and 256, G = 20);
software prefetch of the rows 4, 8 or 16 sorted positions ahead (forward and backward within the
+-10% by which two builds of the same source differed); the terms computed in ``(d, rows)`` layout (a
``vmap`` over inputs, no transposes: the same 1.8 ms alone, the step 1.20x slower); and the layer's
residual branch inside the kernels as one more term per input (its weight row kept in registers across
an input's groups, saving the three residual matmuls): fwd+bwd 0.93-0.95x at 128 -> 128 and 256 -> 256,
G = 5, batch 1024, but 1.00x at 128, G = 20 and 256, G = 10, 1.20x at 512, G = 20 and 1.25x at 128, G = 5,
batch 4096, although one more term cost the kernels alone less than those matmuls (at batch 4096:
+1.5 ms against about 2.5 ms). The likely reason: XLA runs the residual's matmuls beside the kernels
(a ``jax.profiler`` trace of the step showed one on the second core while the backward kernel
started), on time a kernel leaves a core idle (grouping rows, two output tiles for two threads), so
they were partly free already. The grouping (counting sort and sorted copies) took 0.23-0.35 ms of the
forward kernel's 1.0-1.1 ms and 0.38-0.53 ms of the backward's 1.7-1.9 ms at 128 -> 128, G = 5 (a build
that returned after it; an empty call took 0.03-0.04 ms), by its bytes moved an estimated 20-25 GB/s
on 2 cores; counting and placing rows by four interleaved sets of counters (no chain of increments
through one counter) made the kernels 1.00-1.18x slower, so the grouping is bound by memory traffic,
not by that chain. Larger forward tiles of 32 columns (four tiles for two threads at 128 outputs) ran 1.01-1.26x.
The uniform pieces computed by the grouping itself from ``x`` (no ``V``/``D`` from XLA, no transposes;
values and gradients matched): the step 1.14x slower with scalar code, 1.05x with 16-lane vectors,
although the step with the terms given as inputs (an upper bound for making them free) ran 0.89-0.93x.
The grouping done once per differentiated call and handed from the forward kernel to the backward (a
grouping kernel writing ``perm``, offsets and the sorted values and slopes as XLA buffers, both kernels
reading them; a residual channel in :func:`bases.kernel_ad.kernel_op`; values and gradients matched):
kernels fwd+bwd 1.02-1.04x, the layer step 0.97-1.00x (per-round spread 0.87-1.13), at 128 -> 128, G = 5
and 256 -> 256, G = 10. Alone, the grouping kernel took 0.50 ms, while grouping inside the kernels cost
only 0.17 ms (forward, values) and 0.26 ms (backward, values and slopes) over their grouped variants:
inside a kernel the sorted copies go to a kept workspace and are read back while still in cache. The
terms computed in 2 or 4 slices of the inputs and joined (XLA may run the slices side by side: 0.62-0.75
against 1.3-2.5 ms for the terms alone): the step 1.07-1.12x slower.

An output-stationary forward with no grouping at all (tiles of 3 rows x 128 columns whose 24 accumulator
vectors stay in registers over chunks of inputs; each row's ``T`` weight rows read at its start from a
masked, transposed copy of the weights, ``(d, n + 2 pad, 128)``, held in L1): against the grouping plus
``forward_tile`` (``bases/csrc/local_kernels.h``) on the same terms in a standalone C++ harness (128 ->
128, 1024 rows, ``T = 4``, 200 rounds), 1.02-1.06x on one thread for chunks of 4-16 inputs (1.29x with
all 128 at once) and 1.10-1.14x on two. Every multiply-add then takes its weight vector from memory (36
loads per 32 FMAs) on a core that sustains about one 512-bit load and one FMA per cycle, whereas the
grouped tile keeps the weights in registers (8 loads and 4 stores per 16 FMAs)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .. import native_build
from ..kernel_ad import kernel_op
from ..rbf import rbf_local_pieces
from ..relu_kan import relukan_local_pieces
from .local import dense_from_local, local_pieces


class Config(NamedTuple):
    order: int
    uniform: bool
    num_functions: int
    kind: str = "bspline"  # or "relukan": the pieces of bases.ReLUKAN, "grid" its stacked (start, end);
    # or "rbf": a cut-off bases.GaussianRBF, "grid" its stacked (first centre, spacing, 1 / width)
    cutoff: float = 0.0  # "rbf": the cut-off radius in widths


def pieces(cfg: Config, x: Array, grid: Array):
    """``(pieces, first)`` of :func:`bases.bspline.local.local_pieces` (or the ReLU-KAN or cut-off RBF
    ones)."""
    if cfg.kind == "relukan":
        return relukan_local_pieces(x, grid[0], grid[1], cfg.order)
    if cfg.kind == "rbf":
        return rbf_local_pieces(x, grid[0], grid[1], grid[2], cfg.cutoff, cfg.order + 1)
    return local_pieces(x, grid, cfg.order, cfg.uniform)


def terms(cfg: Config, x: Array, grid: Array, derivatives: bool):
    """``V`` (and ``D``) ``(d, rows, k + 1)``: the local pieces (derivatives), zero where a piece is not a
    basis function; ``S`` ``(d, rows)``: the first piece's column in the padded weights."""
    k, n = cfg.order, cfg.num_functions
    fn = lambda v: pieces(cfg, v, grid)
    if derivatives:
        (values, start), (slopes, _) = jax.jvp(fn, (x,), (jnp.ones_like(x),))
    else:
        (values, start), slopes = fn(x), None

    def stack(vals):
        cols = [jnp.where((start + q >= 0) & (start + q < n), v, 0.0) for q, v in enumerate(vals)]
        return jnp.transpose(jnp.stack(cols, axis=-1), (1, 0, 2))

    first = (jnp.clip(start, -k, n - 1) + k).astype(jnp.int32).T
    return stack(values), (None if slopes is None else stack(slopes)), first


def forward_kernel(cfg: Config, values: Array, first: Array, weight: Array, mask: Array) -> Array:
    """The forward kernel on :func:`terms`' ``V`` and ``S``: ``(rows, out)``."""
    shape = jax.ShapeDtypeStruct((values.shape[1], weight.shape[0]), jnp.float32)
    return jax.ffi.ffi_call(native_build.FORWARD_TARGET, shape, vmap_method="sequential")(
        values, first, weight, mask, pad=cfg.order)


def backward_kernel(cfg: Config, values: Array, slopes: Array, first: Array, weight: Array, mask: Array,
                    dy: Array) -> tuple[Array, Array]:
    """The backward kernel on :func:`terms`' ``V``, ``D`` and ``S``: ``dx`` as ``(d, rows)`` and
    ``dweight`` ``(out, d, n)``."""
    shapes = (jax.ShapeDtypeStruct(first.shape, jnp.float32), jax.ShapeDtypeStruct(weight.shape, jnp.float32))
    return jax.ffi.ffi_call(native_build.BACKWARD_TARGET, shapes, vmap_method="sequential")(
        values, slopes, first, weight, mask, dy.astype(jnp.float32), pad=cfg.order)


def forward(cfg: Config, x: Array, weight: Array, grid: Array, mask: Array) -> Array:
    """``(rows, out)`` by the forward kernel."""
    values, _, first = terms(cfg, x, grid, derivatives=False)
    return forward_kernel(cfg, values, first, weight, mask)


def backward(cfg: Config, x: Array, weight: Array, grid: Array, mask: Array,
             dy: Array) -> tuple[Array, Array]:
    """``(dx, dweight)`` of ``<dy, forward(...)>`` by the fused backward kernel."""
    values, slopes, first = terms(cfg, x, grid, derivatives=True)
    dx, dweight = backward_kernel(cfg, values, slopes, first, weight, mask, dy)
    return dx.T.astype(x.dtype), dweight


def dense(cfg: Config, x: Array, weight: Array, grid: Array, mask: Array) -> Array:
    """The same sum in XLA: dense features from the same pieces, one einsum (any order of autodiff)."""
    values, start = pieces(cfg, x, grid)
    feats = dense_from_local(jnp.stack(values, axis=-1), start, cfg.num_functions)
    return jnp.einsum("bdk,odk->bo", feats, weight * mask[..., None])


#: ``local_sum(cfg, x, weight, grid, mask) -> (rows, out)``: the kernels, differentiable in every mode.
local_sum = kernel_op("kan_local", forward, backward, dense, num_diff=2)
