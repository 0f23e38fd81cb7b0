"""MSRVTT-QA reader, answer normalisation, and the QA file `vidlang synth` writes for its MSR-VTT-style clips."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.datasets._util import expect_format_error, write_json
from vidlang.datasets import exact_match_accuracy, most_frequent_answer, normalize_answer, read_msrvtt_qa

RELEASE_LIKE = [{"answer": "man", "id": 0, "question": "who is talking?", "video_id": 7010},
                {"answer": "cook", "id": 1, "question": "what is a woman doing?", "video_id": "7011",
                 "category_id": 3}]


def test_reads_the_release_format(tmp_path):
    qa = read_msrvtt_qa(write_json(tmp_path / "test_qa.json", RELEASE_LIKE))
    assert [(q.id, q.video_id, q.question, q.answer) for q in qa] == [
        (0, "video7010", "who is talking?", "man"), (1, "video7011", "what is a woman doing?", "cook")]


@pytest.mark.parametrize("data, entry, fragment", [
    ({"answer": "x"}, None, "must be a JSON list"),
    ([{"answer": "x", "id": 0, "question": "q?"}], "item 0 id 0", "missing key 'video_id'"),
    ([{"answer": "x", "id": 0, "question": "q?", "video_id": 1}] * 2, "item 1 id 0", "duplicate id 0"),
    ([{"answer": "x", "id": 0, "question": "q?", "video_id": True}], "item 0", "video_id must be an integer"),
    ([{"answer": "x", "id": 0, "question": "q?", "video_id": -2}], "item 0", "out of range"),
    ([{"answer": " ", "id": 0, "question": "q?", "video_id": 1}], "item 0", "answer is empty"),
    ([{"answer": "x", "id": "zero", "question": "q?", "video_id": 1}], "item 0", "id must be an integer"),
    (["not an object"], "item 0", "must be a JSON object"),
])
def test_malformed_files_give_one_line(tmp_path, data, entry, fragment):
    path = write_json(tmp_path / "qa.json", data)
    expect_format_error(read_msrvtt_qa, path, entry, fragment)


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "qa.json"
    bad.write_text('[{"answer": "x",')
    expect_format_error(read_msrvtt_qa, bad, "line 1", "not valid JSON")
    expect_format_error(read_msrvtt_qa, tmp_path / "missing.json", None, "file not found")


def test_normalisation_and_accuracy():
    assert normalize_answer("The Red.") == "red"
    assert normalize_answer("  Two ") == "2" and normalize_answer("an apple!") == "apple"
    assert normalize_answer("don't") == "don't" and normalize_answer("'man'") == "man"
    assert exact_match_accuracy(["Red", "circle", "grow"], ["red", "square", "grow."]) == pytest.approx(2 / 3)
    assert exact_match_accuracy([], []) == 0.0
    assert most_frequent_answer(["y", "x", "Y", "x."]) == "x"  # tie between x and y: the first alphabetically
    with pytest.raises(ValueError, match="2 predictions but 1"):
        exact_match_accuracy(["a", "b"], ["a"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tests.synth.test_synth import TINY
    from vidlang.synth.generate import SynthConfig, generate_corpus

    out = tmp_path_factory.mktemp("synth_qa") / "c"
    generate_corpus(out, SynthConfig(**{**TINY, "msrvtt_clips": 6}), workers=1)
    return out


def test_synth_writes_answerable_questions(corpus):
    from tests.synth.test_synth import TINY
    from vidlang.synth.generate import SynthConfig, build_world

    qa = read_msrvtt_qa(corpus / "annotations" / "msrvtt_qa_test.json")
    gt = json.loads((corpus / "ground_truth.json").read_text())
    steps = build_world(SynthConfig(**TINY)).steps
    clips = {c["video_id"]: steps[c["step_id"]] for c in gt["msrvtt"]}
    assert {q.video_id for q in qa} == set(clips) and len(clips) == 6
    assert [q.id for q in qa] == list(range(len(qa)))
    for video, step in clips.items():
        asked = [q for q in qa if q.video_id == video]
        moves = step.action in ("left", "right", "up", "down")
        expected = [step.colour, step.shape, "move" if moves else step.action] + ([step.action] if moves else [])
        assert [q.answer for q in asked] == expected  # what the clip shows: its acting object and its action
        assert step.shape in asked[0].question and step.colour in asked[1].question
    counts = Counter(q.answer for q in qa)
    assert max(counts.values()) < len(qa) / 2  # the most frequent answer is a baseline, not the answer
