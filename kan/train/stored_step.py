"""The L-BFGS step of :func:`kan.fit` through a stored program (:mod:`kan.trace_cache`).

Tracing and lowering the three L-BFGS step programs took 1.2 s of a warm ``python -m kan demo`` (about
6.5 s) although XLA's compile came from the persistent cache. Where the compilation cache is on, the
step is therefore called through :func:`kan.trace_cache.exported_call`: its array arguments flat, its
structure (the model skeleton with its static settings, the objective, the L-BFGS memory's layout) in
the key through :func:`kan.trace_cache.portable_description`, which refuses anything whose code the key
does not cover (a lambda activation, a user's own class or loss). Those steps, steps whose arrays the
caller placed on a device, models whose parameters and L-BFGS memory exceed :data:`MAX_CARRIED_BYTES`,
and every step where the cache is off are plain calls of the same jitted function; so is a step that
``jax.export`` refuses (the native CPU kernels' custom calls), remembered by a marker file.

Measured (``python -m benchmarks.process.demo --cold 3 --warm 6 --against <checkout without it>``, 2
cores, three runs): warm demo 4.81 s [4.37-5.81] against 6.19 s [5.48-6.56], then 6.08 against 6.84 s
and 4.78 against 5.78 s; cold within the noise of 3-6 runs per contender (medians 13.77 against 14.59,
17.14 against 14.63, 16.15 against 14.67 s), with the same 37 programs compiled and 0.1-0.25 s more
tracing (``JAX_LOG_COMPILES``); the same formula and RMSEs.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Callable

import jax
import numpy as np

from .. import trace_cache


#: Parameters plus L-BFGS memory up to this size go through the stored program; its outputs pass through
#: the host once per step (see ``program``), which larger models would feel.
MAX_CARRIED_BYTES = 8 * 2**20


class StoredLBFGSStep:
    """``step(objective, opt, params, static, opt_state, x, y) -> (params, opt_state, aux, stalled)``:
    ``plain`` (``kan.train.fit._lbfgs_step``, called with ``iterations``) through a stored program where
    that is safe. The structure is described once and kept while the arguments' tree structure and
    non-array leaves stay the same objects (within one fit they change only at grid updates)."""

    def __init__(self, plain: Callable, iterations: int):
        self.plain, self.iterations = plain, int(iterations)
        self._signature: tuple | None = None
        self._program: Callable | None = None

    def __call__(self, objective, opt, params, static, opt_state, x, y):
        if opt is not None or not trace_cache.active():
            return self.plain(objective, opt, params, static, opt_state, x, y, iterations=self.iterations)
        tree = (objective, params, static, opt_state, x, y)
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        flags = tuple(trace_cache.is_array(leaf) for leaf in leaves)
        arrays = [leaf for leaf, flag in zip(leaves, flags) if flag]
        others = [leaf for leaf, flag in zip(leaves, flags) if not flag]
        signature = (treedef, flags, tuple((np.shape(a), str(a.dtype)) for a in arrays))
        kept = self._signature
        if kept is None or kept[0] != signature or any(a is not b for a, b in zip(kept[1], others)):
            self._program = self._build(tree, leaves, treedef, params, opt_state)
            self._signature = (signature, others)  # holds the leaves, so their identities stay unique
        if self._program is None or any(isinstance(a, jax.Array) and a.committed for a in arrays):
            # not describable, or placed on a device by the caller: a plain call
            return self.plain(objective, opt, params, static, opt_state, x, y, iterations=self.iterations)
        return self._program(arrays)

    def _build(self, tree, leaves, treedef, params, opt_state) -> Callable | None:
        carried = sum(np.size(a) * np.dtype(a.dtype).itemsize for a in jax.tree_util.tree_leaves((params, opt_state)))
        description = trace_cache.portable_description(tree) if carried <= MAX_CARRIED_BYTES else None
        if description is None:
            return None
        structure = hashlib.sha256(f"{description}|iterations={self.iterations}|"
                                   f"{trace_cache.library_versions()}".encode()).hexdigest()
        positions = [i for i, leaf in enumerate(leaves) if trace_cache.is_array(leaf)]
        skeleton = [None if trace_cache.is_array(leaf) else leaf for leaf in leaves]  # keeps no array alive
        params_def = jax.tree_util.tree_structure(params)
        state_def = jax.tree_util.tree_structure(opt_state)
        plain, iterations = self.plain, self.iterations

        @functools.partial(jax.jit, static_argnames=("structure",))
        def flat_step(*arrays, structure: str):
            del structure  # keys the stored program only
            full = list(skeleton)
            for i, array in zip(positions, arrays):
                full[i] = array
            objective, p, static, state, x, y = jax.tree_util.tree_unflatten(treedef, full)
            new_params, new_state, _, stalled = plain(objective, None, p, static, state, x, y, iterations=iterations)
            if (jax.tree_util.tree_structure(new_params) != params_def
                    or jax.tree_util.tree_structure(new_state) != state_def):
                raise ValueError("the L-BFGS step changed the structure of its parameters or state")
            return (*jax.tree_util.tree_leaves(new_params), *jax.tree_util.tree_leaves(new_state), stalled)

        num_params = params_def.num_leaves

        def program(arrays: list):
            out = trace_cache.exported_call(flat_step, "lbfgs_step", arrays, {"structure": structure})
            # A stored program's outputs are committed to its device, a plain jit's (of uncommitted
            # inputs) are not: handed on as they are, every later program would compile once more for
            # the new placement (4 more programs in the demo). Their values go back uncommitted.
            out = jax.device_put([np.asarray(o) for o in out])
            new_params = jax.tree_util.tree_unflatten(params_def, out[:num_params])
            new_state = jax.tree_util.tree_unflatten(state_def, out[num_params:-1])
            return new_params, new_state, new_state.aux, out[-1]

        return program
