"""CrossTask step localization: the ordered dynamic program and recall.

Protocol (CrossTask, Zhukov et al. 2019, as used by VideoCLIP/MMPT): for a video of a task with K steps, a
per-second score matrix (T, K) is decoded by a dynamic program that places **every step exactly once, in the
task's canonical order, none skipped, on one second each** (distinct, strictly increasing seconds). A step is
recalled when its predicted second falls inside one of its annotated intervals. Recall of a task = recalled
steps / steps present (annotated) summed over the task's videos; the reported number is the mean over tasks.

When a video is shorter than its number of steps (T < K) distinct seconds are impossible; we then allow
non-decreasing seconds (documented fall-back, never hit by CrossTask's real videos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def ordered_step_dp(scores: np.ndarray, strict: bool | None = None) -> np.ndarray:
    """Maximise sum_k scores[t_k, k] subject to t_0 < t_1 < ... < t_{K-1} (each step once, in order).

    Shapes: scores (T, K) float -> (K,) int seconds. `strict=None` means strict iff T >= K.
    O(T K) time with a running prefix maximum; ties go to the earliest second.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0 or scores.shape[0] == 0:
        raise ValueError(f"scores must be (T>0, K>0), got {scores.shape}")
    T, K = scores.shape
    if strict is None:
        strict = T >= K
    if strict and T < K:
        raise ValueError(f"cannot place {K} steps on distinct seconds of a {T}-second video")
    shift = 1 if strict else 0
    # best[t, k]: best total for steps 0..k with step k at second t.
    best = np.full((T, K), -np.inf)
    back = np.zeros((T, K), dtype=np.int64)  # argmax second of step k-1 given step k at t
    best[:, 0] = scores[:, 0]
    for k in range(1, K):
        prev = best[:, k - 1]
        # prefix max/argmax of prev over seconds <= t - shift
        run_val = np.maximum.accumulate(prev)
        run_arg = np.zeros(T, dtype=np.int64)
        cur = 0
        for t in range(T):
            if prev[t] > prev[cur]:
                cur = t
            run_arg[t] = cur
        for t in range(T):
            src = t - shift
            if src < 0 or not np.isfinite(run_val[src]):
                continue
            best[t, k] = scores[t, k] + run_val[src]
            back[t, k] = run_arg[src]
    out = np.zeros(K, dtype=np.int64)
    out[-1] = int(np.argmax(best[:, -1]))
    for k in range(K - 1, 0, -1):
        out[k - 1] = back[out[k], k]
    return out


def step_hits(pred_seconds: np.ndarray, intervals: Sequence[Sequence[tuple[float, float]]], fps: float = 1.0
              ) -> tuple[int, int]:
    """(recalled, present) for one video.

    `intervals[k]` lists step k's annotated (start, end) seconds (empty = step absent); feature index t counts
    when floor(start * fps) <= t < ceil(end * fps), CrossTask's per-second target convention (Y[floor(s):ceil(e)]).
    """
    recalled = present = 0
    for k, ivs in enumerate(intervals):
        if not ivs:
            continue
        present += 1
        t = int(pred_seconds[k])
        recalled += any(math.floor(s * fps) <= t < math.ceil(e * fps) for s, e in ivs)
    return recalled, present


def crosstask_recall(per_video: Sequence[tuple[str, int, int]]) -> dict:
    """Mean over tasks of (sum recalled / sum present). `per_video`: (task_id, recalled, present) tuples.

    Returns {"recall": percent, "per_task": {task: percent}, "num_videos": n}. Tasks with no present step
    are skipped.
    """
    agg: dict[str, list[int]] = {}
    for task, r, p in per_video:
        a = agg.setdefault(task, [0, 0])
        a[0] += r
        a[1] += p
    per_task = {t: 100.0 * r / p for t, (r, p) in agg.items() if p}
    if not per_task:
        raise ValueError("no annotated steps to score")
    return {"recall": float(np.mean(list(per_task.values()))), "per_task": per_task, "num_videos": len(per_video)}
