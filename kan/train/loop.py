"""Training loop with a progress bar (loss, throughput), periodic evaluation and checkpoint resume,
plus two resumable batch sources whose position is part of every checkpoint.

- :class:`ArrayBatches`: shuffled mini-batches over in-memory arrays; the order is a function of
  ``(seed, epoch)``, so the position ``(epoch, index)`` restores it exactly.
- :class:`WindowBatches`: random windows of a token stream (language models); batch ``i`` is drawn
  from ``numpy.random.default_rng([seed, i])``, so the position is the batch count.

Both yield the *global* batch on one process and this process's slice of it on several.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Int
from tqdm.auto import tqdm

from .checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint
from .step import LossFn, data_mesh, make_train_step, partition, replicate, shard_batch, to_host


def _local_slice(batch_size: int) -> slice:
    count, index = jax.process_count(), jax.process_index()
    if batch_size % count:
        raise ValueError(f"batch_size={batch_size} must be a multiple of the {count} processes")
    local = batch_size // count
    return slice(index * local, (index + 1) * local)


class ArrayBatches:
    """Endless shuffled batches ``tuple(a[idx] for a in arrays)`` of ``batch_size`` rows (partial batches
    at the end of an epoch are dropped). ``state()`` / ``load_state()`` give and restore the position."""

    def __init__(self, arrays: Sequence[np.ndarray], batch_size: int, *, seed: int = 0, shuffle: bool = True):
        self.arrays = tuple(np.asarray(a) for a in arrays)
        n = len(self.arrays[0]) if self.arrays else 0
        if not self.arrays or any(len(a) != n for a in self.arrays):
            raise ValueError("ArrayBatches: need one or more arrays with the same number of rows")
        if not 1 <= int(batch_size) <= n:
            raise ValueError(f"ArrayBatches: batch_size must be in [1, {n}], got {batch_size}")
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
        self.epoch = self.index = 0
        self._slice = _local_slice(self.batch_size)

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per pass over the data."""
        return len(self.arrays[0]) // self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.arrays[0])
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self) -> "ArrayBatches":
        return self

    def __next__(self) -> tuple[np.ndarray, ...]:
        rows = self._order(self.epoch)[self.index * self.batch_size:(self.index + 1) * self.batch_size]
        self.index += 1
        if self.index >= self.batches_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        rows = rows[self._slice]
        return tuple(a[rows] for a in self.arrays)

    def state(self) -> dict:
        """The position: ``{"epoch", "index", "seed"}``."""
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed}

    def load_state(self, state: dict) -> None:
        """Continue from a position written by :meth:`state`."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"ArrayBatches: the checkpoint's data seed {state['seed']} differs from {self.seed}")
        self.epoch, self.index = int(state.get("epoch", 0)), int(state.get("index", 0))


class WindowBatches:
    """Endless batches ``(batch_size, length)`` int32 of random windows of a 1-D token array."""

    def __init__(self, tokens: Int[Array, " n"], batch_size: int, length: int, *, seed: int = 0):
        self.tokens = np.asarray(tokens, np.int32)
        if self.tokens.ndim != 1 or not 2 <= int(length) <= self.tokens.size:
            raise ValueError(f"WindowBatches: need 1-D tokens and 2 <= length <= {self.tokens.size}, "
                             f"got shape {self.tokens.shape}, length {length}")
        self.batch_size, self.length, self.seed, self.position = int(batch_size), int(length), int(seed), 0
        self._slice = _local_slice(self.batch_size)

    def __iter__(self) -> "WindowBatches":
        return self

    def __next__(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.position])
        self.position += 1
        starts = rng.integers(0, self.tokens.size - self.length + 1, self.batch_size)[self._slice]
        return self.tokens[starts[:, None] + np.arange(self.length)]

    def state(self) -> dict:
        """The position: ``{"position", "seed"}``."""
        return {"position": self.position, "seed": self.seed}

    def load_state(self, state: dict) -> None:
        """Continue from a position written by :meth:`state`."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"WindowBatches: the checkpoint's data seed {state['seed']} differs from {self.seed}")
        self.position = int(state.get("position", 0))


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the float32 model, optimiser state, step reached, per-step history
    (``step``, ``loss``, ``grad_norm``, the loss function's metrics, and ``time``: seconds since the
    start when the metrics were read, every ``log_every`` steps), evaluations (``step`` and what
    ``eval_fn`` returned), the first step's time (compilation) and the throughput after it (items/s,
    evaluation and checkpoint time excluded)."""

    model: Any
    opt_state: Any
    step: int
    history: list[dict]
    evals: list[dict]
    compile_seconds: float = 0.0
    throughput: float = 0.0


def train(model: Any, loss_fn: LossFn, batches: Any, *, optimizer: optax.GradientTransformation, steps: int,
          mesh: Any = None, compute_dtype: Any = None, checkpoint_dir: Any = None, checkpoint_every: int = 0,
          keep: Optional[int] = 3, resume: bool = True, eval_fn: Optional[Callable[[Any], dict]] = None,
          eval_every: int = 0, log_every: int = 10, items_per_batch: Optional[int] = None,
          unit: str = "samples", progress: bool = True, desc: str = "train") -> TrainResult:
    """Train ``model`` for ``steps`` optimiser steps in total (counting steps done before a resume).

    ``batches`` yields host batches (an iterator; :class:`ArrayBatches` / :class:`WindowBatches` also
    save their position). With ``checkpoint_dir`` a checkpoint is written every ``checkpoint_every``
    steps and at the end, and with ``resume`` the latest one is restored first (model, optimiser state,
    step, data position), so the run continues as if it had never stopped. ``eval_fn(model) -> dict``
    runs every ``eval_every`` steps and at the end. The bar shows the loss and ``items_per_batch`` per
    second (default: the batch's leading size, in ``unit``), timed from the end of the first
    (compiling) step.
    """
    mesh = data_mesh() if mesh is None else mesh
    step, opt_state = 0, None
    if checkpoint_dir is not None and resume and latest_checkpoint(checkpoint_dir) is not None:
        model, opt_state, state = restore_checkpoint(checkpoint_dir, optimizer)
        step = int(state["step"])
        if hasattr(batches, "load_state"):
            batches.load_state(state["data"])
    params, static = partition(model)
    params = jax.tree_util.tree_map(jnp.copy, params)  # the step donates its inputs; keep the caller's model
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    params, opt_state = replicate(params, mesh), replicate(opt_state, mesh)
    train_step = make_train_step(loss_fn, optimizer, static, mesh=mesh, compute_dtype=compute_dtype, donate=True)

    def current_model():
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x) if isinstance(x, np.ndarray) else x,
                                      eqx.combine(to_host(params), static))

    def checkpoint():
        data_state = batches.state() if hasattr(batches, "state") else {}
        save_checkpoint(checkpoint_dir, current_model(), opt_state, step, data_state=data_state, keep=keep)

    history, evals, pending = [], [], []
    bar = tqdm(total=int(steps), initial=step, desc=desc, disable=not progress, dynamic_ncols=True)
    first, start, t0, items, compile_seconds, rate = step, time.perf_counter(), None, 0, 0.0, 0.0
    paused = 0.0  # seconds spent in evaluation and checkpoints, left out of the throughput
    while step < int(steps):
        host_batch = next(batches)
        n_items = items_per_batch or int(np.shape(jax.tree_util.tree_leaves(host_batch)[0])[0]) * jax.process_count()
        params, opt_state, metrics = train_step(params, opt_state, shard_batch(host_batch, mesh))
        step += 1
        pending.append((step, metrics))
        if step == first + 1:
            jax.block_until_ready(metrics)
            t0 = time.perf_counter()
            compile_seconds = t0 - start
        else:
            items += n_items
        if step % max(int(log_every), 1) == 0 or step == int(steps):
            for s, m in pending:
                history.append(dict({k: float(v) for k, v in to_host(m).items()}, step=s,
                                    time=time.perf_counter() - start))
            pending = []
            rate = items / max(time.perf_counter() - t0 - paused, 1e-9) if items else 0.0
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", **{f"{unit}/s": f"{rate:,.0f}"})
        bar.update(1)
        pause_start = time.perf_counter()
        if eval_fn is not None and eval_every and step % int(eval_every) == 0 and step != int(steps):
            evals.append(dict(eval_fn(current_model()), step=step))
        if checkpoint_dir is not None and checkpoint_every and step % int(checkpoint_every) == 0:
            checkpoint()
        if t0 is not None:
            paused += time.perf_counter() - pause_start
    bar.close()
    if eval_fn is not None:
        evals.append(dict(eval_fn(current_model()), step=step))
    if checkpoint_dir is not None and not (checkpoint_every and step % int(checkpoint_every) == 0):
        checkpoint()
    return TrainResult(current_model(), opt_state, step, history, evals, compile_seconds, rate)
