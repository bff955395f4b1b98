"""JAX's persistent compilation cache for the command-line jobs.

A second `mtjax demo` or `mtjax run` compiles the same train step, evaluation and probe
programs as the first; with the cache it reads them from disk instead. What that saves is
their compile time: on the demo's small CNN, whose 37 s go to training, it was within the
noise (36.6 s without, 38.2 s with, idle 2-core CPU, 2026-12-01); bigger models gain more.
The library's `fit` leaves JAX's configuration to its caller; the jobs call
`use_compilation_cache` with `<feature cache>/.jax` (a hidden folder, which
`mtjax cache ls|verify|clear` leave alone).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

MIN_COMPILE_SECONDS = 0.2  # programs that compile faster are not worth a file


def use_compilation_cache(folder: str | os.PathLike) -> Path | None:
    """Keeps compiled programs in `folder` across processes; returns it, or None.

    Nothing changes when a cache folder is already configured (`JAX_COMPILATION_CACHE_DIR`
    or `jax.config`) or `MTJAX_NO_COMPILATION_CACHE` is set.
    """
    configured = getattr(jax.config, "jax_compilation_cache_dir", None)
    if os.environ.get("MTJAX_NO_COMPILATION_CACHE") or configured:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
