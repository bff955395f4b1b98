"""`mt.export(run, path)`: an artifact run with `jax` alone gives the predictor's numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
import tiny_run

import mtjax as mt
from mtjax.data import prepare

# Runs in a fresh interpreter: only jax, numpy and json; framing as model.json says.
CONSUMER = r"""
import json, sys
import jax, numpy as np
folder = sys.argv[1]
settings = json.load(open(f"{folder}/model.json"))
exported = jax.export.deserialize(bytearray(open(f"{folder}/model.jax", "rb").read()))
_, frames, n_features = settings["input"]["shape"]
assert settings["frame"]["start"] == "begin"
clips = np.load(f"{folder}/features.npz")
x = np.zeros([len(clips.files), frames, n_features], np.float32)
for i, name in enumerate(sorted(clips.files, key=lambda n: int(n.split("_")[1]))):
    clip = clips[name][:frames]
    x[i, : len(clip)] = clip
whole = exported.call(x)
first = exported.call(x[:1])  # the batch is symbolic: any size runs
np.savez(f"{folder}/out.npz", **{t: np.asarray(p) for t, p in whole.items()},
         **{f"first_{t}": np.asarray(p) for t, p in first.items()})
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "mtjax")))
"""


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    steps = [mt.frame("median"), mt.standardize()]
    return tiny_run.train(tmp_path_factory.mktemp("cnn"), steps, extraction=tiny_run.SHORT_HOPS)


def test_the_artifact_runs_with_jax_alone_and_gives_the_predictors_probabilities(cnn, tmp_path):
    assert mt.runs.read_config(cnn.run)["model"]["name"] == "HardSharingCNN"
    out = mt.export(cnn.run, tmp_path / "exported")
    settings = json.loads((out / "model.json").read_text())
    predictor = mt.load(cnn.run)
    assert settings["input"]["shape"] == ["batch", predictor.frames, 16]
    assert settings["tasks"] == [t.to_json() for t in predictor.tasks]
    assert settings["extraction"] == json.loads(json.dumps(tiny_run.SHORT_HOPS.to_config()))
    assert settings["frame"] == {"length": predictor.frames, "start": "begin"}
    assert settings["windows"] is None and settings["epoch"] == predictor.epoch
    assert settings["outputs"]["pitch"]["columns"] == list(predictor.tasks[0].labels)

    files = tiny_run.clip_files(cnn)
    features = [predictor.features(f) for f in files]  # as extracted: not framed, not scaled
    assert {len(f) for f in features} - {predictor.frames}  # some are padded or cut
    np.savez(out / "features.npz", *features)
    done = subprocess.run(
        [sys.executable, "-c", CONSUMER, str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # no mtjax module loaded
    got = np.load(out / "out.npz")
    expected = predictor(files)
    want = np.array([expected[str(f)]["pitch"]["probabilities"] for f in files])
    np.testing.assert_allclose(got["pitch"], want, atol=1e-5)
    np.testing.assert_allclose(got["first_pitch"], want[:1], atol=1e-5)
    test_rows = mt.predict(cnn.trained, cnn.split.test)["pitch"]
    np.testing.assert_allclose(got["pitch"], test_rows, atol=1e-5)
    exported = jax.export.deserialize(bytearray((out / "model.jax").read_bytes()))
    unscaled = predictor.prepared(features, scale=False).x  # the artifact's input, in mtjax
    np.testing.assert_allclose(exported.call(unscaled)["pitch"], want, atol=1e-5)


def _rows(t=6, f=3, n=5, seed=0):
    rng = np.random.default_rng(seed)
    task = mt.Task("k", ("a", "b"))
    x = rng.normal(2.0, 3.0, (n, t, f))
    y = task.encode_many(["a", "b"] * (n // 2) + ["a"] * (n % 2))
    return mt.TaskDataset.from_arrays(x, y, [task], lengths=rng.integers(2, t + 1, n))


@pytest.mark.parametrize("per", ["feature", "cell"])
def test_folded_scaling_is_what_replay_does(per):
    ds = _rows()
    first = mt.data.scale(ds, mt.data.fit_scaler(ds))  # a per-feature scaling before framing
    framed = mt.data.frame(first, 4)
    done = mt.data.scale(framed, mt.data.fit_scaler(framed, per=per))
    shaping, affine = prepare.folded_scaling(done.preparation)
    assert shaping == [{"step": "frame", "length": 4, "start": "begin"}]
    assert affine.mult.shape == ((4, 3) if per == "cell" else (1, 3))
    shaped = prepare.replay(ds, shaping)
    valid = np.arange(4)[None, :, None] < shaped.lengths[:, None, None]
    folded = np.where(valid, shaped.x * affine.mult + affine.add, 0)
    np.testing.assert_allclose(folded, done.x, atol=1e-5)
    np.testing.assert_allclose(prepare.replay(ds, done.preparation).x, done.x, atol=0)


def test_a_per_cell_scaling_before_windows_cannot_be_folded():
    ds = mt.data.frame(_rows(), 6)
    scaled = mt.data.scale(ds, mt.data.fit_scaler(ds, per="cell"))
    cut = mt.data.windows(scaled, 3, 1)
    with pytest.raises(ValueError, match=r"preparation\[2\]: windows after the per-cell scaling"):
        prepare.folded_scaling(cut.preparation)
