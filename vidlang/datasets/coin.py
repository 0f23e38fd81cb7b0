"""COIN (`COIN.json`) and its per-second action-segmentation targets.

Format::

    {"database": {"LtRSn-ntcLY": {"duration": 131.03, "class": "ReplaceCDDriveWithSSD", "subset": "training",
      "recipe_type": 131, "start": 56.64, "end": 85.71, "video_url": "...",
      "annotation": [{"id": "212", "segment": [60.0, 69.0], "label": "take out the laptop CD drive"}]}}}

Checks: `subset` is training/testing; duration > 0; step ids are global 1-based integers (the release ships
them as strings) and one id always carries the same label within the file; segments are [start, end] with
0 <= start <= end. Background is class 0 and never appears in the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidlang.datasets._validate import (check_span, fail, field, integer, load_json, mapping, number, segment,
                                        sequence, string)
from vidlang.errors import VidlangError

COIN_SUBSETS = ("training", "testing")
COIN_BACKGROUND = 0


@dataclass(frozen=True)
class CoinStep:
    step_id: int  # global, 1-based
    label: str
    start: float
    end: float


@dataclass(frozen=True)
class CoinVideo:
    video_id: str
    duration: float
    task: str  # the "class" field, e.g. ReplaceCDDriveWithSSD
    subset: str
    recipe_type: int
    steps: tuple[CoinStep, ...]
    start: float | None = None  # span of the task inside the video, when published
    end: float | None = None
    url: str | None = None


def read_coin(path: str | Path) -> list[CoinVideo]:
    data = mapping(path, None, load_json(path), "the top level")
    database = mapping(path, "database", field(path, None, data, "database"), "'database'")
    labels: dict[int, tuple[str, str]] = {}  # step id -> (label, where first seen)
    videos = []
    for vid, rec in database.items():
        video = _parse_video(path, vid, rec)
        for j, step in enumerate(video.steps):
            first = labels.setdefault(step.step_id, (step.label, vid))
            if first[0] != step.label:
                fail(path, f"{vid} annotation {j}",
                     f"step id {step.step_id} labelled {step.label!r} but {first[0]!r} in video {first[1]}")
        videos.append(video)
    return videos


def _parse_video(path, vid: str, rec) -> CoinVideo:
    rec = mapping(path, vid, rec, "a video record")
    duration = number(path, vid, field(path, vid, rec, "duration"), "duration", positive=True)
    task = string(path, vid, field(path, vid, rec, "class"), "class", allow_empty=False)
    subset = string(path, vid, field(path, vid, rec, "subset"), "subset")
    if subset not in COIN_SUBSETS:
        fail(path, vid, f"subset {subset!r} is not one of {list(COIN_SUBSETS)}")
    recipe_type = integer(path, vid, field(path, vid, rec, "recipe_type"), "recipe_type", min_value=0)
    steps = []
    for j, ann in enumerate(sequence(path, vid, field(path, vid, rec, "annotation"), "'annotation'")):
        where = f"{vid} annotation {j}"
        ann = mapping(path, where, ann, "an annotation")
        step_id = integer(path, where, field(path, where, ann, "id"), "step id", min_value=1)
        start, end = segment(path, where, field(path, where, ann, "segment"))
        label = string(path, where, field(path, where, ann, "label"), "label", allow_empty=False)
        steps.append(CoinStep(step_id, label, start, end))
    start = end = None
    if rec.get("start") is not None and rec.get("end") is not None:
        start = number(path, vid, rec["start"], "start", min_value=None)
        end = number(path, vid, rec["end"], "end", min_value=None)
        check_span(path, vid, start, end, "task span")
    url = rec.get("video_url")
    url = None if url is None else string(path, vid, url, "video_url")
    return CoinVideo(vid, duration, task, subset, recipe_type, tuple(steps), start, end, url)


def coin_step_vocabulary(videos: Iterable[CoinVideo]) -> dict[int, str]:
    """{global step id: label}, sorted by id. Raises VidlangError if one id has two labels."""
    vocab: dict[int, str] = {}
    for v in videos:
        for s in v.steps:
            if vocab.setdefault(s.step_id, s.label) != s.label:
                raise VidlangError(f"COIN step id {s.step_id} has two labels: {vocab[s.step_id]!r} and "
                                   f"{s.label!r} (video {v.video_id})")
    return dict(sorted(vocab.items()))


def coin_frame_labels(video: CoinVideo, fps: float = 1.0, background: int = COIN_BACKGROUND,
                      length: int | None = None) -> np.ndarray:
    """Per-frame step labels: `y[floor(s*fps):ceil(e*fps)] = step_id`, elsewhere `background`.

    Shapes: returns int64 (T,), T = `length` if given (e.g. the number of stored feature rows) else
    ceil(duration * fps). Segments are written in order of (start, end), so where two overlap the one that
    starts later wins the shared frames (the later step has begun); segments past T are clipped. Ends are
    exclusive in frames, so a segment [2.0, 5.0] at 1 fps covers frames 2, 3, 4 and [2.3, 4.2] covers 2..4.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n = math.ceil(video.duration * fps) if length is None else int(length)
    y = np.full(n, background, dtype=np.int64)
    for step in sorted(video.steps, key=lambda s: (s.start, s.end)):
        lo = max(0, math.floor(step.start * fps))
        hi = min(n, math.ceil(step.end * fps))
        if hi > lo:
            y[lo:hi] = step.step_id
    return y
