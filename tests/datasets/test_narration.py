import math

import pytest

from vidlang.datasets.narration import (clean_captions, dedup_rolling_asr, merge_into_sentences, normalise_lines,
                                    normalise_text)
from vidlang.datasets.howto100m import CaptionLine as L


def _close(a: list[L], b: list[L]):
    assert [x.text for x in a] == [y.text for y in b]
    for x, y in zip(a, b):
        assert math.isclose(x.start, y.start, abs_tol=1e-9) and math.isclose(x.end, y.end, abs_tol=1e-9), (x, y)


def test_suffix_only_extends_previous_end():
    out = dedup_rolling_asr([L(0.0, 4.0, "so today we are going"), L(2.0, 6.0, "we are going")])
    assert out == [L(0.0, 6.0, "so today we are going")]
    # identical repeat is a suffix too; an earlier end never shrinks the previous line
    assert dedup_rolling_asr([L(0.0, 4.0, "a b"), L(1.0, 3.0, "a b")]) == [L(0.0, 4.0, "a b")]


def test_prefix_line_replaces_previous():
    out = dedup_rolling_asr([L(1.0, 3.0, "so today"), L(1.5, 5.0, "so today we cook")])
    assert out == [L(1.0, 5.0, "so today we cook")]


def test_partial_overlap_is_split_with_proportional_start():
    # "c d" repeats; the new line keeps "e f"; start moves by 2/4 of its 4 s duration: 2 + 4 * 2/4 = 4
    out = dedup_rolling_asr([L(0.0, 4.0, "a b c d"), L(2.0, 6.0, "c d e f")])
    _close(out, [L(0.0, 4.0, "a b c d"), L(4.0, 6.0, "e f")])
    # the longest overlap wins: "x y x" | "y x z" could overlap on "x" (1) or "y x" (2)
    out = dedup_rolling_asr([L(0.0, 3.0, "x y x"), L(3.0, 6.0, "y x z")])
    _close(out, [L(0.0, 3.0, "x y x"), L(5.0, 6.0, "z")])


def test_no_overlap_kept_and_word_level_not_characters():
    lines = [L(0.0, 2.0, "cut the"), L(2.0, 4.0, "eat well")]  # MMPT's character rule would see "e" overlap
    assert dedup_rolling_asr(lines) == lines
    # min_overlap=2 keeps a coincidental one-word overlap
    lines = [L(0.0, 2.0, "put it in the"), L(2.0, 4.0, "the pan")]
    assert dedup_rolling_asr(lines, min_overlap=2) == lines
    _close(dedup_rolling_asr(lines), [lines[0], L(3.0, 4.0, "pan")])


def test_rolling_chain_and_punctuation_case_insensitive():
    lines = [L(0.0, 3.0, "Today we make"), L(1.5, 4.5, "we make, pasta with"), L(3.0, 6.0, "pasta with")]
    # 2nd: overlap "we make" (punctuation/case ignored) -> "pasta with" from 1.5 + 3*2/4 = 3.0;
    # 3rd: equal to the kept line -> only extends its end to 6.0
    _close(dedup_rolling_asr(lines), [L(0.0, 3.0, "Today we make"), L(3.0, 6.0, "pasta with")])


def test_normalisation_tags_case_whitespace_times_and_sort():
    assert normalise_text("  [Music]  Hello\n  World ♪♪ [Applause] ") == "hello world"
    assert normalise_text("Hello  World", lowercase=False) == "Hello World"
    lines = [L(5.0, 6.0, "Later"), L(float("nan"), 1.0, "untimed"), L(-1.0, -0.5, "early"),
             L(2.0, 1.0, "backwards"), L(3.0, 4.0, "[Music]"), L(0.5, math.inf, "endless")]
    assert normalise_lines(lines) == [L(0.0, 0.0, "early"), L(2.0, 2.0, "backwards"), L(5.0, 6.0, "later")]


def test_merge_by_punctuation_and_budgets():
    lines = [L(0.0, 1.0, "First we cut"), L(1.0, 2.0, "the onion."), L(2.2, 3.0, "Then we"),
             L(3.0, 4.0, "fry it!"), L(4.0, 5.0, "and")]
    assert merge_into_sentences(lines) == [L(0.0, 2.0, "First we cut the onion."), L(2.2, 4.0, "Then we fry it!"),
                                           L(4.0, 5.0, "and")]
    raw = [L(0.0, 2.0, "a b"), L(2.0, 4.0, "c d"), L(6.0, 7.0, "e"), L(7.0, 9.0, "f g h"), L(9.0, 20.0, "i")]
    # no punctuation: gap 2.0 > 1.5 closes [a b c d]; word budget 4 closes [e f g h]; the last alone
    assert merge_into_sentences(raw, max_gap=1.5, max_words=4, max_duration=30) == [
        L(0.0, 4.0, "a b c d"), L(6.0, 9.0, "e f g h"), L(9.0, 20.0, "i")]
    # duration budget: [0, 4] + [6, 7] would span 7 s > 5 s
    assert merge_into_sentences(raw[:3], max_gap=10, max_duration=5, max_words=99) == [
        L(0.0, 4.0, "a b c d"), L(6.0, 7.0, "e")]
    assert merge_into_sentences([]) == []


def test_clean_captions_pipeline():
    raw = [L(3.0, 6.0, "going to make [Music]"), L(0.0, 3.5, "So today we're"), L(1.0, 5.0, "  "),
           L(3.2, 7.1, "to make pasta")]
    # sorted -> "so today we're", "going to make", "to make pasta" (overlap "to make": 3.2 + 3.9 * 2/3)
    out = clean_captions(raw)
    _close(out, [L(0.0, 3.5, "so today we're"), L(3.0, 6.0, "going to make"), L(3.2 + 3.9 * 2 / 3, 7.1, "pasta")])
    merged = clean_captions(raw, merge=True, max_gap=1.0)
    assert [m.text for m in merged] == ["so today we're going to make pasta"]
    with pytest.raises(TypeError):
        clean_captions(raw, max_gap=1.0)
