"""Golden numbers: one train step of a small fixed model on a fixed batch, as nanodo's
`train_test.py` pins its first step, and the default learning-rate schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtjax import losses, models
from mtjax.tasks import Task
from mtjax.train import state as states
from mtjax.train import step as steps

WORD = Task("word", ("go", "stop", "yes"))
LOUD = Task("loud", ("no", "yes"), "binary")
TAGS = Task("tags", ("bird", "car", "rain"), "multilabel")
TASKS = (WORD, LOUD, TAGS)

WHEN_TO_UPDATE = (
    "the golden numbers changed. New numbers are legitimate only after a deliberate change to"
    " initialisation (models, create_train_state, flax), to the losses or the combiner, or to"
    " the optimizer (optax, default_learning_rate): then write the new numbers here and say"
    " why in the commit. Never update them to make a refactor pass: a refactor keeps them."
)


def fixed_batch() -> steps.Batch:
    """Six rows of every kind of task: rows missing a task, and one weight-0 padding row."""
    b, t, f = 6, 2, 4
    x = np.sin(np.arange(b * t * f, dtype=np.float32) * 0.7).reshape(b, t, f)
    y = np.zeros([b, 3 + 1 + 3], np.float32)
    y[np.arange(b), np.arange(b) % 3] = 1  # word: one-hot
    y[:, 3] = np.arange(b) % 2  # loud
    y[:, 4:] = np.arange(b * 3).reshape(b, 3) % 4 == 0  # tags
    has = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [1, 0, 0], [0, 0, 1]], bool)
    return steps.Batch(x, y, has, np.array([1, 1, 1, 1, 1, 0], np.float32))


def checksums(params) -> tuple[float, float]:
    leaves = jax.tree.leaves(params)
    return (float(sum(jnp.sum(a) for a in leaves)), float(sum(jnp.sum(jnp.abs(a)) for a in leaves)))


def test_one_train_step_gives_the_golden_loss_and_parameters():
    batch = fixed_batch()
    with jax.default_device(jax.devices("cpu")[0]):
        model = models.HardSharingDNN(TASKS, hidden=(8,), dropout=0.25)
        combiner = losses.as_combiner(losses.sum())
        tx = optax.adamw(1e-2, weight_decay=1e-4)
        state = states.create_train_state(
            model, tx, combiner, batch.x[:2], jax.random.key(0), tasks=TASKS
        )
        step = jax.jit(steps.make_train_step(model, TASKS, losses.loss_functions(TASKS), combiner))
        new_state, out = step(state, batch, jax.random.key(1), jnp.int32(0))

    np.testing.assert_allclose(
        checksums(state.params),
        [11.309389114379883, 44.508827209472656],
        rtol=1e-6,
        atol=1e-6,
        err_msg=f"initialisation: {WHEN_TO_UPDATE}",
    )
    np.testing.assert_allclose(
        float(out["loss"]),
        3.4154152870178223,
        rtol=1e-6,
        atol=1e-6,
        err_msg=f"loss: {WHEN_TO_UPDATE}",
    )
    np.testing.assert_allclose(
        np.asarray(out["tasks"]),
        [1.9604606628417969, 0.829437255859375, 0.6255174875259399],
        rtol=1e-6,
        atol=1e-6,
        err_msg=f"task losses: {WHEN_TO_UPDATE}",
    )
    np.testing.assert_allclose(
        checksums(new_state.params),
        [11.089380264282227, 44.69022750854492],
        rtol=1e-6,
        atol=1e-6,
        err_msg=f"after one step: {WHEN_TO_UPDATE}",
    )
    assert int(new_state.step) == 1


@pytest.mark.parametrize(
    "step, rate",
    [
        (0, 0.0),
        (10, 5.000000237487257e-4),
        (20, 1.0000000474974513e-3),
        (100, 5.90955838561058e-4),
        (200, 1.0000000656873453e-5),
    ],
)
def test_the_default_learning_rate_warms_up_then_decays(step, rate):
    schedule = states.default_learning_rate(10, 20)  # 200 steps, warm-up over the first 20
    np.testing.assert_allclose(
        float(schedule(step)),
        rate,
        rtol=1e-6,
        atol=1e-12,
        err_msg=f"default learning rate: {WHEN_TO_UPDATE}",
    )
