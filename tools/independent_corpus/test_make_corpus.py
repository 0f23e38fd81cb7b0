"""Checks of the MSRVTT-QA and Howto-Interlink7M files written by make_corpus.py.

    python -m pytest -q tools/independent_corpus/test_make_corpus.py

One small corpus (8 long videos, 10 clips) is rendered once; the QA answers and the Interlink clips are checked
against the other files of the same corpus (the MSR-VTT captions, COIN steps) and against the rendered mp4s.
"""
from __future__ import annotations

import collections
import csv
import importlib.util
import json
import os
import re

import av
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("independent_make_corpus", os.path.join(HERE, "make_corpus.py"))
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)

N_VIDEOS, N_CLIPS, SEED = 8, 10, 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("indep") / "corpus"
    assert mc.main([str(out), "--videos", str(N_VIDEOS), "--clips", str(N_CLIPS), "--seed", str(SEED),
                    "--workers", "1"]) == 0
    return str(out)


def mp4_duration(path):
    with av.open(path) as c:
        s = c.streams.video[0]
        return float(s.frames / s.average_rate)


def caption_words(caption):
    """The caption's words plus the lemma of each verb form in it ("cutting" -> "cut")."""
    words = set(caption.split())
    for v, spec in mc.VERBS.items():
        if words & set(f.split()[0] for f in spec["forms"][0]):
            words.add(v)
    return words


def test_msrvtt_qa(corpus):
    A = os.path.join(corpus, "annotations")
    with open(os.path.join(A, "msrvtt_qa_test.json")) as f:
        qa = json.load(f)
    with open(os.path.join(A, "MSRVTT_JSFUSION_test.csv")) as f:
        captions = {int(r["video_id"][len("video"):]): r["sentence"] for r in csv.DictReader(f)}
    plans = {c["num"]: c for c in mc.build_plans(N_VIDEOS, N_CLIPS, SEED)[1]}
    assert isinstance(qa, list) and qa
    assert [q["id"] for q in qa] == list(range(len(qa)))
    per_clip = collections.defaultdict(list)
    for q in qa:
        assert set(q) == {"question", "answer", "video_id", "id"}
        assert all(type(q[k]) is int for k in ("video_id", "id"))
        assert re.fullmatch(r"(what|who|how|where|when) [a-z' ]+\?", q["question"]), q
        assert re.fullmatch(r"[a-z]+", q["answer"]), q
        assert q["video_id"] in captions, q
        assert os.path.isfile(os.path.join(corpus, "msrvtt", "videos", f"video{q['video_id']}.mp4"))
        per_clip[q["video_id"]].append(q)
    assert sorted(per_clip) == sorted(captions)  # every clip is asked about
    for num, qs in per_clip.items():
        assert 3 <= len(qs) <= 8
        assert len({q["question"] for q in qs}) == len(qs)
        cap, plan = captions[num], plans[num]
        n_steps = 1 + cap.count(" and then ")
        assert n_steps == len(plan["steps"])
        # every answer is a word (or verb lemma) of the clip's caption, or something its rendering shows:
        # the tool its verbs draw, the turning direction, the person, the number or position of its steps
        truth = caption_words(cap) | {"person", ["one", "two"][n_steps - 1]}
        truth |= {mc.VERB_TOOL.get(s[0]) for s in plan["steps"]} | {mc.VERB_TURN.get(s[0]) for s in plan["steps"]}
        if n_steps == 2:
            truth |= {"beginning", "end"}
        for q in qs:
            assert q["answer"] in truth, (cap, q)
            if q["question"].startswith("who "):
                assert q["answer"] == "person"
            if q["question"].startswith("where "):  # the caption ends "on a <surface>"
                assert q["answer"] == cap.split()[-1], (cap, q)
            if q["question"].startswith("how many steps"):
                assert q["answer"] == ["one", "two"][n_steps - 1]


def test_msrvtt_qa_answer_distribution():
    """On the default-size plan (no rendering needed) the most frequent answer is a real but weak baseline:
    a few frequent answers and a long tail."""
    clips = mc.build_plans(400, 150, 0)[1]
    qa = mc.msrvtt_qa(clips)
    ans = collections.Counter(q["answer"] for q in qa)
    top = ans.most_common(1)[0][1] / len(qa)
    assert 0.05 < top < 0.25, ans.most_common(5)
    assert len(ans) >= 60 and sum(c == 1 for c in ans.values()) >= 3
    assert 3.5 < len(qa) / len(clips) < 7
    types = collections.Counter(q["question"].split()[0] for q in qa)
    assert set(types) == {"what", "who", "how", "where", "when"} and types["what"] > len(qa) / 2


def test_howto_interlink7m(corpus):
    A = os.path.join(corpus, "annotations")
    path = os.path.join(A, "howto_interlink7m.tsv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    with open(path) as f:
        assert [line.rstrip("\n").split("\t") for line in f] == rows  # a plain split on tabs reads it too
    assert rows[0] == ["video", "clips"]
    with open(os.path.join(A, "COIN.json")) as f:
        coin = json.load(f)["database"]
    with open(os.path.join(A, "howto100m_captions.json")) as f:
        asr = {t for v in json.load(f).values() for t in v["text"]}
    videos = [r[0] for r in rows[1:]]
    assert sorted(videos) == sorted(f"videos/{v}.mp4" for v in coin)
    n_checked = 0
    for video, clips_json in rows[1:]:
        vid = video[len("videos/"):-len(".mp4")]
        dur = mp4_duration(os.path.join(corpus, video))
        assert dur == pytest.approx(coin[vid]["duration"], abs=0.01)
        clips = json.loads(clips_json)
        assert 5 <= len(clips) <= 9
        prev_end = 0
        for k, c in enumerate(clips):
            assert set(c) == {"clip_id", "clip", "caption"} and c["clip_id"] == str(k)
            m = re.fullmatch(r"(\d+):(\d\d):(\d\d) - (\d+):(\d\d):(\d\d)", c["clip"])
            assert m, c["clip"]
            h0, m0, s0, h1, m1, s1 = map(int, m.groups())
            a, b = 3600 * h0 + 60 * m0 + s0, 3600 * h1 + 60 * m1 + s1
            assert a == prev_end and b > a and b <= dur  # consecutive, inside the video
            prev_end = b
            cap = c["caption"]
            assert cap[0].isupper() and cap.endswith(".") and cap not in asr
            # a step that lies inside the clip is described, naming its object (COIN label "verb [the] object ...")
            for st in coin[vid]["annotation"]:
                s, e = st["segment"]
                if a <= s and e <= b and e - s >= 1.6:
                    w = st["label"].split()
                    obj = w[2] if w[1] == "the" else w[1]
                    assert obj in re.findall(r"[a-z]+", cap), (st, cap)
                    n_checked += 1
        assert prev_end >= dur - 1  # the clips cover the whole video (up to its last whole second)
    assert n_checked >= N_VIDEOS


def test_verb_tool_is_what_the_renderer_draws():
    """VERB_TOOL (the answers to the tool questions) names a tool that StepScene.p_<verb> draws."""
    import inspect
    sprite = {"cloth": "rag", "hands": "hand"}
    for verb, tool in mc.VERB_TOOL.items():
        src = inspect.getsource(getattr(mc.StepScene, "p_" + verb))
        if "self._screw(" in src:
            src += inspect.getsource(mc.StepScene._screw)
        assert f'"{sprite.get(tool, tool)}"' in src, (verb, tool)
    for verb in mc.VERB_TURN:
        assert "self._screw(" in inspect.getsource(getattr(mc.StepScene, "p_" + verb))
