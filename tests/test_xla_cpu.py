"""bases.xla_cpu: the XLA:CPU setting made at import (no YNNPACK library fusions), and when it is not."""

import os
import subprocess
import sys

import pytest

from bases.xla_cpu import FLAG, MEASURED_JAXLIB, OPT_OUT, OPTION, _jaxlib_version, configure_xla_cpu

MEASURED = next(iter(MEASURED_JAXLIB))


def test_flag_is_appended_to_existing_flags():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    assert configure_xla_cpu(env, jaxlib_version=MEASURED)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=4 {FLAG}"
    env = {}
    assert configure_xla_cpu(env, jaxlib_version=MEASURED) and env["XLA_FLAGS"] == FLAG


@pytest.mark.parametrize("env, version", [
    ({"XLA_FLAGS": f"--{OPTION}=LIBRARY_FUSION_TYPE_DOT"}, MEASURED),  # the user's own choice wins
    ({OPT_OUT: "1"}, MEASURED),                                          # opted out
    ({OPT_OUT: " Yes "}, MEASURED),
    ({}, (0, 9)),                                                        # a version not measured
    ({}, (0, 11)),
])
def test_flags_are_left_alone(env, version):
    before = dict(env)
    assert not configure_xla_cpu(env, jaxlib_version=version)
    assert env == before


def test_unknown_jaxlib_version_leaves_flags_alone(monkeypatch):
    import bases.xla_cpu as xla_cpu

    monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: None)
    env = {}
    assert not xla_cpu.configure_xla_cpu(env) and env == {}


_PROBE = """
import os, jax, jax.numpy as jnp
import bases
f = jax.jit(lambda x: jnp.sum(x * x, axis=-1))
text = f.lower(jnp.ones((256, 128))).compile().as_text()
print(os.environ.get("XLA_FLAGS", ""), "|", text.count("__ynn_fusion"))
"""


def _probe(extra_env: dict) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", OPT_OUT)}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    flags, count = out.stdout.strip().splitlines()[-1].rsplit("|", 1)
    return flags.strip(), int(count)


@pytest.mark.skipif(_jaxlib_version() not in MEASURED_JAXLIB, reason="jaxlib version not measured")
def test_importing_bases_compiles_reductions_without_library_fusions_in_a_fresh_process():
    flags, fusions = _probe({})
    assert flags == FLAG and fusions == 0
    flags, fusions = _probe({OPT_OUT: "1"})  # XLA's defaults: the reduction is a YNNPACK fusion
    assert flags == "" and fusions >= 1


def test_small_program_emitters_flag_and_when_it_is_left_alone():
    from bases.xla_cpu import SMALL_PROGRAM_OPTION, configure_small_programs

    env = {"XLA_FLAGS": FLAG}
    assert configure_small_programs(env, jaxlib_version=MEASURED)
    assert env["XLA_FLAGS"] == f"{FLAG} --{SMALL_PROGRAM_OPTION}=false"
    for env, version in [({"XLA_FLAGS": f"--{SMALL_PROGRAM_OPTION}=true"}, MEASURED), ({OPT_OUT: "on"}, MEASURED),
                         ({}, (0, 11))]:
        before = dict(env)
        assert not configure_small_programs(env, jaxlib_version=version) and env == before


_DEMO_PROBE = """
import os, sys
import kan.__main__ as cli
import kan.demo
kan.demo.run = lambda **kw: print("XLA_FLAGS=" + os.environ.get("XLA_FLAGS", ""))
sys.exit(cli.main(["demo"]))
"""


@pytest.mark.skipif(_jaxlib_version() not in MEASURED_JAXLIB, reason="jaxlib version not measured")
def test_kan_demo_command_sets_the_small_program_emitters_before_it_runs():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", OPT_OUT)}
    out = subprocess.run([sys.executable, "-c", _DEMO_PROBE], env=env, capture_output=True, text=True, check=True)
    assert "--xla_cpu_use_fusion_emitters=false" in out.stdout.strip().splitlines()[-1]
    env[OPT_OUT] = "1"
    out = subprocess.run([sys.executable, "-c", _DEMO_PROBE], env=env, capture_output=True, text=True, check=True)
    assert "fusion_emitters" not in out.stdout.strip().splitlines()[-1]
