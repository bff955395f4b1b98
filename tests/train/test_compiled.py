"""The jobs' persistent compilation cache: a second process reads what the first compiled."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def test_a_second_process_reads_the_compiled_programs_from_the_cache(tmp_path):
    script = textwrap.dedent(f"""
        import jax, jax.numpy as jnp
        from mtjax.train import compiled
        assert compiled.use_compilation_cache({str(tmp_path / ".jax")!r}) is not None
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)
        print(float(f(jnp.ones((64, 64))).sum()))
    """)
    env = {k: v for k, v in os.environ.items() if k != "MTJAX_NO_COMPILATION_CACHE"}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    written = sorted(p.name for p in (tmp_path / ".jax").iterdir())
    assert written  # the program's executable is on disk
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert second.stdout == first.stdout
    assert sorted(p.name for p in (tmp_path / ".jax").iterdir()) == written  # read, not new


def test_a_configured_cache_or_the_opt_out_is_left_alone(tmp_path, monkeypatch):
    from mtjax.train import compiled

    monkeypatch.setenv("MTJAX_NO_COMPILATION_CACHE", "1")
    assert compiled.use_compilation_cache(tmp_path / ".jax") is None
    assert not (tmp_path / ".jax").exists()
