"""YouCookII annotations (`youcookii_annotations_trainval.json`).

Format::

    {"database": {"<video_id>": {"duration": 206.86, "subset": "validation", "recipe_type": "226",
        "annotations": [{"segment": [47, 60], "id": 0, "sentence": "pick the ends off the verdalago"}],
        "video_url": "https://..."}}}

Checks: `subset` is training/validation/testing; duration > 0; every segment is [start, end] with
0 <= start <= end; segment ids are unique integers within a video; sentences are non-empty strings.
A segment ending after `duration` is kept as published (target builders clip to the video length).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from vidlang.datasets._validate import fail, field, integer, load_json, mapping, number, segment, sequence, string

YOUCOOK_SUBSETS = ("training", "validation", "testing")


class YouCookSegment(NamedTuple):
    """One annotated step; a tuple so `for start, end, sentence, id in video.segments` works."""

    start: float
    end: float
    sentence: str
    id: int


@dataclass(frozen=True)
class YouCookVideo:
    video_id: str
    duration: float
    subset: str
    recipe_type: str
    segments: tuple[YouCookSegment, ...]
    url: str | None = None


def read_youcookii(path: str | Path) -> list[YouCookVideo]:
    data = mapping(path, None, load_json(path), "the top level")
    database = mapping(path, "database", field(path, None, data, "database"), "'database'")
    return [_parse_video(path, vid, rec) for vid, rec in database.items()]


def _parse_video(path, vid: str, rec) -> YouCookVideo:
    rec = mapping(path, vid, rec, "a video record")
    duration = number(path, vid, field(path, vid, rec, "duration"), "duration", positive=True)
    subset = string(path, vid, field(path, vid, rec, "subset"), "subset")
    if subset not in YOUCOOK_SUBSETS:
        fail(path, vid, f"subset {subset!r} is not one of {list(YOUCOOK_SUBSETS)}")
    recipe = field(path, vid, rec, "recipe_type")
    recipe_type = str(integer(path, vid, recipe, "recipe_type", min_value=0)) if not isinstance(recipe, str) \
        else string(path, vid, recipe, "recipe_type", allow_empty=False)
    segments, seen = [], set()
    for j, ann in enumerate(sequence(path, vid, field(path, vid, rec, "annotations"), "'annotations'")):
        where = f"{vid} annotation {j}"
        ann = mapping(path, where, ann, "an annotation")
        start, end = segment(path, where, field(path, where, ann, "segment"))
        seg_id = integer(path, where, field(path, where, ann, "id"), "id", min_value=0)
        if seg_id in seen:
            fail(path, where, f"duplicate segment id {seg_id}")
        seen.add(seg_id)
        sentence = string(path, where, field(path, where, ann, "sentence"), "sentence", allow_empty=False)
        segments.append(YouCookSegment(start, end, sentence, seg_id))
    url = rec.get("video_url")
    url = None if url is None else string(path, vid, url, "video_url")
    return YouCookVideo(vid, duration, subset, recipe_type, tuple(segments), url)
