"""DQN on CartPole (gymnax): a Q-network with one shared rational activation vs the same MLP with ReLU.

    python -m benchmarks.models.rl_cartpole [--steps 20000] [--envs 4] [--seeds 3] [--width 64]

Delfosse et al. (ICLR 2024) share one (5, 4) rational (leaky-ReLU start) across the layers of a DQN
Q-network. Here both Q-networks are ``[4, width, width, 2]``: :class:`kan.MLP` with ReLU and
:class:`kan.RationalMLP` with ``sharing="shared"`` (one set of 10 coefficients; parameter counts are
printed). The whole training run of every seed is one jitted ``lax.scan`` over iterations, ``vmap``-ed
over seeds: per iteration ``--envs`` environments take an epsilon-greedy step into a replay buffer,
then one Adam step on a Huber TD loss against a target network (synced every ``TARGET_EVERY``
iterations). Epsilon falls linearly from 1 to 0.05 over the first half of training. Reported per seed:
the mean greedy return of ``EVAL_EPISODES`` evaluation episodes (max 500) after training, and the mean
return of the episodes finished in the last 10% of training. Writes CSV and Markdown to ``--out-dir``.

Needs gymnax (``pip install -e .[rl]``); exits with a message when it is missing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import kan

try:
    import gymnax
except ImportError:  # the benchmark needs it; nothing else in the package does
    gymnax = None

BUFFER = 10_000
BATCH = 64
GAMMA = 0.99
LR = 5e-4
TARGET_EVERY = 250
WARMUP = 500          # iterations of random actions before learning
EVAL_EPISODES = 10
MAX_EPISODE = 500


class Carry(NamedTuple):
    params: Any
    target: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    buf_obs: jax.Array
    buf_act: jax.Array
    buf_rew: jax.Array
    buf_next: jax.Array
    buf_done: jax.Array
    ptr: jax.Array
    size: jax.Array
    ep_return: jax.Array


def build(kind: str, width: int, key: jax.Array) -> Any:
    """The Q-network of ``kind`` ("relu" or "rational")."""
    widths = [4, width, width, 2]
    if kind == "relu":
        return kan.MLP(widths, key=key, activation=jax.nn.relu)
    if kind == "rational":
        return kan.RationalMLP(widths, key=key, sharing="shared", init="leaky_relu")
    raise ValueError(f"rl_cartpole: unknown network kind {kind!r}")


def make_train(static: Any, iterations: int, num_envs: int) -> Callable[[Any, jax.Array], dict]:
    """A function ``(params, key) -> metrics`` running one whole DQN training of the Q-network
    ``eqx.combine(params, static)`` (jit- and vmap-able; networks are built outside, their init is
    host-side)."""
    env, env_params = gymnax.make("CartPole-v1")
    optimizer = optax.adam(LR)
    step_env = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    reset_env = jax.vmap(env.reset, in_axes=(0, None))
    explore = iterations // 2

    def q_values(params, static, obs):
        return eqx.combine(params, static)(obs)

    def train(params, key):
        k_env, k_loop, k_eval = jax.random.split(key, 3)
        obs, env_state = reset_env(jax.random.split(k_env, num_envs), env_params)
        zeros = lambda *shape: jnp.zeros((BUFFER,) + shape)
        carry = Carry(params, params, optimizer.init(params), env_state, obs, zeros(4),
                      jnp.zeros((BUFFER,), jnp.int32), zeros(), zeros(4), zeros(), jnp.int32(0), jnp.int32(0),
                      jnp.zeros((num_envs,)))

        def loss_fn(p, target, batch):
            o, a, r, n, d = batch
            q = jnp.take_along_axis(q_values(p, static, o), a[:, None], axis=1)[:, 0]
            best = jnp.max(q_values(target, static, n), axis=1)
            return jnp.mean(optax.huber_loss(q, jax.lax.stop_gradient(r + GAMMA * (1.0 - d) * best)))

        def iteration(c: Carry, xs):
            i, k = xs
            k_eps, k_act, k_step, k_batch = jax.random.split(k, 4)
            eps = jnp.clip(1.0 - 0.95 * i / explore, 0.05, 1.0)
            greedy = jnp.argmax(q_values(c.params, static, c.obs), axis=1)
            random = jax.random.randint(k_act, (num_envs,), 0, 2)
            act = jnp.where(jax.random.uniform(k_eps, (num_envs,)) < eps, random, greedy)
            obs, env_state, rew, term, trunc, info = step_env(jax.random.split(k_step, num_envs), c.env_state,
                                                              act, env_params)
            # gymnax resets on done; the transition keeps the real next state, and only a true
            # termination (not the 500-step time limit) stops bootstrapping
            next_obs, done = info["final_observation"], jnp.logical_or(term, trunc)
            slots = (c.ptr + jnp.arange(num_envs)) % BUFFER
            c = c._replace(buf_obs=c.buf_obs.at[slots].set(c.obs), buf_act=c.buf_act.at[slots].set(act),
                           buf_rew=c.buf_rew.at[slots].set(rew), buf_next=c.buf_next.at[slots].set(next_obs),
                           buf_done=c.buf_done.at[slots].set(term.astype(jnp.float32)),
                           ptr=(c.ptr + num_envs) % BUFFER, size=jnp.minimum(c.size + num_envs, BUFFER))
            idx = jax.random.randint(k_batch, (BATCH,), 0, c.size)
            batch = (c.buf_obs[idx], c.buf_act[idx], c.buf_rew[idx], c.buf_next[idx], c.buf_done[idx])
            loss, grads = jax.value_and_grad(loss_fn)(c.params, c.target, batch)
            updates, opt_state = optimizer.update(grads, c.opt_state, c.params)
            learn = i >= WARMUP
            params = jax.tree_util.tree_map(lambda new, old: jnp.where(learn, new, old),
                                            optax.apply_updates(c.params, updates), c.params)
            opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(learn, new, old), opt_state, c.opt_state)
            target = jax.tree_util.tree_map(lambda t, p: jnp.where(i % TARGET_EVERY == 0, p, t), c.target, params)
            ep_return = c.ep_return + rew
            finished = jnp.where(done, ep_return, jnp.nan)
            c = c._replace(params=params, target=target, opt_state=opt_state, env_state=env_state, obs=obs,
                           ep_return=jnp.where(done, 0.0, ep_return))
            return c, (finished, loss)

        steps = (jnp.arange(iterations), jax.random.split(k_loop, iterations))
        carry, (finished, losses) = jax.lax.scan(iteration, carry, steps)
        tail = finished[-max(iterations // 10, 1):]
        late_mean = jnp.nansum(tail) / jnp.maximum(jnp.sum(~jnp.isnan(tail)), 1)
        return {"eval_return": evaluate(carry.params, static, k_eval), "late_train_return": late_mean,
                "final_loss": jnp.mean(losses[-100:])}

    def evaluate(params, static, key):
        """Mean undiscounted return of greedy episodes (at most MAX_EPISODE steps each)."""
        k_reset, k_run = jax.random.split(key)
        obs, state = reset_env(jax.random.split(k_reset, EVAL_EPISODES), env_params)

        def step(c, k):
            obs, state, total, alive = c
            act = jnp.argmax(q_values(params, static, obs), axis=1)
            obs, state, rew, term, trunc, _ = step_env(jax.random.split(k, EVAL_EPISODES), state, act, env_params)
            total = total + rew * alive
            return (obs, state, total, alive * (1.0 - jnp.logical_or(term, trunc).astype(jnp.float32))), None

        init = (obs, state, jnp.zeros((EVAL_EPISODES,)), jnp.ones((EVAL_EPISODES,)))
        (_, _, total, _), _ = jax.lax.scan(step, init, jax.random.split(k_run, MAX_EPISODE))
        return jnp.mean(total)

    return train


def parameter_count(kind: str, width: int) -> int:
    return kan.count_parameters(build(kind, width, jax.random.PRNGKey(0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="training iterations per seed")
    parser.add_argument("--envs", type=int, default=4, help="parallel environments per iteration")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if gymnax is None:
        print("rl_cartpole: this benchmark needs gymnax (a JAX CartPole); install the optional extra with "
              "`pip install -e .[rl]` (or `pip install gymnax six`)", file=sys.stderr)
        return 2
    rows = []
    for kind in ("relu", "rational"):
        keys = jax.random.split(jax.random.PRNGKey(0), 2 * args.seeds)  # same seeds for both kinds
        nets = [eqx.partition(build(kind, args.width, k), eqx.is_inexact_array) for k in keys[:args.seeds]]
        params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[p for p, _ in nets])
        train = jax.jit(jax.vmap(make_train(nets[0][1], args.steps, args.envs)))
        start = time.perf_counter()
        out = jax.block_until_ready(train(params, keys[args.seeds:]))
        metrics = jax.tree_util.tree_map(lambda v: [float(x) for x in v], out)
        seconds = time.perf_counter() - start
        rows.append({"kind": kind, "params": parameter_count(kind, args.width), "seconds": seconds, **metrics})
        print(f"{kind:9s} params {rows[-1]['params']}  eval returns {[round(v, 1) for v in metrics['eval_return']]}"
              f"  late training returns {[round(v, 1) for v in metrics['late_train_return']]}  ({seconds:.0f} s)")
    write_tables(rows, args)
    return 0


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {std:.1f}"


def write_tables(rows: list[dict], args: argparse.Namespace) -> None:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with open(args.out_dir / "rl_cartpole.csv", "w") as f:
        f.write("kind,seed,params,eval_return,late_train_return\n")
        for row in rows:
            for s, (e, t) in enumerate(zip(row["eval_return"], row["late_train_return"])):
                f.write(f"{row['kind']},{s},{row['params']},{e:.2f},{t:.2f}\n")
    seeds = len(rows[0]["eval_return"])
    lines = [f"DQN on gymnax CartPole-v1: {args.steps} iterations x {args.envs} envs per seed, "
             f"Q-network [4, {args.width}, {args.width}, 2], {seeds} seeds (greedy eval: {EVAL_EPISODES} episodes, max "
             f"{MAX_EPISODE}).", "",
             "| Q-network | params | " + " | ".join(f"eval seed {s}" for s in range(seeds))
             + " | eval mean ± std | late-training return mean ± std | time (s, all seeds) |",
             "|---|---|" + "---|" * seeds + "---|---|---|"]
    for row in rows:
        lines.append(f"| {row['kind']} | {row['params']} | " + " | ".join(f"{v:.1f}" for v in row["eval_return"])
                     + f" | {_mean_std(row['eval_return'])} | {_mean_std(row['late_train_return'])}"
                     + f" | {row['seconds']:.0f} |")
    table = "\n".join(lines) + "\n"
    (args.out_dir / "rl_cartpole.md").write_text(table)
    print(table)


if __name__ == "__main__":
    raise SystemExit(main())
