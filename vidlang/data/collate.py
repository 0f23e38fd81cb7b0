"""The training batch: B videos x K clips in video-major order (row i*K + k = clip k of video i)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor


@dataclass
class Batch:
    """Shapes (N = B*K clips, video-major):
    video (N, V, Din) float32 per-second features, zero-padded; video_mask (N, V) bool (real seconds first);
    input_ids / attention_mask (N, T) long; clip_times (N, 2) float video window [start, end) seconds;
    text_times (N, 2) float narration span [start, end]; video_ids: B ids; texts: N strings.
    """

    video: Tensor
    video_mask: Tensor
    input_ids: Tensor
    attention_mask: Tensor
    clips_per_video: int
    video_ids: list[str]
    clip_times: Tensor
    text_times: Tensor
    texts: list[str] = field(default_factory=list)

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    def to(self, device) -> "Batch":
        return replace(self, video=self.video.to(device), video_mask=self.video_mask.to(device),
                       input_ids=self.input_ids.to(device), attention_mask=self.attention_mask.to(device))

    def model_inputs(self) -> dict[str, Tensor]:
        return {"video": self.video, "video_mask": self.video_mask, "input_ids": self.input_ids,
                "attention_mask": self.attention_mask}


def pad_clips(arrays: list[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad variable-length feature clips to one array; real steps first.

    Shapes: N arrays (n_i, D) -> x (N, V, D) float32, mask (N, V) bool, V = `length` or the longest n_i.
    """
    v = max((a.shape[0] for a in arrays), default=0) if length is None else int(length)
    d = arrays[0].shape[1] if arrays else 0
    x = np.zeros((len(arrays), v, d), dtype=np.float32)
    mask = np.zeros((len(arrays), v), dtype=bool)
    for i, a in enumerate(arrays):
        x[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return x, mask


def collate_clips(clips: list[list[dict]], tokenize, video_ids: list[str]) -> Batch:
    """Stack per-video clip lists into a Batch.

    `clips[i]` holds K dicts {"features": np (n, Din), "window": (s, e), "span": (s, e), "text": str};
    `tokenize(list[str]) -> (input_ids, attention_mask)`.
    """
    k = len(clips[0]) if clips else 0
    if any(len(c) != k for c in clips):
        raise ValueError(f"every video needs the same number of clips, got {[len(c) for c in clips]}")
    flat = [c for per_video in clips for c in per_video]
    video, mask = pad_clips([c["features"] for c in flat])
    texts = [c["text"] for c in flat]
    ids, att = tokenize(texts)
    return Batch(video=torch.from_numpy(video), video_mask=torch.from_numpy(mask), input_ids=ids,
                 attention_mask=att, clips_per_video=k, video_ids=list(video_ids),
                 clip_times=torch.tensor([c["window"] for c in flat], dtype=torch.float32),
                 text_times=torch.tensor([c["span"] for c in flat], dtype=torch.float32), texts=texts)
