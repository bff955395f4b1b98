"""fit and evaluate: learning, determinism, masked tasks, every combiner, bad input."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_training import WORD, SmallNet, dataset, three_datasets

import mtjax as mt
from mtjax import arrays, batching, early_stopping, losses, train
from mtjax.train import epochs as epoch_module
from mtjax.train import state as state_module
from mtjax.train import step as step_module


@pytest.fixture(scope="module")
def data():
    return three_datasets(), three_datasets(n=60, seed=10)


def test_fit_learns_every_task_and_evaluate_reports_them(data):
    trn, tst = data
    trained = mt.train.fit(
        SmallNet(trn.tasks),
        trn,
        tst,
        epochs=8,
        progress=False,
        optimizer=optax.adam(5e-3),
        early_stop=None,
    )
    reports = mt.train.evaluate(trained, tst)
    assert set(reports) == {"word", "loud", "tags"}
    assert reports["word"]["accuracy"] > 0.85 and reports["loud"]["accuracy"] > 0.85
    assert reports["tags"]["micro avg"]["f1-score"] > 0.75
    for report in reports.values():
        assert np.isfinite(report["loss"]) and report["support"] == 60
    assert np.array(reports["word"]["confusion_matrix"]).sum() == 60
    assert set(reports["tags"]["confusion_matrix"]) == {"bird", "car", "rain"}
    history = trained.history
    assert len(history) == 8 and history[-1]["train/loss"] < history[0]["train/loss"]
    assert set(history[0]) >= {
        "test/loss",
        "test/score",
        "test/word/accuracy",
        "test/loud/accuracy",
        "test/tags/micro_f1",
        "test/tags/macro_f1",
    }
    assert "test/tags/accuracy" not in history[0]
    assert "learning_rate" not in history[0]  # optax.adam(5e-3) does not say it
    np.testing.assert_allclose(history[-1]["test/word/accuracy"], reports["word"]["accuracy"])


def test_same_seed_gives_bit_identical_parameters(data):
    trn, _ = data
    runs = [
        mt.train.fit(SmallNet(trn.tasks), trn, epochs=2, seed=s, progress=False, early_stop=None)
        for s in (0, 0, 1)
    ]
    steps = len(batching.mixed()(jax.random.key(0), trn, 32).index)
    lr = state_module.default_learning_rate(2, steps)  # the default optimizer's, logged too
    assert [r["learning_rate"] for r in runs[0].history] == pytest.approx(
        [float(lr(steps)), float(lr(2 * steps))], rel=1e-6
    )
    same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), runs[0].params, runs[1].params)
    assert all(jax.tree.leaves(same))
    differ = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), runs[0].params, runs[2].params)
    assert any(jax.tree.leaves(differ))


def test_test_set_never_changes_training(data):
    trn, tst = data
    other = three_datasets(n=30, seed=99)
    rule = early_stopping.patience("validation/loss", 2)
    a = mt.train.fit(SmallNet(trn.tasks), trn, tst, epochs=4, early_stop=rule, progress=False)
    b = mt.train.fit(SmallNet(trn.tasks), trn, other, epochs=4, early_stop=rule, progress=False)
    assert a.best_epoch == b.best_epoch
    same = jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a.params, b.params)
    assert all(jax.tree.leaves(same))
    assert "validation/loss" in a.history[0] and "test/loss" in a.history[0]


def test_early_stopping_restores_the_best_epoch(data):
    trn, _ = data
    # an absurd learning rate after two epochs makes validation loss worse from then on
    steps = len(batching.mixed()(jax.random.key(0), trn, 32).index)
    lr = optax.piecewise_constant_schedule(1e-2, {2 * steps: 30.0})
    trained = mt.train.fit(
        SmallNet(trn.tasks),
        trn,
        epochs=12,
        optimizer=optax.sgd(lr),
        early_stop=early_stopping.patience("validation/loss", 3),
        progress=False,
    )
    losses_ = [r["validation/loss"] for r in trained.history]
    assert len(trained.history) < 12
    assert trained.best_epoch == int(np.argmin(losses_))
    assert len(trained.history) - 1 - trained.best_epoch == 3


@pytest.mark.parametrize("name", sorted(losses.COMBINERS))
def test_every_combiner_trains(data, name):
    trn, tst = data
    combiner = losses.weighted([1.0, 0.5, 1.0]) if name == "weighted" else losses.COMBINERS[name]()
    trained = mt.train.fit(
        SmallNet(trn.tasks),
        trn,
        epochs=3,
        combine=combiner,
        progress=False,
        optimizer=optax.adam(5e-3),
        early_stop=None,
    )
    record = trained.history[-1]
    assert all(np.isfinite(record[f"train/{t.name}/loss"]) for t in trn.tasks)
    assert record["train/loss"] < trained.history[0]["train/loss"] * 1.5
    assert mt.train.evaluate(trained, tst)["word"]["accuracy"] > 0.6  # chance 1/3


def test_user_combiner_plain_function(data):
    trn, _ = data
    trained = mt.train.fit(
        SmallNet(trn.tasks),
        trn,
        epochs=2,
        progress=False,
        early_stop=None,
        combine=lambda task_losses: jnp.sum(task_losses**2),
    )
    record = trained.history[-1]  # d total / d loss_k = 2 loss_k
    assert record["train/weights/word"] == pytest.approx(2 * record["train/word/loss"], rel=0.2)


def test_absent_task_contributes_exactly_zero():
    data = three_datasets(n=40)
    model = SmallNet(data.tasks)
    tasks, fns = data.tasks, losses.loss_functions(data.tasks)
    step = jax.jit(step_module.make_train_step(model, tasks, fns, losses.pcgrad()))
    variables = model.init(jax.random.key(0), jnp.asarray(data.x[:2]))
    combiner = losses.pcgrad()
    state = mt.train.TrainState.create(
        apply_fn=model.apply,
        tx=optax.adam(1e-3),
        params={"model": variables["params"], "combiner": {}},
        batch_stats={},
        comb_state=combiner.init(3),
    )
    rows = np.nonzero(data.dataset_id == 0)[0][:8]  # only the "word" dataset
    batch = mt.train.Batch(
        jnp.asarray(data.x[rows]),
        jnp.asarray(data.y[rows]),
        jnp.asarray(data.has_task[rows]),
        jnp.ones(8),
    )
    new_state, out = step(state, batch, jax.random.key(1), jnp.int32(0))
    np.testing.assert_array_equal(out["present"], [True, False, False])
    np.testing.assert_array_equal(out["tasks"][1:], [0.0, 0.0])
    np.testing.assert_array_equal(out["weights"][1:], [0.0, 0.0])
    heads = new_state.params["model"]
    old = variables["params"]
    np.testing.assert_array_equal(heads["head_loud"]["kernel"], old["head_loud"]["kernel"])
    assert not np.array_equal(heads["head_word"]["kernel"], old["head_word"]["kernel"])


class PlainNet(nn.Module):
    """SmallNet without dropout: its train and eval forward passes agree."""

    tasks: tuple

    @nn.compact
    def __call__(self, x, *, train=False):
        h = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
        return {t.name: nn.Dense(t.n_columns, name=f"head_{t.name}")(h) for t in self.tasks}


def test_gradient_combiners_report_task_cosines_from_their_step():
    data = three_datasets(n=40)
    model = PlainNet(data.tasks)
    tasks, fns = data.tasks, losses.loss_functions(data.tasks)
    variables = model.init(jax.random.key(0), jnp.asarray(data.x[:2]))
    state = mt.train.TrainState.create(
        apply_fn=model.apply,
        tx=optax.adam(1e-3),
        params={"model": variables["params"], "combiner": {}},
        batch_stats={},
        comb_state=losses.pcgrad().init(3),
    )
    rows = np.concatenate([np.nonzero(data.dataset_id == d)[0][:4] for d in range(3)])
    batch = mt.train.Batch(
        jnp.asarray(data.x[rows]),
        jnp.asarray(data.y[rows]),
        jnp.asarray(data.has_task[rows]),
        jnp.ones(len(rows)),
    )
    step = jax.jit(step_module.make_train_step(model, tasks, fns, losses.pcgrad()))
    _, out = step(state, batch, jax.random.key(1), jnp.int32(0))
    probe = jax.jit(step_module.make_conflicts(model, tasks, fns))
    expected = probe(variables["params"], {}, batch)
    np.testing.assert_allclose(out["cosines"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diagonal(out["cosines"]), 1.0, rtol=1e-6)
    sum_step = jax.jit(step_module.make_train_step(model, tasks, fns, losses.sum()))
    assert "cosines" not in sum_step(state, batch, jax.random.key(1), jnp.int32(0))[1]


def test_epoch_cosines_average_only_steps_holding_both_tasks():
    cosines = np.array([[[1, 0.5, 0], [0.5, 1, 0], [0, 0, 0]], [[1, -0.1, 0.2]] * 3], float)
    present = np.array([[True, True, False], [True, False, True]])
    mean = mt.train.history.epoch_cosines(cosines, present)
    assert mean[0, 1] == 0.5  # step 1 lacks task 1: only step 0 counts
    assert mean[0, 2] == 0.2  # step 0 lacks task 2
    assert mean[1, 2] == 0.0  # never together
    assert mean[0, 0] == 1.0


def test_host_fed_epochs_equal_on_device_epochs(data, monkeypatch):
    trn, _ = data
    on_device = mt.train.fit(SmallNet(trn.tasks), trn, epochs=2, progress=False, early_stop=None)
    monkeypatch.setattr(epoch_module, "DEVICE_BYTES", 0)
    host = mt.train.fit(SmallNet(trn.tasks), trn, epochs=2, progress=False, early_stop=None)
    close = jax.tree.map(
        lambda a, b: bool(np.allclose(a, b, rtol=1e-5, atol=1e-6)), on_device.params, host.params
    )
    assert all(jax.tree.leaves(close))


def test_index_mode_data_trains(tmp_path, data):
    trn, _ = data
    np.save(tmp_path / "flat.npy", np.asarray(trn.x).reshape(-1, trn.x.shape[2]))
    flat = mt.data.npyfile.NpyRows(tmp_path / "flat.npy")
    offsets = np.arange(len(trn) + 1, dtype=np.int64) * trn.x.shape[1]
    lazy = trn.replace(x=arrays.DiskArray.from_source(arrays.RaggedSource(flat, offsets)))
    dense = mt.train.fit(SmallNet(trn.tasks), trn, epochs=2, progress=False, early_stop=None)
    out = mt.train.fit(SmallNet(trn.tasks), lazy, epochs=2, progress=False, early_stop=None)
    close = jax.tree.map(
        lambda a, b: bool(np.allclose(a, b, rtol=1e-5, atol=1e-6)), dense.params, out.params
    )
    assert all(jax.tree.leaves(close))


def test_windows_get_clip_level_reports():
    ds = dataset(60, WORD, "words", 0, t=12)
    windowed = mt.data.windows(ds, 4, 4)  # 3 windows per clip
    trained = mt.train.fit(SmallNet(ds.tasks), windowed, epochs=2, progress=False, early_stop=None)
    report = mt.train.evaluate(trained, windowed)["word"]
    assert report["support"] == 180 and report["clip"]["support"] == 60


def test_nan_loss_stops_naming_task_and_epoch_and_keeps_last_good(data):
    trn, _ = data
    steps = len(batching.mixed()(jax.random.key(0), trn, 32).index)
    blow_up = optax.chain(
        optax.sgd(1e-2),
        optax.scale_by_schedule(lambda count: jnp.where(count >= steps, jnp.nan, 1.0)),
    )
    message = r"epoch 1: the loss of task\(s\) \['word'"
    with pytest.raises(train.TrainingError, match=message) as err:
        mt.train.fit(
            SmallNet(trn.tasks), trn, epochs=3, optimizer=blow_up, progress=False, early_stop=None
        )
    good = err.value.trained
    assert good is not None and len(good.history) == 1
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(good.params))


def test_bad_input_errors(data):
    trn, _ = data

    class Wrong(nn.Module):
        @nn.compact
        def __call__(self, x, *, train=False):
            return {"word": nn.Dense(3)(x.reshape(x.shape[0], -1))}

    with pytest.raises(ValueError, match="loud"):
        mt.train.fit(Wrong(), trn, epochs=1, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        mt.train.fit(
            SmallNet(trn.tasks),
            trn,
            epochs=1,
            progress=False,
            combine=lambda task_losses: task_losses,
        )
    with pytest.raises(ValueError, match="empty"):
        mt.train.fit(SmallNet(trn.tasks), mt.data.subset(trn, np.array([], int)), epochs=1)


@pytest.mark.parametrize("combine, stepwise", [("sum", False), ("dwa", True), ("pcgrad", False)])
def test_data_parallel_on_four_devices_equals_one_device(data, monkeypatch, combine, stepwise):
    trn, tst = data
    assert len(jax.devices()) == 4  # conftest forces four CPU devices
    monkeypatch.setattr(step_module, "scan_is_slow", lambda *args: stepwise)
    options = dict(epochs=2, progress=False, early_stop=None, combine=combine)
    if combine == "pcgrad":  # every task in every step, so the surgery acts
        options["batches"] = batching.every_task()
    one = mt.train.fit(SmallNet(trn.tasks), trn, **options)
    four = mt.train.fit(SmallNet(trn.tasks), trn, devices=jax.devices(), **options)
    close = jax.tree.map(
        lambda a, b: bool(np.allclose(a, b, rtol=1e-5, atol=1e-5)), one.params, four.params
    )
    assert all(jax.tree.leaves(close))
    kernel = four.params["head_word"]["kernel"]
    assert kernel.sharding.is_fully_replicated and len(kernel.sharding.device_set) == 4
    on_one = mt.train.evaluate(four, tst)["word"]["loss"]
    assert mt.train.evaluate(four, tst, devices=jax.devices()[:2])["word"]["loss"] == (
        pytest.approx(on_one, rel=1e-6)
    )
    if combine == "sum" and not stepwise:
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
        with pytest.raises(ValueError, match="does not split"):
            mt.train.fit(SmallNet(trn.tasks), trn, epochs=1, batch_size=30, mesh=mesh)
        with pytest.raises(ValueError, match="not both"):
            mt.train.fit(SmallNet(trn.tasks), trn, epochs=1, mesh=mesh, devices=jax.devices())


def test_fit_refuses_a_validation_set_lacking_a_task(data):
    trn, tst = data
    words_only = mt.data.subset(tst, tst.dataset_id == 0)  # loud and tags have no rows
    message = r"no rows of task\(s\) 'loud' \(160 train rows\), 'tags' \(160 train rows\)"
    with pytest.raises(ValueError, match=message):
        mt.train.fit(SmallNet(trn.tasks), trn, validation=words_only, epochs=1, progress=False)
    one_task = dataset(20, WORD, "words", 3)  # a TaskDataset of the word task alone
    with pytest.raises(ValueError, match=r"'loud' \(160 train rows\), 'tags'"):
        mt.train.fit(SmallNet(trn.tasks), trn, validation=one_task, epochs=1, progress=False)
    partial = mt.train.fit(
        SmallNet(trn.tasks),
        trn,
        validation=words_only,
        epochs=1,
        progress=False,
        allow_partial_validation=True,
    )
    assert np.isfinite(partial.history[0]["validation/word/loss"])


def test_fit_carves_validation_rows_of_every_dataset_and_class(data):
    trn, _ = data
    train_part, validation = mt.train.carve_validation(trn, 0.1, seed=0)
    assert len(train_part) + len(validation) == len(trn)
    assert not set(train_part.ids) & set(validation.ids)
    # 10 % of each dataset's 160 rows, not 10 % of the pooled rows stratified on 'word'
    np.testing.assert_array_equal(np.bincount(validation.dataset_id, minlength=3), [16, 16, 16])
    for k, t in enumerate(trn.tasks):
        y = validation.y[validation.has_task[:, k]][:, validation.task_slices[t.name]]
        whole = trn.y[trn.has_task[:, k]][:, trn.task_slices[t.name]]
        if t.kind == "multilabel":
            counts, share = y.sum(0), whole.sum(0) / 10
        else:
            n = len(t.labels)
            counts = np.bincount(t.class_ids(y), minlength=n)
            share = np.bincount(t.class_ids(whole), minlength=n) / 10
        assert np.all(counts >= 1) and np.all(np.abs(counts - share) < 1.5), (t.name, counts)
    trained = mt.train.fit(SmallNet(trn.tasks), trn, epochs=1, progress=False)  # default rule
    assert all(np.isfinite(trained.history[0][f"validation/{t.name}/loss"]) for t in trn.tasks)
    with pytest.raises(ValueError, match="dataset 'solo': 4 row"):
        solo = dataset(4, WORD, "solo", 0).replace(groups=np.zeros(4, np.int32))
        mt.train.fit(SmallNet(solo.tasks), solo, epochs=1, progress=False)


def test_fit_refuses_a_stopping_rule_on_test_metrics(data):
    trn, tst = data
    rule = early_stopping.Rule("test/loss", lambda history: early_stopping.Decision(False, 0))
    with pytest.raises(ValueError, match="may not watch 'test/loss'"):
        mt.train.fit(SmallNet(trn.tasks), trn, tst, epochs=1, early_stop=rule, progress=False)
