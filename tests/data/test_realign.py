"""`vidlang align` on a tiny world: per-video drop rule, seen/unseen symmetry, ground-truth report, OT cleaning.

The world: the 6 task videos of tests/eval/world.py, each twice, once as a video the model was trained on
("s_" prefix) and once as a new video ("u_"); the same narration in both. Step seconds are a mix of their step's
axis and a shared axis (so steps differ in how well they match), lines are the step sentences plus one chatter
line per video. The oracle embedder of tests/eval/world.py scores lines; `Memorising` scores the "seen" copies
1.5 times higher, as a model does on its training videos.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.eval.world import DIM, K, STEPS, VIDEOS, OracleEmbedder, spans, write_store
from vidlang.data.realign import VideoRealignment, ground_truth_report, main, realign
from vidlang.data.store import FeatureStore
from vidlang.datasets.howto100m import CaptionLine
from vidlang.eval import alignment as al

CHATTER = "subscribe to my channel"


def _features(steps, seed):
    rng = np.random.default_rng(seed)
    sp, dur = spans(steps)
    x = np.zeros((int(dur), DIM), np.float32)
    x[:, K] = 1.0  # background
    for k, s, e in sp:
        a = rng.uniform(0.45, 1.0)  # how clearly the step shows
        x[int(s):int(e)] = 0.0
        x[int(s):int(e), k] = a
        x[int(s):int(e), K] = 1.0 - a
    return x + 0.03 * rng.normal(size=x.shape).astype(np.float32)


def _narration(steps):
    sp, _ = spans(steps)
    out = []
    for j, (k, s, e) in enumerate(sp):
        off = 7.0 if j == 1 else 0.5  # the second step is narrated 7 s late, after its end
        out.append({"start": s + off, "end": s + off + 2, "text": STEPS[k], "relevant": True, "step": j,
                    "kind": "step"})
    k0, s0, _ = sp[0]
    out.append({"start": s0 + 3, "end": s0 + 5, "text": CHATTER, "relevant": False, "step": None, "kind": "chatter"})
    out.append({"start": s0 + 10.5, "end": s0 + 12.5, "text": STEPS[k0], "relevant": True, "step": 0,
                "kind": "step"})  # a late repeat of the first step
    return sorted(out, key=lambda l: l["start"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("realign_world")
    feats, gt, caps = {}, {"version": 1, "fps": 1.0, "videos": {}}, {}
    for i, (vid, steps) in enumerate(VIDEOS.items()):
        x = _features(steps, i)
        sp, dur = spans(steps)
        narr = _narration(steps)
        for prefix, split, scale in (("s_", "train", 2.0), ("u_", "val", 1.0)):
            # the seen copy's raw features are scaled: the oracle normalises them away, their bytes differ
            feats[prefix + vid] = x * scale
            gt["videos"][prefix + vid] = {"task_id": "t1", "split": split, "duration": dur,
                                          "steps": [{"step_id": k + 1, "order": j, "start": s, "end": e}
                                                    for j, (k, s, e) in enumerate(sp)], "narration": narr}
            caps[prefix + vid] = {"start": [l["start"] for l in narr], "end": [l["end"] for l in narr],
                                  "text": [l["text"] for l in narr]}
    store = write_store(root / "store", feats)
    (root / "ground_truth.json").write_text(json.dumps(gt))
    (root / "captions.json").write_text(json.dumps(caps))
    splits = {"train": sorted(v for v in feats if v.startswith("s_")), "val": sorted(v for v in feats if v.startswith("u_"))}
    (root / "splits.json").write_text(json.dumps(splits))
    seen = {hashlib.md5(np.ascontiguousarray(feats[v]).tobytes()).hexdigest() for v in splits["train"]}
    return {"root": root, "store": FeatureStore(store), "splits": splits, "seen_hashes": seen,
            "captions": {vid: [CaptionLine(s, e, t) for s, e, t in zip(c["start"], c["end"], c["text"])]
                         for vid, c in caps.items()}}


class Memorising(OracleEmbedder):
    """The oracle, with every similarity in the videos it was 'trained' on 1.5 times higher."""

    def __init__(self, seen_hashes):
        self.seen = seen_hashes

    def embed_seconds(self, features, fps=None):
        out = super().embed_seconds(features, fps)
        key = hashlib.md5(np.ascontiguousarray(np.asarray(features, np.float32)).tobytes()).hexdigest()
        return 1.5 * out if key in self.seen else out


def _kept(videos, prefix):
    return {vid[2:]: v.kept.tolist() for vid, v in videos.items() if vid.startswith(prefix)}


@pytest.mark.parametrize("score", ["contrast", "max_sim"])
def test_default_rule_treats_seen_and_unseen_videos_alike(world, score):
    emb = Memorising(world["seen_hashes"])
    _, _, videos = realign(emb, world["store"], world["captions"], drop_score=score)
    assert _kept(videos, "s_") == _kept(videos, "u_")
    for vid, v in videos.items():  # the chatter line goes everywhere; the step lines stay
        texts = [l.text for l in v.lines]
        assert not v.kept[texts.index(CHATTER)]
        assert v.kept.sum() >= len(texts) - 2
    # the old global quantile drops the unseen copies' lines first
    _, _, glob = realign(emb, world["store"], world["captions"], drop_rule="global-frac", drop_value=0.3,
                         drop_score=score)
    n_seen = sum(sum(k) for k in _kept(glob, "s_").values())
    n_unseen = sum(sum(k) for k in _kept(glob, "u_").values())
    assert n_seen > n_unseen + 5


def test_what_one_video_keeps_does_not_depend_on_the_others(world):
    emb = Memorising(world["seen_hashes"])
    _, _, both = realign(emb, world["store"], world["captions"], drop_score="max_sim")
    alone = {vid: realign(emb, world["store"], {vid: lines}, drop_score="max_sim")[2][vid].kept.tolist()
             for vid, lines in list(world["captions"].items())[:4]}
    assert alone == {vid: both[vid].kept.tolist() for vid in alone}


def test_realigned_lines_land_in_their_steps_and_the_report_counts_them(world):
    emb = Memorising(world["seen_hashes"])
    _, summary, videos = realign(emb, world["store"], world["captions"])
    from vidlang.datasets.alignment_truth import load_alignment_truth

    kind, truth, _ = load_alignment_truth(str(world["root"] / "ground_truth.json"))
    rep = ground_truth_report(videos, kind, truth, world["splits"])
    g = rep["groups"]
    assert set(g) == {"all", "train", "val"} and g["train"]["videos"] == g["val"]["videos"] == 6
    assert g["all"]["counts"]["lines"] == 12 * 5 and g["all"]["counts"]["relevant"] == 12 * 4
    assert g["all"]["irrelevant_dropped_pct"] == 100.0
    # the late line (7 s after its step began, i.e. after the step) is raw-timestamp miss; realigned it hits
    assert g["val"]["recall_raw_timestamps"] < 100.0
    kept_rel = g["val"]["counts"]["relevant_kept"]
    assert g["val"]["counts"]["hits"] == kept_rel  # every kept relevant line lands inside its step
    for key in ("recall", "relevant_kept_pct", "irrelevant_dropped_pct", "kept_pct"):
        assert g["train"][key] == g["val"][key]


def test_report_hand_case():
    lines = [CaptionLine(1.0, 3.0, "Crack the eggs."), CaptionLine(4.0, 6.0, "uh subscribe to my channel"),
             CaptionLine(20.0, 22.0, "heat the pan")]
    videos = {"a": VideoRealignment(lines, np.array([5.0, 4.0, 30.0]), np.array([7.0, 6.0, 32.0]),
                                    np.array([True, False, True]), np.zeros(3))}
    truth = {"a": {"starts": [1.0, 4.5, 20.0, 40.0], "ends": [3.0, 6.0, 22.0, 42.0],
                   "texts": ["crack the eggs", "subscribe to my channel", "heat the pan", "serve"],
                   "intervals": [(4.0, 9.0), None, (10.0, 16.0), (44.0, 50.0)]},
             "b": {"starts": [0.0], "ends": [1.0], "texts": ["x"], "intervals": [None]}}
    rep = ground_truth_report(videos, "synthetic", truth, {"train": ["a"], "val": ["b"]})
    assert rep["videos_not_realigned"] == 1
    a = rep["groups"]["all"]
    # line 1 moved to 6 s, inside 4-9: hit (raw 2 s: miss); chatter dropped; line 3 at 31 s: miss (kept);
    # "serve" is carried by no input line: a dropped miss
    assert a["counts"] == {"lines": 4, "kept": 2, "relevant": 3, "relevant_kept": 2, "hits": 1, "hits_raw": 0,
                           "irrelevant_dropped": 1, "unmatched": 1}
    assert a["recall"] == pytest.approx(100 / 3) and a["irrelevant_dropped_pct"] == 100.0
    assert rep["groups"]["train"]["counts"] == a["counts"] and rep["groups"]["val"]["videos"] == 0


def test_ot_clean_mode_retimes_and_drops_the_chatter(world):
    emb = Memorising(world["seen_hashes"])
    out, summary, videos = realign(emb, world["store"], world["captions"], method="ot-clean")
    assert summary["drop_rule"] == "ot bucket"
    assert _kept(videos, "s_") == _kept(videos, "u_")
    for vid, v in videos.items():
        texts = [l.text for l in v.lines]
        assert not v.kept[texts.index(CHATTER)] and CHATTER not in out[vid]["text"]
        steps = {k: (s, e) for k, s, e in spans(VIDEOS[vid[2:]])[0]}
        for line, s, e, k in zip(v.lines, v.start, v.end, v.kept):
            if k:  # a kept step line now sits on its step (span centre inside it)
                a, b = steps[STEPS.index(line.text)]
                assert a <= (s + e) / 2 <= b
        assert out[vid]["start"] == sorted(out[vid]["start"])


def test_cli_report_splits_and_errors(world, tmp_path, capsys):
    root = world["root"]
    base = ["align", "--checkpoint", "random", "--features", str(world["store"].root), "--captions",
            str(root / "captions.json")]
    from vidlang.cli import main as cli

    out, rep = tmp_path / "realigned.json", tmp_path / "report.json"
    assert cli([*base, "--out", str(out), "--ground-truth", str(root / "ground_truth.json"), "--splits",
                str(root / "splits.json"), "--report", str(rep)]) == 0
    printed = capsys.readouterr().out
    assert "recall" in printed and "\ntrain " in printed and "\nval " in printed
    report = json.loads(rep.read_text())
    assert report["summary"]["drop_rule"] == "video-z" and report["groups"]["all"]["counts"]["lines"] == 60
    from vidlang.datasets import read_howto100m_captions

    assert set(read_howto100m_captions(out)) == set(world["captions"])
    # --drop-frac alone: that fraction of each video's lines (round(0.4 * 5) = 2 of 5)
    assert main([*base[1:], "--out", str(out), "--drop-frac", "0.4"]) == 0
    assert all(len(v) == 3 for v in read_howto100m_captions(out).values())
    assert main([*base[1:], "--out", str(out), "--method", "ot-clean"]) == 0
    capsys.readouterr()
    # bad input: one line, exit 2
    assert cli([*base, "--out", str(out), "--method", "ot-clean", "--drop-frac", "0.3"]) == 2
    assert cli([*base, "--out", str(out), "--splits", str(root / "splits.json")]) == 2
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert cli([*base, "--out", str(out), "--ground-truth", str(root / "ground_truth.json"), "--splits",
                str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "bad.json" in err[2]
