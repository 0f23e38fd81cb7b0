"""A tiny evaluation world written in the public formats + a feature store, and an oracle embedder.

Features are one-hot per second: dimension k < K for step k, dimension K for background, plus small noise; the
oracle embeds a step sentence as the one-hot of its step and any other text on an unused axis. Protocol code
then has known answers (oracle ~ perfect, RandomEmbedder ~ chance).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

STEPS = ["crack the eggs", "whisk the batter", "heat the pan", "pour the batter", "flip the pancake", "serve"]
K = len(STEPS)
DIM = K + 2  # steps, background, chatter axis
FPS = 1.0
# video -> ordered steps; each step lasts 6 s after 4 s of background
VIDEOS = {"v0": [0, 1, 2], "v1": [3, 4, 5], "v2": [0, 3, 5], "v3": [1, 4, 2], "v4": [2, 0, 4], "v5": [5, 1, 3]}


def spans(steps):
    out, t = [], 4.0
    for k in steps:
        out.append((k, t, t + 6.0))
        t += 10.0
    return out, t + 4.0


def features_for(steps, seed):
    rng = np.random.default_rng(seed)
    sp, dur = spans(steps)
    y = np.full(int(dur), K)
    for k, s, e in sp:
        y[int(s):int(e)] = k
    x = np.eye(DIM, dtype=np.float32)[y] + 0.05 * rng.normal(size=(len(y), DIM)).astype(np.float32)
    return x


class OracleEmbedder:
    def embed_texts(self, texts):
        out = torch.zeros(len(texts), DIM)
        for i, t in enumerate(texts):
            out[i, STEPS.index(t) if t in STEPS else K + 1] = 1.0
        return out

    def embed_seconds(self, features, fps=None):
        return F.normalize(torch.from_numpy(np.array(features, dtype=np.float32)), dim=1)

    def embed_windows(self, features, windows, fps):
        f = torch.from_numpy(np.array(features, dtype=np.float32))
        rows = []
        for s, e in windows:
            a = min(int(math.floor(s * fps)), len(f) - 1)
            b = max(int(math.ceil(e * fps)), a + 1)
            rows.append(f[a:b].mean(0))
        return F.normalize(torch.stack(rows), dim=1)


def write_store(root: Path, feats: dict[str, np.ndarray]) -> Path:
    (root / "shards" / "0").mkdir(parents=True, exist_ok=True)
    lines = []
    for vid, x in feats.items():
        np.save(root / "shards" / "0" / f"{vid}.npy", x)
        lines.append(json.dumps({"video_id": vid, "location": f"shards/0/{vid}.npy", "num_features": x.shape[0],
                                 "feature_dim": x.shape[1], "fps": FPS}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "run.json").write_text(json.dumps({"fps": FPS, "feature_dim": DIM}))
    return root


def build_world(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    feats = {vid: features_for(st, i) for i, (vid, st) in enumerate(VIDEOS.items())}
    # MSR-VTT clips: one step each
    for n in range(K):
        x = np.eye(DIM, dtype=np.float32)[[n] * 8] + 0.05 * np.random.default_rng(100 + n).normal(size=(8, DIM))
        feats[f"video{n}"] = x.astype(np.float32)
    store = write_store(root / "store", feats)
    ann = root / "ann"
    ann.mkdir(exist_ok=True)
    yc, coin, gt = {}, {}, {"version": 1, "fps": FPS, "videos": {}}
    for i, (vid, st) in enumerate(VIDEOS.items()):
        sp, dur = spans(st)
        yc[vid] = {"duration": dur, "subset": "validation", "recipe_type": "1",
                   "annotations": [{"segment": [s, e], "id": j, "sentence": STEPS[k]} for j, (k, s, e) in enumerate(sp)]}
        coin[vid] = {"duration": dur, "class": "Pancake", "subset": "testing" if i >= 4 else "training",
                     "recipe_type": 1, "annotation": [{"id": str(k + 1), "segment": [s, e], "label": STEPS[k]}
                                                      for k, s, e in sp]}
        narr = []
        for j, (k, s, e) in enumerate(sp):
            off = 7.0 if j == 1 else 0.5  # the second line is narrated 7 s late
            narr.append({"start": s + off, "end": s + off + 2, "text": STEPS[k], "relevant": True, "step": j,
                         "kind": "step"})
            narr.append({"start": s + 3, "end": s + 5, "text": "subscribe to my channel", "relevant": False,
                         "step": None, "kind": "chatter"})
        gt["videos"][vid] = {"task_id": "t1", "split": "val", "duration": dur,
                             "steps": [{"step_id": k + 1, "order": j, "start": s, "end": e}
                                       for j, (k, s, e) in enumerate(sp)], "narration": narr}
    (ann / "youcookii.json").write_text(json.dumps({"database": yc}))
    (ann / "COIN.json").write_text(json.dumps({"database": coin}))
    (ann / "ground_truth.json").write_text(json.dumps(gt))
    (ann / "jsfusion.csv").write_text("key,vid_key,video_id,sentence\n" + "".join(
        f"ret{n},msr{n},video{n},{STEPS[n]}\n" for n in range(K)))
    (ann / "mc.csv").write_text("vid_key\ta1\ta2\ta3\ta4\ta5\tanswer\n" + "".join(
        f"msr{n}\t" + "\t".join(STEPS[(n + i - n % 5) % K] for i in range(5)) + f"\t{n % 5}\n"
        for n in range(K)))
    ct = ann / "crosstask"
    (ct / "annotations").mkdir(parents=True, exist_ok=True)
    (ct / "tasks_primary.txt").write_text("t1\nPancakes\nhttp://x\n3\n" + ",".join(STEPS[k] for k in VIDEOS["v0"])
                                          + "\n\n")
    (ct / "videos.csv").write_text("t1,v0,http://x\n")
    (ct / "videos_val.csv").write_text("t1,v0,http://x\n")
    sp, _ = spans(VIDEOS["v0"])
    (ct / "annotations" / "t1_v0.csv").write_text("".join(f"{j + 1},{s},{e}\n" for j, (k, s, e) in enumerate(sp)))
    return {"store": store, "youcookii": ann / "youcookii.json", "coin": ann / "COIN.json",
            "ground_truth": ann / "ground_truth.json", "msrvtt_jsfusion": ann / "jsfusion.csv",
            "msrvtt_mc": ann / "mc.csv", "crosstask": ct}
