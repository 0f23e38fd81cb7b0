"""CrossTask step localization: per-second step scores -> ordered DP -> recall averaged over primary tasks.

As in CrossTask; validation videos missing from the feature store are counted in `counts.missing_videos`, so a
changed denominator is visible.
"""

from __future__ import annotations

import numpy as np

from vidlang.errors import VidlangError
from vidlang.eval.capabilities import Embeds, need_file, store_fps
from vidlang.eval.localization import crosstask_recall, ordered_step_dp, step_hits
from vidlang.eval.registry import register_task


def run_crosstask(embedder: Embeds, store, root: str) -> dict:
    """CrossTask validation videos: per-second step scores -> ordered DP -> recall averaged over primary tasks."""
    from vidlang.datasets import read_crosstask

    rel = read_crosstask(need_file(root, "CrossTask release folder"))
    fps = store_fps(store)
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




@register_task("crosstask", data=("crosstask", "features"))
def crosstask(embedder: Embeds, cfg, stores) -> dict:
    return run_crosstask(embedder, stores.get(cfg.data.features), cfg.data.crosstask)
