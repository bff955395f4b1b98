"""Convolution benchmark: one JSON line per formulation of the CNN's convolution.

Times a jitted train step (forward, backward, Adam) of the default `HardSharingCNN` with
6 tasks of 10 classes on a batch of 32 x [101, 40] (1 s of 40 log-mel bands at a 10 ms
hop), for each way of computing its convolutions:

  xla_conv         plain `nn.Conv` (XLA's convolution and its autodiff gradients)
  im2col_vjp       `conv_im2col`: XLA forward, custom VJP with the kernel gradient as one
                   im2col matmul and the input gradient as a flipped-kernel convolution
  im2col_vjp_col2im  as im2col_vjp, input gradient as a matmul then col2im (sum of shifts)
  im2col_matmul    forward as an im2col matmul too (patches kept for the backward pass),
                   custom VJP as im2col_vjp_col2im
  im2col_autodiff  forward as an im2col matmul, gradients by plain autodiff
  xla_stencil      `conv_xla_stencil` (conv="xla_stencil"): the first layer (Cin=1) forward
                   as 9 shifted multiply-adds, its gradients and every other layer XLA's
  stencil_block    conv="stencil_block": as xla_stencil, and with --norm none the whole
                   first block (conv, bias, relu, max-pool) as `conv_relu_pool_stencil`
  xla_conv_nn_max_pool  plain `nn.Conv` with `nn.max_pool` in place of the model's
                   reshape-and-max pooling (for scale: select-and-scatter is slow on CPU)
  xla_conv_ynn     plain `nn.Conv` in a subprocess with
                   XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= (flags are read at
                   start-up); skipped if XLA rejects the flag

Each line: {"name", "step_ms" (median per step), "ratio_vs_xla_conv" (xla_conv's median
divided by this one's, so > 1 is faster), "backend", "auto" (what `conv="auto"` runs
here)}. Each custom formulation is first checked against `lax.conv_general_dilated`
(values and gradients within 1e-5). Formulations are timed in interleaved
rounds so that load from other processes falls on all of them alike.

Usage: python benchmarks/conv_bench.py [--steps 40] [--rounds 4] [--only NAME ...]
         [--batch 32 --frames 101 --bands 40] [--channels 32,64,64,64] [--norm none]
         [--dropout 0.0]   (the model's defaults: norm "layer", dropout 0.1; the
         train_throughput CNN is --batch 64 --norm none --dropout 0)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from mtjax.tasks import Task
from mtjax.train import models
from mtjax.train.models import HardSharingCNN, conv_im2col, conv_xla, im2col, init_variables

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


# --------------------------------------------------------------------------- alternatives


def _col2im(dpatches: jax.Array, kh: int, kw: int) -> jax.Array:
    """Transpose of `im2col`: [B, H, W, kh*kw*C] -> [B, H, W, C], summing the shifts."""
    b, h, w, k = dpatches.shape
    c = k // (kh * kw)
    lo_h, lo_w = (kh - 1) // 2, (kw - 1) // 2
    dp = dpatches.reshape(b, h, w, kh * kw, c)
    dx = jnp.zeros((b, h + kh - 1, w + kw - 1, c), dpatches.dtype)
    for n in range(kh * kw):
        i, j = divmod(n, kw)
        dx = dx.at[:, i : i + h, j : j + w, :].add(dp[:, :, :, n, :])
    return dx[:, lo_h : lo_h + h, lo_w : lo_w + w, :]


def _matmul_grads(patches_NxK, g, kernel):
    kh, kw, cin, cout = kernel.shape
    b, h, w, _ = g.shape
    g_NxO = g.reshape(-1, cout)
    dk = (patches_NxK.T @ g_NxO).reshape(kernel.shape)
    dpatches = (g_NxO @ kernel.reshape(-1, cout).T).reshape(b, h, w, kh * kw * cin)
    return _col2im(dpatches, kh, kw), dk


@jax.custom_vjp
def conv_vjp_col2im(x, kernel):
    return conv_xla(x, kernel)


def _vjp_col2im_fwd(x, kernel):
    return conv_xla(x, kernel), (x, kernel)


def _vjp_col2im_bwd(res, g):
    x, kernel = res
    kh, kw, cin, _ = kernel.shape
    return _matmul_grads(im2col(x, kh, kw).reshape(-1, kh * kw * cin), g, kernel)


conv_vjp_col2im.defvjp(_vjp_col2im_fwd, _vjp_col2im_bwd)


def _matmul_forward(x, kernel):
    kh, kw, cin, cout = kernel.shape
    b, h, w, _ = x.shape
    patches_NxK = im2col(x, kh, kw).reshape(-1, kh * kw * cin)
    return (patches_NxK @ kernel.reshape(-1, cout)).reshape(b, h, w, cout), patches_NxK


@jax.custom_vjp
def conv_matmul(x, kernel):
    return _matmul_forward(x, kernel)[0]


def _matmul_fwd(x, kernel):
    y, patches_NxK = _matmul_forward(x, kernel)
    return y, (patches_NxK, kernel)


def _matmul_bwd(res, g):
    patches_NxK, kernel = res
    return _matmul_grads(patches_NxK, g, kernel)


conv_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def conv_matmul_autodiff(x, kernel):
    return _matmul_forward(x, kernel)[0]


FORMULATIONS = {
    "xla_conv": "xla",
    "im2col_vjp": conv_im2col,
    "im2col_vjp_col2im": conv_vjp_col2im,
    "im2col_matmul": conv_matmul,
    "im2col_autodiff": conv_matmul_autodiff,
    "xla_stencil": "xla_stencil",
    "stencil_block": "stencil_block",
    "xla_conv_nn_max_pool": "xla",
}


def check(conv) -> None:
    """Refuse to time a formulation whose values or gradients differ from lax's."""
    rng = np.random.default_rng(0)
    x, kernel, r = (
        rng.standard_normal(s).astype(np.float32)
        for s in [(2, 9, 7, 3), (3, 3, 3, 5), (2, 9, 7, 5)]
    )

    def value_and_grads(conv):
        return conv(x, kernel), jax.grad(lambda x, k: jnp.sum(conv(x, k) * r), (0, 1))(x, kernel)

    want = jax.jit(lambda: value_and_grads(conv_xla))()
    got = jax.jit(lambda: value_and_grads(conv))()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)


def _nn_max_pool(x, pool):
    window = tuple(pool if n >= pool else 1 for n in x.shape[1:3])
    return nn.max_pool(x, window, strides=window)


# --------------------------------------------------------------------------- timing


def make_step(model, tasks):
    optimizer = optax.adam(1e-3)

    def loss_fn(params, x, y, key):
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
        return sum(
            optax.softmax_cross_entropy_with_integer_labels(logits[t.name], y[:, k]).mean()
            for k, t in enumerate(tasks)
        )

    @jax.jit
    def step(params, opt_state, x, y, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, optimizer


MODEL_OPTIONS: dict = {}  # norm / dropout from the command line, for every formulation


def setup(conv, batch: int, frames: int, bands: int, channels: tuple[int, ...] | None = None):
    tasks = tuple(Task(f"task{k}", tuple(f"c{i}" for i in range(10))) for k in range(6))
    sizes = dict(MODEL_OPTIONS) | ({} if channels is None else {"channels": channels})
    model = HardSharingCNN(tasks, conv=conv, **sizes)
    kx, ky, kp = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (batch, frames, bands))
    y = jax.random.randint(ky, (batch, len(tasks)), 0, 10)
    params = init_variables(model, kp, x)["params"]
    step, optimizer = make_step(model, tasks)
    state = [params, optimizer.init(params)]
    key = jax.random.key(1)

    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            state[0], state[1], loss = step(state[0], state[1], x, y, key)
            loss.block_until_ready()
            times.append(time.perf_counter() - start)
        return times

    run(2)  # compile and warm up
    return run


def setup_named(name: str, *shape, channels=None):
    """`setup` of one formulation; swaps in `nn.max_pool` while that one is traced."""
    if name != "xla_conv_nn_max_pool":
        return setup(FORMULATIONS[name], *shape, channels)
    original, models.max_pool = models.max_pool, _nn_max_pool
    try:
        return setup(FORMULATIONS[name], *shape, channels)
    finally:
        models.max_pool = original


def measure(names, steps: int, rounds: int, *shape, channels=None) -> dict:
    for name in names:
        conv = models.CONVS.get(FORMULATIONS[name], FORMULATIONS[name])
        if callable(conv) and conv is not conv_xla:
            check(conv)
    runs = {name: setup_named(name, *shape, channels=channels) for name in names}
    times = {name: [] for name in names}
    per_round = max(1, steps // rounds)
    for _ in range(rounds):
        for name in names:
            times[name] += runs[name](per_round)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def ynn_subprocess(args) -> float | None:
    """Median step ms of plain nn.Conv with the YNN fusion flag, or None if rejected."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + YNN_FLAG).strip()
    cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--rounds", "1"]
    cmd += ["--batch", str(args.batch), "--frames", str(args.frames), "--bands", str(args.bands)]
    cmd += ["--channels", args.channels] if args.channels else []
    cmd += ["--norm", args.norm] if args.norm else []
    cmd += ["--dropout", str(args.dropout)] if args.dropout is not None else []
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"xla_conv_ynn skipped: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["step_ms"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=101)
    parser.add_argument("--bands", type=int, default=40)
    parser.add_argument("--channels", default=None, help="e.g. 32,64,64,64 (default: model's)")
    parser.add_argument("--norm", choices=["layer", "batch", "none"], default=None)
    parser.add_argument("--dropout", type=float, default=None)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.batch, args.frames, args.bands)
    if args.norm is not None:
        MODEL_OPTIONS["norm"] = None if args.norm == "none" else args.norm
    if args.dropout is not None:
        MODEL_OPTIONS["dropout"] = args.dropout
    channels = tuple(int(c) for c in args.channels.split(",")) if args.channels else None
    if args.child:
        ms = measure(["xla_conv"], args.steps, 1, *shape, channels=channels)["xla_conv"]
        print(json.dumps({"step_ms": ms}))
        return
    names = args.only or [*FORMULATIONS, "xla_conv_ynn"]
    timed = [n for n in names if n in FORMULATIONS]
    if "xla_conv" not in timed:
        timed.insert(0, "xla_conv")
    step_ms = measure(timed, args.steps, args.rounds, *shape, channels=channels)
    if "xla_conv_ynn" in names:
        ynn = ynn_subprocess(args)
        if ynn is not None:
            step_ms["xla_conv_ynn"] = ynn
    base = step_ms["xla_conv"]
    auto = {
        "xla": "xla_conv",
        "im2col": "im2col_vjp",
        "xla_stencil": "xla_stencil",
        "stencil_block": "stencil_block",
    }[models.resolve_conv("auto")]
    for name, ms in step_ms.items():
        line = {"name": name, "step_ms": round(ms, 2), "ratio_vs_xla_conv": round(base / ms, 2)}
        line |= {"backend": jax.default_backend(), "auto": name == auto}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
