"""HowTo100M narration: `raw_caption.json` (YouTube ASR lines) and TAN's sentencified variant.

Format (both files share it; extra per-video keys are ignored)::

    {"<video_id>": {"start": [0.0, 3.2], "end": [3.5, 7.1], "text": ["so today we're", "going to make"]}}

The reader checks structure and types only: three lists of equal length, finite non-negative times with
start <= end, string texts. It does not deduplicate or normalise: that is `vidlang.datasets.narration`.
MMPT skips non-string texts silently; vidlang refuses them, naming the video, so a corrupt file is noticed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vidlang.datasets._validate import check_span, fail, field, mapping, number, per_video_json, sequence, string


@dataclass(frozen=True)
class CaptionLine:
    """One narration line; times in seconds from the start of the video."""

    start: float
    end: float
    text: str


def read_howto100m_captions(path: str | Path,
                            video_ids: Iterable[str] | None = None) -> dict[str, list[CaptionLine]]:
    """Read a HowTo100M caption JSON into {video_id: [CaptionLine, ...]} in file order.

    `video_ids` restricts the result (and the validation) to those videos; an id absent from the file is an
    error, since a caller that names a video expects its narration.
    """
    return {vid: _parse_video(path, vid, rec) for vid, rec in per_video_json(path, video_ids, "caption file")}


def _parse_video(path, vid: str, rec) -> list[CaptionLine]:
    rec = mapping(path, vid, rec, "a video's captions")
    starts = sequence(path, vid, field(path, vid, rec, "start"), "'start'")
    ends = sequence(path, vid, field(path, vid, rec, "end"), "'end'")
    texts = sequence(path, vid, field(path, vid, rec, "text"), "'text'")
    if not len(starts) == len(ends) == len(texts):
        fail(path, vid, f"'start', 'end' and 'text' have different lengths "
                        f"({len(starts)}, {len(ends)}, {len(texts)})")
    lines = []
    for i, (s, e, t) in enumerate(zip(starts, ends, texts)):
        s = number(path, vid, s, f"start[{i}]", min_value=None)
        e = number(path, vid, e, f"end[{i}]", min_value=None)
        check_span(path, vid, s, e, f"line {i}")
        lines.append(CaptionLine(s, e, string(path, vid, t, f"text[{i}]")))
    return lines
