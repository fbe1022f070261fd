"""Generated data sets in pykan's form: ``create_dataset(f, n_var)`` -> a dict of train/test arrays."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def create_dataset(
    f: Callable[[Float[Array, "n d"]], Array],
    n_var: int = 2,
    *,
    ranges: Sequence[float] | Sequence[Sequence[float]] = (-1.0, 1.0),
    train_num: int = 1000,
    test_num: int = 1000,
    seed: int = 0,
) -> dict[str, Float[Array, "n _"]]:
    """Inputs uniform on ``ranges`` (one ``(lo, hi)`` for all variables or one per variable) and labels
    ``f(x)``, as pykan's ``create_dataset``: keys ``train_input`` ``(train_num, n_var)``,
    ``train_label`` ``(train_num, out)``, ``test_input``, ``test_label``. ``f`` maps ``(n, n_var)`` to
    ``(n,)`` or ``(n, out)``. The dict goes straight into :func:`kan.fit` (its test pair becomes the
    validation pair)."""
    if int(n_var) < 1:
        raise ValueError(f"create_dataset: n_var must be >= 1, got {n_var}")
    if int(train_num) < 1 or int(test_num) < 1:
        raise ValueError(f"create_dataset: train_num and test_num must be >= 1, got {train_num}, {test_num}")
    bounds = np.asarray(ranges, np.float64)
    bounds = np.broadcast_to(bounds, (n_var, 2)) if bounds.shape == (2,) else bounds
    if bounds.shape != (n_var, 2) or not np.all(np.isfinite(bounds)) or np.any(bounds[:, 1] <= bounds[:, 0]):
        raise ValueError(f"create_dataset: ranges must be (lo, hi) or {n_var} pairs with lo < hi, got {ranges}")
    lo, hi = bounds[:, 0].astype(np.float32), bounds[:, 1].astype(np.float32)
    k_train, k_test = _split_keys(int(seed))
    out = {}
    for split, key, num in (("train", k_train, train_num), ("test", k_test, test_num)):
        x = _uniform_inputs(key, lo, hi, (int(num), int(n_var)))
        y = jnp.asarray(f(x))
        y = y[:, None] if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[0] != x.shape[0]:
            raise ValueError(f"create_dataset: f must map (n, {n_var}) to (n,) or (n, out), got {y.shape}")
        finite = np.all(np.isfinite(np.asarray(y)), axis=1)
        if not finite.all():
            where = np.asarray(x)[int(np.argmin(finite))]
            raise ValueError(f"create_dataset: f gives NaN or inf at {int((~finite).sum())} of {num} {split} "
                             f"points (the first at x = {where.tolist()}); narrow ranges to f's domain")
        out[f"{split}_input"], out[f"{split}_label"] = x, y
    return out


# One compiled program each (eagerly, seeding, splitting and scaling compile one tiny program apiece).
@jax.jit
def _split_keys(seed: int) -> tuple[Array, Array]:
    k_train, k_test = jax.random.split(jax.random.PRNGKey(seed))
    return k_train, k_test


@functools.partial(jax.jit, static_argnums=3)
def _uniform_inputs(key: Array, lo: Array, hi: Array, shape: tuple[int, int]) -> Float[Array, "n d"]:
    return lo + (hi - lo) * jax.random.uniform(key, shape)
