"""HowTo100M narration cleaning: normalise, dedup YouTube's rolling ASR lines, optionally merge into sentences.

`clean_captions(lines)` is what `vidlang preprocess`, training and `vidlang align` call on one video's `CaptionLine`s
(from `vidlang.datasets.read_howto100m_captions`). Steps, in order:

1. `normalise_lines`: text gets newlines/whitespace collapsed, "[Music]"-style tags (any `[...]`) and "♪"
   removed, lowercased (optional); lines left empty are dropped. Times: a line with a NaN/infinite start or
   end is *dropped* (it cannot be placed in time; the file readers already refuse NaN, so only programmatic
   input gets here); negative times are clamped to 0 and an end before its start is raised to the start.
   Lines are then stably sorted by start.
2. `dedup_rolling_asr`: MMPT's rule (examples/MMPT/mmpt/processors/dedupprocessor.py), on words instead of
   characters and without MMPT's coin flip, so it is deterministic. See that function.
3. `merge_into_sentences` (only with `merge=True`).

Words are compared case-insensitively with surrounding punctuation stripped ("Make," == "make"), so the
dedup also works on TAN's punctuated, cased text; the kept text is the line's own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from vidlang.datasets.howto100m import CaptionLine

_TAG = re.compile(r"\[[^\[\]]*\]|♪+")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_EDGE_PUNCT = ".,!?;:\"'()[]{}…-"


def normalise_text(text: str, lowercase: bool = True) -> str:
    text = _SPACE.sub(" ", _TAG.sub(" ", text)).strip()
    return text.lower() if lowercase else text


def normalise_lines(lines: Iterable[CaptionLine], lowercase: bool = True) -> list[CaptionLine]:
    """Normalise text, drop empty/untimed lines, clamp times, sort by start (stable). See the module doc."""
    out = []
    for line in lines:
        start, end = float(line.start), float(line.end)
        if not (math.isfinite(start) and math.isfinite(end)):
            continue
        start = max(start, 0.0)
        end = max(end, start)
        text = normalise_text(line.text, lowercase)
        if text:
            out.append(CaptionLine(start, end, text))
    out.sort(key=lambda c: c.start)
    return out


def _keys(text: str) -> list[str]:
    return [w.strip(_EDGE_PUNCT).lower() for w in text.split()]


def _is_suffix(whole: Sequence[str], part: Sequence[str]) -> bool:
    return len(part) <= len(whole) and list(whole[len(whole) - len(part):]) == list(part)


def dedup_rolling_asr(lines: Iterable[CaptionLine], min_overlap: int = 1) -> list[CaptionLine]:
    """Remove the repeated words of rolling ASR lines, comparing each line with the last kept one.

    Rules (word level), checked in this order against the previous kept line P for a new line L:
    - L is a suffix of P (this includes L == P): L adds nothing; P's end becomes max(P.end, L.end).
    - P is a prefix of L: L replaces P, with start min(P.start, L.start) and end max(P.end, L.end).
    - Partial overlap, the last k words of P equal the first k of L (the longest such k, k >= `min_overlap`):
      L keeps only its new words. Its start moves forward by the dropped share of its duration,
      start + (end - start) * k / len(L), i.e. words are assumed evenly spoken inside a line (HowTo100M ASR
      runs at ~2.4 tokens/s); the end is kept. P is unchanged.
      (MMPT flips a coin between this and trimming P instead, and matches characters, so "the" / "eat"
      overlap on one letter; vidlang matches whole words and always trims the new line.)
    - Otherwise L is kept as is.
    Input should already be normalised and sorted (`normalise_lines`); empty lines are skipped.
    """
    if min_overlap < 1:
        raise ValueError(f"min_overlap must be >= 1, got {min_overlap}")
    out: list[CaptionLine] = []
    prev_keys: list[str] = []
    for line in lines:
        words = line.text.split()
        if not words:
            continue
        keys = _keys(line.text)
        if not out:
            out.append(line)
            prev_keys = keys
            continue
        prev = out[-1]
        if _is_suffix(prev_keys, keys):
            out[-1] = CaptionLine(prev.start, max(prev.end, line.end), prev.text)
        elif keys[: len(prev_keys)] == prev_keys:
            out[-1] = CaptionLine(min(prev.start, line.start), max(prev.end, line.end), line.text)
            prev_keys = keys
        else:
            k = next((k for k in range(min(len(prev_keys), len(keys)) - 1, min_overlap - 1, -1)
                      if prev_keys[len(prev_keys) - k:] == keys[:k]), 0)
            if k:
                start = line.start + (line.end - line.start) * k / len(words)
                line = CaptionLine(start, line.end, " ".join(words[k:]))
                keys = keys[k:]
            out.append(line)
            prev_keys = keys
    return out


def merge_into_sentences(lines: Sequence[CaptionLine], max_gap: float = 1.5, max_duration: float = 10.0,
                         max_words: int = 32, use_punctuation: bool | None = None) -> list[CaptionLine]:
    """Merge consecutive lines into sentence-like units.

    With punctuation (auto-detected when `use_punctuation` is None: any line ends in . ! or ?, as in TAN's
    sentencified text) a unit closes after a line that ends a sentence. Without it (raw YouTube ASR has none)
    units are closed only by the budgets. In both modes a unit also closes before a line that would make the
    silence gap exceed `max_gap` seconds, the unit span exceed `max_duration` seconds or its length exceed
    `max_words` words. A single line over budget stays whole (lines are never split); sentence ends inside
    a line are not split either.
    Defaults (vidlang's choice, not from a paper): 10 s is ~24 words at HowTo100M's ~2.4 tokens/s (FORMATS.md),
    32 words keeps a unit inside a 64-wordpiece text budget; a 1.5 s pause is taken as a sentence break.
    The merged unit spans [first start, max end] and joins texts with single spaces.
    """
    if use_punctuation is None:
        use_punctuation = any(_SENTENCE_END.search(c.text) for c in lines)
    out: list[CaptionLine] = []
    group: list[CaptionLine] = []
    n_words = 0

    def flush():
        nonlocal group, n_words
        if group:
            out.append(CaptionLine(group[0].start, max(c.end for c in group), " ".join(c.text for c in group)))
        group, n_words = [], 0

    for line in lines:
        words = len(line.text.split())
        if group:
            group_end = max(c.end for c in group)
            if (line.start - group_end > max_gap or max(line.end, group_end) - group[0].start > max_duration
                    or n_words + words > max_words):
                flush()
        group.append(line)
        n_words += words
        if use_punctuation and _SENTENCE_END.search(line.text):
            flush()
    flush()
    return out


def clean_captions(lines: Iterable[CaptionLine], merge: bool = False, lowercase: bool = True,
                   **merge_options) -> list[CaptionLine]:
    """normalise -> dedup rolling ASR -> (merge into sentences). `merge_options` go to merge_into_sentences."""
    if merge_options and not merge:
        raise TypeError(f"merge options {sorted(merge_options)} given without merge=True")
    out = dedup_rolling_asr(normalise_lines(lines, lowercase=lowercase))
    return merge_into_sentences(out, **merge_options) if merge else out
