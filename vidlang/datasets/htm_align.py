"""HTM-Align (Han, Xie, Zisserman, "Temporal Alignment Networks for Long-term Video", CVPR 2022): 80 HowTo100M
videos whose sentences were manually marked alignable or not, the alignable ones with the interval where the
narrated action is visible. Release: `htm_align.json` (github.com/TengdaHan/TemporalAlignNet, htm_align/)::

    {"<video_id>": [[1, 10.739, 17.535, "add extra virgin olive oil and garlic"], ...]}

Each entry is `[alignability (1/0), start (s), end (s), sentence]`. For an alignable sentence [start, end] is the
*annotated* interval (the ground truth, not the narration time); for a non-alignable one it is the sentence's own
ASR timestamp (TAN's evaluation uses those to place its windows). The ASR timestamps of the alignable sentences
come from HowTo100M's (sentencified) caption file, which TAN's sentences were taken from: `match_asr_times` pairs
them by text, in order.

TAN's protocol (eval/eval_zeroshot_align.py): recall = fraction of alignable sentences whose predicted second
index i satisfies floor(start) <= i <= ceil(end) (1 feature per second); ROC-AUC of an alignability score (the
max similarity over time for models without an alignability head) between alignable and non-alignable sentences.
The reader accepts alignability as 0/1 (or JSON true/false) and refuses anything else, naming the entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidlang.datasets._validate import check_span, fail, load_json, mapping, number, per_video_json, sequence, string


@dataclass(frozen=True)
class HtmAlignSentence:
    """One HTM-Align sentence. Alignable: [start, end] is the annotated visual interval; else its ASR time."""

    alignable: bool
    start: float
    end: float
    text: str


def read_htm_align(path: str | Path, video_ids: Iterable[str] | None = None) -> dict[str, list[HtmAlignSentence]]:
    """Read htm_align.json into {video_id: [HtmAlignSentence, ...]} in file order.

    `video_ids` restricts the result to those videos (an absent id is an error). Raises FormatError(path, entry,
    message) naming the video and sentence index on the first malformed entry.
    """
    out: dict[str, list[HtmAlignSentence]] = {}
    for vid, rec in per_video_json(path, video_ids, "HTM-Align file"):
        rows = sequence(path, vid, rec, "a video's sentences")
        sents = []
        for i, row in enumerate(rows):
            entry = f"{vid}[{i}]"
            row = sequence(path, entry, row, "a sentence entry [alignable, start, end, text]")
            if len(row) != 4:
                fail(path, entry, f"expected [alignable, start, end, text], got {len(row)} fields")
            flag, s, e, text = row
            if flag not in (0, 1) or (isinstance(flag, float) and not flag.is_integer()):
                fail(path, entry, f"alignable must be 0 or 1, got {flag!r}")
            s = number(path, entry, s, "start", min_value=None)
            e = number(path, entry, e, "end", min_value=None)
            check_span(path, entry, s, e, "sentence")
            sents.append(HtmAlignSentence(bool(flag), s, e, string(path, entry, text, "sentence")))
        out[vid] = sents
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def match_asr_times(sentences: Sequence[HtmAlignSentence], captions: Sequence) -> list[tuple[float, float] | None]:
    """ASR (start, end) of each sentence from the video's caption lines (objects with .start, .end, .text).

    Sentences are matched to caption lines with the same text (case and whitespace ignored), scanning both in
    order (each caption line is used once). A sentence without a match gets None; the caller decides (the
    evaluation falls back on HTM-Align's own time for non-alignable sentences, whose times *are* ASR times, and
    leaves out a video with an unmatched alignable sentence, counting it).
    """
    out: list[tuple[float, float] | None] = []
    j = 0
    normed = [_norm(c.text) for c in captions]
    for s in sentences:
        key = _norm(s.text)
        k = j
        while k < len(normed) and normed[k] != key:
            k += 1
        if k < len(normed):
            out.append((float(captions[k].start), float(captions[k].end)))
            j = k + 1
        else:
            out.append(None)
    return out


def read_asr_captions(path: str | Path, video_ids: Iterable[str]) -> dict:
    """{video_id: [CaptionLine]} from a HowTo100M caption file for those of `video_ids` it holds (others are
    simply absent: HTM-Align's evaluation counts them). Parses the (possibly large) file once and validates only
    the videos asked for, with the HowTo100M reader's rules."""
    from vidlang.datasets.howto100m import _parse_video

    data = mapping(path, None, load_json(path), "the top level")
    return {vid: _parse_video(path, vid, data[vid]) for vid in video_ids if vid in data}
