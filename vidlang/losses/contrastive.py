"""Symmetric InfoNCE (CLIP / VideoCLIP style) and the soft-target cross-entropy used by Norton.

Temperature convention (shared with norton.py and the model): ``logit_scale`` is the LOG of the inverse
temperature, as in CLIP: ``logits = logit_scale.exp() * cos_sim``; it is a learnable scalar owned by the model and
passed in (a loss never owns parameters). ``log(1/0.07) ~= 2.659`` is the usual initial value.

Multi-process training: pass ``gather`` — a callable that all-gathers a (n, D) tensor across processes and returns
(world*n, D) with the local rows' gradient kept (e.g. a differentiable all_gather) — so that negatives come from the
global batch. ``rank_offset`` says where this process's rows sit in the gathered tensor. The default ``gather`` is
the identity (single process).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from vidlang.errors import NonFiniteError

__all__ = ["infonce_loss", "soft_cross_entropy", "check_finite"]


def check_finite(name: str, x: Tensor) -> None:
    """Raise NonFiniteError (a ValueError) naming the input when it holds NaN/inf (a real check, unlike an
    always-true assert)."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(f"{name}: {bad} non-finite value(s) (NaN/inf) in input of shape {tuple(x.shape)}")


def soft_cross_entropy(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy with soft (probability) targets: ``-sum_j targets_ij * log_softmax(logits)_ij``.

    Shapes: logits (n, c), targets (n, c) with rows that sum to 1 (not checked: Norton's rectified targets
    sum to 1 only up to the Sinkhorn error). Returns a scalar ('mean'/'sum') or (n,) ('none').
    With one-hot targets this equals ``F.cross_entropy(logits, labels)``; it is F.cross_entropy's own
    probability-target path (log-softmax based, no exp->sum->log).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have equal shapes")
    return F.cross_entropy(logits, targets.to(logits.dtype), reduction=reduction)


def infonce_loss(
    pooled_video: Tensor,
    pooled_text: Tensor,
    logit_scale: Tensor | float,
    gather: Callable[[Tensor], Tensor] | None = None,
    rank_offset: int = 0,
    normalize: bool = True,
) -> dict[str, Tensor]:
    """Symmetric InfoNCE over matched (video_i, text_i) pairs.

    Shapes:
        pooled_video: (n, D), pooled_text: (n, D), logit_scale: scalar (log inverse temperature)
        returns {"total": (), "v2t": (), "t2v": ()} with total = (v2t + t2v) / 2.
    v2t is the cross-entropy of each local video against all (gathered) texts, t2v the reverse.
    ``normalize`` L2-normalises the embeddings first (cosine similarity), as CLIP does. bf16/fp16 inputs are
    computed in float32. ``gather`` must keep the local rows in place at ``rank_offset``.
    """
    if pooled_video.shape != pooled_text.shape or pooled_video.dim() != 2:
        raise ValueError(f"pooled_video {tuple(pooled_video.shape)} and pooled_text {tuple(pooled_text.shape)} "
                         "must both be (n, D)")
    check_finite("pooled_video", pooled_video)
    check_finite("pooled_text", pooled_text)
    if pooled_video.dtype in (torch.float16, torch.bfloat16):  # CE over scaled logits in float32
        pooled_video, pooled_text = pooled_video.float(), pooled_text.float()
    if normalize:
        pooled_video = F.normalize(pooled_video, dim=-1)
        pooled_text = F.normalize(pooled_text, dim=-1)
    gather = gather or (lambda x: x)
    all_video, all_text = gather(pooled_video), gather(pooled_text)
    scale = torch.as_tensor(logit_scale, dtype=pooled_video.dtype, device=pooled_video.device).exp()
    n = pooled_video.shape[0]
    labels = torch.arange(n, device=pooled_video.device) + rank_offset
    v2t = F.cross_entropy(scale * pooled_video @ all_text.T, labels)  # (n, world*n)
    t2v = F.cross_entropy(scale * pooled_text @ all_video.T, labels)
    return {"total": (v2t + t2v) / 2, "v2t": v2t, "t2v": t2v}
