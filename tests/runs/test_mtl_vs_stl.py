"""Multi-task against single-task: Δ, ΔM %, mean ± sample std and paired tests over folds × seeds.

Run folders are written by the test through `mtjax.runs.folder` (no training), each with a
chosen epoch recorded; the values at the other epochs are better than any chosen one, so a
table that picked an epoch on the reported split would show them. Every number the table
gives is computed again here with numpy and scipy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mtjax import runs
from mtjax.experiments import reporting
from mtjax.runs import comparison, folder
from mtjax.tasks import Task

SEX = Task("sex", ("f", "m"), "binary")
GENRE = Task("genre", ("jazz", "rock", "pop"), "multiclass")
TAGS = Task("tags", ("bird", "car", "rain"), "multilabel")
HEADLINE = {"sex": "accuracy", "genre": "accuracy", "tags": "micro_f1"}
FOLDS, SEEDS = (0, 1, 2), (0, 1)


def metrics_of(task: Task) -> tuple[str, ...]:
    return ("loss", HEADLINE[task.name], "macro_f1")


def write_run(root: Path, group: str, tasks, fold: int, seed: int, values: dict) -> runs.Run:
    """A run of `group` whose chosen epoch holds `values[(split, task, metric)]`.

    The other epochs hold a loss of 0 and scores of 1: better than every chosen value.
    """
    run = runs.Run(root, f"{group}/seed{seed}/fold{fold}")
    chosen = (fold + seed) % 3
    history = []
    for epoch in range(3):
        record = {"epoch": epoch, "train/loss": 1.0}
        for (split, task, metric), value in values.items():
            best = 0.0 if metric == "loss" else 1.0
            record[f"{split}/{task}/{metric}"] = value if epoch == chosen else best
        history.append(record)
    folder.write_config(
        run, {"tasks": [t.to_json() for t in tasks], "group": group, "fold": fold, "seed": seed}
    )
    folder.write_history(run, history)
    folder.write_chosen_epoch(run, chosen, by="validation/loss")
    return run


@pytest.fixture
def experiment(tmp_path):
    """mt (sex+genre+tags), st-sex and st-genre over folds × seeds, with seeded values.

    st-genre has folds 0 and 1 only (4 runs), so it pairs with 4 of mt's 6 runs.
    """
    rng = np.random.default_rng(7)
    plan = {
        "mt": ((SEX, GENRE, TAGS), FOLDS),
        "st-sex": ((SEX,), FOLDS),
        "st-genre": ((GENRE,), (0, 1)),
    }
    made, truth = [], {}
    for group, (tasks, folds) in plan.items():
        for seed in SEEDS:
            for fold in folds:
                values = {
                    (split, t.name, m): float(rng.uniform(0.3, 0.9))
                    for t in tasks
                    for m in metrics_of(t)
                    for split in ("validation", "test")
                }
                made.append(write_run(tmp_path, group, tasks, fold, seed, values))
                truth[group, fold, seed] = values
    return tmp_path, made, truth


def test_every_number_of_the_table_is_recomputed(experiment):
    _, made, truth = experiment
    result = runs.compare(made)

    def of(group, task, metric, keys):
        return np.array([truth[(group, *k)]["test", task, metric] for k in keys])

    keys = {g: [k[1:] for k in truth if k[0] == g] for g in ("mt", "st-sex", "st-genre")}
    for r in result.rows:  # means and sample stds (ddof 1) of the chosen epochs
        values = of(r["group"], r["task"], r["metric"], keys[r["group"]])
        assert r["values"] == values.tolist()
        assert r["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert r["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
        assert r["n"] == len(values) and r["std"] > 0

    versus = {(v["task"], v["metric"], v["single"]): v for v in result.versus}
    assert sorted(versus) == sorted(
        [(t, m, f"st-{t}") for t in ("sex", "genre") for m in ("loss", "accuracy", "macro_f1")]
    )
    for (task, metric, single), v in versus.items():
        mt, st = of("mt", task, metric, keys["mt"]), of(single, task, metric, keys[single])
        assert v["multi"] == "mt" and v["headline"] == (metric == "accuracy")
        assert v["difference"] == pytest.approx(mt.mean() - st.mean(), rel=1e-12)
        assert (v["multi_n"], v["single_n"]) == (6, len(keys[single]))
        assert v["single_std"] == pytest.approx(st.std(ddof=1), rel=1e-12)
        matched = [k for k in keys["mt"] if k in keys[single]]
        assert sorted(map(tuple, v["pairs"])) == sorted(matched)
        x, y = of("mt", task, metric, matched), of(single, task, metric, matched)
        if task == "sex":  # 6 pairs: Wilcoxon signed-rank
            expected = stats.wilcoxon(x, y)
            assert (v["test"], v["n_pairs"]) == ("wilcoxon", 6)
        else:  # st-genre has 4 runs: 4 pairs, the paired t-test
            expected = stats.ttest_rel(x, y)
            assert (v["test"], v["n_pairs"]) == ("paired t", 4)
        assert v["p_value"] == pytest.approx(float(expected.pvalue), rel=1e-12)
        assert v["statistic"] == pytest.approx(float(expected.statistic), rel=1e-12)

    entries = {e["metric"]: e for e in result.delta_m}
    assert sorted(entries) == ["headline", "loss", "macro_f1"]
    for slot, sign in (("headline", 1.0), ("loss", -1.0), ("macro_f1", 1.0)):
        e = entries[slot]
        assert e["multi"] == "mt" and e["tasks"] == ["sex", "genre"] and e["missing"] == ["tags"]
        change = {}
        for task in ("sex", "genre"):
            metric = "accuracy" if slot == "headline" else slot
            m = of("mt", task, metric, keys["mt"]).mean()
            s = of(f"st-{task}", task, metric, keys[f"st-{task}"]).mean()
            change[task] = sign * (m - s) / s * 100
            assert e["per_task"][task] == pytest.approx(change[task], rel=1e-12)
        assert e["delta_m"] == pytest.approx(np.mean(list(change.values())), rel=1e-12)


def test_the_text_shows_both_sides_the_difference_the_test_and_delta_m(experiment):
    _, made, _ = experiment
    result = runs.compare(made)
    lines = result.text.splitlines()
    for v in result.versus:
        (line,) = [s for s in lines if s.split()[:4] == [v["task"], v["metric"], "mt", v["single"]]]
        cells = line.split()
        assert f"{v['multi_mean']:.4f}" in cells and f"{v['multi_std']:.4f}" in cells
        assert f"{v['single_mean']:.4f}" in cells and f"{v['single_std']:.4f}" in cells
        assert f"{v['difference']:+.4f}" in cells
        test = {"wilcoxon": "Wilcoxon", "paired t": "paired"}[v["test"]]
        assert test in cells and str(v["n_pairs"]) in cells and f"{v['p_value']:.4f}" in cells
    for e in result.delta_m:
        (line,) = [s for s in lines if s.split()[:3] == ["mt", e["metric"], "sex+genre"]]
        assert f"{e['delta_m']:+.2f}" in line.split() and "no single-task run of tags" in line
    assert "ΔM %" in result.text and "ddof 1" in result.text


def test_mtjax_report_prints_the_table_and_the_summary_keeps_the_headline(experiment, capsys):
    root, made, _ = experiment
    shown = reporting.report([root])
    out = capsys.readouterr().out
    assert "Wilcoxon" in out and "paired t" in out and "ΔM %" in out

    def p_values(result):
        return {(v["task"], v["metric"], v["single"]): v["p_value"] for v in result.versus}

    assert p_values(shown) == p_values(runs.compare(made))
    text = reporting.summary(shown)
    table = text.split("\n\n")[0].splitlines()[3:]  # heading, headers, rule, then rows
    assert len(table) == 5 and {line.split()[4] for line in table} == {"accuracy", "micro_f1"}
    assert {v.split()[1] for v in text.split("\n\n")[1].splitlines()[3:]} == {"accuracy"}
    headline = [e for e in shown.delta_m if e["metric"] == "headline"]
    assert f"{headline[0]['delta_m']:+.2f}" in text


def test_a_task_with_two_single_task_references_has_no_delta_m_until_settings_pick_one(
    experiment,
):
    root, made, _ = experiment
    rng = np.random.default_rng(3)
    other = [
        write_run(
            root,
            "st-sex-other",
            (SEX,),
            fold,
            seed,
            {("test", "sex", m): float(rng.uniform(0.3, 0.9)) for m in metrics_of(SEX)},
        )
        for seed in SEEDS
        for fold in FOLDS
    ]
    both = runs.compare([*made, *other])
    (headline,) = [e for e in both.delta_m if e["metric"] == "headline"]
    assert headline["ambiguous"] == ["sex"] and math.isnan(headline["delta_m"])
    assert "several single-task groups of sex" in both.text
    settings = {"mt": "a", "st-sex": "a", "st-genre": "a", "st-sex-other": "b"}
    picked = runs.compare([*made, *other], settings=settings)
    assert {v["single"] for v in picked.versus} == {"st-sex", "st-genre"}
    (again,) = [e for e in picked.delta_m if e["metric"] == "headline"]
    assert again["delta_m"] == pytest.approx(
        next(e for e in runs.compare(made).delta_m if e["metric"] == "headline")["delta_m"]
    )


def test_paired_test_picks_wilcoxon_from_six_pairs_and_t_below():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=8), rng.uniform(size=8)
    for n in (2, 5):
        assert comparison.paired_test(x[:n], y[:n]) == (
            "paired t",
            pytest.approx(float(stats.ttest_rel(x[:n], y[:n]).statistic)),
            pytest.approx(float(stats.ttest_rel(x[:n], y[:n]).pvalue)),
        )
    for n in (6, 8):
        test, statistic, p = comparison.paired_test(x[:n], y[:n])
        assert test == "wilcoxon" and p == pytest.approx(float(stats.wilcoxon(x[:n], y[:n]).pvalue))
    # why 6: with 5 pairs the exact two-sided Wilcoxon p-value is never below 2 / 2^5
    assert stats.wilcoxon(np.arange(1.0, 6.0), np.zeros(5)).pvalue == pytest.approx(2 / 2**5)
    assert comparison.WILCOXON_MIN_PAIRS == 6
    test, statistic, p = comparison.paired_test([0.5], [0.25])
    assert test is None and math.isnan(p) and math.isnan(statistic)
    with pytest.raises(ValueError, match="2 multi-task values but 1 single-task"):
        comparison.paired_test([0.5, 0.5], [0.25])


def test_one_run_per_group_has_no_std_and_no_test(tmp_path):
    values = {("test", "sex", m): 0.5 for m in metrics_of(SEX)}
    mt = write_run(tmp_path, "mt", (SEX, GENRE), 0, 0, {**values, ("test", "genre", "loss"): 1.0})
    st = write_run(
        tmp_path, "st", (SEX,), 0, 0, {("test", "sex", m): 0.25 for m in metrics_of(SEX)}
    )
    result = runs.compare([mt, st])
    (v,) = [v for v in result.versus if v["metric"] == "accuracy"]
    assert math.isnan(v["multi_std"]) and v["test"] is None and v["n_pairs"] == 1
    assert v["difference"] == 0.25
    (e,) = [e for e in result.delta_m if e["metric"] == "headline"]
    assert e["delta_m"] == 100.0  # (0.5 - 0.25) / 0.25
    (line,) = [
        s for s in result.text.splitlines() if s.split()[:4] == ["sex", "accuracy", "mt", "st"]
    ]
    assert line.split()[4:] == ["0.5000", "0.2500", "+0.2500", "-", "1", "-"]


def test_a_paired_t_test_on_equal_differences_has_no_p_value():
    # Differences equal up to float rounding: t would be ~1e16 and p ~0, which means nothing.
    multi = [0.1458333333333333, 0.14583333333333334]
    single = [0.2708333333333333, 0.2708333333333334]
    test, statistic, p = comparison.paired_test(multi, single)
    assert test == "paired t" and math.isnan(statistic) and math.isnan(p)
    test, statistic, p = comparison.paired_test([0.2, 0.4, 0.3], [0.1, 0.1, 0.2])
    d = np.array([0.1, 0.3, 0.1])  # by hand: t = mean / (sample std / sqrt(n)), 2 dof
    t = d.mean() / (d.std(ddof=1) / np.sqrt(3))
    assert test == "paired t" and statistic == pytest.approx(t) and t == pytest.approx(2.5)
    assert p == pytest.approx(2 * stats.t.sf(t, 2))
