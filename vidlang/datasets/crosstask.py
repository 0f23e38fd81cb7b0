"""CrossTask release (`crosstask_release/`) and its per-second step targets.

Layout read::

    tasks_primary.txt        blocks of 5 lines + a blank line: task id, name, URL, number of steps,
                             comma-separated step names (the count must match)
    tasks_related.txt        optional, same format (tasks without step annotations)
    videos.csv               <task_id>,<video_id>,<url>  (no header; the release lists validation videos here too)
    videos_val.csv           same, the validation (evaluation) videos
    annotations/<task_id>_<video_id>.csv    <step 1-based>,<start>,<end>

Checks: task ids unique; every video row and annotation file names a known task; every annotation file names a
listed video of that task; steps are in 1..n_steps; 0 <= start <= end; (task, video) pairs are unique per list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import numpy as np

from vidlang.datasets._validate import check_span, fail, integer, parse_number, read_csv_rows


@dataclass(frozen=True)
class CrossTaskTask:
    task_id: str
    name: str
    url: str
    steps: tuple[str, ...]  # canonical order; annotation step k (1-based) is steps[k - 1]
    primary: bool = True


@dataclass(frozen=True)
class CrossTaskVideo:
    task_id: str
    video_id: str
    url: str


@dataclass(frozen=True)
class CrossTaskSegment:
    step: int  # 1-based index into the task's steps
    start: float
    end: float


@dataclass(frozen=True)
class CrossTaskRelease:
    root: Path
    tasks: dict[str, CrossTaskTask]
    videos: tuple[CrossTaskVideo, ...]  # every row of videos.csv
    val: tuple[CrossTaskVideo, ...]  # videos_val.csv
    annotations: dict[tuple[str, str], tuple[CrossTaskSegment, ...]] = dc_field(default_factory=dict)

    @property
    def primary_tasks(self) -> list[str]:
        return [t for t, task in self.tasks.items() if task.primary]

    @property
    def train(self) -> tuple[CrossTaskVideo, ...]:
        """videos.csv minus the validation videos (CrossTask's own train/val split rule)."""
        held = {(v.task_id, v.video_id) for v in self.val}
        return tuple(v for v in self.videos if (v.task_id, v.video_id) not in held)

    def targets(self, task_id: str, video_id: str, length: int) -> np.ndarray:
        """Per-second targets (T, K) uint8 for an annotated (task, video); see `crosstask_targets`."""
        segs = self.annotations[(task_id, video_id)]
        return crosstask_targets(segs, len(self.tasks[task_id].steps), length)


def crosstask_targets(segments: Iterable[CrossTaskSegment], n_steps: int, length: int,
                      fps: float = 1.0) -> np.ndarray:
    """Binary step targets `Y[floor(s*fps):ceil(e*fps), step-1] = 1` (CrossTask's `read_assignment`).

    Shapes: returns uint8 (T, K) with T = `length` (the number of per-second features) and K = `n_steps`.
    Segments past T are clipped; overlapping segments both stay marked (columns are independent).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    y = np.zeros((int(length), int(n_steps)), dtype=np.uint8)
    for seg in segments:
        if not 1 <= seg.step <= n_steps:
            raise ValueError(f"step {seg.step} is out of range 1..{n_steps}")
        lo = max(0, math.floor(seg.start * fps))
        hi = min(int(length), math.ceil(seg.end * fps))
        if hi > lo:
            y[lo:hi, seg.step - 1] = 1
    return y


def read_crosstask(root: str | Path) -> CrossTaskRelease:
    root = Path(root)
    tasks = _read_tasks(root / "tasks_primary.txt", primary=True)
    related = root / "tasks_related.txt"
    if related.is_file():
        for tid, task in _read_tasks(related, primary=False).items():
            if tid in tasks:
                fail(related, f"task {tid}", f"task id {tid} is also in tasks_primary.txt")
            tasks[tid] = task
    videos = _read_videos(root / "videos.csv", tasks)
    val = _read_videos(root / "videos_val.csv", tasks)
    listed = {(v.task_id, v.video_id) for v in (*videos, *val)}
    ann_dir = root / "annotations"
    if not ann_dir.is_dir():
        fail(ann_dir, None, "missing annotations directory")
    annotations = {}
    for path in sorted(ann_dir.glob("*.csv")):
        # YouTube ids may contain "_" (and a converted data set's task ids might), so the name is not split on
        # the first underscore: among known task ids prefixing it, prefer a (task, video) pair that is listed.
        stem = path.stem
        cands = sorted((t for t in tasks if stem.startswith(t + "_") and len(stem) > len(t) + 1), key=len)
        if not cands:
            head, sep, _ = stem.partition("_")
            if not sep:
                fail(path, None, "annotation file name is not <task_id>_<video_id>.csv")
            fail(path, f"task {head}", f"unknown task id {head!r} (not in the task lists)")
        tid = next((t for t in reversed(cands) if (t, stem[len(t) + 1:]) in listed), cands[-1])
        vid = stem[len(tid) + 1:]
        if (tid, vid) not in listed:
            fail(path, f"video {vid}", f"video {vid!r} of task {tid} is not in videos.csv or videos_val.csv")
        n_steps = len(tasks[tid].steps)
        segs = []
        for entry, (step, start, end) in read_csv_rows(path, (), header=False, n_fields=3):
            k = integer(path, entry, step, "step", min_value=1, max_value=n_steps)
            s = parse_number(path, entry, start, "start", min_value=None)
            e = parse_number(path, entry, end, "end", min_value=None)
            check_span(path, entry, s, e, f"step {k}")
            segs.append(CrossTaskSegment(k, s, e))
        annotations[(tid, vid)] = tuple(segs)
    return CrossTaskRelease(root, tasks, videos, val, annotations)


def _read_tasks(path: Path, primary: bool) -> dict[str, CrossTaskTask]:
    if not path.is_file():
        fail(path, None, "file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        fail(path, None, "not UTF-8 text")
    tasks: dict[str, CrossTaskTask] = {}
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block = [ln.strip() for ln in lines[i:i + 5]]
        entry = f"line {i + 1}"
        if len(block) < 5 or not all(block):
            fail(path, entry, "a task block needs 5 non-empty lines: id, name, URL, number of steps, steps")
        tid, name, url, count, steps_line = block
        entry = f"line {i + 1} task {tid}"
        if tid in tasks:
            fail(path, entry, f"duplicate task id {tid!r}")
        n = integer(path, entry, count, "number of steps", min_value=1)
        steps = tuple(s.strip() for s in steps_line.split(","))
        if len(steps) != n or not all(steps):
            fail(path, entry, f"declares {n} steps but lists {len(steps)} ({steps_line!r})")
        tasks[tid] = CrossTaskTask(tid, name, url, steps, primary)
        i += 5
        if i < len(lines) and lines[i].strip():
            fail(path, f"line {i + 1}", "expected a blank line between task blocks")
    if not tasks:
        fail(path, None, "no tasks found")
    return tasks


def _read_videos(path: Path, tasks: dict[str, CrossTaskTask]) -> tuple[CrossTaskVideo, ...]:
    out, seen = [], set()
    for entry, (tid, vid, url) in read_csv_rows(path, (), header=False, n_fields=3):
        if tid not in tasks:
            fail(path, f"{entry} task {tid}", f"unknown task id {tid!r} (not in the task lists)")
        if not vid:
            fail(path, entry, "empty video id")
        if (tid, vid) in seen:
            fail(path, f"{entry} video {vid}", f"duplicate video {vid!r} for task {tid}")
        seen.add((tid, vid))
        out.append(CrossTaskVideo(tid, vid, url))
    return tuple(out)
