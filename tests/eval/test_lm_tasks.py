"""The language-model tasks (captioning, open QA, multiple choice by likelihood) on the tiny evaluation world.

Oracles that read the step off the one-hot features give the protocols known answers; a COSMO checkpoint trained
for a few steps (tiny random Llama) runs every task through the suite; a model without the capability is skipped.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from tests.eval.world import DIM, K, STEPS, VIDEOS, build_world
from tests.models.tiny_lms import build_lm, one_thread  # noqa: F401  (autouse fixture)
from vidlang.config import from_dict
from vidlang.eval.captioning import cider_d, tokenize
from vidlang.eval.config import EvalConfig
from vidlang.eval.tasks import captioning as C
from vidlang.eval.tasks import qa as Q

LM_TASKS = ["caption-youcookii", "caption-msrvtt", "videoqa-open-msrvtt", "videoqa-msrvtt-lm"]


def step_of(clip) -> int:
    """The step a one-hot world clip shows (its most frequent argmax among the step axes)."""
    a = np.asarray(clip)[:, :K].argmax(1)
    return Counter(a.tolist()).most_common(1)[0][0]


class OracleLM:
    """Reads the step off the features: captions are its sentence, answers its first word, scores 1 for it."""

    capabilities = frozenset({"generate", "score"})
    expected_fps = expected_dim = None

    def evaluator(self, capability):
        return self

    def crop(self, features, start, end, fps):
        s, e = int(np.floor(start * fps)), max(int(np.ceil(end * fps)), int(np.floor(start * fps)) + 1)
        return np.asarray(features[s:e], dtype=np.float32)

    def caption(self, clips, num_beams=1, max_new_tokens=20, examples=(), text_only=False):
        return ["serve"] * len(clips) if text_only else [STEPS[step_of(c)] for c in clips]

    def answer(self, clips, questions, max_new_tokens=4, examples=(), text_only=False):
        return ["the " + STEPS[0].split()[0] if text_only else STEPS[step_of(c)].split()[0] + "." for c in clips]

    def score(self, clips, texts, text_only=False):
        import torch

        return torch.tensor([0.0 if text_only else float(t == STEPS[step_of(c)]) for c, t in zip(clips, texts)])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_world")
    w = build_world(root)
    yc = json.loads(w["youcookii"].read_text())
    for vid in ("v0", "v1", "v2"):  # a training subset: in-context examples and the nearest-caption baseline
        yc["database"][vid]["subset"] = "training"
    w["youcookii"].write_text(json.dumps(yc))
    qa = [{"question": f"what happens in clip {i}?", "answer": STEPS[n].split()[0], "video_id": n, "id": i}
          for i, n in enumerate([0, 1, 2, 3, 4, 5, 0, 3])]
    w["msrvtt_qa"] = root / "msrvtt_qa_test.json"
    w["msrvtt_qa"].write_text(json.dumps(qa))
    return w


def eval_config(world, **over):
    data = {k: str(world[k]) for k in ("youcookii", "msrvtt_jsfusion", "msrvtt_mc", "msrvtt_qa")}
    return from_dict(EvalConfig, {"data": {"features": str(world["store"]), **data}, "tasks": LM_TASKS,
                                  "captioning": {"shots": [0, 2], "max_new_tokens": 5, "num_beams": 2},
                                  "qa": {"shots": [0, 2]}, **over})


def test_oracle_scores_are_the_known_answers(world):
    from vidlang.eval.cli import evaluate

    res = evaluate(eval_config(world), model=OracleLM(), progress=False)
    assert set(res["tasks"]) == set(LM_TASKS) and not res["skipped"]
    yc = res["tasks"]["caption-youcookii"]
    refs = [tokenize(STEPS[k]) for vid in ("v3", "v4", "v5") for k in VIDEOS[vid]]  # validation, in time order
    perfect = 100 * cider_d(refs, [[r] for r in refs])["CIDEr-D"]
    assert yc["counts"] == {"clips": 9, "videos": 3, "training_clips": 9}
    # every row of the oracle writes the reference itself; so does the nearest training clip (one-hot steps)
    full = yc["metrics"]["0-shot greedy"]["CIDEr-D"]
    assert full == pytest.approx(perfect) and perfect > 100
    assert full == yc["metrics"]["2-shot greedy"]["CIDEr-D"] == yc["baselines"]["nearest training caption"]["CIDEr-D"]
    assert yc["baselines"]["text-only LM 0-shot"]["CIDEr-D"] < full
    # another clip's caption scores below the right clip's: the control for using the video
    assert yc["baselines"]["other clips 0-shot"]["CIDEr-D"] < full
    ms = res["tasks"]["caption-msrvtt"]
    assert ms["counts"] == {"clips": K - 2, "example_clips": 2}  # the 2 example videos are not scored
    open_qa = res["tasks"]["videoqa-open-msrvtt"]
    assert open_qa["metrics"]["0-shot"]["accuracy"] == 100.0 == open_qa["metrics"]["2-shot"]["accuracy"]
    assert open_qa["counts"]["questions"] + 2 <= 8 and open_qa["counts"]["example_questions"] == 2
    assert open_qa["baselines"]["text-only LM 0-shot"]["accuracy"] < 100
    assert open_qa["baselines"]["other clips 0-shot"]["accuracy"] < 100
    mc = res["tasks"]["videoqa-msrvtt-lm"]
    assert mc["metrics"]["accuracy"] == 100.0 and mc["baselines"]["chance"]["accuracy"] == 20.0
    assert mc["baselines"]["text-only LM"]["accuracy"] == 0.0  # all candidates tie: ties count as wrong
    assert mc["baselines"]["other clips"]["accuracy"] < 100.0


def test_nearest_captions_is_the_argmax_of_cosine_with_leave_one_out():
    rng = np.random.default_rng(0)
    bank = [rng.normal(size=(rng.integers(1, 5), 4)) for _ in range(7)]
    caps = [f"c{i}" for i in range(7)]
    queries = bank[:3]
    mean = lambda c: np.asarray(c).mean(0) / np.linalg.norm(np.asarray(c).mean(0))  # noqa: E731
    naive = [caps[int(np.argmax([mean(q) @ mean(b) for b in bank]))] for q in queries]
    assert C.nearest_captions(queries, bank, caps) == naive == ["c0", "c1", "c2"]
    loo = C.nearest_captions(queries, bank, caps, exclude=[0, 1, 2])
    for q, got in enumerate(loo):
        sims = [mean(queries[q]) @ mean(b) if i != q else -np.inf for i, b in enumerate(bank)]
        assert got == caps[int(np.argmax(sims))] != caps[q]
    picks = C.draw_examples(6, ["a", "a", "b", "b", "c", "c"], 3, seed=1)
    assert len(picks) == 3 and len({["a", "a", "b", "b", "c", "c"][i] for i in picks}) == 3
    assert picks == C.draw_examples(6, ["a", "a", "b", "b", "c", "c"], 3, seed=1)


def test_answer_priors_leave_the_question_video_out():
    from vidlang.datasets.msrvtt_qa import MsrvttQA

    qs = [MsrvttQA(0, "video1", "what color is it?", "Red"), MsrvttQA(1, "video1", "what color now?", "red"),
          MsrvttQA(2, "video2", "what color is it?", "blue"), MsrvttQA(3, "video3", "who is it?", "man"),
          MsrvttQA(4, "video3", "what shape?", "circle")]
    got = Q.prior_answers(qs, qs, leave_video_out=True)
    # video1's own two "red" answers do not count for its questions: the other videos tie 1-1-1 -> "blue"
    assert got["overall"] == ["blue", "blue", "red", "red", "red"]
    assert got["per question word"] == ["blue", "blue", "red", "red", "red"]
    got = Q.prior_answers(qs, qs, leave_video_out=False)
    assert got["overall"] == ["red"] * 5 and got["per question word"][3] == "man"


def test_lm_tasks_run_on_a_trained_cosmo_checkpoint_and_others_are_skipped(world, tmp_path):
    from tests.train.conftest import make_corpus
    from tests.train.test_cosmo_train import cosmo_config
    from vidlang.eval.capabilities import CheckpointModel, RandomEmbedder
    from vidlang.eval.cli import evaluate
    from vidlang.train.trainer import train

    lm = build_lm("llama", tmp_path / "lm")
    train(cosmo_config(lm, train__steps=2, model__max_tokens=64), tmp_path / "run", data=make_corpus(dim=DIM))
    cfg = eval_config(world, tasks=[*LM_TASKS, "clip-youcookii"])
    res = evaluate(cfg, model=CheckpointModel(tmp_path / "run/best"), progress=False)
    assert set(res["tasks"]) == {*LM_TASKS, "clip-youcookii"} and not res["skipped"]
    yc = res["tasks"]["caption-youcookii"]
    assert set(yc["metrics"]) == {"0-shot greedy", "0-shot beam2", "2-shot greedy"}
    assert set(yc["baselines"]) == {"text-only LM 0-shot", "text-only LM 2-shot", "nearest training caption",
                                    "other clips 0-shot", "other clips 2-shot"}
    for row in (*yc["metrics"].values(), *yc["baselines"].values()):
        assert 0.0 <= row["BLEU-4"] <= 100.0 and row["CIDEr-D"] >= 0.0
    for task in ("videoqa-open-msrvtt", "videoqa-msrvtt-lm"):
        for row in (*res["tasks"][task]["metrics"].values(), *res["tasks"][task]["baselines"].values()):
            value = row["accuracy"] if isinstance(row, dict) else row
            assert 0.0 <= value <= 100.0
    assert 0.0 <= res["tasks"]["clip-youcookii"]["metrics"]["t2v"]["R@5"] <= 100.0
    # a model without generate/score: those tasks are skipped with the reason, the embed task runs
    res = evaluate(cfg, model=RandomEmbedder(8), progress=False)
    assert set(res["tasks"]) == {"clip-youcookii"}
    assert res["skipped"]["caption-youcookii"] == "the model cannot generate (its capabilities: embed)"
    assert res["skipped"]["videoqa-msrvtt-lm"] == "the model cannot score (its capabilities: embed)"
