"""On-device augmentation: exact shift, mask and mixup semantics, checked against numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.train import augment as aug
from mtjax.train.step import Batch

LENGTHS = (10, 7, 4, 1, 2, 10)  # T = 10; row 3 has one valid frame


def _batch(rng, lengths=LENGTHS, f=6) -> Batch:
    """Rows of random features zero-padded at the end; one multiclass task of 3 columns."""
    b, t = len(lengths), max(lengths)
    x = rng.normal(size=(b, t, f)).astype(np.float32)
    for i, v in enumerate(lengths):
        x[i, v:] = 0
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, b)]
    return Batch(x, y, np.ones([b, 1], bool), np.ones([b], np.float32))


def _run(augment, batch, seed=0):
    out = aug.apply(augment, jax.random.key(seed), batch)
    return jax.tree.map(np.asarray, out)


def _runs(mask):
    """Lengths of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


# ----------------------------------------------------------------------------------------
# Shift


def test_shift_is_a_circular_roll_inside_each_rows_valid_frames(rng):
    batch = _batch(rng)
    shifts = []
    for seed in range(12):
        x = _run(aug.Augment(shift=0.5), batch, seed).x
        for i, v in enumerate(LENGTHS):
            bound = int(np.floor(0.5 * v))
            matches = [
                s
                for s in range(-bound, bound + 1)
                if np.array_equal(x[i, :v], np.roll(batch.x[i, :v], s, axis=0))
            ]
            assert matches, f"row {i} (v={v}) is not a roll by |s| <= {bound}"
            np.testing.assert_array_equal(x[i, v:], 0.0)  # padding stays exactly 0
            assert np.all(np.any(x[i, :v] != 0, axis=1)), "padding moved into the clip"
            shifts.append(matches[0] % v if v > 1 else 0)
    assert len(set(shifts)) > 3  # the shift is drawn, not constant


def test_shift_and_time_masks_leave_single_frame_rows_alone(rng):
    dnn = _batch(rng, lengths=(1, 1, 1))
    both = aug.Augment(shift=0.9, time_masks=3, time_width=0.9)
    for seed in range(4):
        np.testing.assert_array_equal(_run(both, dnn, seed).x, dnn.x)
    full = _batch(rng)
    np.testing.assert_array_equal(_run(both, full).x[3], full.x[3])  # v = 1 inside T = 10


# ----------------------------------------------------------------------------------------
# Masks


def test_time_masks_zero_at_most_n_spans_of_bounded_width_inside_the_clip(rng):
    batch = _batch(rng)
    widest = 0
    for seed in range(12):
        x = _run(aug.Augment(time_masks=2, time_width=0.3), batch, seed).x
        for i, v in enumerate(LENGTHS):
            zeroed = np.all(x[i] == 0, axis=1) & np.any(batch.x[i] != 0, axis=1)
            assert not zeroed[v:].any()
            runs = _runs(zeroed)
            most = int(np.floor(0.3 * v))
            assert zeroed.sum() <= 2 * most and len(runs) <= 2, (i, runs)
            if len(runs) == 2:  # two masks apart: each is one run (touching ones merge)
                assert np.all(runs <= most), (i, runs)
                widest = max(widest, *runs)
            np.testing.assert_array_equal(x[i][~zeroed], batch.x[i][~zeroed])
    assert widest == 3  # floor(0.3 * 10): the widest allowed mask is drawn


def test_freq_masks_zero_the_same_bands_on_every_valid_frame(rng):
    batch = _batch(rng, f=8)
    widest = 0
    for seed in range(12):
        x = _run(aug.Augment(freq_masks=2, freq_width=3), batch, seed).x
        for i, v in enumerate(LENGTHS):
            bands = np.all(x[i, :v] == 0, axis=0)
            runs = _runs(bands)
            assert bands.sum() <= 6 and len(runs) <= 2, (i, runs)
            if len(runs) == 2:  # two masks apart: each is one run (touching ones merge)
                assert np.all(runs <= 3), (i, runs)
                widest = max(widest, *runs)
            np.testing.assert_array_equal(x[i, :v][:, ~bands], batch.x[i, :v][:, ~bands])
            np.testing.assert_array_equal(x[i, v:], 0.0)
            assert np.all(np.any(x[i, :v] != 0, axis=1)), "a valid frame became padding"
    assert widest == 3


def test_freq_width_beyond_the_band_count_is_capped(rng):
    batch = _batch(rng, f=4)
    x = _run(aug.Augment(freq_masks=1, freq_width=50), batch).x
    assert x.shape == batch.x.shape and np.isfinite(x).all()


# ----------------------------------------------------------------------------------------
# Mixup

# tasks a (3 columns, multiclass) and b (1 column, binary); rows 0-3 have a, 4-6 a and b,
# row 7 b alone (unique), rows 8-9 padding with the pattern of rows 0-3
HAS = np.array([[1, 0]] * 4 + [[1, 1]] * 3 + [[0, 1]] + [[1, 0]] * 2, bool)
WEIGHT = np.array([1.0] * 8 + [0.0] * 2, np.float32)


def _mix_batch(rng) -> Batch:
    b = len(HAS)
    x = rng.normal(size=(b, 5, 4)).astype(np.float32)
    x[:4, 3:] = 0  # shorter clips among the a-only rows
    y = np.zeros([b, 4], np.float32)
    y[np.arange(b), rng.integers(0, 3, b)] = 1.0
    y[:, 3] = rng.integers(0, 2, b)
    return Batch(x, y * np.repeat(HAS, [3, 1], axis=1), HAS, WEIGHT)


def test_mixup_partners_share_the_task_pattern_and_cycle_within_it():
    for seed in range(8):
        partner = np.asarray(aug.mixup_partners(jax.random.key(seed), HAS, WEIGHT))
        assert list(partner[7:]) == [7, 8, 9]  # unique pattern, padding: themselves
        for group in (range(4), range(4, 7)):
            assert sorted(partner[list(group)]) == list(group)  # each a partner once
            assert all(partner[i] != i and partner[i] in group for i in group)


def test_mixup_partners_differ_between_keys():
    seen = {tuple(np.asarray(aug.mixup_partners(jax.random.key(s), HAS, WEIGHT))) for s in range(8)}
    assert len(seen) > 1


def test_mixup_mixes_rows_with_a_partner_of_the_same_tasks(rng):
    batch = _mix_batch(rng)
    out = _run(aug.Augment(mixup=0.4), batch, seed=3)
    assert out.x.dtype == np.float32 and out.y.dtype == np.float32
    for i in range(7):
        fits = []
        for j in range(len(HAS)):
            d = batch.x[i] - batch.x[j]
            if j == i or not d.any():
                continue
            lam = np.sum((out.x[i] - batch.x[j]) * d) / np.sum(d * d)
            if np.allclose(lam * batch.x[i] + (1 - lam) * batch.x[j], out.x[i], atol=1e-5):
                fits.append((j, lam))
        assert len(fits) == 1, f"row {i}: no single partner explains it"
        j, lam = fits[0]
        assert np.array_equal(HAS[j], HAS[i]) and WEIGHT[j] > 0
        assert 0.5 - 1e-6 <= lam <= 1.0 + 1e-6
        want_y = lam * batch.y[i] + (1 - lam) * batch.y[j]
        np.testing.assert_allclose(out.y[i], want_y, atol=1e-5)
        np.testing.assert_allclose(out.y[i, :3].sum(), 1.0, rtol=1e-6)  # multiclass slice
    for i in (7, 8, 9):  # unique pattern and padding rows: exactly as they were
        np.testing.assert_array_equal(out.x[i], batch.x[i])
        np.testing.assert_array_equal(out.y[i], batch.y[i])
    np.testing.assert_array_equal(out.has_task, HAS)
    np.testing.assert_array_equal(out.weight, WEIGHT)


def test_mixup_keeps_rows_dominant_over_many_draws(rng):
    batch = _mix_batch(rng)
    own = batch.y[:4, :3].argmax(1)
    for seed in range(10):
        y = _run(aug.Augment(mixup=1.0), batch, seed).y
        assert np.all(y[np.arange(4), own] >= 0.5 - 1e-6)


# ----------------------------------------------------------------------------------------
# Keys, jit and identity

EVERYTHING = aug.Augment(
    shift=0.3, time_masks=2, time_width=0.2, freq_masks=2, freq_width=2, mixup=0.4
)


def test_same_key_same_batch_other_key_other_batch(rng):
    batch = _mix_batch(rng)
    first, again, other = (_run(EVERYTHING, batch, s) for s in (5, 5, 6))
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.y, again.y)
    assert not np.array_equal(first.x, other.x)


def test_jit_matches_eager_with_the_augment_static_or_closed_over(rng):
    batch = jax.tree.map(jnp.asarray, _mix_batch(rng))
    key = jax.random.key(2)
    eager = aug.apply(EVERYTHING, key, batch)
    static = jax.jit(aug.apply, static_argnums=0)(EVERYTHING, key, batch)
    closed = jax.jit(lambda k, b: aug.apply(EVERYTHING, k, b))(key, batch)
    for out in (static, closed):
        np.testing.assert_allclose(out.x, eager.x, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out.y, eager.y, rtol=1e-6, atol=1e-6)
        assert out.x.shape == batch.x.shape and out.y.shape == batch.y.shape


def test_all_off_returns_the_batch_itself(rng):
    batch = _batch(rng)
    assert aug.apply(aug.Augment(), jax.random.key(0), batch) is batch
    assert not aug.Augment() and aug.Augment(mixup=0.2)


# ----------------------------------------------------------------------------------------
# Validation and JSON


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shift": 1.0}, "Augment shift must be in [0, 1), got 1.0"),
        ({"shift": -0.1}, "Augment shift must be in [0, 1)"),
        ({"time_width": 1.5, "time_masks": 1}, "Augment time_width must be in [0, 1)"),
        ({"mixup": -1.0}, "Augment mixup must be >= 0, got -1.0"),
        ({"mixup": float("nan")}, "Augment mixup must be >= 0"),
        ({"mixup": "0.2"}, "Augment mixup must be a number, got '0.2'"),
        ({"time_masks": -1, "time_width": 0.1}, "Augment time_masks must be an int >= 0, got -1"),
        ({"freq_masks": 1.5, "freq_width": 2}, "Augment freq_masks must be an int >= 0, got 1.5"),
        ({"freq_width": True, "freq_masks": 1}, "Augment freq_width must be an int >= 0"),
        ({"time_masks": 2}, "Augment time_masks=2 and time_width=0.0: set both above 0"),
        ({"freq_width": 3}, "Augment freq_masks=0 and freq_width=3: set both above 0"),
    ],
)
def test_bad_fields_are_refused_by_name(fields, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        aug.Augment(**fields)


def test_json_round_trip_and_unknown_keys():
    d = EVERYTHING.to_json()
    assert d == {
        "type": "Augment",
        "shift": 0.3,
        "time_masks": 2,
        "time_width": 0.2,
        "freq_masks": 2,
        "freq_width": 2,
        "mixup": 0.4,
    }
    assert aug.Augment.from_json(d) == EVERYTHING
    assert aug.Augment.from_json({"mixup": 1}) == aug.Augment(mixup=1.0)
    assert isinstance(aug.Augment(shift=0).shift, float)
    with pytest.raises(ValueError, match=r"unknown keys \['mix', 'wobble'\]"):
        aug.Augment.from_json({"mix": 0.2, "wobble": 1})
    with pytest.raises(ValueError, match="type must be 'Augment', got 'Other'"):
        aug.Augment.from_json({"type": "Other"})


def test_fit_augments_reproducibly_and_records_it(tmp_path):
    """fit(augment=...) trains on augmented batches: the same seed gives the same
    parameters, other than training without it; the run's config.json records it."""
    import jax
    import numpy as np

    import mtjax as mt
    from mtjax import runs

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    x = rng.standard_normal((96, 12, 6)).astype(np.float32)
    x[:, :, 0] += labels[:, None]
    task = mt.Task("c", ("a", "b", "c"), "multiclass")
    data = mt.TaskDataset.from_arrays(
        x, np.eye(3, dtype=np.float32)[labels], [task], lengths=rng.integers(4, 13, 96)
    )
    augment = mt.Augment(shift=0.2, time_masks=1, time_width=0.2, mixup=0.4)

    def fit(**options):
        return mt.fit(None, data, epochs=2, early_stop=None, progress=False, **options)

    first, again, plain = fit(augment=augment), fit(augment=augment), fit()
    leaves = [jax.tree.leaves(t.params) for t in (first, again, plain)]
    assert all(np.array_equal(a, b) for a, b in zip(leaves[0], leaves[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves[0], leaves[2]))
    run = runs.Run(tmp_path, "augmented")
    fit(augment=augment, run=run)
    recorded = runs.read_config(run)["augment"]
    assert mt.Augment.from_json(recorded) == augment
