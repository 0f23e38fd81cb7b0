"""Inference helpers for evaluation: batched, no_grad, eval mode, L2-normalised outputs.

Windows are given in seconds and mapped to feature steps with `fps` ([floor(s*fps), ceil(e*fps)), at least one
step). A window longer than the video tower's position table (`video.max_len` steps) is encoded in consecutive
chunks whose pooled embeddings are averaged with their lengths as weights. `embed_seconds` encodes sliding windows
of the training clip length (`clip_len` steps, 50% overlap) and averages each step's token embeddings over the
windows that contain it, so every step sees temporal context as during training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidlang.data.collate import pad_clips
from vidlang.models.dual import DualEncoder


class Embedder:
    def __init__(self, model: DualEncoder, clip_len: int | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 64):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.max_len = int(model.video_cfg.max_len)
        self.clip_len = min(int(clip_len or self.max_len), self.max_len)
        self.batch_size = int(batch_size)

    @property
    def dim(self) -> int:
        return int(self.model.model_cfg.embed_dim)

    @property
    def logit_scale(self) -> float:
        """The model's log inverse temperature (logits = exp(logit_scale) * cosine)."""
        return float(self.model.logit_scale())

    # -- text ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def text_tokens(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Shapes: N strings -> tokens (N, T, D) (unnormalised), mask (N, T) bool. One batch; keep N moderate."""
        ids, att = self.model.text.tokenize(list(texts))
        _, tok = self.model.encode_text(ids.to(self.device), att.to(self.device))
        return tok.float().cpu(), att.bool()

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> Tensor:
        """Shapes: N strings -> (N, D) L2-normalised."""
        out = []
        texts = list(texts)
        for i in range(0, len(texts), self.batch_size):
            ids, att = self.model.text.tokenize(texts[i : i + self.batch_size])
            pooled, _ = self.model.encode_text(ids.to(self.device), att.to(self.device))
            out.append(pooled.float().cpu())
        if not out:
            return torch.zeros(0, self.dim)
        return F.normalize(torch.cat(out), dim=-1)

    # -- video -----------------------------------------------------------------------------------------------
    def _encode_segments(self, features: np.ndarray, segments: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """Encode step ranges (each <= max_len). -> pooled (S, D), tokens (S, max_n, D) on CPU."""
        pooled, tokens = [], []
        longest = max((e - s for s, e in segments), default=1)
        for i in range(0, len(segments), self.batch_size):
            chunk = segments[i : i + self.batch_size]
            x, m = pad_clips([features[s:e] for s, e in chunk], length=longest)
            p, t = self.model.encode_video(torch.from_numpy(x).to(self.device), torch.from_numpy(m).to(self.device))
            pooled.append(p.float().cpu())
            tokens.append(t.float().cpu())
        return torch.cat(pooled), torch.cat(tokens)

    def _steps(self, n_steps: int, start: float, end: float, fps: float) -> tuple[int, int]:
        s = min(max(int(math.floor(start * fps)), 0), n_steps - 1)
        e = min(max(int(math.ceil(end * fps)), s + 1), n_steps)
        return s, e

    @torch.no_grad()
    def embed_windows(self, features: np.ndarray, windows: Sequence[tuple[float, float]], fps: float) -> Tensor:
        """Each window encoded as its own clip. Shapes: features (T, Din), W windows (s, e) seconds -> (W, D)."""
        features = np.asarray(features, dtype=np.float32)
        pieces, owner, weight = [], [], []
        for w, (start, end) in enumerate(windows):
            s, e = self._steps(features.shape[0], start, end, fps)
            for a in range(s, e, self.max_len):
                b = min(a + self.max_len, e)
                pieces.append((a, b))
                owner.append(w)
                weight.append(b - a)
        if not pieces:
            return torch.zeros(0, self.dim)
        pooled, _ = self._encode_segments(features, pieces)
        out = torch.zeros(len(windows), pooled.shape[1])
        wt = torch.tensor(weight, dtype=torch.float32)[:, None]
        out.index_add_(0, torch.tensor(owner), pooled * wt)
        return F.normalize(out, dim=-1)

    @torch.no_grad()
    def video_tokens(self, features: np.ndarray, windows: Sequence[tuple[float, float]], fps: float
                     ) -> tuple[Tensor, Tensor]:
        """Per-step token embeddings of each window (cropped to max_len steps), unnormalised, for transport plans.

        Shapes: features (T, Din), W windows -> tokens (W, V, D), mask (W, V) bool.
        """
        features = np.asarray(features, dtype=np.float32)
        segs = []
        for start, end in windows:
            s, e = self._steps(features.shape[0], start, end, fps)
            segs.append((s, min(e, s + self.max_len)))
        _, tok = self._encode_segments(features, segs)
        mask = torch.zeros(tok.shape[:2], dtype=torch.bool)
        for i, (s, e) in enumerate(segs):
            mask[i, : e - s] = True
        return tok, mask

    @torch.no_grad()
    def embed_seconds(self, features: np.ndarray, fps: float | None = None) -> Tensor:
        """Per-step token embeddings from overlapping windows, averaged. Shapes: (T, Din) -> (T, D) normalised.

        `fps` is accepted for symmetry with `embed_windows`; the output has one row per feature step.
        """
        features = np.asarray(features, dtype=np.float32)
        n = features.shape[0]
        if n == 0:
            return torch.zeros(0, self.dim)
        length = min(self.clip_len, n)
        stride = max(1, length // 2)
        starts = list(range(0, max(n - length, 0) + 1, stride))
        if starts[-1] + length < n:
            starts.append(n - length)
        segs = [(s, s + length) for s in starts]
        _, tok = self._encode_segments(features, segs)
        acc = torch.zeros(n, tok.shape[-1])
        cnt = torch.zeros(n, 1)
        for i, (s, e) in enumerate(segs):
            acc[s:e] += tok[i, : e - s]
            cnt[s:e] += 1
        return F.normalize(acc / cnt, dim=-1)
