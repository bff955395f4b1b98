"""Training throughput: mt.fit against a plain hand-written JAX loop (and PyTorch).

One JSON line per measurement. The same model shape, data, batch size and optimizer
(Adam, lr 1e-3) run in every loop; each epoch time is the median over the epochs after
the first (which compiles). Goals on a 2-core CPU: a 3x512 DNN epoch through mt.fit
<= 1.15x the plain-JAX loop's time and >= 1.3x faster than PyTorch with fused Adam; the
default CNN (`HardSharingCNN(tasks)`: layer norm, dropout 0.1, heads of 128, fit's batch
of 32) at least as fast as the same network in PyTorch (GroupNorm(1, C) for the layer norm),
and likewise with `--norms batch,none`.

Usage: python benchmarks/train_throughput.py [--rows 4096] [--epochs 4] [--model dnn|cnn|both]
       [--norms layer,batch,none] [--batch-size B (default: fit's, 32)]
"""

from __future__ import annotations

import argparse
import functools
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


NORMS = {"layer": "layer", "batch": "batch", "none": None}


def make_model(kind: str, norm: str = "layer"):
    """The 3x512 DNN (no norm, no dropout), or the default `HardSharingCNN` with `norm`."""
    if kind == "dnn":
        return models.HardSharingDNN(TASKS, hidden=(512, 512, 512), dropout=0.0, norm=None)
    return models.HardSharingCNN(TASKS, norm=NORMS[norm])


def time_fit(kind: str, data, epochs: int, batch_size: int, norm: str = "layer") -> float:
    trained = mt.fit(
        make_model(kind, norm),
        data,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optax.adam(1e-3),
        early_stop=None,
        progress=False,
    )
    return float(np.median([r["seconds"] for r in trained.history[1:]]))


def time_plain_jax(data, epochs: int, batch_size: int) -> float:
    """The DNN as a careful user writes it by hand: a jitted, donated step fed batch by batch."""
    model = make_model("dnn")
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

    @functools.partial(jax.jit, donate_argnums=(0, 1))
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


def torch_network(kind: str, shape: tuple[int, int], norm: str):
    """(trunk, heads) in PyTorch: the DNN, or `HardSharingCNN`'s defaults layer for layer."""
    import torch

    t, f = shape
    if kind == "dnn":
        layers, width = [torch.nn.Flatten()], t * f
        for _ in range(3):
            layers += [torch.nn.Linear(width, 512), torch.nn.ReLU()]
            width = 512
        heads = [torch.nn.Linear(width, 10), torch.nn.Linear(width, 1)]
        return torch.nn.Sequential(*layers), torch.nn.ModuleList(heads)
    cnn = models.HardSharingCNN(TASKS)
    blocks, channels = [torch.nn.Unflatten(1, (1, t))], 1
    for out in cnn.channels:
        blocks.append(torch.nn.Conv2d(channels, out, cnn.kernel, padding="same"))
        if norm == "layer":  # each sample's whole map, per-channel scale and bias
            blocks.append(torch.nn.GroupNorm(1, out))
        elif norm == "batch":
            blocks.append(torch.nn.BatchNorm2d(out, momentum=0.1))
        blocks += [torch.nn.ReLU(), torch.nn.MaxPool2d(cnn.pool)]  # floor, as max_pool
        channels, t, f = out, t // cnn.pool, f // cnn.pool

    class TimeMean(torch.nn.Module):
        def forward(self, h):  # [B, C, T, F] -> [B, C * F]: mean over time, frequency kept
            return h.mean(dim=2).flatten(1)

    trunk = torch.nn.Sequential(*blocks, TimeMean(), torch.nn.Dropout(cnn.dropout))
    width = channels * f
    heads = []
    for n_out in (10, 1):
        hidden = cnn.head_hidden[0]
        layers = [torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Dropout(cnn.dropout)]
        heads.append(torch.nn.Sequential(*layers, torch.nn.Linear(hidden, n_out)))
    return trunk, torch.nn.ModuleList(heads)


def time_torch(kind: str, data, epochs: int, batch_size: int, norm: str = "layer"):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    trunk, heads = torch_network(kind, data.x.shape[1:], norm)
    params = list(trunk.parameters()) + list(heads.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    x = torch.from_numpy(np.asarray(data.x))
    y = torch.from_numpy(np.asarray(data.y))
    trunk.train()
    heads.train()
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
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", choices=["dnn", "cnn", "both"], default="both")
    parser.add_argument("--norms", default="layer", help="the CNN's norms: layer,batch,none")
    args = parser.parse_args()
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    if args.model in ("dnn", "both"):
        data = make_data(args.rows, SHAPES["dnn"])
        fit_s = time_fit("dnn", data, args.epochs, args.batch_size)
        jax_s = time_plain_jax(data, args.epochs, args.batch_size)
        torch_s = time_torch("dnn", data, args.epochs, args.batch_size)
        report("dnn_epoch", args, data, fit_s, torch_s, torch_version, plain_jax_s=jax_s)
    if args.model in ("cnn", "both"):
        data = make_data(args.rows // 4, SHAPES["cnn"])
        for norm in args.norms.split(","):
            fit_s = time_fit("cnn", data, args.epochs, args.batch_size, norm)
            torch_s = time_torch("cnn", data, args.epochs, args.batch_size, norm)
            report(f"cnn_epoch_{norm}", args, data, fit_s, torch_s, torch_version)


def report(name, args, data, fit_s, torch_s, torch_version, plain_jax_s=None) -> None:
    line = {"name": name, "rows": len(data), "batch_size": args.batch_size}
    line |= {"fit_s": round(fit_s, 4), "fit_samples_per_s": round(len(data) / fit_s, 1)}
    if plain_jax_s is not None:
        line |= {"plain_jax_s": round(plain_jax_s, 4)}
        line |= {"fit_vs_plain_jax": round(fit_s / plain_jax_s, 3)}
    if torch_s is not None:
        line |= {"torch": torch_version, "torch_s": round(torch_s, 4)}
        line |= {"speedup_vs_torch": round(torch_s / fit_s, 3)}
    else:
        line |= {"torch_s": None, "note": "torch not installed"}
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
