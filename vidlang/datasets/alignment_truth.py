"""Ground truth for narration alignment: vidlang's synthetic ground_truth.json, or HTM-Align + the ASR captions.

`load_alignment_truth(path, captions, fmt)` returns one record per video with the narration's own (ASR) times and,
for each line, its true interval (None for unalignable lines). HTM-Align holds the true times of its sentences;
their ASR times come from the HowTo100M caption file (vidlang.datasets.htm_align.match_asr_times).
"""

from __future__ import annotations

import json
from pathlib import Path

from vidlang.datasets._validate import need_file
from vidlang.errors import FormatError, VidlangError


def load_ground_truth(path: str) -> dict:
    p = need_file(path, "ground_truth.json")
    try:
        gt = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(p, None, f"not valid JSON ({e})") from None
    if not isinstance(gt, dict) or not isinstance(gt.get("videos"), dict):
        raise FormatError(p, "videos", "missing the 'videos' mapping")
    for vid, rec in gt["videos"].items():
        if not isinstance(rec, dict) or not isinstance(rec.get("steps"), list) or not isinstance(rec.get("narration"), list):
            raise FormatError(p, vid, "a video needs 'steps' and 'narration' lists")
        for i, line in enumerate(rec["narration"]):
            if not isinstance(line, dict) or not {"start", "end", "text", "relevant"} <= set(line):
                raise FormatError(p, f"{vid} narration[{i}]", "a line needs start, end, text, relevant")
            st = line.get("step")
            if line["relevant"] and (not isinstance(st, int) or not 0 <= st < len(rec["steps"])):
                raise FormatError(p, f"{vid} narration[{i}]", f"relevant line with invalid step index {st!r}")
    return gt



def _truth_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        if fmt not in ("synthetic", "htm_align"):
            raise VidlangError(f"alignment format {fmt!r}: choose auto, synthetic or htm_align")
        return fmt
    try:
        head = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(path, None, f"not valid JSON ({e})") from None
    return "synthetic" if isinstance(head, dict) and isinstance(head.get("videos"), dict) else "htm_align"


def load_alignment_truth(path: str, captions: str | None = None, fmt: str = "auto") -> tuple[str, dict, dict]:
    """Ground truth for narration alignment from the synthetic ground_truth.json or HTM-Align's htm_align.json.

    Returns (format, {video_id: {"split", "starts", "ends", "texts", "intervals"}}, counts). `intervals[i]` is the
    true (start, end) of a relevant/alignable line, None for the others; starts/ends are the narration's own
    (ASR) timestamps. HTM-Align needs `captions`, the HowTo100M caption file holding the ASR timestamps of its
    sentences (see vidlang.datasets.htm_align.match_asr_times); all its videos are evaluation ("val") videos.
    """
    p = need_file(path, "alignment ground truth")
    kind = _truth_format(p, fmt)
    videos: dict[str, dict] = {}
    counts: dict = {}
    if kind == "synthetic":
        gt = load_ground_truth(path)
        for vid, rec in gt["videos"].items():
            lines = rec["narration"]
            videos[vid] = {"split": rec.get("split", "val"),
                           "starts": [float(x["start"]) for x in lines], "ends": [float(x["end"]) for x in lines],
                           "texts": [x["text"] for x in lines],
                           "intervals": [(float(rec["steps"][x["step"]]["start"]),
                                          float(rec["steps"][x["step"]]["end"])) if x["relevant"] else None
                                         for x in lines]}
        return kind, videos, counts
    from vidlang.datasets.htm_align import match_asr_times, read_asr_captions, read_htm_align

    ann = read_htm_align(p)
    if not captions:
        raise VidlangError(f"{p}: HTM-Align ground truth needs the HowTo100M captions with the ASR timestamps "
                           "(alignment.captions)")
    cap_path = need_file(captions, "HowTo100M caption file")
    cap_all = read_asr_captions(cap_path, list(ann))
    unmatched = []
    for vid, sents in ann.items():
        if vid not in cap_all:
            unmatched.append(vid)
            continue
        times = match_asr_times(sents, cap_all[vid])
        if any(t is None and s.alignable for s, t in zip(sents, times)):
            unmatched.append(vid)
            continue
        # non-alignable sentences carry their ASR time in HTM-Align itself
        times = [t if t is not None else (s.start, s.end) for s, t in zip(sents, times)]
        videos[vid] = {"split": "val", "starts": [t[0] for t in times], "ends": [t[1] for t in times],
                       "texts": [s.text for s in sents],
                       "intervals": [(s.start, s.end) if s.alignable else None for s in sents]}
    counts["videos_without_asr_match"] = len(unmatched)
    return kind, videos, counts


