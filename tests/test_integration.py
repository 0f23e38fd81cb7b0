"""End to end on the embedded world: synth -> preprocess -> pretrain (InfoNCE) -> post-train (Norton) -> eval.

Runs the same in-process stages as `vidlang demo` (vidlang/pipeline.py) on a tiny corpus, then checks that the
pipeline's outputs are consistent and that training learned something: the post-trained model ranks clips far
better than the measured chance level on the evaluation split. (Whether Norton beats InfoNCE is a question for
`vidlang study` with seeds, not for a single tiny run.)
"""

from __future__ import annotations

import json

import pytest

from vidlang import pipeline as P
from vidlang.data import FeatureStore
from vidlang.eval.report import task_rows

TINY = ["train.steps=40", "train.eval_every=20", "data.batch_videos=8", "train.progress=false",
        "optim.warmup_steps=5"]  # the demo config warms up over 50 steps; a 40-step run must not stay in warm-up


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    corpus = P.prepare_corpus(out, ["--videos", 32, "--seed", 3, "--size", 32, "--fps", 3, "--min-duration", 40,
                                    "--max-duration", 60, "--msrvtt-clips", 20], workers=2)
    pre = P.train_stage("pretrain_demo_cpu.yaml", out / "pretrain", corpus, TINY)
    post = P.train_stage("demo_cpu.yaml", out / "norton", corpus, ["train.steps=10", "train.eval_every=5",
                                                                   "data.batch_videos=8", "train.progress=false"],
                         init_from=pre)
    return out, corpus, pre, post


def test_pipeline_outputs_are_consistent(tiny_run):
    out, corpus, pre, post = tiny_run
    store = FeatureStore(corpus.features)
    gt = json.loads(corpus.ground_truth.read_text())
    assert set(store.ids()) == set(gt["videos"]), "every synthetic video got features"
    for vid in list(store.ids())[:5]:
        assert store[vid].shape[0] == int(-(-gt["videos"][vid]["duration"] // 1))  # ceil(duration * 1 fps)
        assert store.text(vid), "cleaned narration stored next to the features"
    meta = json.loads((post / "meta.json").read_text())
    assert meta["objective"] == "norton" and meta["step"] >= 1
    # Rerunning a finished stage is a no-op (idempotent demo).
    assert P.train_stage("demo_cpu.yaml", out / "norton", corpus, [], init_from=pre) == post


def test_trained_model_beats_chance_on_clip_retrieval(tiny_run):
    out, corpus, pre, post = tiny_run
    partial = P.eval_stage(pre, out / "pre.json", corpus, ["tasks=[alignment]"])
    assert list(partial["tasks"]) == ["alignment"]
    full = P.eval_stage(pre, out / "pre.json", corpus)  # a cached two-task file must not stand in for all tasks
    assert set(full["tasks"]) > {"alignment", "clip-youcookii"}
    mtime = (out / "pre.json").stat().st_mtime_ns
    assert P.eval_stage(pre, out / "pre.json", corpus, ["tasks=[clip-youcookii]"]) == full  # subset: reused
    assert (out / "pre.json").stat().st_mtime_ns == mtime
    trained = task_rows(full)
    chance = task_rows(P.eval_stage("random", out / "chance.json", corpus))
    # (CrossTask/segmentation on a 6-video evaluation split are too noisy to assert after 40 steps; the demo
    # reports them at scale.)
    for key in ("clip-youcookii / t2v / R@5", "clip-msrvtt / t2v / R@5"):
        assert trained[key] > chance[key], (key, trained[key], chance[key])
    # The random-embedding run reproduces the analytic chance level the evaluator prints beside it.
    assert chance["clip-youcookii / t2v / MedR"] > trained["clip-youcookii / t2v / MedR"]
    # All-background and raw-timestamp baselines are computed by the evaluator, not hard-coded.
    assert 0 < trained["segmentation-coin / baseline / all_background / frame_accuracy"] < 100
    assert 0 < trained["alignment / baseline / timestamps / recall"] <= 100
