"""Validation for checkpoint selection: narration -> window retrieval on held-out TRAINING videos.

Each held-out video contributes K fixed (seeded) clips from the same sampler as training; every narration span is
a query and every clip window of every held-out video is the gallery (the truth is its own window). The
evaluation split (splits.json "val") is never touched here. FINDINGS: the held-out contrastive loss bottoms out
early while ranking keeps improving, so selection uses a ranking metric; the loss is reported beside it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vidlang.data.collate import collate_clips


@torch.no_grad()
def heldout_retrieval(model, clips: list[tuple[str, list[dict]]], device, batch_videos: int = 32) -> dict[str, float]:
    """Shapes: `clips` = [(video id, K clip dicts)] -> {"R@1","R@5","R@10","MedR","MeanR","loss"} floats.

    R@K in percent (vidlang.eval.retrieval.rank_metrics, pessimistic ties); "loss" is the symmetric InfoNCE of
    the held-out pairs at the model's temperature.
    """
    from vidlang.eval.retrieval import rank_metrics

    was_training = model.training
    model.eval()
    videos, texts = [], []
    try:
        for i in range(0, len(clips), batch_videos):
            chunk = clips[i : i + batch_videos]
            batch = collate_clips([c for _, c in chunk], model.text.tokenize, [v for v, _ in chunk]).to(device)
            pv, _ = model.encode_video(batch.video, batch.video_mask)
            pt, _ = model.encode_text(batch.input_ids, batch.attention_mask)
            videos.append(F.normalize(pv.float(), dim=-1).cpu())
            texts.append(F.normalize(pt.float(), dim=-1).cpu())
        scale = float(model.logit_scale().exp())
    finally:
        model.train(was_training)
    v, t = torch.cat(videos), torch.cat(texts)
    sim = t @ v.T  # (queries = narration spans, gallery = windows)
    gt = torch.arange(sim.shape[0])
    out = rank_metrics(sim, gt)
    logits = scale * sim
    out["loss"] = float((F.cross_entropy(logits, gt) + F.cross_entropy(logits.T, gt)) / 2)
    return out


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not np.isfinite(best):
        return True
    return value > best if mode == "max" else value < best
