"""Evaluation protocols: readers + feature store + an `Embedder` -> metric functions -> a result dict.

Each `run_*` function returns {"metrics": {...}, "baselines": {...}, "counts": {...}, "protocol": "..."}; numbers
are percent unless the key says otherwise (ranks are 1-based). Every number is computed by the metric modules.

Differences from the reference protocols (MMPT/VideoCLIP, Norton), on purpose:
- Clip retrieval: ties are ranked pessimistically (the references' argsort favours low indices); video->text is
  reported too. `max_clip_seconds` (default 32, MMPT's YouCook `max_video_len`) crops a clip to its first 32 s,
  as the reference does; set it to null to use whole segments.
- Paragraph retrieval: DTW/OTAM are implemented from their definitions with masks (see paragraph.py).
- Segmentation: the reference's zero-shot threshold (the largest similarity between two *different* step labels,
  MMPT COINZSPredictor) is reported as is -- it usually classifies every frame as background; we add a threshold
  calibrated on the *training* split. The supervised head is selected on a held-out part of the training split,
  never on the test split (MMPT/Norton select checkpoints on test).
- Step localization: the CrossTask DP and per-task recall as in CrossTask; validation videos missing from the
  feature store are counted in `counts.missing_videos` so a changed denominator is visible.
- Narration alignment: besides the raw-timestamp recall, `baselines.timestamps.auc_ot_mass` is the relevance AUC
  of the OT aligner run with *no content* (timing alone): on the synthetic corpus the position of a line among
  its neighbours already separates chatter somewhat (~60), so a model's OT-mass AUC must be read against it.
  The aligners' hyper-parameters are chosen on the *training* split's ground truth (recorded under
  "hyperparameters"); HTM-Align (a test set) uses the configured defaults. Recall on HTM-Align follows TAN's rule
  (floor(start) <= predicted second <= ceil(end)); on the synthetic corpus the predicted time must lie in the step.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidlang.errors import FormatError, VidlangError
from vidlang.eval import alignment as al
from vidlang.eval.localization import crosstask_recall, ordered_step_dp, step_hits
from vidlang.eval.paragraph import paragraph_retrieval
from vidlang.eval.retrieval import bidirectional_metrics, chance_recall
from vidlang.eval.segmentation import segmentation_metrics


class Embedder(Protocol):
    """What evaluation needs from a model (vidlang.models.embed.Embedder implements it)."""

    def embed_texts(self, texts: Sequence[str]) -> Tensor: ...  # (N, D) L2-normalised

    def embed_windows(self, features: np.ndarray, windows: Sequence[tuple[float, float]], fps: float) -> Tensor: ...

    def embed_seconds(self, features: np.ndarray, fps: float | None = None) -> Tensor: ...  # (T, D)


class RandomEmbedder:
    """Chance baseline: deterministic random unit vectors (per text string; per window/second of each video).

    Same protocol code, random embeddings: the measured chance level of every task.
    """

    def __init__(self, dim: int = 64, seed: int = 0):
        self.dim, self.seed = dim, seed

    def _vec(self, key: str) -> Tensor:
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:{key}".encode()).digest()[:8], "little")
        return F.normalize(torch.randn(self.dim, generator=torch.Generator().manual_seed(h)), dim=0)

    def _video_key(self, features: np.ndarray) -> str:
        a = np.asarray(features)
        return hashlib.sha256(np.ascontiguousarray(a[: min(len(a), 4)]).tobytes()).hexdigest()[:16] + str(a.shape)

    def embed_texts(self, texts):
        return torch.stack([self._vec("t:" + t) for t in texts]) if len(texts) else torch.zeros(0, self.dim)

    def embed_windows(self, features, windows, fps):
        k = self._video_key(features)
        return torch.stack([self._vec(f"w:{k}:{s:.3f}:{e:.3f}") for s, e in windows]) if len(windows) \
            else torch.zeros(0, self.dim)

    def embed_seconds(self, features, fps=None):
        k = self._video_key(features)
        return torch.stack([self._vec(f"s:{k}:{t}") for t in range(len(features))])


def _fps(store) -> float:
    fps = store.fps
    if not fps:
        raise VidlangError(f"{store.root}: the feature store does not record its fps (run.json or manifest)")
    return float(fps)


def _duration(store, vid: str, fps: float) -> float:
    return store[vid].shape[0] / fps


def _need(path: str | None, what: str) -> Path:
    if not path:
        raise VidlangError(f"no {what} configured")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: {what} not found")
    return p


# ------------------------------------------------------------------------------------------------ clip retrieval
def run_clip_youcookii(embedder: Embedder, store, annotations: str, subset: str = "validation",
                       max_clip_seconds: float | None = 32.0) -> dict:
    """Each annotated segment is a clip, its sentence the query; gallery = all clips of the subset."""
    from vidlang.datasets import read_youcookii

    videos = [v for v in read_youcookii(_need(annotations, "YouCookII annotations")) if v.subset == subset]
    fps = _fps(store)
    texts, clips, missing = [], [], 0
    for v in videos:
        if v.video_id not in store:
            missing += 1
            continue
        feats = store[v.video_id]
        dur = feats.shape[0] / fps
        windows = []
        for seg in v.segments:
            s = min(seg.start, max(dur - 1.0 / fps, 0.0))
            e = min(seg.end, dur) if max_clip_seconds is None else min(seg.end, dur, s + max_clip_seconds)
            windows.append((s, max(e, s + 1.0 / fps)))
            texts.append(seg.sentence)
        if windows:
            clips.append(embedder.embed_windows(feats, windows, fps))
    if not texts:
        raise VidlangError(f"{annotations}: no {subset} video of YouCookII is in the feature store {store.root}")
    res = bidirectional_metrics(embedder.embed_texts(texts), torch.cat(clips), torch.arange(len(texts)))
    return {"metrics": res, "baselines": {"chance": chance_recall(len(texts))},
            "counts": {"clips": len(texts), "videos": len(clips), "missing_videos": missing},
            "protocol": f"YouCookII {subset} clips, first {max_clip_seconds} s of each segment, pessimistic ties"}


def run_clip_msrvtt(embedder: Embedder, store, csv_path: str) -> dict:
    """MSR-VTT JSFusion 1k-A: one sentence per video; the store holds the MSR-VTT clips' features."""
    from vidlang.datasets import read_msrvtt_jsfusion

    pairs = read_msrvtt_jsfusion(_need(csv_path, "MSR-VTT JSFusion CSV"))
    fps = _fps(store)
    kept = [p for p in pairs if p.video_id in store]
    if not kept:
        raise VidlangError(f"{csv_path}: none of its videos is in the feature store {store.root}")
    vids = sorted({p.video_id for p in kept})
    index = {v: i for i, v in enumerate(vids)}
    vemb = torch.cat([embedder.embed_windows(store[v], [(0.0, _duration(store, v, fps))], fps) for v in vids])
    temb = embedder.embed_texts([p.sentence for p in kept])
    res = bidirectional_metrics(temb, vemb, torch.tensor([index[p.video_id] for p in kept]))
    return {"metrics": res, "baselines": {"chance": chance_recall(len(vids))},
            "counts": {"queries": len(kept), "videos": len(vids), "missing_pairs": len(pairs) - len(kept)},
            "protocol": "MSR-VTT JSFusion, whole clip as one window, pessimistic ties"}


# ------------------------------------------------------------------------------------------- paragraph retrieval
def run_paragraph_youcookii(embedder: Embedder, store, annotations: str, subset: str = "validation",
                            window_seconds: float = 10.0, methods: Sequence[str] = ("caption_avg", "dtw", "otam", "ot"),
                            backgrounds: Sequence[str] = ("removed", "kept"), otam_gamma: float = 0.0,
                            ot_epsilon: float = 0.05, ot_bucket_quantile: float = 0.5) -> dict:
    """Paragraph = a video's sentences in order; video = its segments (bg removed) or fixed windows (bg kept)."""
    from vidlang.datasets import read_youcookii

    videos = [v for v in read_youcookii(_need(annotations, "YouCookII annotations"))
              if v.subset == subset and v.segments and v.video_id in store]
    if len(videos) < 2:
        raise VidlangError(f"{annotations}: fewer than 2 {subset} videos with features in {store.root}")
    fps = _fps(store)
    ordered = [sorted(v.segments, key=lambda s: (s.start, s.end)) for v in videos]
    texts = [embedder.embed_texts([s.sentence for s in segs]) for segs in ordered]
    kwargs = {"otam": {"gamma": otam_gamma}, "dtw": {}, "caption_avg": {},
              "ot": {"epsilon": ot_epsilon, "bucket_quantile": ot_bucket_quantile}}
    out: dict = {"metrics": {}, "baselines": {"chance": chance_recall(len(videos))},
                 "counts": {"videos": len(videos), "sentences": sum(len(t) for t in texts)},
                 "protocol": f"YouCookII {subset} paragraphs; bg kept = {window_seconds} s windows"}
    for bg in backgrounds:
        seqs = []
        for v, segs in zip(videos, ordered):
            feats = store[v.video_id]
            dur = feats.shape[0] / fps
            if bg == "removed":
                wins = [(min(s.start, max(dur - 1 / fps, 0.0)), max(min(s.end, dur), min(s.start, dur) + 1 / fps))
                        for s in segs]
            elif bg == "kept":
                n = max(1, math.ceil(dur / window_seconds))
                wins = [(k * window_seconds, min((k + 1) * window_seconds, dur)) for k in range(n)]
            else:
                raise VidlangError(f"paragraph.backgrounds: unknown value {bg!r} (removed, kept)")
            seqs.append(embedder.embed_windows(feats, wins, fps))
        out["metrics"][f"bg_{bg}"] = paragraph_retrieval(texts, seqs, methods, **{m: kwargs[m] for m in methods})
    return out


# ---------------------------------------------------------------------------------------------------- videoQA
def run_videoqa_msrvtt(embedder: Embedder, store, csv_path: str) -> dict:
    """Multiple choice: predict argmax_i sim(video, a_i); accuracy in percent."""
    from vidlang.datasets import read_msrvtt_mc

    qs = [q for q in read_msrvtt_mc(_need(csv_path, "MSR-VTT MC CSV")) if q.video_id in store]
    if not qs:
        raise VidlangError(f"{csv_path}: none of its videos is in the feature store {store.root}")
    fps = _fps(store)
    correct = 0
    n_cands = []
    for q in qs:
        v = embedder.embed_windows(store[q.video_id], [(0.0, _duration(store, q.video_id, fps))], fps)  # (1, D)
        c = embedder.embed_texts(list(q.candidates))  # (C, D)
        s = (c @ v[0]).tolist()
        # pessimistic ties: a tie with a wrong answer counts as wrong
        correct += all(s[q.answer] > x for i, x in enumerate(s) if i != q.answer)
        n_cands.append(len(q.candidates))
    return {"metrics": {"accuracy": 100.0 * correct / len(qs)},
            "baselines": {"chance": {"accuracy": float(np.mean([100.0 / n for n in n_cands]))}},
            "counts": {"questions": len(qs)}, "protocol": "MSR-VTT MC, argmax over candidates, ties count wrong"}


# ----------------------------------------------------------------------------------------------- segmentation
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


def train_head(X: Sequence[Tensor], Y: Sequence[np.ndarray], Xv: Sequence[Tensor], Yv: Sequence[np.ndarray],
               classes: Sequence[int], head: str = "linear", hidden: int = 256, epochs: int = 300,
               lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0, eval_every: int = 10,
               batch_frames: int = 65536):
    """Frame classifier on frozen per-second embeddings; the epoch is chosen on (Xv, Yv) (train-side hold-out).

    Returns (predict_fn: Tensor (T, D) -> (T,) int labels, info dict).
    """
    torch.manual_seed(seed)
    cls = list(classes)
    to_idx = {c: i for i, c in enumerate(cls)}
    x = torch.cat(list(X))
    y = torch.as_tensor(np.concatenate([[to_idx.get(int(l), 0) for l in yy] for yy in Y]), dtype=torch.long)
    d = x.shape[1]
    if head == "linear":
        model = torch.nn.Linear(d, len(cls))
    elif head == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, len(cls)))
    else:
        raise VidlangError(f"segmentation.head: unknown head {head!r} (linear, mlp)")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ids = torch.as_tensor(cls)

    def predict(e: Tensor) -> np.ndarray:
        with torch.no_grad():
            return ids[model(e.float()).argmax(dim=1)].numpy()

    best = (-1.0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    for ep in range(1, epochs + 1):
        model.train()
        # full batch when it is small (the synthetic corpus); a random minibatch of frames per step otherwise
        idx = torch.randint(0, x.shape[0], (batch_frames,)) if x.shape[0] > batch_frames else slice(None)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ep % eval_every == 0 or ep == epochs:
            model.eval()
            acc = segmentation_metrics([predict(e) for e in Xv], list(Yv))["frame_accuracy"] if Xv else -ep
            if acc > best[0]:
                best = (acc, ep, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    model.eval()
    return predict, {"selected_epoch": best[1], "val_frame_accuracy": best[0]}


def _seg(preds, truths) -> dict:
    """segmentation_metrics without the keys recorded once under baselines/counts."""
    m = segmentation_metrics(preds, truths)
    for k in ("background_baseline", "num_videos", "num_frames"):
        m.pop(k)
    return m


def run_segmentation_coin(embedder: Embedder, store, coin_json: str, modes: Sequence[str] = ("zero_shot", "supervised"),
                          head: str = "linear", hidden: int = 256, epochs: int = 300, lr: float = 1e-2,
                          val_fraction: float = 0.15, calibrate_objective: str = "frame_accuracy",
                          seed: int = 0) -> dict:
    """COIN per-second segmentation on the testing split (see module docstring for the protocol)."""
    from vidlang.datasets import coin_step_vocabulary, read_coin

    allv = read_coin(_need(coin_json, "COIN JSON"))
    fps = _fps(store)
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


# ------------------------------------------------------------------------------------------ step localization
def run_crosstask(embedder: Embedder, store, root: str) -> dict:
    """CrossTask validation videos: per-second step scores -> ordered DP -> recall averaged over primary tasks."""
    from vidlang.datasets import read_crosstask

    rel = read_crosstask(_need(root, "CrossTask release folder"))
    fps = _fps(store)
    per_video, missing = [], 0
    step_emb = {}
    for v in rel.val:
        task = rel.tasks[v.task_id]
        if not task.primary or (v.task_id, v.video_id) not in rel.annotations:
            continue
        if v.video_id not in store:
            missing += 1
            continue
        if v.task_id not in step_emb:
            step_emb[v.task_id] = embedder.embed_texts(list(task.steps)).float()
        feats = store[v.video_id]
        scores = (embedder.embed_seconds(feats, fps).float() @ step_emb[v.task_id].T).numpy()  # (T, K)
        pred = ordered_step_dp(scores)
        ivs = [[] for _ in task.steps]
        for seg in rel.annotations[(v.task_id, v.video_id)]:
            ivs[seg.step - 1].append((seg.start, seg.end))
        per_video.append((v.task_id, *step_hits(pred, ivs, fps)))
    if not per_video:
        raise VidlangError(f"{root}: no annotated validation video of a primary task is in {store.root}")
    res = crosstask_recall(per_video)
    # chance: a uniformly random placement obeying the DP's constraints, estimated with random scores
    rng = np.random.default_rng(0)
    chance = []
    for v in rel.val:
        task = rel.tasks[v.task_id]
        if task.primary and (v.task_id, v.video_id) in rel.annotations and v.video_id in store:
            T = store[v.video_id].shape[0]
            ivs = [[] for _ in task.steps]
            for seg in rel.annotations[(v.task_id, v.video_id)]:
                ivs[seg.step - 1].append((seg.start, seg.end))
            chance.append((v.task_id, *step_hits(ordered_step_dp(rng.random((T, len(task.steps)))), ivs, fps)))
    return {"metrics": {"recall": res["recall"], "per_task": res["per_task"]},
            "baselines": {"random_scores": {"recall": crosstask_recall(chance)["recall"]}},
            "counts": {"videos": len(per_video), "tasks": len(res["per_task"]), "missing_videos": missing},
            "protocol": "CrossTask val, primary tasks, ordered DP (each step once, in order), recall per task"}


# --------------------------------------------------------------------------------------- narration alignment
def load_ground_truth(path: str) -> dict:
    p = _need(path, "ground_truth.json")
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


def line_similarity(embedder: Embedder, feats: np.ndarray, texts: Sequence[str], fps: float) -> Tensor:
    """Line x second cosine similarity. Shapes: feats (T, Din), L texts -> (L, T)."""
    return embedder.embed_texts(list(texts)).float() @ embedder.embed_seconds(feats, fps).float().T


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
    p = _need(path, "alignment ground truth")
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
    cap_path = _need(captions, "HowTo100M caption file")
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


DEFAULT_TUNE_GRID = {  # searched on the training split; conservative values first (ties keep the earliest)
    "content_weights": [0.0, 0.25, 0.5, 1.0, 2.0],
    "content_thresholds": [2.0, 1.0, -10.0],  # -10 ~ no threshold (plain z)
    "prior_scales": [3.0, 1.5, 6.0],
    "skip_penalties": [1000.0, 3.0, 1.0, 0.0],  # 1000 ~ strictly monotone; 0 = lines independent
}


def run_alignment(embedder: Embedder, store, ground_truth: str, split: str = "val", prior_scale: float = 6.0,
                  content_weight: float = 0.5, ot_epsilon: float = 0.3, ot_bucket: float = 0.0,
                  content_threshold: float = 1.0, skip_penalty: float = 1.0, tune: bool = True,
                  tune_split: str = "train", tune_max_videos: int = 400, tune_grid: dict | None = None,
                  captions: str | None = None, fmt: str = "auto", gate_min_auc: float = 50.0,
                  gate_z: float = 3.09) -> dict:
    """HTM-Align-style recall and relevance AUC of several aligners against the raw timestamps.

    Ground truth: the synthetic ground_truth.json (recall: predicted time inside the line's true step) or
    HTM-Align (+ `captions` with the ASR timestamps; recall: TAN's rule on the predicted second index).
    Methods: "argmax" (content only), "prior" (per line, content + interval time prior), "dp" (monotonic DP,
    the recommended aligner), "ot" (OT with the prompt bucket). With `tune`, the aligner's hyper-parameters are
    chosen by grid search of the DP's recall on videos of `tune_split` (never the evaluated split); without such
    videos (HTM-Align is a test set) the given defaults are used, behind a label-free check: the content term is
    switched off (the aligners then return exactly the raw timestamps) unless lines tell their own video from
    another: the ROC-AUC of a line's max similarity over its own video vs over another evaluated video, minus
    `gate_z` standard errors (jackknife over videos), must reach `gate_min_auc` (percent). The defaults (z 3.09,
    bar 50) ask for discrimination above chance at one-sided 0.1%. (The rule used to be a fixed bar, AUC
    >= 60, i.e. z 0 and bar 60, set on vidlang's world, where the 400-step demo model scores ~66 and uninformative
    ones ~50-53; on the independent corpus trained models scored ~58: irrelevant lines cap the AUC, so a fixed bar
    depends on how noisy the narration is.) The choice is stored in "hyperparameters".
    """
    if tune and tune_split == split:
        raise VidlangError(f"alignment: tune_split and split are both {split!r}; tune on training videos only")
    kind, truth, extra_counts = load_alignment_truth(ground_truth, captions, fmt)
    fps = _fps(store)

    def problems(which: str, limit: int | None = None):
        out, missing = [], 0
        for vid in sorted(truth):
            rec = truth[vid]
            if rec["split"] != which or not rec["texts"]:
                continue
            if vid not in store:
                missing += 1
                continue
            if limit is not None and len(out) >= limit:
                break
            sim = line_similarity(embedder, store[vid], rec["texts"], fps)
            out.append((vid, al.AlignVideo(sim, np.asarray(rec["starts"], np.float64),
                                           np.asarray(rec["ends"], np.float64), rec["intervals"])))
        return out, missing

    params = al.AlignerParams(content_weight, content_threshold, prior_scale, skip_penalty)
    params.validate()
    hyper = {"values": al.params_dict(params), "source": "defaults (no training ground truth used)"}
    if tune:
        train, _ = problems(tune_split, tune_max_videos)
        train = [v for _, v in train if any(iv is not None for iv in v.intervals)]
        if train:
            grid = dict(DEFAULT_TUNE_GRID if tune_grid is None else tune_grid)
            params, info = al.tune_params(train, fps, **grid)
            hyper = {"values": al.params_dict(params),
                     "source": f"grid search of recall_dp on {len(train)} {tune_split!r} videos of "
                               f"{Path(ground_truth).name} (evaluation split not used)",
                     "tuning": {"videos": len(train), **{k: float(v) for k, v in info.items()}},
                     "grid": {k: [float(x) for x in v] for k, v in grid.items()}}

    evaluated, missing = problems(split)
    if not evaluated:
        raise VidlangError(f"{ground_truth}: no {split} video with narration is in the feature store {store.root}")
    if hyper["source"].startswith("defaults") and params.content_weight > 0 and len(evaluated) > 1:
        own, other, video_of_line = [], [], []
        for i, (vid, v) in enumerate(evaluated):
            nxt = evaluated[(i + 1) % len(evaluated)][0]
            own += v.sim.max(dim=1).values.tolist()
            other += line_similarity(embedder, store[nxt], truth[vid]["texts"], fps).max(dim=1).values.tolist()
            video_of_line += [i] * v.sim.shape[0]
        # a line's other-video score belongs with its own video's lines: the same groups for both halves
        check, se = al.jackknife_auc(own, other, video_of_line * 2)
        lower = check - gate_z * se
        hyper["label_free_check"] = {"own_vs_other_video_auc": check, "jackknife_se": se, "z": gate_z,
                                     "lower_bound": lower, "min_auc": gate_min_auc}
        if not lower >= gate_min_auc:
            params = al.AlignerParams(0.0, params.content_threshold, params.prior_scale, params.skip_penalty)
            hyper["values"] = al.params_dict(params)
            hyper["source"] += "; content off: the model failed the label-free check"
            hyper["content_off"] = True
    methods = ("timestamps", "argmax", "prior", "dp", "ot")
    hits = {m: [0, 0] for m in methods}
    rel_labels, peak_z, max_sim, ot_mass, ot_time_mass = [], [], [], [], []
    kept_rel = []
    p = params
    for vid, v in evaluated:
        sim, starts, ends, ivs = v.sim, v.starts, v.ends, v.intervals
        T = sim.shape[1]
        mids = al.timestamp_alignment(starts, ends)
        am = al.align_lines(sim, starts, ends, fps, prior_scale=math.inf)
        pr = al.align_lines(sim, starts, ends, fps, p.prior_scale, p.content_weight, p.content_threshold)
        dp = al.align_lines_dp(sim, starts, ends, fps, p)
        ot = al.align_lines_ot(sim, starts, ends, fps, p.prior_scale, p.content_weight, ot_bucket, ot_epsilon,
                               content_threshold=p.content_threshold)
        preds = {"timestamps": (np.clip(np.floor(mids * fps), 0, T - 1).astype(np.int64), mids),
                 "argmax": (am.index, am.time), "prior": (pr.index, pr.time), "dp": (dp.index, dp.time),
                 "ot": (ot.index, ot.time)}
        for m in methods:
            idx, times = preds[m]
            h, t = (al.htm_align_recall(idx, ivs, fps) if kind == "htm_align" else al.alignment_recall(times, ivs))
            hits[m][0] += h
            hits[m][1] += t
        rel_labels += [iv is not None for iv in ivs]
        peak_z += pr.alignability.tolist()
        max_sim += sim.max(dim=1).values.tolist()
        ot_mass += ot.alignability.tolist()
        kept_rel += [(bool(k), iv is not None) for k, iv in zip(dp.kept, ivs)]
        # the same OT with no content: how much of the bucket's verdict comes from timing alone
        ot_time_mass += al.align_lines_ot(sim, starts, ends, fps, p.prior_scale, 0.0, ot_bucket,
                                          ot_epsilon).alignability.tolist()
    metrics = {f"recall_{m}": 100.0 * h / max(t, 1) for m, (h, t) in hits.items() if m != "timestamps"}
    both = 0 < sum(rel_labels) < len(rel_labels)
    if both:
        metrics["auc_peak_z"] = al.roc_auc(peak_z, rel_labels)
        metrics["auc_max_sim"] = al.roc_auc(max_sim, rel_labels)
        metrics["auc_ot_mass"] = al.roc_auc(ot_mass, rel_labels)
    base = {"timestamps": {"recall": 100.0 * hits["timestamps"][0] / max(hits["timestamps"][1], 1)},
            "chance": {"auc": 50.0}}
    if both:
        base["timestamps"]["auc_ot_mass"] = al.roc_auc(ot_time_mass, rel_labels)
    rule = ("TAN's rule floor(start) <= predicted second <= ceil(end)" if kind == "htm_align"
            else "predicted time inside the true step")
    if hyper.get("content_off"):  # say it where the numbers are printed: every aligner here IS the timestamps
        chk = hyper["label_free_check"]
        rule += (f"; CONTENT OFF (label-free check: AUC {chk['own_vs_other_video_auc']:.1f} - {chk['z']:g} x SE "
                 f"{chk['jackknife_se']:.2f} < {chk['min_auc']:g}): the aligners return the raw timestamps")
    return {"metrics": metrics, "baselines": base,
            "counts": {"videos": len(evaluated), "lines": len(rel_labels), "relevant_lines": int(sum(rel_labels)),
                       "missing_videos": missing,
                       "dp_lines_out_of_chain": sum(not k for k, _ in kept_rel), **extra_counts},
            "hyperparameters": hyper,
            "protocol": f"{split} videos of {Path(ground_truth).name} ({kind}); recall: {rule}; "
                        f"recommended aligner: dp (monotonic, interval prior, thresholded content)"}


TASKS = {
    "clip-youcookii": run_clip_youcookii,
    "clip-msrvtt": run_clip_msrvtt,
    "paragraph-youcookii": run_paragraph_youcookii,
    "videoqa-msrvtt": run_videoqa_msrvtt,
    "segmentation-coin": run_segmentation_coin,
    "crosstask": run_crosstask,
    "alignment": run_alignment,
}
