"""Clip retrieval (YouCookII segments, MSR-VTT 1k-A) and long-video (paragraph) retrieval (YouCookII).

Differences from the reference protocols (MMPT/VideoCLIP, Norton), on purpose: ties are ranked pessimistically
(the references' argsort favours low indices); video->text is reported too; `max_clip_seconds` (default 32, MMPT's
YouCook `max_video_len`) crops a clip to its first 32 s, as the reference does (null = whole segments).
Paragraph retrieval: DTW/OTAM are implemented from their definitions with masks (vidlang.eval.paragraph).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vidlang.errors import VidlangError
from vidlang.eval.capabilities import Embeds, duration, need_file, store_fps
from vidlang.eval.paragraph import paragraph_retrieval
from vidlang.eval.registry import register_task
from vidlang.eval.retrieval import bidirectional_metrics, chance_recall


def run_clip_youcookii(embedder: Embeds, store, annotations: str, subset: str = "validation",
                       max_clip_seconds: float | None = 32.0) -> dict:
    """Each annotated segment is a clip, its sentence the query; gallery = all clips of the subset."""
    from vidlang.datasets import read_youcookii

    videos = [v for v in read_youcookii(need_file(annotations, "YouCookII annotations")) if v.subset == subset]
    fps = store_fps(store)
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


def run_clip_msrvtt(embedder: Embeds, store, csv_path: str) -> dict:
    """MSR-VTT JSFusion 1k-A: one sentence per video; the store holds the MSR-VTT clips' features."""
    from vidlang.datasets import read_msrvtt_jsfusion

    pairs = read_msrvtt_jsfusion(need_file(csv_path, "MSR-VTT JSFusion CSV"))
    fps = store_fps(store)
    kept = [p for p in pairs if p.video_id in store]
    if not kept:
        raise VidlangError(f"{csv_path}: none of its videos is in the feature store {store.root}")
    vids = sorted({p.video_id for p in kept})
    index = {v: i for i, v in enumerate(vids)}
    vemb = torch.cat([embedder.embed_windows(store[v], [(0.0, duration(store, v, fps))], fps) for v in vids])
    temb = embedder.embed_texts([p.sentence for p in kept])
    res = bidirectional_metrics(temb, vemb, torch.tensor([index[p.video_id] for p in kept]))
    return {"metrics": res, "baselines": {"chance": chance_recall(len(vids))},
            "counts": {"queries": len(kept), "videos": len(vids), "missing_pairs": len(pairs) - len(kept)},
            "protocol": "MSR-VTT JSFusion, whole clip as one window, pessimistic ties"}




def run_paragraph_youcookii(embedder: Embeds, store, annotations: str, subset: str = "validation",
                            window_seconds: float = 10.0, methods: Sequence[str] = ("caption_avg", "dtw", "otam", "ot"),
                            backgrounds: Sequence[str] = ("removed", "kept"), otam_gamma: float = 0.0,
                            ot_epsilon: float = 0.05, ot_bucket_quantile: float = 0.5) -> dict:
    """Paragraph = a video's sentences in order; video = its segments (bg removed) or fixed windows (bg kept)."""
    from vidlang.datasets import read_youcookii

    videos = [v for v in read_youcookii(need_file(annotations, "YouCookII annotations"))
              if v.subset == subset and v.segments and v.video_id in store]
    if len(videos) < 2:
        raise VidlangError(f"{annotations}: fewer than 2 {subset} videos with features in {store.root}")
    fps = store_fps(store)
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




@register_task("clip-youcookii", data=("youcookii", "features"))
def clip_youcookii(embedder: Embeds, cfg, stores) -> dict:
    return run_clip_youcookii(embedder, stores.get(cfg.data.features), cfg.data.youcookii, cfg.clip.subset,
                              cfg.clip.max_clip_seconds)


@register_task("clip-msrvtt", data=("msrvtt_jsfusion", "msrvtt_features"))
def clip_msrvtt(embedder: Embeds, cfg, stores) -> dict:
    return run_clip_msrvtt(embedder, stores.get(cfg.data.msrvtt_features or cfg.data.features),
                           cfg.data.msrvtt_jsfusion)


@register_task("paragraph-youcookii", data=("youcookii", "features"))
def paragraph_youcookii(embedder: Embeds, cfg, stores) -> dict:
    p = cfg.paragraph
    return run_paragraph_youcookii(embedder, stores.get(cfg.data.features), cfg.data.youcookii, p.subset,
                                   p.window_seconds, p.methods, p.backgrounds, p.otam_gamma, p.ot_epsilon,
                                   p.ot_bucket_quantile)
