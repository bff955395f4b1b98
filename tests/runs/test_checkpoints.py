"""Checkpoints: a real TrainState round-trips bit for bit, damaged newest ones are skipped,
retention keeps what a resume needs, and nothing on disk is a pickle."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mtjax import checkpoints

N_EPOCHS = 3


class TrainState(train_state.TrainState):
    batch_stats: Any
    comb_state: Any


class CombState(NamedTuple):
    ema: jax.Array  # float32 [K]
    count: jax.Array  # int32 []


def initial_state() -> TrainState:
    """A dense model's state, replicated over the 4 CPU devices."""
    model = nn.Dense(2)
    params = {"model": model.init(jax.random.key(0), jnp.ones([1, 3]))["params"], "combiner": {}}
    state = TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=optax.adamw(1e-3),
        batch_stats={},
        comb_state=CombState(ema=jnp.ones([2]), count=jnp.zeros([], jnp.int32)),
    )
    state = state.replace(step=jnp.zeros([], jnp.int32))
    replicated = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec())
    return jax.device_put(state, replicated)


@jax.jit
def train_step(state: TrainState, x: jax.Array, y: jax.Array) -> TrainState:
    def objective(params):
        pred = state.apply_fn({"params": params["model"]}, x)
        return jnp.mean((pred - y) ** 2)

    loss, grads = jax.value_and_grad(objective)(state.params)
    comb = CombState(ema=0.9 * state.comb_state.ema + 0.1 * loss, count=state.comb_state.count + 1)
    return state.apply_gradients(grads=grads, comb_state=comb)


def epoch_meta(epoch: int, val_losses: list[float]) -> dict:
    return {
        "epoch": epoch,
        "history": [
            {"train/loss": 1.0 / (e + 1), "validation/loss": val_losses[e]}
            for e in range(epoch + 1)
        ],
        "best_epoch": int(np.argmin(val_losses[: epoch + 1])),
        "seed": 0,
        "schedule_position": 2 * (epoch + 1),
        "config_hash": "3f2a9c",
    }


@pytest.fixture(scope="module")
def trained() -> list[TrainState]:
    """The state after each of `N_EPOCHS` epochs of two optimizer steps."""
    rng = np.random.default_rng(0)
    state, states = initial_state(), []
    for _ in range(N_EPOCHS):
        for _ in range(2):
            x = jnp.asarray(rng.standard_normal([8, 3]), jnp.float32)
            state = train_step(state, x, x[:, :2] * 2.0)
        states.append(state)
    return states


def abstract(state: TrainState) -> TrainState:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def save_all(directory: Path, states: list[TrainState], val_losses=(0.5, 0.4, 0.45), **options):
    manager = checkpoints.open_manager(directory, **options)
    for epoch, state in enumerate(states):
        checkpoints.save(manager, epoch, state, epoch_meta(epoch, list(val_losses)))
    return manager


def assert_same(got: Any, want: Any) -> None:
    """Same leaf paths; every leaf the same dtype, shape and bytes (static fields may differ,
    e.g. `tx` and `apply_fn` of a freshly built target)."""
    got_leaves, want_leaves = (jax.tree_util.tree_leaves_with_path(t) for t in (got, want))
    assert [p for p, _ in got_leaves] == [p for p, _ in want_leaves]
    for (path, a), (_, b) in zip(got_leaves, want_leaves):
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), jax.tree_util.keystr(path)
        assert a.tobytes() == b.tobytes(), jax.tree_util.keystr(path)


def data_files(step_folder: Path) -> list[Path]:
    """The array data files of a step's state (OCDBT `d/` folders)."""
    files = [p for p in (step_folder / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files, f"no data files under {step_folder}"
    return files


def test_restore_latest_is_the_newest_epoch_bit_for_bit(tmp_path, trained):
    checkpoints.close(save_all(tmp_path / "ckpt", trained))
    manager = checkpoints.open_manager(tmp_path / "ckpt")  # a resumed run's fresh manager
    state, meta = checkpoints.restore_latest(manager, abstract(trained[0]))
    assert jax.tree.structure(state) == jax.tree.structure(trained[2])  # empty nodes too
    assert_same(state, trained[2])
    assert_same(state.opt_state, trained[2].opt_state)
    assert meta == epoch_meta(2, [0.5, 0.4, 0.45])
    kernel = state.params["model"]["kernel"]
    assert kernel.sharding == trained[2].params["model"]["kernel"].sharding
    assert checkpoints.epochs(manager) == [0, 1, 2]
    checkpoints.close(manager)


def test_restore_one_epoch_with_a_concrete_target(tmp_path, trained):
    manager = save_all(tmp_path / "ckpt", trained)
    state, meta = checkpoints.restore(manager, 1, initial_state())
    assert_same(state, trained[1])
    assert meta == epoch_meta(1, [0.5, 0.4, 0.45])
    checkpoints.close(manager)


def test_files_are_orbax_arrays_and_json(tmp_path, trained):
    manager = save_all(tmp_path / "ckpt", trained[:1])
    checkpoints.close(manager)
    step = tmp_path / "ckpt" / "0"
    for name in [
        "commit_success.txt",
        "_CHECKPOINT_METADATA",
        "state/_METADATA",
        "state/manifest.ocdbt",
        "meta/metadata",
    ]:
        assert (step / name).is_file(), name
    assert json.loads((step / "meta" / "metadata").read_text()) == epoch_meta(0, [0.5])
    names = [p.name for p in step.rglob("*")]
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".npy", ".msgpack"))]


def corrupt(step_folder: Path, how: str) -> None:
    if how == "truncate":
        for path in data_files(step_folder):
            os.truncate(path, path.stat().st_size // 2)
    elif how == "delete":
        for path in data_files(step_folder):
            path.unlink()
    elif how == "meta":
        (step_folder / "meta" / "metadata").write_text('{"epoch": 2, "hist')
    elif how == "uncommitted":
        (step_folder / "commit_success.txt").unlink()
        (step_folder / "_CHECKPOINT_METADATA").unlink()


# A failed TensorStore read leaves orbax callbacks on a closed asyncio loop: noise, not a fault.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["truncate", "delete", "meta", "uncommitted"])
def test_damaged_newest_is_skipped_with_a_warning(tmp_path, trained, caplog, how):
    manager = save_all(tmp_path / "ckpt", trained)
    corrupt(tmp_path / "ckpt" / "2", how)
    with caplog.at_level(logging.WARNING, logger="mtjax"):
        state, meta = checkpoints.restore_latest(manager, abstract(trained[0]))
    assert_same(state, trained[1])
    assert meta["epoch"] == 1
    assert str(tmp_path / "ckpt" / "2") in caplog.text
    # The resumed run saves epoch 2 again; the damaged one is replaced.
    checkpoints.save(manager, 2, trained[2], epoch_meta(2, [0.5, 0.4, 0.45]))
    state, meta = checkpoints.restore_latest(manager, abstract(trained[0]))
    assert_same(state, trained[2])
    assert meta["epoch"] == 2
    checkpoints.close(manager)


def test_nothing_restorable_raises_rather_than_starting_over(tmp_path, trained):
    manager = save_all(tmp_path / "ckpt", trained[:1])
    wrong = {"params": trained[0].params}  # not the saved structure
    with pytest.raises(RuntimeError, match="none of the checkpoints"):
        checkpoints.restore_latest(manager, wrong)
    checkpoints.close(manager)


def test_max_to_keep_keeps_the_newest(tmp_path, trained):
    manager = save_all(
        tmp_path / "ckpt", trained + trained[:1], val_losses=[1, 1, 1, 1], max_to_keep=2
    )
    assert checkpoints.epochs(manager) == [2, 3]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["2", "3"]
    checkpoints.close(manager)


@pytest.mark.parametrize(
    "keep_best, best_mode, record",
    [
        ("validation/loss", "min", lambda v: {"validation/loss": v}),
        ("validation/word/accuracy", "max", lambda v: {"validation/word/accuracy": -v}),
    ],
)
def test_keep_best_keeps_the_best_and_the_latest(tmp_path, trained, keep_best, best_mode, record):
    def meta(epoch, values):
        return {"epoch": epoch, "history": [record(v) for v in values[: epoch + 1]]}

    losses = [0.9, 0.3, 0.5, 0.7, 0.8]  # epoch 1 is best (lowest loss, highest accuracy)
    manager = checkpoints.open_manager(
        tmp_path / "ckpt", max_to_keep=1, keep_best=keep_best, best_mode=best_mode
    )
    for epoch in range(4):
        checkpoints.save(manager, epoch, trained[epoch % N_EPOCHS], meta(epoch, losses))
    assert checkpoints.epochs(manager) == [1, 3]
    checkpoints.close(manager)
    # A resumed run's manager reads the saved metrics back and still ranks epoch 1 best.
    manager = checkpoints.open_manager(
        tmp_path / "ckpt", max_to_keep=1, keep_best=keep_best, best_mode=best_mode
    )
    checkpoints.save(manager, 4, trained[1], meta(4, losses))
    assert checkpoints.epochs(manager) == [1, 4]
    state, meta_back = checkpoints.restore(manager, 1, abstract(trained[0]))
    assert_same(state, trained[1])
    assert meta_back == meta(1, losses)
    checkpoints.close(manager)


def test_absent_epoch_names_the_saved_ones(tmp_path, trained):
    manager = save_all(tmp_path / "ckpt", trained)
    with pytest.raises(FileNotFoundError, match=r"epoch 7 .*saved epochs: \[0, 1, 2\]"):
        checkpoints.restore(manager, 7, abstract(trained[0]))
    checkpoints.close(manager)


def test_empty_directory_has_nothing_to_restore(tmp_path, trained):
    manager = checkpoints.open_manager(tmp_path / "ckpt")
    assert checkpoints.epochs(manager) == []
    assert checkpoints.restore_latest(manager, abstract(trained[0])) is None
    checkpoints.close(manager)


def test_nested_history_of_an_old_checkpoint_restores_flat(tmp_path, trained):
    nested = {
        "epoch": 0,
        "train": {"loss": 0.5, "tasks": {"a": 0.25}, "weights": {"a": 1.0}},
        "validation": {"loss": 0.75, "score": 0.5, "a": {"accuracy": 0.5}},
    }
    flat = {
        "epoch": 0,
        "train/objective": 0.5,
        "train/a/loss": 0.25,
        "train/weights/a": 1.0,
        "validation/loss": 0.75,
        "validation/score": 0.5,
        "validation/a/accuracy": 0.5,
    }
    manager = checkpoints.open_manager(tmp_path / "ckpt")
    checkpoints.save(manager, 0, trained[0], {"epoch": 0, "history": [nested], "seed": 0})
    on_disk = json.loads((tmp_path / "ckpt" / "0" / "meta" / "metadata").read_text())
    assert on_disk["history"] == [nested]  # written as given
    _, meta = checkpoints.restore(manager, 0, abstract(trained[0]))
    assert meta["history"] == [flat]
    _, meta = checkpoints.restore_arrays(manager, 0)
    assert meta["history"] == [flat]
    checkpoints.close(manager)
