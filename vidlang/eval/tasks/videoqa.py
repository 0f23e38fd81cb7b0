"""Multiple-choice videoQA (MSR-VTT MC): the candidate most similar to the whole clip; ties count as wrong."""

from __future__ import annotations

import numpy as np

from vidlang.errors import VidlangError
from vidlang.eval.capabilities import Embeds, duration, need_file, store_fps
from vidlang.eval.registry import register_task


def run_videoqa_msrvtt(embedder: Embeds, store, csv_path: str) -> dict:
    """Multiple choice: predict argmax_i sim(video, a_i); accuracy in percent."""
    from vidlang.datasets import read_msrvtt_mc

    qs = [q for q in read_msrvtt_mc(need_file(csv_path, "MSR-VTT MC CSV")) if q.video_id in store]
    if not qs:
        raise VidlangError(f"{csv_path}: none of its videos is in the feature store {store.root}")
    fps = store_fps(store)
    correct = 0
    n_cands = []
    for q in qs:
        v = embedder.embed_windows(store[q.video_id], [(0.0, duration(store, q.video_id, fps))], fps)  # (1, D)
        c = embedder.embed_texts(list(q.candidates))  # (C, D)
        s = (c @ v[0]).tolist()
        # pessimistic ties: a tie with a wrong answer counts as wrong
        correct += all(s[q.answer] > x for i, x in enumerate(s) if i != q.answer)
        n_cands.append(len(q.candidates))
    return {"metrics": {"accuracy": 100.0 * correct / len(qs)},
            "baselines": {"chance": {"accuracy": float(np.mean([100.0 / n for n in n_cands]))}},
            "counts": {"questions": len(qs)}, "protocol": "MSR-VTT MC, argmax over candidates, ties count wrong"}




@register_task("videoqa-msrvtt", data=("msrvtt_mc", "msrvtt_features"))
def videoqa_msrvtt(embedder: Embeds, cfg, stores) -> dict:
    return run_videoqa_msrvtt(embedder, stores.get(cfg.data.msrvtt_features or cfg.data.features), cfg.data.msrvtt_mc)
