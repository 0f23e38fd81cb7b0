"""COIN action segmentation per second: zero-shot (step labels as text) and a supervised probe.

The reference's zero-shot threshold (the largest similarity between two *different* step labels, MMPT
COINZSPredictor) is reported as is -- it usually classifies every frame as background, which is why VideoCLIP's
zero-shot COIN score equals the all-background score; vidlang adds a threshold calibrated on the *training* split
and reports the all-background baseline and step-only accuracy beside frame accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from vidlang.errors import VidlangError
from vidlang.eval.capabilities import Embeds, need_file, store_fps
from vidlang.eval.probe import train_head
from vidlang.eval.registry import register_task
from vidlang.eval.segmentation import segmentation_metrics


def _coin_data(embedder, store, videos, fps):
    X, Y = [], []
    for v in videos:
        from vidlang.datasets import coin_frame_labels

        feats = store[v.video_id]
        X.append(embedder.embed_seconds(feats, fps).float())
        Y.append(coin_frame_labels(v, fps=fps, length=feats.shape[0]))
    return X, Y


def zero_shot_predict(frame_emb: Tensor, label_emb: Tensor, label_ids: Sequence[int], threshold: float,
                      background: int = 0) -> np.ndarray:
    """Per-frame label: the most similar step label, or background when its similarity <= threshold.

    Shapes: frame_emb (T, D), label_emb (K, D), label_ids (K,) -> (T,) int.
    """
    sim = frame_emb @ label_emb.T
    best, arg = sim.max(dim=1)
    ids = torch.as_tensor(list(label_ids))[arg]
    return torch.where(best > threshold, ids, torch.full_like(ids, background)).numpy()


def reference_threshold(label_emb: Tensor) -> float:
    """MMPT's zero-shot COIN threshold: the largest similarity between two different step labels."""
    sim = label_emb @ label_emb.T
    k = sim.shape[0]
    return float(sim.masked_select(~torch.eye(k, dtype=torch.bool)).max()) if k > 1 else 1.0


def calibrate_threshold(frame_embs: Sequence[Tensor], labels: Sequence[np.ndarray], label_emb: Tensor,
                        label_ids: Sequence[int], grid: int = 41, objective: str = "frame_accuracy") -> float:
    """Threshold maximising `objective` (a segmentation_metrics key) on the given (training) videos.

    Candidates: quantiles of the frames' best label similarity (plus +inf-like = all background).
    """
    best_sims = torch.cat([(e @ label_emb.T).max(dim=1).values for e in frame_embs])
    cands = torch.quantile(best_sims, torch.linspace(0, 1, grid)).tolist() + [float(best_sims.max()) + 1.0]
    best_t, best_v = cands[-1], -1.0
    for t in cands:
        preds = [zero_shot_predict(e, label_emb, label_ids, t) for e in frame_embs]
        v = segmentation_metrics(preds, labels)[objective]
        if v > best_v:
            best_t, best_v = t, v
    return float(best_t)



def _seg(preds, truths) -> dict:
    """segmentation_metrics without the keys recorded once under baselines/counts."""
    m = segmentation_metrics(preds, truths)
    for k in ("background_baseline", "num_videos", "num_frames"):
        m.pop(k)
    return m


def run_segmentation_coin(embedder: Embeds, store, coin_json: str, modes: Sequence[str] = ("zero_shot", "supervised"),
                          head: str = "linear", hidden: int = 256, epochs: int = 300, lr: float = 1e-2,
                          val_fraction: float = 0.15, calibrate_objective: str = "frame_accuracy",
                          seed: int = 0) -> dict:
    """COIN per-second segmentation on the testing split (see module docstring for the protocol)."""
    from vidlang.datasets import coin_step_vocabulary, read_coin

    allv = read_coin(need_file(coin_json, "COIN JSON"))
    fps = store_fps(store)
    train = [v for v in allv if v.subset == "training" and v.video_id in store]
    test = [v for v in allv if v.subset == "testing" and v.video_id in store]
    if not test:
        raise VidlangError(f"{coin_json}: no testing video is in the feature store {store.root}")
    Xt, Yt = _coin_data(embedder, store, test, fps)
    base = segmentation_metrics([np.zeros_like(y) for y in Yt], Yt)
    out = {"metrics": {}, "baselines": {"all_background": {k: base[k] for k in ("frame_accuracy", "step_accuracy",
                                                                              "edit", "f1@10", "f1@25", "f1@50")}},
           "counts": {"train_videos": len(train), "test_videos": len(test), "test_frames": base["num_frames"]},
           "protocol": "COIN per second, background 0, MS-TCN metrics; thresholds/heads fit on training only"}
    vocab = coin_step_vocabulary(allv)
    Xtr, Ytr = _coin_data(embedder, store, train, fps) if train else ([], [])
    if "zero_shot" in modes:
        label_ids = list(vocab)
        lab = embedder.embed_texts([vocab[i] for i in label_ids]).float()
        thr_ref = reference_threshold(lab)
        out["metrics"]["zero_shot_reference_threshold"] = _seg(
            [zero_shot_predict(e, lab, label_ids, thr_ref) for e in Xt], Yt)
        out["metrics"]["zero_shot_reference_threshold"]["threshold"] = thr_ref
        if train:
            thr = calibrate_threshold(Xtr, Ytr, lab, label_ids, objective=calibrate_objective)
            m = _seg([zero_shot_predict(e, lab, label_ids, thr) for e in Xt], Yt)
            m["threshold"] = thr
            out["metrics"]["zero_shot_calibrated"] = m
        out["metrics"]["zero_shot_no_background"] = _seg(
            [zero_shot_predict(e, lab, label_ids, -math.inf) for e in Xt], Yt)
    if "supervised" in modes:
        if len(train) < 2:
            raise VidlangError(f"{coin_json}: supervised segmentation needs >= 2 training videos in the store")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train))
        n_val = max(1, int(round(val_fraction * len(train))))
        val_idx, fit_idx = set(order[:n_val].tolist()), order[n_val:].tolist()
        classes = [0] + sorted({int(l) for i in fit_idx for l in np.unique(Ytr[i]) if l != 0})
        predict, info = train_head([Xtr[i] for i in fit_idx], [Ytr[i] for i in fit_idx],
                                   [Xtr[i] for i in sorted(val_idx)], [Ytr[i] for i in sorted(val_idx)],
                                   classes, head=head, hidden=hidden, epochs=epochs, lr=lr, seed=seed)
        m = _seg([predict(e) for e in Xt], Yt)
        m.update(info)
        out["metrics"][f"supervised_{head}"] = m
        preds_sup = [predict(e) for e in Xt[:3]]
    # a few timelines for `vidlang report` figures (truth vs each mode's prediction)
    examples = []
    for i, v in enumerate(test[:3]):
        ex = {"video_id": v.video_id, "truth": Yt[i].tolist(), "pred": {}}
        if "zero_shot" in modes and train:
            ex["pred"]["zero_shot_calibrated"] = zero_shot_predict(
                Xt[i], lab, label_ids, out["metrics"]["zero_shot_calibrated"]["threshold"]).tolist()
        if "supervised" in modes:
            ex["pred"][f"supervised_{head}"] = preds_sup[i].tolist()
        examples.append(ex)
    out["examples"] = examples
    return out




@register_task("segmentation-coin", data=("coin", "features"))
def segmentation_coin(embedder: Embeds, cfg, stores) -> dict:
    s = cfg.segmentation
    return run_segmentation_coin(embedder, stores.get(cfg.data.features), cfg.data.coin, s.modes, s.head, s.hidden,
                                 s.epochs, s.lr, s.val_fraction, s.calibrate_objective, cfg.seed)
