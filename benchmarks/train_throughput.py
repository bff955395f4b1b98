"""Training throughput: mt.fit against a plain hand-written JAX loop (and PyTorch).

One JSON line per measurement. The same model shape, data, batch size and optimizer
(Adam, lr 1e-3) run in every loop; each epoch time is the median over the epochs after
the first (which compiles). Goals on a 2-core CPU: a 3x512 DNN epoch through mt.fit
<= 1.15x the plain-JAX loop's time and >= 1.3x faster than PyTorch with fused Adam;
the small CNN at least as fast as PyTorch.

Usage: python benchmarks/train_throughput.py [--rows 4096] [--epochs 4] [--model dnn|cnn|both]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mtjax as mt
from mtjax.tasks import Task
from mtjax.train import models

TASKS = (Task("word", tuple(f"w{i}" for i in range(10))), Task("loud", ("no", "yes"), "binary"))
SHAPES = {"dnn": (7, 24), "cnn": (101, 40)}  # a LogbankSummary matrix; 1 s of 40 log-mel bands


def make_data(rows: int, shape: tuple[int, int]) -> mt.MultiTaskData:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, *shape)).astype(np.float32)
    word = TASKS[0].encode_many([TASKS[0].labels[i] for i in rng.integers(0, 10, rows)])
    loud = rng.integers(0, 2, (rows, 1)).astype(np.float32)
    return mt.concat([mt.TaskDataset.from_arrays(x, np.concatenate([word, loud], 1), TASKS)])


def make_model(kind: str):
    if kind == "dnn":
        return models.HardSharingDNN(TASKS, hidden=(512, 512, 512), dropout=0.0, norm=None)
    return models.HardSharingCNN(TASKS, dropout=0.0, norm=None)


def time_fit(kind: str, data, epochs: int, batch_size: int) -> float:
    trained = mt.fit(
        make_model(kind),
        data,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optax.adam(1e-3),
        early_stop=None,
        progress=False,
    )
    return float(np.median([r["seconds"] for r in trained.history[1:]]))


def time_plain_jax(kind: str, data, epochs: int, batch_size: int) -> float:
    """What a careful user writes by hand: a jitted, donated step fed batch by batch."""
    model = make_model(kind)
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    params = model.init(jax.random.key(0), x[:2])["params"]
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @jax.jit
    def loss_fn(params, xb, yb):
        logits = model.apply({"params": params}, xb)
        word = optax.softmax_cross_entropy(logits["word"], yb[:, :10]).mean()
        loud = optax.sigmoid_binary_cross_entropy(logits["loud"][:, 0], yb[:, 10]).mean()
        return word + loud

    @jax.jit
    def step(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    times = []
    n = len(data)
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(n)
        start = time.perf_counter()
        for begin in range(0, n - batch_size + 1, batch_size):
            rows = order[begin : begin + batch_size]
            params, opt_state, loss = step(params, opt_state, x[rows], y[rows])
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def time_torch(kind: str, data, epochs: int, batch_size: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    t, f = data.x.shape[1:]
    if kind == "dnn":
        layers, width = [torch.nn.Flatten()], t * f
        for _ in range(3):
            layers += [torch.nn.Linear(width, 512), torch.nn.ReLU()]
            width = 512
        trunk = torch.nn.Sequential(*layers)
    else:
        blocks, channels = [], 1
        for out in models.HardSharingCNN(TASKS).channels:
            blocks += [
                torch.nn.Conv2d(channels, out, 3, padding=1),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2, ceil_mode=True),
            ]
            channels = out
        trunk = torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, t)),
            *blocks,
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        width = channels
    heads = torch.nn.ModuleList([torch.nn.Linear(width, 10), torch.nn.Linear(width, 1)])
    params = list(trunk.parameters()) + list(heads.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    x = torch.from_numpy(np.asarray(data.x))
    y = torch.from_numpy(np.asarray(data.y))
    times = []
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng(epoch).permutation(len(data)))
        start = time.perf_counter()
        for begin in range(0, len(data) - batch_size + 1, batch_size):
            rows = order[begin : begin + batch_size]
            xb, yb = x[rows], y[rows]
            h = trunk(xb)
            loss = torch.nn.functional.cross_entropy(heads[0](h), yb[:, :10].argmax(1))
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
                heads[1](h)[:, 0], yb[:, 10]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", choices=["dnn", "cnn", "both"], default="both")
    args = parser.parse_args()
    kinds = ["dnn", "cnn"] if args.model == "both" else [args.model]
    for kind in kinds:
        rows = args.rows if kind == "dnn" else args.rows // 4
        data = make_data(rows, SHAPES[kind])
        fit_s = time_fit(kind, data, args.epochs, args.batch_size)
        jax_s = time_plain_jax(kind, data, args.epochs, args.batch_size)
        torch_s = time_torch(kind, data, args.epochs, args.batch_size)
        line = {
            "name": f"{kind}_epoch",
            "rows": rows,
            "batch_size": args.batch_size,
            "fit_s": round(fit_s, 4),
            "plain_jax_s": round(jax_s, 4),
            "fit_vs_plain_jax": round(fit_s / jax_s, 3),
            "fit_samples_per_s": round(rows / fit_s, 1),
        }
        if torch_s is not None:
            line |= {"torch_s": round(torch_s, 4), "speedup_vs_torch": round(torch_s / fit_s, 3)}
        else:
            line |= {"torch_s": None, "note": "torch not installed"}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
