"""Action segmentation metrics exactly as MS-TCN defines them, plus frame/step-only accuracy.

Inputs are lists of per-second (per-frame) integer label arrays, one per video; `background` (COIN: 0) is the
label of frames outside every step.

- frame accuracy: correct frames / all frames, summed over all videos (not averaged per video), percent.
- step-only accuracy: the same restricted to frames whose truth is a step (not background): a model that
  predicts background everywhere scores 0 here, which exposes the "all-background" shortcut that matches
  VideoCLIP's zero-shot COIN score (58.9 = the all-background frame accuracy).
- edit: Levenshtein distance between the *segment label sequences* (runs of equal labels, background runs
  removed), normalised by the longer sequence: (1 - D / max(m, n)) * 100, averaged over videos. Two empty
  sequences score 100 (MS-TCN would divide by zero).
- F1@k: segments are runs of equal labels with **exclusive ends** (the last run ends at len(labels)),
  background runs removed. Predicted segments are visited in temporal order; each is matched to the single
  ground-truth segment of the same label with the highest IoU; it is a TP if that IoU >= k and that ground
  truth has not been hit yet, otherwise an FP (no fall-back to the second-best segment, as in MS-TCN).
  FN = ground-truth segments never hit. TP/FP/FN are summed over **all videos** before precision/recall/F1.
  IoU uses MS-TCN's (min end - max start) / (max end - min start), which equals the true IoU for
  overlapping segments (and is <= 0 otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

F1_OVERLAPS = (0.10, 0.25, 0.50)


def segments(labels: np.ndarray, background: int | None = 0) -> tuple[list[int], list[int], list[int]]:
    """Runs of equal labels -> (labels, starts, exclusive ends), background runs dropped.

    Shapes: labels (T,) int -> three lists of equal length.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size == 0:
        return [], [], []
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [labels.size]])
    out_l, out_s, out_e = [], [], []
    for s, e in zip(starts.tolist(), ends.tolist()):
        lab = int(labels[s])
        if background is not None and lab == background:
            continue
        out_l.append(lab)
        out_s.append(s)
        out_e.append(e)
    return out_l, out_s, out_e


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance (insert/delete/substitute, cost 1) between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def edit_score(pred: np.ndarray, gt: np.ndarray, background: int | None = 0) -> float:
    """Segmental edit score of one video, percent. Shapes: pred (T,), gt (T,) -> float."""
    p, _, _ = segments(pred, background)
    y, _, _ = segments(gt, background)
    longest = max(len(p), len(y))
    if longest == 0:
        return 100.0
    return (1.0 - levenshtein(p, y) / longest) * 100.0


def f1_counts(pred: np.ndarray, gt: np.ndarray, overlap: float, background: int | None = 0) -> tuple[int, int, int]:
    """(TP, FP, FN) of one video at IoU threshold `overlap` (MS-TCN matching). Shapes: (T,), (T,) -> ints."""
    p_lab, p_s, p_e = segments(pred, background)
    y_lab, y_s, y_e = segments(gt, background)
    y_lab_a, y_s_a, y_e_a = np.array(y_lab), np.array(y_s, dtype=float), np.array(y_e, dtype=float)
    hits = np.zeros(len(y_lab), dtype=bool)
    tp = fp = 0
    for lab, s, e in zip(p_lab, p_s, p_e):
        if not len(y_lab):
            fp += 1
            continue
        inter = np.minimum(e, y_e_a) - np.maximum(s, y_s_a)
        union = np.maximum(e, y_e_a) - np.minimum(s, y_s_a)
        iou = (inter / union) * (y_lab_a == lab)
        idx = int(np.argmax(iou))
        if iou[idx] >= overlap and not hits[idx]:
            tp += 1
            hits[idx] = True
        else:
            fp += 1
    return tp, fp, int(len(y_lab) - hits.sum())


def _f1(tp: int, fp: int, fn: int) -> float:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall) * 100.0


def segmentation_metrics(predictions: Sequence[np.ndarray], ground_truths: Sequence[np.ndarray],
                         background: int | None = 0) -> dict[str, float]:
    """MS-TCN metrics over a set of videos (percent).

    Shapes: predictions, ground_truths: lists of (T_v,) int arrays with equal T_v per video ->
    {"frame_accuracy", "step_accuracy", "background_baseline", "edit", "f1@10", "f1@25", "f1@50",
     "num_videos", "num_frames"}.
    `background_baseline` is the frame accuracy of predicting background everywhere (same data).
    `step_accuracy` is NaN-free: 0 when no frame has a step label.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truths)} ground truths")
    if not predictions:
        raise ValueError("no videos to score")
    correct = total = step_correct = step_total = bg_frames = 0
    edits = []
    counts = {k: [0, 0, 0] for k in F1_OVERLAPS}
    for i, (p, y) in enumerate(zip(predictions, ground_truths)):
        p, y = np.asarray(p), np.asarray(y)
        if p.shape != y.shape:
            raise ValueError(f"video {i}: prediction shape {p.shape} != ground truth shape {y.shape}")
        correct += int((p == y).sum())
        total += y.size
        is_step = y != background if background is not None else np.ones_like(y, dtype=bool)
        step_correct += int((p == y)[is_step].sum())
        step_total += int(is_step.sum())
        bg_frames += int((~is_step).sum())
        edits.append(edit_score(p, y, background))
        for k in F1_OVERLAPS:
            tp, fp, fn = f1_counts(p, y, k, background)
            counts[k][0] += tp
            counts[k][1] += fp
            counts[k][2] += fn
    out = {
        "frame_accuracy": 100.0 * correct / max(total, 1),
        "step_accuracy": 100.0 * step_correct / step_total if step_total else 0.0,
        "background_baseline": 100.0 * bg_frames / max(total, 1),
        "edit": float(np.mean(edits)),
    }
    for k in F1_OVERLAPS:
        out[f"f1@{int(round(k * 100))}"] = _f1(*counts[k])
    out["num_videos"] = len(predictions)
    out["num_frames"] = total
    return out
