"""Howto-Interlink7M (COSMO's interleaved video-text data): a TSV with a header.

Columns used: the video path, named `video` in the release or `path` in COSMO's loader (exactly one of the two
must be present), and `clips`, a JSON list::

    [{"clip_id": "0", "clip": "0:00:00 - 0:00:05", "caption": "..."}]

Clip times are "H:MM:SS - H:MM:SS", seconds may be fractional ("0:00:05.5"). Other columns are ignored.
Checks: clips is a JSON list of objects; times parse, 0 <= start <= end; captions are non-empty strings;
clip ids are unique within a video.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from vidlang.datasets._validate import check_span, fail, field, mapping, read_csv_rows, sequence, string

_TIME = r"(\d+):([0-5]?\d):([0-5]?\d(?:\.\d+)?)"
_CLIP = re.compile(rf"^\s*{_TIME}\s*-\s*{_TIME}\s*$")


@dataclass(frozen=True)
class InterlinkClip:
    clip_id: str
    start: float
    end: float
    caption: str


@dataclass(frozen=True)
class InterlinkVideo:
    video: str  # the path column as published (resolve it under a configured root, never join blindly)
    clips: tuple[InterlinkClip, ...]


def parse_clip_time(text: str) -> tuple[float, float]:
    """'0:01:02 - 0:01:07.5' -> (62.0, 67.5). Raises ValueError on another shape."""
    m = _CLIP.match(text)
    if not m:
        raise ValueError(f"clip time {text!r} is not 'H:MM:SS - H:MM:SS'")
    h1, m1, s1, h2, m2, s2 = m.groups()
    start = int(h1) * 3600 + int(m1) * 60 + float(s1)
    end = int(h2) * 3600 + int(m2) * 60 + float(s2)
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"clip time {text!r} is not finite")
    return start, end


def read_interlink(path: str | Path) -> list[InterlinkVideo]:
    out = []
    for entry, row in read_csv_rows(path, ("clips",), delimiter="\t", one_of=("video", "path")):
        column = "video" if "video" in row else "path"
        video = row[column].strip()
        if not video:
            fail(path, entry, f"empty {column!r}")
        where = f"{entry} {video}"
        try:
            clips_raw = json.loads(row["clips"], parse_constant=lambda c: fail(path, where, f"{c} in clips"))
        except json.JSONDecodeError as e:
            fail(path, where, f"'clips' is not valid JSON: {e.msg}")
        clips, seen = [], set()
        for j, c in enumerate(sequence(path, where, clips_raw, "'clips'")):
            cw = f"{where} clip {j}"
            c = mapping(path, cw, c, "a clip")
            clip_id = field(path, cw, c, "clip_id")
            if isinstance(clip_id, bool) or not isinstance(clip_id, (str, int)):
                fail(path, cw, f"clip_id must be a string or an integer, got {clip_id!r}")
            clip_id = str(clip_id)
            if clip_id in seen:
                fail(path, cw, f"duplicate clip_id {clip_id!r}")
            seen.add(clip_id)
            try:
                start, end = parse_clip_time(string(path, cw, field(path, cw, c, "clip"), "clip"))
            except ValueError as e:
                fail(path, cw, str(e))
            check_span(path, cw, start, end, "clip")
            caption = string(path, cw, field(path, cw, c, "caption"), "caption", allow_empty=False)
            clips.append(InterlinkClip(clip_id, start, end, caption))
        out.append(InterlinkVideo(video, tuple(clips)))
    return out
