"""Training checkpoints: model + optimiser state + step + data position, written atomically.

A checkpoint is a directory ``<root>/step_<step:08d>/`` with

- ``model.kan``: the float32 model, written by :func:`kan.save` (self-describing: ``kan.load`` rebuilds
  it in any process without the code that built it);
- ``optimizer.npz``: the optimiser state's array leaves in ``jax.tree_util`` order;
- ``state.json``: step, data position (e.g. :meth:`ArrayBatches.state`), per-leaf shapes/dtypes of
  the optimiser state, and any user ``extra`` (config, metrics).

The optimiser state's structure is not stored: :func:`restore_checkpoint` rebuilds it with
``optimizer.init(params)`` and fills in the saved leaves, checking count, shapes and dtypes. The
directory is written under a temporary name and renamed, so a crash never leaves a half checkpoint;
with several processes only process 0 writes (the replicated state is the same everywhere).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PyTree

from ..io import load, save
from .step import partition, to_host

FORMAT = "kan.train checkpoint"
VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d{8})$")


def checkpoint_path(root: str | Path, step: int) -> Path:
    """``<root>/step_<step:08d>``."""
    return Path(root) / f"step_{int(step):08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Finished checkpoints under ``root``, oldest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Optional[Path]:
    """The checkpoint with the highest step under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(root: str | Path, model: Any, opt_state: PyTree, step: int, *,
                    data_state: Optional[dict] = None, extra: Optional[dict] = None,
                    keep: Optional[int] = 3) -> Path:
    """Write a checkpoint of ``model`` (full module, float32), ``opt_state``, ``step`` and the data
    position; keep the newest ``keep`` checkpoints (None keeps all). Returns its directory."""
    final = checkpoint_path(root, step)
    if jax.process_index() == 0:
        _write(final, root, model, opt_state, step, data_state, extra, keep)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"save_checkpoint {final}")
    return final


def _write(final: Path, root: Any, model: Any, opt_state: PyTree, step: int, data_state: Optional[dict],
           extra: Optional[dict], keep: Optional[int]) -> None:
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(to_host(opt_state))]
    model_host = to_host_model(model)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save(tmp / "model.kan", model_host)
    np.savez(tmp / "optimizer.npz", *leaves)
    state = {"format": FORMAT, "version": VERSION, "step": int(step), "data": data_state or {},
             "optimizer_leaves": [[list(x.shape), x.dtype.name] for x in leaves], "extra": extra or {}}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep is not None:
        for old in list_checkpoints(root)[:-int(keep)]:
            shutil.rmtree(old, ignore_errors=True)


def to_host_model(model: Any) -> Any:
    """The model with every (possibly replicated over devices or hosts) jax array as a local jax array."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(to_host(x)) if isinstance(x, jax.Array) else x, model)


def restore_checkpoint(path: str | Path, optimizer: optax.GradientTransformation, *,
                       like: Any = None) -> tuple[Any, PyTree, dict]:
    """``(model, opt_state, state)`` from a checkpoint directory (or from the latest one under a root).

    ``state`` is the ``state.json`` dict (``step``, ``data``, ``extra``). ``like``: a skeleton model for
    :func:`kan.load` (only needed for models holding unnamed callables).
    """
    path = Path(path)
    if not (path / "state.json").is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"restore_checkpoint: no checkpoint at or under {path}")
        path = latest
    state = json.loads((path / "state.json").read_text())
    if state.get("format") != FORMAT or state.get("version", 0) > VERSION:
        raise ValueError(f"restore_checkpoint: {path} is not a readable {FORMAT} (version {state.get('version')})")
    model = load(path / "model.kan", like=like)
    params, _ = partition(model)
    skeleton = optimizer.init(params)
    leaves, treedef = jax.tree_util.tree_flatten(skeleton)
    with np.load(path / "optimizer.npz") as data:
        saved = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(saved) != len(leaves):
        raise ValueError(f"restore_checkpoint: {path} holds {len(saved)} optimiser arrays, this optimiser has "
                         f"{len(leaves)}: was it built with the same settings?")
    for i, (new, old) in enumerate(zip(leaves, saved)):
        if tuple(np.shape(new)) != old.shape or jnp.dtype(new.dtype) != old.dtype:
            raise ValueError(f"restore_checkpoint: optimiser array {i} is saved as {old.dtype}{list(old.shape)}, "
                             f"this optimiser expects {jnp.dtype(new.dtype)}{list(np.shape(new))}")
    opt_state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in saved])
    return model, opt_state, state
