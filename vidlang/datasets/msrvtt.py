"""MSR-VTT: 1k-A retrieval pairs (JSFusion CSV), multiple-choice QA (TAB-separated) and `MSRVTT_data.json`.

- `MSRVTT_JSFUSION_test.csv`, comma-separated with header `key,vid_key,video_id,sentence`
  (`ret0,msr9770,video9770,a person is connecting something to system`). Keys are unique; `vid_key`
  `msr<N>` must name the same video as `video_id` `video<N>`.
- `MSR_MC_test.csv`, **TAB**-separated with header; needs `vid_key`, `a1`..`a5`, `answer` (0-based index of
  the right candidate, 0..4). Other columns (the release has `key`, ...) are ignored.
- `MSRVTT_data.json`: `{"videos": [{"video_id": "video0", "split": "train", ...}],
  "sentences": [{"caption": "...", "video_id": "video0", "sen_id": 0}]}`; every sentence must reference a
  listed video, video ids and sentence ids are unique.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vidlang.datasets._validate import (check_span, fail, field, integer, load_json, mapping, number,
                                        read_csv_rows, sequence, string)

MC_CANDIDATES = ("a1", "a2", "a3", "a4", "a5")
_VID_KEY = re.compile(r"^msr(\d+)$")
_VIDEO_ID = re.compile(r"^video(\d+)$")


@dataclass(frozen=True)
class MsrvttPair:
    key: str
    vid_key: str
    video_id: str
    sentence: str


@dataclass(frozen=True)
class MsrvttMCQuestion:
    vid_key: str
    video_id: str
    candidates: tuple[str, ...]
    answer: int  # 0-based index into candidates
    key: str | None = None


@dataclass(frozen=True)
class MsrvttVideo:
    video_id: str
    split: str | None = None
    category: int | None = None
    url: str | None = None
    start_time: float | None = None
    end_time: float | None = None


@dataclass(frozen=True)
class MsrvttSentence:
    video_id: str
    caption: str
    sen_id: int | None = None


@dataclass(frozen=True)
class MsrvttData:
    videos: dict[str, MsrvttVideo]
    sentences: tuple[MsrvttSentence, ...]

    def captions_by_video(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {v: [] for v in self.videos}
        for s in self.sentences:
            out[s.video_id].append(s.caption)
        return out


def video_id_from_vid_key(path, entry, vid_key: str) -> str:
    """`msr7960` -> `video7960` (MMPT's `vid_key.replace("msr", "video")`)."""
    m = _VID_KEY.match(vid_key)
    if not m:
        fail(path, entry, f"vid_key {vid_key!r} is not of the form msr<N>")
    return f"video{m.group(1)}"


def read_msrvtt_jsfusion(path: str | Path) -> list[MsrvttPair]:
    out, keys = [], set()
    for entry, row in read_csv_rows(path, ("key", "vid_key", "video_id", "sentence")):
        key = row["key"].strip()
        where = f"{entry} key {key}"
        if not key:
            fail(path, entry, "empty key")
        if key in keys:
            fail(path, where, f"duplicate key {key!r}")
        keys.add(key)
        vid_key, video_id = row["vid_key"].strip(), row["video_id"].strip()
        if not _VIDEO_ID.match(video_id):
            fail(path, where, f"video_id {video_id!r} is not of the form video<N>")
        if video_id_from_vid_key(path, where, vid_key) != video_id:
            fail(path, where, f"vid_key {vid_key!r} does not name video_id {video_id!r}")
        sentence = row["sentence"].strip()
        if not sentence:
            fail(path, where, "empty sentence")
        out.append(MsrvttPair(key, vid_key, video_id, sentence))
    return out


def read_msrvtt_mc(path: str | Path) -> list[MsrvttMCQuestion]:
    out = []
    for entry, row in read_csv_rows(path, ("vid_key", *MC_CANDIDATES, "answer"), delimiter="\t"):
        vid_key = row["vid_key"].strip()
        where = f"{entry} vid_key {vid_key}"
        video_id = video_id_from_vid_key(path, where, vid_key)
        candidates = tuple(row[c].strip() for c in MC_CANDIDATES)
        for name, c in zip(MC_CANDIDATES, candidates):
            if not c:
                fail(path, where, f"candidate {name} is empty")
        answer = integer(path, where, row["answer"], "answer", min_value=0, max_value=len(candidates) - 1)
        key = row["key"].strip() if "key" in row else None
        out.append(MsrvttMCQuestion(vid_key, video_id, candidates, answer, key))
    return out


def read_msrvtt_data(path: str | Path) -> MsrvttData:
    data = mapping(path, None, load_json(path), "the top level")
    videos: dict[str, MsrvttVideo] = {}
    for i, rec in enumerate(sequence(path, "videos", field(path, None, data, "videos"), "'videos'")):
        rec = mapping(path, f"videos[{i}]", rec, "a video record")
        vid = string(path, f"videos[{i}]", field(path, f"videos[{i}]", rec, "video_id"), "video_id",
                     allow_empty=False)
        if vid in videos:
            fail(path, vid, f"duplicate video_id {vid!r}")
        split = _opt(rec, "split", lambda v: string(path, vid, v, "split"))
        category = _opt(rec, "category", lambda v: integer(path, vid, v, "category", min_value=0))
        url = _opt(rec, "url", lambda v: string(path, vid, v, "url"))
        start = _opt(rec, "start time", lambda v: number(path, vid, v, "start time", min_value=None))
        end = _opt(rec, "end time", lambda v: number(path, vid, v, "end time", min_value=None))
        if start is not None and end is not None:
            check_span(path, vid, start, end, "clip")
        videos[vid] = MsrvttVideo(vid, split, category, url, start, end)
    sentences, sen_ids = [], set()
    for i, rec in enumerate(sequence(path, "sentences", field(path, None, data, "sentences"), "'sentences'")):
        where = f"sentences[{i}]"
        rec = mapping(path, where, rec, "a sentence record")
        vid = string(path, where, field(path, where, rec, "video_id"), "video_id")
        if vid not in videos:
            fail(path, where, f"video_id {vid!r} is not listed in 'videos'")
        caption = string(path, where, field(path, where, rec, "caption"), "caption", allow_empty=False)
        sen_id = _opt(rec, "sen_id", lambda v: integer(path, where, v, "sen_id", min_value=0))
        if sen_id is not None:
            if sen_id in sen_ids:
                fail(path, where, f"duplicate sen_id {sen_id}")
            sen_ids.add(sen_id)
        sentences.append(MsrvttSentence(vid, caption, sen_id))
    return MsrvttData(videos, tuple(sentences))


def _opt(rec: dict, key: str, parse):
    return None if rec.get(key) is None else parse(rec[key])
