"""Narration alignment (HTM-Align style): metrics and a content + time aligner.

Metrics (ground truth from the synthetic corpus's ground_truth.json, or any source with per-line truth):
- recall: among *relevant* lines, the percentage whose predicted time falls inside their true step
  [start, end] (HTM-Align's "R@1"-style recall; a predicted second index t stands for time (t + 0.5) / fps).
- relevance AUC: ROC-AUC (percent, 50 = chance) of an alignability score telling relevant from irrelevant
  lines, computed as the Mann-Whitney statistic with ties counted one half (see `roc_auc`).
Baseline: the raw timestamps (a line's own midpoint). It is strong: ~61-64% on the synthetic corpus
(shared/FINDINGS.md), while a content-only argmax reaches ~23-41%.

Aligner (`align_lines`): per line l and second t,
    score[l, t] = weight * z[l, t] + log Laplace(time(t) - mid_l; scale)
where z is the line x second similarity z-scored over the video's seconds (per line), so the content term is
comparable across lines and videos, and the prior keeps each line near its own timestamp (scale ~3 s, the
measured std of ASR offsets). The prediction is the argmax over t (solved per line). The unalignability score
is the *peakedness* of a line's similarity: its peak z-score (a line that matches one place sharply is likely
visual; chatter matches everything or nothing). FINDINGS: peak z gives AUC 0.79-0.85, the raw max only 0.60.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """ROC-AUC in percent: P(score_pos > score_neg) + 0.5 P(tie), over all positive/negative pairs.

    Shapes: scores (N,), labels (N,) bool -> float. Uses average ranks (ties get the mean rank), which is
    exactly the pairwise definition. Raises ValueError when one class is empty (AUC undefined).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D of equal length, got {s.shape} and {y.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average 1-based rank over each run of ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return 100.0 * u / (n_pos * n_neg)


def zscore_over_seconds(sim: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-line z-score of similarities over the video's seconds. Shapes: (L, T) -> (L, T)."""
    mean = sim.mean(dim=1, keepdim=True)
    std = sim.std(dim=1, unbiased=False, keepdim=True)
    return (sim - mean) / (std + eps)


def laplace_log_prior(mids: Tensor, num_seconds: int, fps: float, scale: float) -> Tensor:
    """log Laplace density of each second's centre time around each line's midpoint.

    Shapes: mids (L,) seconds -> (L, T) with T = num_seconds; time(t) = (t + 0.5) / fps.
    """
    times = (torch.arange(num_seconds, dtype=torch.float64) + 0.5) / fps
    return -(times[None, :] - mids.double()[:, None]).abs() / scale - math.log(2.0 * scale)


@dataclass
class Alignment:
    """Result of aligning L lines to a video: predicted feature index and time, alignability per line."""

    index: np.ndarray  # (L,) int, feature index (second at fps=1)
    time: np.ndarray  # (L,) float seconds, (index + 0.5) / fps
    alignability: np.ndarray  # (L,) float, peak z-score (higher = more likely visually grounded)


def align_lines(sim: Tensor, starts: Sequence[float], ends: Sequence[float], fps: float = 1.0,
                prior_scale: float = 3.0, content_weight: float = 1.0) -> Alignment:
    """Align narration lines to seconds with content and time together (see module docstring).

    Shapes: sim (L, T) line x second similarity; starts/ends (L,) seconds -> Alignment of (L,) arrays.
    `prior_scale` = Laplace scale b in seconds (default 3 s, the measured std of narration offsets in
    shared/FINDINGS.md); `prior_scale = inf` gives content-only argmax, `content_weight = 0` the raw timestamps.
    """
    if sim.dim() != 2:
        raise ValueError(f"sim must be (L, T), got {tuple(sim.shape)}")
    L, T = sim.shape
    mids = (torch.as_tensor(starts, dtype=torch.float64) + torch.as_tensor(ends, dtype=torch.float64)) / 2
    if mids.shape != (L,):
        raise ValueError(f"{L} lines but {mids.shape[0]} timestamps")
    z = zscore_over_seconds(sim.double())
    score = content_weight * z
    if math.isfinite(prior_scale):
        score = score + laplace_log_prior(mids, T, fps, prior_scale)
    idx = score.argmax(dim=1).numpy() if L else np.zeros(0, dtype=np.int64)
    return Alignment(index=idx, time=(idx + 0.5) / fps,
                     alignability=(z.max(dim=1).values.numpy() if L else np.zeros(0)))


def timestamp_alignment(starts: Sequence[float], ends: Sequence[float]) -> np.ndarray:
    """Raw-timestamp baseline: each line's midpoint (seconds). Shapes: (L,), (L,) -> (L,)."""
    return (np.asarray(starts, dtype=np.float64) + np.asarray(ends, dtype=np.float64)) / 2.0


def alignment_recall(pred_times: Sequence[float], step_intervals: Sequence[tuple[float, float] | None]) -> tuple[int, int]:
    """(hits, relevant lines) for one video: a relevant line (interval not None) hits when start <= t <= end."""
    hits = total = 0
    for t, iv in zip(pred_times, step_intervals):
        if iv is None:
            continue
        total += 1
        hits += iv[0] <= t <= iv[1]
    return hits, total


def drop_threshold(alignability: np.ndarray, drop_frac: float) -> float:
    """Score below which a line is dropped so that a fraction `drop_frac` of lines goes (ties kept)."""
    if not 0.0 <= drop_frac < 1.0:
        raise ValueError(f"drop_frac must be in [0, 1), got {drop_frac}")
    if drop_frac == 0.0 or alignability.size == 0:
        return -math.inf
    return float(np.quantile(alignability, drop_frac))


def align_lines_ot(sim: Tensor, starts: Sequence[float], ends: Sequence[float], fps: float = 1.0,
                   prior_scale: float = 3.0, content_weight: float = 1.0, bucket_value: float = 0.0,
                   epsilon: float = 0.3, n_iters: int = 100) -> Alignment:
    """Joint alignment of all lines with vidlang's OT and the alignable prompt bucket.

    Shapes: sim (L, T), starts/ends (L,) -> Alignment. Scores are the same as `align_lines`
    (content_weight * z + log Laplace prior, the prior's -log(2b) constant dropped so that `bucket_value` is on
    the z scale); `vidlang.losses.ot.sinkhorn_with_bucket` transports each line (mass 1) to seconds (mass 1 each:
    two lines cannot both take the same second fully) or to the bucket. The prediction is the plan's argmax
    second per line; `alignability` is the mass a line keeps out of the bucket (1 = fully aligned). The plan is a
    target-free inference quantity: computed without gradient. `epsilon` is on the z-score scale.
    """
    res = ot_alignment_plan(sim, starts, ends, fps, prior_scale, content_weight, bucket_value, epsilon, n_iters)
    idx = res.plan.argmax(dim=1).numpy()
    kept = res.plan.sum(dim=1).numpy()
    return Alignment(index=idx, time=(idx + 0.5) / fps, alignability=kept)


def ot_alignment_plan(sim: Tensor, starts: Sequence[float], ends: Sequence[float], fps: float = 1.0,
                      prior_scale: float = 3.0, content_weight: float = 1.0, bucket_value: float = 0.0,
                      epsilon: float = 0.3, n_iters: int = 100):
    """The transport plan behind `align_lines_ot` (a vidlang.losses.ot.BucketResult).

    Shapes: sim (L, T) -> .full (L+1, T+1) with the bucket row L and bucket column T, .plan (L, T); count units
    (each line and each second carries mass 1; see sinkhorn_with_bucket). No gradient.
    """
    from vidlang.losses.ot import sinkhorn_with_bucket

    L, T = sim.shape
    mids = (torch.as_tensor(starts, dtype=torch.float64) + torch.as_tensor(ends, dtype=torch.float64)) / 2
    if mids.shape != (L,):
        raise ValueError(f"{L} lines but {mids.shape[0]} timestamps")
    score = content_weight * zscore_over_seconds(sim.double())
    if math.isfinite(prior_scale):
        score = score + laplace_log_prior(mids, T, fps, prior_scale) + math.log(2.0 * prior_scale)
    return sinkhorn_with_bucket(score, bucket_value, epsilon=epsilon, n_iters=n_iters, warn=False)
