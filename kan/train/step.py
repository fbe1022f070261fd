"""A jitted, data-parallel train step on JAX's own sharding (one device, many devices, many hosts).

Data parallelism: a 1-D :class:`jax.sharding.Mesh` named ``"data"`` over all devices (of all
processes, after ``jax.distributed.initialize()``); the batch is split along its leading axis, the
parameters and optimiser state are replicated. The step is ``jax.jit`` with those shardings around a
``jax.shard_map``: each device computes the loss and gradients of its shard, ``lax.pmean`` averages
them over ``"data"``, and every device applies the same optax update. Writing the all-reduce out (instead
of leaving the partitioning to GSPMD) keeps custom kernels such as the Pallas group rational local to
each device. On one device the mesh has one entry and the step is the plain single-device step.
Loss functions must return a *mean* over the batch, so the mean of equal-sized shard means is the
global mean.

Mixed precision (``compute_dtype=jnp.bfloat16``): the float32 parameters stay the master copy; inside
the step a bf16 copy runs the forward and backward pass (rational coefficients stay float32 and the
rational kernels accumulate in float32), floating inputs are cast to bf16, gradients arrive in float32
through the cast, and the optimiser updates the float32 master weights.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxtyping import Array, Float, PyTree

from bases import Rational, trainable_filter

AXIS = "data"
LossFn = Callable[[Any, Any], tuple[Float[Array, ""], dict]]


def data_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """1-D mesh ``("data",)`` over ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("data_mesh: no devices")
    return Mesh(np.asarray(devices), (AXIS,))


def partition(model: Any) -> tuple[PyTree, PyTree]:
    """``(params, static)``: trainable float arrays, and the rest (buffers, ints, config)."""
    return eqx.partition(model, trainable_filter(model))


def cast_params(params: PyTree, dtype: Any) -> PyTree:
    """Floating arrays cast to ``dtype``, except rational coefficients (kept float32)."""
    if dtype is None:
        return params

    def cast(x):
        if isinstance(x, Rational) or not eqx.is_inexact_array(x):
            return x
        return x.astype(dtype)

    return jax.tree_util.tree_map(cast, params, is_leaf=lambda x: isinstance(x, Rational))


def _cast_batch(batch: PyTree, dtype: Any) -> PyTree:
    if dtype is None:
        return batch
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, batch)


def _put(tree: PyTree, sharding: NamedSharding, local: bool) -> PyTree:
    """Place host data under ``sharding``; with several processes, ``local`` data is this process's
    slice of the global array (batches), otherwise every process holds the whole array (replicas)."""
    def one(x):
        if x is None:
            return None
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        x = np.asarray(x)
        if local:
            return jax.make_array_from_process_local_data(sharding, x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(one, tree)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every array of ``tree`` replicated on all devices of ``mesh``."""
    return _put(tree, NamedSharding(mesh, P()), local=False)


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Split every array of ``batch`` along its leading axis over ``mesh``'s ``"data"`` axis. With several
    processes each passes its own slice (``global batch / process_count`` rows)."""
    size = mesh.shape[AXIS]
    local_size = size // jax.process_count()
    for x in jax.tree_util.tree_leaves(batch):
        if np.ndim(x) == 0 or np.shape(x)[0] % local_size:
            raise ValueError(f"shard_batch: leading batch size {np.shape(x)[:1]} must be a multiple of the "
                             f"{local_size} local devices of the mesh")
    return _put(batch, NamedSharding(mesh, P(AXIS)), local=True)


def to_host(tree: PyTree) -> PyTree:
    """NumPy copies of (replicated) arrays, readable on every process."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return np.asarray(x)

    return jax.tree_util.tree_map(one, tree)


def _mapped(fn: Callable, mesh: Mesh, in_specs: tuple, out_specs: Any, shardings: tuple, out_shardings: Any,
            donate: tuple = ()) -> Callable:
    # check_vma=False: gradients of the replicated parameters stay per-device (with it, JAX would psum
    # them implicitly in the transpose); the explicit pmean below is then the only reduction.
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    return jax.jit(mapped, in_shardings=shardings, out_shardings=out_shardings, donate_argnums=donate)


def _cached(builder: Callable) -> Callable:
    """``functools.lru_cache`` that falls back to a fresh build when an argument is unhashable."""
    cached = functools.lru_cache(maxsize=32)(builder)

    def get(*args):
        try:
            return cached(*args)
        except TypeError:
            return builder(*args)

    return get


@_cached
def _train_program(loss_fn, optimizer, static_rest, mesh, compute_dtype, donate) -> Callable:
    def local_step(params, static_arrays, opt_state, batch):
        static = eqx.combine(static_arrays, static_rest)

        def objective(p):
            model = eqx.combine(cast_params(p, compute_dtype), static)
            loss, metrics = loss_fn(model, _cast_batch(batch, compute_dtype))
            return loss.astype(jnp.float32), metrics

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
        grads, loss, metrics = jax.lax.pmean((grads, loss, metrics), AXIS)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        return params, opt_state, jax.tree_util.tree_map(lambda m: m.astype(jnp.float32), metrics)

    rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    return _mapped(local_step, mesh, (P(), P(), P(), P(AXIS)), (P(), P(), P()), (rep, rep, rep, shard),
                   (rep, rep, rep), (0, 2) if donate else ())


@_cached
def _eval_program(loss_fn, static_rest, mesh, compute_dtype) -> Callable:
    def local_eval(params, static_arrays, batch):
        model = eqx.combine(cast_params(params, compute_dtype), eqx.combine(static_arrays, static_rest))
        loss, metrics = loss_fn(model, _cast_batch(batch, compute_dtype))
        metrics = dict(metrics, loss=loss.astype(jnp.float32))
        return jax.lax.pmean(jax.tree_util.tree_map(lambda m: m.astype(jnp.float32), metrics), AXIS)

    rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    return _mapped(local_eval, mesh, (P(), P(), P(AXIS)), P(), (rep, rep, shard), rep)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, static: PyTree, *,
                    mesh: Optional[Mesh] = None, compute_dtype: Any = None, donate: bool = False) -> Callable:
    """``step(params, opt_state, batch) -> (params, opt_state, metrics)``, jitted with shardings.

    ``loss_fn(model, batch) -> (mean loss, metrics dict of scalars)``; ``static`` is the second half of
    :func:`partition`. ``metrics`` gets ``loss`` and ``grad_norm`` (after averaging over devices, before
    clipping). ``params``/``opt_state`` must be :func:`replicate`-d and ``batch`` :func:`shard_batch`-ed on
    ``mesh`` (default :func:`data_mesh`). ``donate=True`` reuses the input buffers for the outputs.
    The compiled program is shared by every step built with the same ``loss_fn``, ``optimizer`` object,
    model structure, mesh and dtype (e.g. several seeds of one model compile once).
    """
    mesh = data_mesh() if mesh is None else mesh
    static_arrays, static_rest = eqx.partition(static, eqx.is_array)
    static_arrays = replicate(static_arrays, mesh)
    program = _train_program(loss_fn, optimizer, static_rest, mesh, compute_dtype, bool(donate))

    def step(params: PyTree, opt_state: PyTree, batch: PyTree) -> tuple[PyTree, PyTree, dict]:
        return program(params, static_arrays, opt_state, batch)

    return step


def make_eval_step(loss_fn: LossFn, static: PyTree, *, mesh: Optional[Mesh] = None,
                   compute_dtype: Any = None) -> Callable:
    """``evaluate(params, batch) -> metrics`` (``loss`` included), averaged over devices."""
    mesh = data_mesh() if mesh is None else mesh
    static_arrays, static_rest = eqx.partition(static, eqx.is_array)
    static_arrays = replicate(static_arrays, mesh)
    program = _eval_program(loss_fn, static_rest, mesh, compute_dtype)

    def evaluate(params: PyTree, batch: PyTree) -> dict:
        return program(params, static_arrays, batch)

    return evaluate


def classification_loss(model: Any, batch: tuple[Array, Array]) -> tuple[Float[Array, ""], dict]:
    """Mean softmax cross-entropy of ``model(x)`` against integer labels ``y``, plus ``accuracy``."""
    x, y = batch
    logits = model(x).astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}


def language_model_loss(model: Any, tokens: Array) -> tuple[Float[Array, ""], dict]:
    """Next-token cross-entropy on ``tokens (batch, seq + 1)``; also ``bits`` per token (loss / ln 2)."""
    logits = model(tokens[..., :-1]).astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[..., 1:]).mean()
    return loss, {"bits": loss / jnp.log(2.0)}
