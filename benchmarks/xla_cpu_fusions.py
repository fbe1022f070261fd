"""XLA:CPU with and without YNNPACK library fusions (``bases.xla_cpu``), one process, round-robin.

Every contender is compiled twice from the same jaxpr, once with XLA's defaults and once with
``compiler_options={"xla_cpu_experimental_ynn_fusion_type": ""}`` (what importing ``bases`` sets for the
whole process), and the two programs are timed interleaved. Contenders: each layer of
``benchmarks.layers`` (fwd+bwd w.r.t. trainable parameters and input) and the demo's L-BFGS objective
(value and gradient of a [2, 5, 1] KAN with the sparsity regulariser on 1000 rows, after a grid update).

    python -m benchmarks.xla_cpu_fusions [--width 128] [--batch 1024] [--repeats 25] [--only NAME ...]

Prints ms per pass both ways and the speed-up (default / without). This process keeps XLA's defaults
(``KAN_XLA_CPU_DEFAULTS=1`` is set before ``bases`` is imported), so "default" means XLA's own.
"""

from __future__ import annotations

import argparse
import functools
import os

os.environ.setdefault("KAN_XLA_CPU_DEFAULTS", "1")  # before bases is imported: "default" = XLA's

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bases import trainable_filter  # noqa: E402
from bases.xla_cpu import OPTION  # noqa: E402

from .layers import LAYERS  # noqa: E402
from .timing import medians, time_rounds  # noqa: E402

DEMO_OBJECTIVE = "demo L-BFGS objective (value+grad)"
VARIANTS = {"default": None, "no ynn": {OPTION: ""}}


def _layer_contender(name: str, width: int, batch: int):
    layer = LAYERS[name](width, width, jax.random.PRNGKey(0))
    params, static = eqx.partition(layer, trainable_filter(layer))
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, width))

    def loss(p, inp):
        return jnp.sum(eqx.combine(p, static)(inp) ** 2)

    return jax.grad(loss, argnums=(0, 1)), (params, x)


def _demo_contender():
    from kan.demo import hellokan_target, make_dataset
    from kan.edit.grid import update_grid
    from kan.model import KAN
    from kan.train.fit import _Objective, mse

    (x, y), _ = make_dataset(hellokan_target, 2)
    model = update_grid(KAN([2, 5, 1], grid_size=3, order=3, key=jax.random.PRNGKey(2)), x, 0.02)
    params, static = eqx.partition(model, trainable_filter(model))
    objective = _Objective(mse, True, jnp.asarray(3e-3, jnp.float32), 1.0, 2.0)
    return jax.value_and_grad(lambda p: objective(p, static, x, y)[0]), (params,)


def run(names: list[str], width: int, batch: int, repeats: int) -> dict[str, dict[str, float]]:
    """``{contender: {variant: median seconds}}``, all programs timed round-robin."""
    programs = {}
    for name in names:
        fn, args = _demo_contender() if name == DEMO_OBJECTIVE else _layer_contender(name, width, batch)
        for variant, options in VARIANTS.items():
            compiled = jax.jit(fn, compiler_options=options).lower(*args).compile()
            jax.block_until_ready(compiled(*args))
            programs[name, variant] = (compiled, args)
    times = medians(time_rounds({key: functools.partial(compiled, *args)
                                 for key, (compiled, args) in programs.items()}, repeats, warmup=0))
    out: dict[str, dict[str, float]] = {}
    for (name, variant), seconds in times.items():
        out.setdefault(name, {})[variant] = seconds
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--only", nargs="*", default=None, help="contender names (default: all)")
    args = parser.parse_args(argv)
    names = [DEMO_OBJECTIVE] + list(LAYERS)
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown contenders {unknown}; known: {names}")
        names = [n for n in names if n in args.only]
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}; layers {args.batch}x{args.width} -> "
          f"{args.width}; round-robin, {args.repeats} rounds")
    result = run(names, args.width, args.batch, args.repeats)
    for name, t in result.items():
        print(f"{name:<46s} default {t['default'] * 1e3:8.2f} ms   no ynn {t['no ynn'] * 1e3:8.2f} ms   "
              f"speed-up x{t['default'] / t['no ynn']:.2f}")
    return result


if __name__ == "__main__":
    main()
