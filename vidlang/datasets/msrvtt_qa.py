"""Open-ended video QA in the MSRVTT-QA / MSVD-QA release format, and answer normalisation for exact match.

Format (Xu et al. 2017, "Video Question Answering via Gradually Refined Attention over Appearance and Motion";
the released `train_qa.json` / `val_qa.json` / `test_qa.json`): a JSON list of objects ::

    [{"answer": "man", "id": 0, "question": "who is talking?", "video_id": 7010}, ...]

`video_id` is an integer N naming MSR-VTT's `video<N>` (a string of digits is accepted too); `id` is unique.
Other keys are ignored. `vidlang synth` writes its MSR-VTT-style clips' questions to
`annotations/msrvtt_qa_test.json`.

Accuracy is exact match after `normalize_answer`: lowercase, punctuation removed, number words zero..ten as
digits, articles (a, an, the) dropped, whitespace collapsed (the usual VQA-style normalisation; MSRVTT-QA
answers are single words, so it mostly guards against case and punctuation).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vidlang.datasets._validate import fail, field, integer, load_json, mapping, sequence, string


@dataclass(frozen=True)
class MsrvttQA:
    id: int
    video_id: str  # "video<N>"
    question: str
    answer: str


def read_msrvtt_qa(path: str | Path) -> list[MsrvttQA]:
    """Read and validate a QA file; FormatError (one line naming the file and the entry) when malformed."""
    data = sequence(path, None, load_json(path), "the top level")
    out, ids = [], set()
    for i, rec in enumerate(data):
        where = f"item {i}"
        rec = mapping(path, where, rec, "a question")
        qid = integer(path, where, field(path, where, rec, "id"), "id", min_value=0)
        where = f"item {i} id {qid}"
        if qid in ids:
            fail(path, where, f"duplicate id {qid}")
        ids.add(qid)
        video = integer(path, where, field(path, where, rec, "video_id"), "video_id", min_value=0)
        question = string(path, where, field(path, where, rec, "question"), "question", allow_empty=False)
        answer = string(path, where, field(path, where, rec, "answer"), "answer", allow_empty=False)
        out.append(MsrvttQA(qid, f"video{video}", question.strip(), answer.strip()))
    return out


_PUNCT = re.compile(r"[^\w\s']|(?<!\w)'|'(?!\w)")
_NUMBERS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
            "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}


def normalize_answer(text: str) -> str:
    """'The Red.' -> 'red'; 'Two' -> '2' (see the module docstring)."""
    words = _PUNCT.sub(" ", text.lower()).split()
    return " ".join(_NUMBERS.get(w, w) for w in words if w not in _ARTICLES)


def exact_match_accuracy(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Fraction of predictions equal to their answer after normalisation. Shapes: N strings, N strings -> float."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    if not answers:
        return 0.0
    return sum(normalize_answer(p) == normalize_answer(a) for p, a in zip(predictions, answers)) / len(answers)


def most_frequent_answer(answers: Sequence[str]) -> str:
    """The most frequent normalised answer (ties: the alphabetically first), the open-QA baseline's guess."""
    counts = Counter(normalize_answer(a) for a in answers)
    return min(counts, key=lambda a: (-counts[a], a))
