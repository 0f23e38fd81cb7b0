"""Narration alignment (HTM-Align style): metrics and content + time aligners.

Metrics (ground truth: the synthetic corpus's ground_truth.json, or HTM-Align's htm_align.json):
- recall: among *relevant* (alignable) lines, the percentage whose prediction falls inside their true interval
  (HTM-Align's "R@1"-style recall). Synthetic protocol: predicted time t with start <= t <= end; HTM-Align
  protocol (TAN's eval_zeroshot_align.py): predicted second index i with floor(start) <= i <= ceil(end).
- relevance AUC: ROC-AUC (percent, 50 = chance) of an alignability score telling relevant from irrelevant
  lines, computed as the Mann-Whitney statistic with ties counted one half (see `roc_auc`).
Baseline: the raw timestamps (a line's own midpoint). It is strong (61-78% on vidlang's synthetic corpora, measured
with their ground truth), while a content-only argmax reaches ~23-41% there.

Scores (`alignment_scores`), per line l and second t (time(t) = (t + 0.5) / fps):
    score[l, t] = content_weight * max(z[l, t] - content_threshold, 0) + log prior_l(t)
- z: the line x second similarity z-scored over the video's seconds (per line), so the content term is
  comparable across lines and videos. Only z above `content_threshold` counts as evidence: a weak, noisy
  similarity (z ~ N(0, 1) for an uninformative model) does not move a line; a sharp peak does.
- prior: flat inside the line's own [start, end] and Laplace tails outside, -dist(time(t), [start, end]) / scale
  (scale ~3 s, the measured std of ASR offsets), plus a negligible tie-breaker (1e-3 of a Laplace slope) towards
  the second holding the midpoint, so that with no content evidence every aligner below returns exactly the raw
  timestamp.
Prediction time: the chosen second's centre, or the line's own midpoint when that midpoint lies in the chosen
second (the aligner chose a second; inside it the timestamp is the best guess). Hence
`content_weight = 0` (or an uninformative model under the threshold) reproduces the raw-timestamp baseline.

Aligners:
- `align_lines` ("prior"): per-line argmax of the score (lines independent).
- `align_lines_dp` ("dp"): relevant narration follows the step order, so the lines are placed jointly by a
  monotonic dynamic program over lines x seconds: the chosen seconds of the lines *kept in the chain* are
  non-decreasing in narration order; a line may leave the chain (out-of-order or unalignable narration) at a cost
  `skip_penalty` and then takes its own per-line argmax. skip_penalty = 0 gives `align_lines`; inf a strictly
  monotone alignment. See `monotonic_dp`.
- `align_lines_ot` ("ot"): the same scores through vidlang's OT with Norton's alignable prompt bucket.
- content-only argmax: `align_lines(..., prior_scale=inf)`.
The unalignability score of `align_lines`/`align_lines_dp` is the *peakedness* of a line's similarity, its peak
z-score (relevance AUC 0.79-0.85 vs 0.60 for the raw max, measured on the synthetic corpus); for OT the mass
a line keeps out of the bucket.

Hyper-parameters (`AlignerParams`) are chosen on the TRAINING split's ground truth (`tune_params`, used by
`vidlang eval alignment`); the evaluation split is never used for that. A corpus without training ground truth
(e.g. HTM-Align, a test set only) uses the configured defaults (configs/eval/synthetic.yaml, chosen this way
on the synthetic corpus), behind a label-free check of the model (`vidlang.eval.tasks.alignment`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

TIE_BREAK = 1e-3  # fraction of a Laplace slope pulling a line towards its own midpoint (breaks ties only)


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


def jackknife_auc(own: Sequence[float], other: Sequence[float], groups: Sequence[int]) -> tuple[float, float]:
    """ROC-AUC (percent) of `own` scores against `other` scores, and its leave-one-group-out jackknife SE.

    Shapes: own (N,), other (M,), groups (N + M,) int: the group (video) of each own score, then of each other
    score. Lines of one video are not independent draws, so the standard error is computed over videos: the AUC
    is recomputed without each group in turn, SE = sqrt((G - 1) / G * sum_g (AUC_(g) - mean)^2). A group whose
    removal leaves one class empty is skipped; SE is inf with fewer than two usable groups.
    """
    scores = np.asarray(list(own) + list(other), dtype=np.float64)
    labels = np.r_[np.ones(len(own), bool), np.zeros(len(other), bool)]
    g = np.asarray(groups)
    if g.shape != scores.shape:
        raise ValueError(f"groups must have one entry per score ({scores.shape[0]}), got {g.shape}")
    auc = roc_auc(scores, labels)
    loo = []
    for k in np.unique(g):
        keep = g != k
        if labels[keep].any() and (~labels[keep]).any():
            loo.append(roc_auc(scores[keep], labels[keep]))
    if len(loo) < 2:
        return auc, math.inf
    loo = np.asarray(loo)
    return auc, float(math.sqrt((len(loo) - 1) / len(loo) * ((loo - loo.mean()) ** 2).sum()))


def zscore_over_seconds(sim: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-line z-score of similarities over the video's seconds. Shapes: (L, T) -> (L, T)."""
    mean = sim.mean(dim=1, keepdim=True)
    std = sim.std(dim=1, unbiased=False, keepdim=True)
    return (sim - mean) / (std + eps)


def _times(num_seconds: int, fps: float) -> Tensor:
    return (torch.arange(num_seconds, dtype=torch.float64) + 0.5) / fps


def laplace_log_prior(mids: Tensor, num_seconds: int, fps: float, scale: float) -> Tensor:
    """log Laplace density of each second's centre time around each line's midpoint.

    Shapes: mids (L,) seconds -> (L, T) with T = num_seconds; time(t) = (t + 0.5) / fps.
    """
    return -(_times(num_seconds, fps)[None, :] - mids.double()[:, None]).abs() / scale - math.log(2.0 * scale)


def interval_log_prior(starts: Tensor, ends: Tensor, num_seconds: int, fps: float, scale: float,
                       tie_break: float = TIE_BREAK) -> Tensor:
    """Unnormalised log prior: 0 inside a line's own [start, end], -distance / scale outside (Laplace tails),
    minus `tie_break` * (seconds between t and the second holding the midpoint) / scale: a negligible pull that
    only breaks ties, towards the second that contains the line's midpoint.

    Shapes: starts, ends (L,) seconds -> (L, T); time(t) = (t + 0.5) / fps. Maximum at floor(mid * fps).
    """
    s, e = starts.double()[:, None], ends.double()[:, None]
    t = _times(num_seconds, fps)[None, :]
    dist = (s - t).clamp(min=0) + (t - e).clamp(min=0)
    own = torch.floor((s + e) / 2 * fps)
    steps = (torch.arange(num_seconds, dtype=torch.float64)[None, :] - own).abs() / fps
    return -(dist + tie_break * steps) / scale


@dataclass(frozen=True)
class AlignerParams:
    """Hyper-parameters of the aligners (defaults: chosen on the synthetic corpus's *training* split, see
    configs/eval/synthetic.yaml; a corpus without training ground truth uses them as they are)."""

    content_weight: float = 0.5  # weight of the (thresholded) z-score evidence, in log-prior units
    content_threshold: float = 1.0  # z-scores below this carry no evidence (-inf: plain z)
    prior_scale: float = 6.0  # Laplace scale of the time prior's tails (s); inf = content only
    skip_penalty: float = 1.0  # DP: cost of taking a line out of the ordered chain; inf = strictly monotone

    def validate(self) -> None:
        if not self.prior_scale > 0 or self.content_weight < 0 or self.skip_penalty < 0 \
                or math.isnan(self.content_threshold):
            raise ValueError(f"invalid aligner parameters {self}")


def _spans(sim: Tensor, starts, ends) -> tuple[Tensor, Tensor]:
    if sim.dim() != 2:
        raise ValueError(f"sim must be (L, T), got {tuple(sim.shape)}")
    s = torch.as_tensor(np.asarray(starts, dtype=np.float64), dtype=torch.float64).reshape(-1)
    e = torch.as_tensor(np.asarray(ends, dtype=np.float64), dtype=torch.float64).reshape(-1)
    if s.shape[0] != sim.shape[0] or e.shape[0] != sim.shape[0]:
        raise ValueError(f"{sim.shape[0]} lines but {s.shape[0]} starts and {e.shape[0]} ends")
    return s, e


def content_evidence(z: Tensor, weight: float, threshold: float) -> Tensor:
    """weight * max(z - threshold, 0) (threshold -inf: weight * z). Shapes: (L, T) -> (L, T)."""
    if weight == 0:
        return torch.zeros_like(z)
    if math.isinf(threshold) and threshold < 0:
        return weight * z
    return weight * (z - threshold).clamp(min=0)


def alignment_scores(sim: Tensor, starts, ends, fps: float, params: AlignerParams,
                     z: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The score matrix of the module docstring and the z-scores. Shapes: sim (L, T) -> ((L, T), (L, T)) float64."""
    s, e = _spans(sim, starts, ends)
    z = zscore_over_seconds(sim.double()) if z is None else z
    score = content_evidence(z, params.content_weight, params.content_threshold)
    if math.isfinite(params.prior_scale):
        score = score + interval_log_prior(s, e, sim.shape[1], fps, params.prior_scale)
    return score, z


def predicted_time(index: np.ndarray, mids: np.ndarray, fps: float) -> np.ndarray:
    """Time of a chosen second: the line's own midpoint when it lies in that second, else the second's centre.

    Shapes: index (L,) int, mids (L,) seconds -> (L,) seconds.
    """
    index = np.asarray(index, dtype=np.int64)
    mids = np.asarray(mids, dtype=np.float64)
    own = np.floor(mids * fps).astype(np.int64) == index
    return np.where(own, mids, (index + 0.5) / fps)


@dataclass
class Alignment:
    """Result of aligning L lines to a video: predicted feature index and time, alignability per line."""

    index: np.ndarray  # (L,) int, feature index (second at fps=1)
    time: np.ndarray  # (L,) float seconds (see `predicted_time`)
    alignability: np.ndarray  # (L,) float, peak z-score (higher = more likely visually grounded)
    kept: np.ndarray | None = None  # (L,) bool, DP only: line kept in the ordered chain


def align_lines(sim: Tensor, starts: Sequence[float], ends: Sequence[float], fps: float = 1.0,
                prior_scale: float = 3.0, content_weight: float = 1.0, content_threshold: float = 1.0) -> Alignment:
    """Per-line aligner: argmax over seconds of the score (see module docstring).

    Shapes: sim (L, T) line x second similarity; starts/ends (L,) seconds -> Alignment of (L,) arrays.
    `prior_scale = inf` gives content-only argmax, `content_weight = 0` the raw timestamps.
    """
    p = AlignerParams(content_weight, content_threshold, prior_scale, 0.0)
    score, z = alignment_scores(sim, starts, ends, fps, p)
    L = sim.shape[0]
    if not L:
        return Alignment(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if not math.isfinite(prior_scale):  # content only: the plain argmax of the similarity
        idx = sim.argmax(dim=1).numpy()
        return Alignment(idx, (idx + 0.5) / fps, z.max(dim=1).values.numpy())
    idx = score.argmax(dim=1).numpy()
    mids = (np.asarray(starts, np.float64) + np.asarray(ends, np.float64)) / 2
    return Alignment(idx, predicted_time(idx, mids, fps), z.max(dim=1).values.numpy())


def monotonic_dp(score: np.ndarray, skip_penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Best order-preserving placement of L lines (in narration order) on T seconds, lines may leave the chain.

    Maximises  sum_{l kept} score[l, t_l] + sum_{l skipped} (max_t score[l, t] - skip_penalty)
    subject to t_l non-decreasing over the kept lines (several lines may share a second); a skipped line gets
    its own argmax. Equivalent to a plain monotone DP on score'[l, t] = max(score[l, t], best_l - penalty):
    F_l(t) = max_{t' <= t} F_{l-1}(t') + score'[l, t'] (a running maximum), O(L T) time.

    Shapes: score (L, T) float -> (index (L,) int, kept (L,) bool). Ties go to the earliest second.
    """
    score = np.asarray(score, dtype=np.float64)
    L, T = score.shape
    if L == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    best, free = score.max(axis=1), score.argmax(axis=1)
    alt = best - skip_penalty if math.isfinite(skip_penalty) else np.full(L, -np.inf)
    eff = np.maximum(score, alt[:, None])
    H = np.empty((L, T))
    F = np.zeros(T)
    for l in range(L):
        H[l] = F + eff[l]
        F = np.maximum.accumulate(H[l])
    idx = np.empty(L, np.int64)
    kept = np.empty(L, bool)
    pos = T - 1
    for l in range(L - 1, -1, -1):
        t = int(np.argmax(H[l, : pos + 1]))
        kept[l] = score[l, t] >= alt[l]
        idx[l] = t if kept[l] else free[l]
        pos = t
    return idx, kept


def align_lines_dp(sim: Tensor, starts: Sequence[float], ends: Sequence[float], fps: float = 1.0,
                   params: AlignerParams = AlignerParams(), z: Tensor | None = None) -> Alignment:
    """Monotonic (order-preserving) aligner: `monotonic_dp` on the scores, lines taken in time order.

    Shapes: sim (L, T), starts/ends (L,) -> Alignment (+ kept). The chain follows the lines' midpoints (ties:
    start), so the raw timestamps are always a feasible chain (no content -> exactly the timestamps); the result
    is returned in the input order.
    """
    score, z = alignment_scores(sim, starts, ends, fps, params, z)
    L = sim.shape[0]
    if not L:
        return Alignment(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, bool))
    s, e = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
    order = np.lexsort((s, s + e))
    idx_o, kept_o = monotonic_dp(score.numpy()[order], params.skip_penalty)
    idx, kept = np.empty(L, np.int64), np.empty(L, bool)
    idx[order], kept[order] = idx_o, kept_o
    return Alignment(idx, predicted_time(idx, (s + e) / 2, fps), z.max(dim=1).values.numpy(), kept)


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


def htm_align_recall(pred_index: Sequence[int], intervals: Sequence[tuple[float, float] | None],
                     fps: float = 1.0) -> tuple[int, int]:
    """(hits, alignable sentences) with TAN's rule: floor(start * fps) <= index <= ceil(end * fps)."""
    hits = total = 0
    for i, iv in zip(pred_index, intervals):
        if iv is None:
            continue
        total += 1
        hits += math.floor(iv[0] * fps) <= int(i) <= math.ceil(iv[1] * fps)
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
                   epsilon: float = 0.3, n_iters: int = 100, content_threshold: float = 1.0) -> Alignment:
    """Joint alignment of all lines with vidlang's OT and the alignable prompt bucket.

    Shapes: sim (L, T), starts/ends (L,) -> Alignment. Scores are those of `alignment_scores` (on the z scale,
    prior 0 inside the line's interval) so `bucket_value` is on that scale too;
    `vidlang.losses.ot.sinkhorn_with_bucket` transports each line (mass 1) to seconds (mass 1 each: two lines
    cannot both take the same second fully) or to the bucket. The prediction is the plan's argmax second per line;
    `alignability` is the mass a line keeps out of the bucket (1 = fully aligned). The plan is a target-free
    inference quantity: computed without gradient. `epsilon` is on the z-score scale.
    """
    res = ot_alignment_plan(sim, starts, ends, fps, prior_scale, content_weight, bucket_value, epsilon, n_iters,
                            content_threshold)
    idx = res.plan.argmax(dim=1).numpy()
    kept = res.plan.sum(dim=1).numpy()
    mids = (np.asarray(starts, np.float64) + np.asarray(ends, np.float64)) / 2
    return Alignment(index=idx, time=predicted_time(idx, mids, fps), alignability=kept)


def ot_alignment_plan(sim: Tensor, starts: Sequence[float], ends: Sequence[float], fps: float = 1.0,
                      prior_scale: float = 3.0, content_weight: float = 1.0, bucket_value: float = 0.0,
                      epsilon: float = 0.3, n_iters: int = 100, content_threshold: float = 1.0):
    """The transport plan behind `align_lines_ot` (a vidlang.losses.ot.BucketResult).

    Shapes: sim (L, T) -> .full (L+1, T+1) with the bucket row L and bucket column T, .plan (L, T); count units
    (each line and each second carries mass 1; see sinkhorn_with_bucket). No gradient.
    """
    from vidlang.losses.ot import sinkhorn_with_bucket

    score, _ = alignment_scores(sim, starts, ends, fps,
                                AlignerParams(content_weight, content_threshold, prior_scale, 0.0))
    return sinkhorn_with_bucket(score, bucket_value, epsilon=epsilon, n_iters=n_iters, warn=False)


# ------------------------------------------------------------------------------------ hyper-parameter selection
@dataclass
class AlignVideo:
    """One video's alignment problem with ground truth (what `tune_params` and the task loop consume)."""

    sim: Tensor  # (L, T)
    starts: np.ndarray  # (L,) narration timestamps (s)
    ends: np.ndarray  # (L,)
    intervals: list  # (L,) true (start, end) of relevant lines, None for the others


def tune_params(videos: Sequence[AlignVideo], fps: float, content_weights: Iterable[float],
                content_thresholds: Iterable[float], prior_scales: Iterable[float],
                skip_penalties: Iterable[float]) -> tuple[AlignerParams, dict]:
    """Grid search of the DP aligner's parameters maximising its recall on `videos` (TRAINING videos only).

    Returns (best params, {"recall_dp": best recall on these videos, "recall_timestamps": the raw-timestamp
    recall on them, "videos": n}). Ties keep the earliest grid point, so list conservative values first
    (content_weight 0 first: when nothing beats the timestamps the aligner reproduces them).
    """
    grid_w, grid_c = list(content_weights), list(content_thresholds)
    grid_s, grid_p = list(prior_scales), list(skip_penalties)
    combos = list(itertools.product(grid_w, grid_c, grid_s, grid_p))
    hits = np.zeros(len(combos))
    total = base_hits = 0
    for v in videos:
        if v.sim.shape[0] == 0:
            continue
        z = zscore_over_seconds(v.sim.double())
        mids = (v.starts + v.ends) / 2
        order = np.lexsort((v.starts, v.starts + v.ends))  # as in align_lines_dp
        h, t = alignment_recall(mids, v.intervals)
        base_hits += h
        total += t
        priors = {sc: interval_log_prior(torch.from_numpy(v.starts), torch.from_numpy(v.ends), v.sim.shape[1], fps, sc)
                  for sc in grid_s}
        contents = {(w, c): content_evidence(z, w, c) for w in grid_w for c in grid_c}
        for k, (w, c, sc, pen) in enumerate(combos):
            score = (contents[(w, c)] + priors[sc]).numpy()[order]
            idx_o, _ = monotonic_dp(score, pen)
            idx = np.empty_like(idx_o)
            idx[order] = idx_o
            hits[k] += alignment_recall(predicted_time(idx, mids, fps), v.intervals)[0]
    if not total:
        raise ValueError("no relevant line in the tuning videos")
    k = int(np.argmax(hits))  # first maximum = earliest grid point
    w, c, sc, pen = combos[k]
    return AlignerParams(w, c, sc, pen), {"recall_dp": 100.0 * hits[k] / total,
                                          "recall_timestamps": 100.0 * base_hits / total,
                                          "relevant_lines": total, "grid_points": len(combos)}


def params_dict(p: AlignerParams) -> dict:
    """JSON-safe dict (inf -> the string "inf")."""
    return {k: (v if math.isfinite(v) else ("inf" if v > 0 else "-inf")) for k, v in asdict(p).items()}
