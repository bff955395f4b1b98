"""batching: schedules cover rows as promised, share batches as promised, and are seeded."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mtjax import batching, data
from mtjax.batching import Batches
from mtjax.data import TaskDataset
from mtjax.tasks import Task

SOUND = Task("sound", ("dog", "cat", "bird"), "multiclass")
WORD = Task("word", ("yes", "no"), "multiclass")
SIZES = (37, 10, 5)
B = 8
N = sum(SIZES)
SCHEDULES = {
    "mixed": batching.mixed(),
    "per_dataset": batching.per_dataset(),
    "every_task": batching.every_task(),
    "balanced": batching.balanced(),
    "balanced_task": batching.balanced(per="task"),
    "proportional": batching.proportional(),
}


def dataset(n: int, tasks: list[Task], name: str) -> TaskDataset:
    y = np.concatenate([np.eye(len(t.labels))[np.arange(n) % len(t.labels)] for t in tasks], 1)
    return TaskDataset.from_arrays(np.zeros([n, 1, 1]), y, tasks, name=name)


@pytest.fixture(scope="module")
def three():
    """Datasets a (37 rows, sound), b (10, word), c (5, sound and word)."""
    parts = [([SOUND], "a"), ([WORD], "b"), ([SOUND, WORD], "c")]
    return data.concat([dataset(n, tasks, name) for n, (tasks, name) in zip(SIZES, parts)])


def key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed)


def real_rows(batches: Batches) -> np.ndarray:
    return batches.index[batches.weight == 1]


def step_counts(batches: Batches, group: np.ndarray, n_groups: int) -> np.ndarray:
    """int [S, G]: slots of each group in each batch."""
    return np.stack([np.bincount(g, minlength=n_groups) for g in group[batches.index]])


def assert_cycles(batches: Batches, rows: np.ndarray) -> None:
    """After every step, the draws of any two of `rows` differ by at most 1: no row
    repeats until all have been drawn."""
    counts = np.zeros(N, int)
    for step in batches.index:
        np.add.at(counts, step, 1)
        drawn = counts[rows]
        assert drawn.max() - drawn.min() <= 1, drawn


# mixed and per_dataset: every row once per epoch


@pytest.mark.parametrize("name,n_steps", [("mixed", 7), ("per_dataset", 5 + 2 + 1)])
def test_every_row_once_per_epoch(three, name, n_steps):
    batches = batching.check_batches(SCHEDULES[name](key(), three, B), N, B)
    assert batches.index.shape == batches.weight.shape == (n_steps, B)
    assert batches.index.dtype == np.int32 and batches.weight.dtype == np.float32
    np.testing.assert_array_equal(np.sort(real_rows(batches)), np.arange(N))
    assert np.all((batches.weight == 0) | (batches.weight == 1))
    assert (batches.weight == 0).sum() == n_steps * B - N


def test_mixed_pads_only_the_last_batch(three):
    batches = batching.mixed()(key(), three, B)
    np.testing.assert_array_equal(batches.weight[:-1], 1)
    np.testing.assert_array_equal(batches.weight[-1], [1, 1, 1, 1, 0, 0, 0, 0])  # 52 = 6*8 + 4
    one = batching.mixed()(key(), three, 64)  # B > N: one padded batch
    assert one.index.shape == (1, 64) and one.weight.sum() == N


def test_per_dataset_batches_never_mix_datasets(three):
    batches = batching.per_dataset()(key(), three, B)
    ids = three.dataset_id[batches.index]
    real = batches.weight == 1
    per_batch = [np.unique(ids[s][real[s]]) for s in range(len(ids))]
    assert all(len(d) == 1 for d in per_batch)
    np.testing.assert_array_equal(np.bincount(np.concatenate(per_batch)), [5, 2, 1])
    padded = np.flatnonzero(~real.all(1))
    assert len(padded) == 3  # each dataset's last batch: 37, 10, 5 rows are not multiples of 8
    orders = {tuple(np.concatenate(per_batch))}
    orders |= {
        tuple(three.dataset_id[batching.per_dataset()(key(s), three, B).index[:, 0]])
        for s in range(1, 6)
    }
    assert len(orders) > 1  # the order of the batches is shuffled


def test_per_dataset_of_one_task_dataset():
    ds = dataset(20, [SOUND], "solo")
    batches = batching.per_dataset()(key(), ds, B)
    np.testing.assert_array_equal(np.sort(real_rows(batches)), np.arange(20))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_are_seeded_by_the_key(three, name):
    schedule = SCHEDULES[name]
    first = schedule(key(0), three, B)
    again = schedule(key(0), three, B)
    raw = schedule(jax.random.PRNGKey(0), three, B)  # a raw uint32 key with the same bits
    other = schedule(jax.random.fold_in(key(0), 1), three, B)  # the next epoch
    for same in (again, raw):
        np.testing.assert_array_equal(same.index, first.index)
        np.testing.assert_array_equal(same.weight, first.weight)
    assert not np.array_equal(other.index, first.index)
    batching.check_batches(first, N, B)


# every_task: every dataset, so every task, in every step


def test_every_task_gives_every_dataset_its_share_of_every_step(three):
    batches = batching.check_batches(batching.every_task()(key(), three, B), N, B)
    # B // 3 = 2 slots each, the 2 left over to the two largest (a: 37, b: 10); a needs
    # ceil(37 / 3) = 13 steps, the most of the three (b: 4, c: ceil(5 / 2) = 3)
    assert batches.index.shape == (13, B)
    ids = three.dataset_id[batches.index]
    np.testing.assert_array_equal(step_counts(batches, three.dataset_id, 3), [[3, 3, 2]] * 13)
    real = batches.weight > 0
    assert all(set(ids[s][real[s]]) == {0, 1, 2} for s in range(13))  # each step holds all
    a_rows = np.flatnonzero(three.dataset_id == 0)
    # a, which needs all 13 steps, is seen once: 39 slots, its 37 rows and 2 weight-0 pads
    np.testing.assert_array_equal(np.sort(batches.index[real & (ids == 0)]), a_rows)
    assert (~real).sum() == 2 and set(ids[~real]) == {0}
    assert batches.weight[real].min() == 1
    for d, size, draws in ((1, 10, 39), (2, 5, 26)):  # b and c are cycled
        rows = np.flatnonzero(three.dataset_id == d)
        assert rows.size == size
        counts = np.bincount(batches.index[ids == d], minlength=N)[rows]
        assert counts.sum() == draws and counts.min() >= 1 and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(batching.tasks_per_step(batches, three), [2] * 13)


def test_every_task_rows_of_a_small_dataset_repeat_only_after_all(three):
    batches = batching.every_task()(key(1), three, B)
    for d, share in ((1, 3), (2, 2)):
        rows = np.flatnonzero(three.dataset_id == d)
        mine = batches.index[three.dataset_id[batches.index] == d].reshape(-1, share)  # [S, b]
        assert_cycles(Batches(mine, np.ones(mine.shape, np.float32)), rows)  # after each step


def test_every_task_needs_a_slot_per_dataset(three):
    with pytest.raises(ValueError, match="every_task: batch_size must be >= 3"):
        batching.every_task()(key(), three, 2)
    batches = batching.every_task()(key(), three, 3)  # one slot each: 37 steps
    assert batches.index.shape == (37, 3)
    np.testing.assert_array_equal(step_counts(batches, three.dataset_id, 3), [[1, 1, 1]] * 37)
    solo = dataset(20, [SOUND], "solo")  # one dataset: every row once, as mixed does
    alone = batching.every_task()(key(), solo, B)
    np.testing.assert_array_equal(np.sort(real_rows(alone)), np.arange(20))
    assert batching.every_task().__name__ == "every_task"


def test_tasks_per_step_counts_tasks_with_a_real_row(three):
    per_dataset = batching.per_dataset()(key(), three, B)
    of_dataset = np.array([1, 1, 2])[three.dataset_id[per_dataset.index[:, 0]]]  # c: both
    np.testing.assert_array_equal(batching.tasks_per_step(per_dataset, three), of_dataset)
    a, b = np.flatnonzero(three.dataset_id == 0)[0], np.flatnonzero(three.dataset_id == 1)[0]
    index = np.array([[a, b], [a, a], [b, a]], np.int32)
    weight = np.array([[1, 1], [1, 1], [0, 1]], np.float32)  # step 2's word row is padding
    counted = batching.tasks_per_step(Batches(index, weight), three)
    np.testing.assert_array_equal(counted, [2, 1, 1])
    assert counted.shape == (3,)


# balanced


@pytest.mark.parametrize("steps", [None, 40])
def test_balanced_per_dataset_shares_each_batch(three, steps):
    batches = batching.balanced(steps=steps)(key(), three, B)
    n_steps = steps or 7
    assert batches.index.shape == (n_steps, B)
    np.testing.assert_array_equal(batches.weight, 1)
    counts = step_counts(batches, three.dataset_id, 3)
    assert set(np.unique(counts)) <= {2, 3}  # B / 3 = 2.67
    np.testing.assert_array_equal(counts.sum(1), B)
    totals = counts.sum(0)
    assert totals.max() - totals.min() <= 1  # remainder slots spread evenly over the epoch
    for d in range(3):  # every dataset, the small ones oversampled, cycles its rows
        assert_cycles(batches, np.flatnonzero(three.dataset_id == d))


def test_balanced_divisible_batch_is_exact(three):
    batches = batching.balanced(steps=20)(key(), three, 9)
    np.testing.assert_array_equal(step_counts(batches, three.dataset_id, 3), 3)
    small = np.flatnonzero(three.dataset_id == 2)  # 5 rows, 60 draws: each exactly 12 times
    np.testing.assert_array_equal(np.bincount(batches.index.ravel(), minlength=N)[small], 12)


def test_balanced_batch_smaller_than_the_datasets(three):
    batches = batching.balanced(steps=30)(key(), three, 2)
    counts = step_counts(batches, three.dataset_id, 3)
    assert counts.max() == 1  # two distinct datasets in every batch
    np.testing.assert_array_equal(counts.sum(0), 20)


def test_balanced_per_task_with_one_task_per_row(three):
    word = np.arange(N) % 7 == 0  # 8 rows carry word only, 44 sound only
    one_task = three.replace(has_task=np.stack([~word, word], 1))
    batches = batching.balanced(per="task", steps=30)(key(), one_task, B)
    np.testing.assert_array_equal(step_counts(batches, word.astype(int), 2), 4)
    assert_cycles(batches, np.flatnonzero(word))
    assert_cycles(batches, np.flatnonzero(~word))


def test_balanced_per_task_with_shared_rows(three):
    batches = batching.balanced(per="task", steps=30)(key(), three, B)
    has = three.has_task[batches.index]  # [S, B, K]
    assert np.all(has.any(-1))
    assert np.all(has.sum(1) >= B // 2)  # each task's 4 slots hold rows carrying it
    only_word = np.flatnonzero(three.has_task[:, 1] & ~three.has_task[:, 0])
    assert np.isin(only_word, batches.index).all()


def test_balanced_errors(three):
    with pytest.raises(ValueError, match="'empty' has no rows"):
        batching.balanced()(key(), three.replace(datasets=(*three.datasets, "empty")), B)
    no_word = three.replace(has_task=three.has_task & np.array([True, False]))
    with pytest.raises(ValueError, match="task 'word' has no rows"):
        batching.balanced(per="task")(key(), no_word, B)
    batching.balanced()(key(), no_word, B)  # per dataset, tasks do not matter
    with pytest.raises(ValueError, match="'dataset' or 'task'"):  # when made, not when used
        batching.balanced(per="label")
    with pytest.raises(ValueError, match="steps"):
        batching.balanced(steps=0)


# proportional


@pytest.mark.parametrize("temperature", [1.0, 100.0])
def test_proportional_frequencies_follow_temperature(three, temperature):
    batches = batching.proportional(temperature, steps=2000)(key(), three, B)
    assert batches.index.shape == (2000, B)
    np.testing.assert_array_equal(batches.weight, 1)
    freq = np.bincount(three.dataset_id[batches.index].ravel(), minlength=3) / batches.index.size
    expected = batching.dataset_probabilities(SIZES, temperature)
    np.testing.assert_allclose(freq, expected, atol=0.015)  # ~5 standard errors
    if temperature == 1.0:
        np.testing.assert_allclose(freq, np.array(SIZES) / N, atol=0.015)
    else:
        np.testing.assert_allclose(freq, 1 / 3, atol=0.02)
    assert_cycles(batches, np.flatnonzero(three.dataset_id == 2))


def test_proportional_epoch_length_is_stated(three):
    assert batching.proportional()(key(), three, B).index.shape == (7, B)  # ceil(52 / 8)
    assert batching.proportional(steps=3)(key(), three, B).index.shape == (3, B)
    assert batching.proportional(2.0, steps=100)(key(), three, 4).index.shape == (100, 4)


def test_dataset_probabilities():
    np.testing.assert_allclose(batching.dataset_probabilities(SIZES, 1.0), np.array(SIZES) / N)
    root = np.sqrt(SIZES)
    np.testing.assert_allclose(batching.dataset_probabilities(SIZES, 2.0), root / root.sum())
    np.testing.assert_allclose(batching.dataset_probabilities([4, 0, 1], np.inf), [0.5, 0, 0.5])
    np.testing.assert_allclose(batching.dataset_probabilities([9, 1], 0.5), [81 / 82, 1 / 82])
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            batching.dataset_probabilities(SIZES, bad)
        with pytest.raises(ValueError, match="temperature must be > 0"):
            batching.proportional(bad)
    with pytest.raises(ValueError, match="not all 0"):
        batching.dataset_probabilities([0, 0], 1.0)


# errors common to every schedule


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_bad_batch_size_and_empty_data(three, name):
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            SCHEDULES[name](key(), three, bad)
    with pytest.raises(ValueError, match="no rows"):
        SCHEDULES[name](key(), data.subset(three, np.zeros(N, bool)), B)


def test_a_key_batch_is_refused(three):
    with pytest.raises(ValueError, match="one PRNG key"):
        batching.mixed()(jax.random.split(key(), 2), three, B)


# picking by name


def test_schedule_from_config(three):
    assert set(batching.SCHEDULES) == {
        "mixed",
        "per_dataset",
        "every_task",
        "balanced",
        "proportional",
    }
    assert set(batching.SCHEDULES.values()) == {
        batching.mixed,
        batching.per_dataset,
        batching.every_task,
        batching.balanced,
        batching.proportional,
    }
    for name in batching.SCHEDULES:  # by name, each factory's default schedule
        np.testing.assert_array_equal(
            batching.schedule_from_config(name)(key(), three, B).index,
            batching.SCHEDULES[name]()(key(), three, B).index,
        )
    by_task = batching.schedule_from_config("balanced", per="task", steps=5)
    np.testing.assert_array_equal(
        by_task(key(), three, B).index,
        batching.balanced(per="task", steps=5)(key(), three, B).index,
    )
    assert not np.array_equal(
        by_task(key(), three, B).index, batching.balanced(steps=5)(key(), three, B).index
    )
    uniform = batching.schedule_from_config("proportional", temperature=50.0, steps=4)
    assert uniform(key(), three, B).index.shape == (4, B)
    with pytest.raises(
        ValueError, match="known: balanced, every_task, mixed, per_dataset, proportional"
    ):
        batching.schedule_from_config("shuffled")
    with pytest.raises(ValueError, match="no option temp; its options: temperature, steps"):
        batching.schedule_from_config("proportional", temp=2.0)
    with pytest.raises(ValueError, match="its options: none"):
        batching.schedule_from_config("mixed", steps=3)


def test_a_user_function_is_a_schedule(three):
    def first_rows(key, data, batch_size):  # the module docstring's example
        index = np.arange(batch_size, dtype=np.int32)[None] % len(data)
        return Batches(index, np.ones(index.shape, np.float32))

    batches = batching.check_batches(first_rows(key(), three, B), N, B)
    np.testing.assert_array_equal(batches.index, [np.arange(B)])


# check_batches


def ok(s: int = 2, b: int = B) -> Batches:
    return Batches(np.zeros([s, b], np.int32), np.ones([s, b], np.float32))


@pytest.mark.parametrize(
    "batches,message",
    [
        ((np.zeros([2, B], np.int32), np.ones([2, B], np.float32)), "must return"),
        (ok()._replace(index=ok().index.astype(np.int64)), "index must be a numpy int32"),
        (ok()._replace(weight=ok().weight.astype(np.float64)), "weight must be a numpy float32"),
        (ok()._replace(index=list(ok().index)), "index must be a numpy int32"),
        (ok(b=B + 1), r"shape \[S, 8\]"),
        (ok(s=0), r"S >= 1"),
        (ok()._replace(index=np.zeros(B, np.int32)), r"shape \[S, 8\]"),
        (ok()._replace(weight=np.ones([3, B], np.float32)), "differ in shape"),
        (ok()._replace(index=np.full([2, B], -1, np.int32)), r"index\[0, 0\] = -1"),
        (ok()._replace(index=np.full([2, B], N, np.int32)), "valid: 0 to 51"),
        (ok()._replace(weight=np.full([2, B], 2, np.float32)), r"weight\[0, 0\] = 2.0"),
        (ok()._replace(weight=np.full([2, B], np.nan, np.float32)), "not in"),
    ],
)
def test_check_batches_names_the_problem(batches, message):
    with pytest.raises(ValueError, match=message):
        batching.check_batches(batches, N, B)


def test_check_batches_accepts_padding():
    batches = ok()._replace(weight=np.array([[1] * B, [1, 0.5] + [0] * (B - 2)], np.float32))
    assert batching.check_batches(batches, N, B) is batches


# one shape: factories, accepted bare; the helpers a schedule of one's own uses


def test_bare_factories_mean_their_default_schedule(three):
    for factory in batching.SCHEDULES.values():
        schedule = batching.as_schedule(factory)
        np.testing.assert_array_equal(
            schedule(key(), three, B).index, factory()(key(), three, B).index
        )
    made = batching.proportional(2.0)
    assert batching.as_schedule(made) is made
    with pytest.raises(TypeError, match="batches must be a schedule"):
        batching.as_schedule("mixed")


def test_a_schedule_is_named_after_the_call_that_made_it():
    assert batching.mixed().__qualname__ == "mixed"  # as the bare function was named
    assert batching.balanced().__qualname__ == "balanced"
    assert batching.balanced(per="task").__qualname__ == "balanced(per='task')"
    assert batching.proportional(2.0, steps=5).__name__ == "proportional(temperature=2.0, steps=5)"


def test_generator_and_cut_are_the_builtin_pieces(three):
    rng = batching.generator(key(3))
    again = batching.generator(jax.random.PRNGKey(3))  # the same bits, raw
    np.testing.assert_array_equal(rng.permutation(10), again.permutation(10))
    np.testing.assert_array_equal(  # mixed is exactly a permutation, cut
        batching.cut(batching.generator(key()).permutation(N), B).index,
        batching.mixed()(key(), three, B).index,
    )
    cut = batching.cut(np.array([4, 2, 7], np.int64), 2)
    np.testing.assert_array_equal(cut.index, [[4, 2], [7, 7]])
    np.testing.assert_array_equal(cut.weight, [[1, 1], [1, 0]])
    assert cut.index.dtype == np.int32 and cut.weight.dtype == np.float32

    def in_order(key, data, batch_size):  # the module docstring's example
        return batching.cut(np.arange(len(data)), batch_size)

    batches = batching.check_batches(in_order(key(), three, B), N, B)
    np.testing.assert_array_equal(batches.index[0], np.arange(B))
