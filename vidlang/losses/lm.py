"""COSMO's losses: next-token prediction on the text of interleaved documents, plus the contrastive term.

- `next_token_targets`: the target of position t is token t+1, ignored (-100) where token t+1 is padding or a
  media marker such as `<visual>` (markers are inputs, never predicted) and where token t is padding.
  `<|endofchunk|>` is a target: predicting it is how a generated caption ends.
- `next_token_loss`: cross-entropy over the counted targets. By default their mean; with several processes pass
  `denominator` = (global count of targets) / world so that, after DDP averages the gradients, the loss is the
  single-process loss over the global batch (a per-process mean would weight tokens by their process's count).
- `cosmo_loss`: weighted sum of the LM loss and the symmetric InfoNCE between the pooled unimodal text state and
  the contrastive visual latent (vidlang.losses.contrastive.infonce_loss: both directions, negatives from every
  process through `gather`, learnable clamped temperature passed in by the model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vidlang.losses.contrastive import infonce_loss

IGNORE = -100

__all__ = ["IGNORE", "CosmoLossConfig", "cosmo_loss", "next_token_loss", "next_token_targets"]


def next_token_targets(input_ids: Tensor, attention_mask: Tensor, never_predict: Sequence[int] = ()) -> Tensor:
    """Shifted targets for a causal LM.

    Shapes: input_ids (B, T) long, attention_mask (B, T) 0/1 -> (B, T) long, token t+1 at position t or IGNORE
    where t+1 is padding, is in `never_predict`, or is beyond the row, and where t is padding (left padding).
    """
    nxt = input_ids.roll(-1, dims=1)
    keep = attention_mask.bool() & attention_mask.roll(-1, dims=1).bool()
    for tok in never_predict:
        keep &= nxt != int(tok)
    keep[:, -1] = False
    return torch.where(keep, nxt, torch.full_like(nxt, IGNORE))


def next_token_loss(logits: Tensor, targets: Tensor, denominator: float | Tensor | None = None) -> Tensor:
    """Cross-entropy of the counted next-token targets.

    Shapes: logits (B, T, V) any float dtype (computed in float32), targets (B, T) long with IGNORE -> ().
    Returns the mean over counted targets, or their sum divided by `denominator` when given; 0 when nothing is
    counted (with a graph, so backward still works).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match")
    flat = logits.reshape(-1, logits.shape[-1])
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    # Every position goes through the softmax (ignored ones are ~10% of a document); selecting the counted rows
    # first would copy the (tokens x vocabulary) logits forward and backward.
    total = F.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    if denominator is None:
        return total / (targets != IGNORE).sum().clamp_min(1)
    return total / denominator


@dataclass
class CosmoLossConfig:
    # Release (src/config/train_server/base_180m.yaml): contrastive_loss_weight 1.0 beside the LM loss.
    lm_weight: float = 1.0
    contrastive_weight: float = 1.0

    def validate(self) -> None:
        if self.lm_weight < 0 or self.contrastive_weight < 0 or self.lm_weight + self.contrastive_weight <= 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got lm_weight={self.lm_weight}, "
                             f"contrastive_weight={self.contrastive_weight}")


def cosmo_loss(out: dict[str, Tensor], cfg: CosmoLossConfig, gather: Callable[[Tensor], Tensor] | None = None,
               rank_offset: int = 0, lm_denominator: float | Tensor | None = None) -> dict[str, Tensor]:
    """The COSMO objective on a model output.

    Shapes: out = CosmoModel.forward's dict: logits (B, T, V), lm_targets (B, T), pooled_text (N, C),
    pooled_video (N, C), logit_scale () (log inverse temperature)
    -> {"total", "lm", "contrastive", "v2t", "t2v"}, each ().
    `gather` / `rank_offset`: as in infonce_loss (global negatives); `lm_denominator`: as in next_token_loss.
    A zero weight skips its term's computation (its entries are then 0).
    """
    zero = out["logits"].new_zeros(()).float()
    lm = next_token_loss(out["logits"], out["lm_targets"], lm_denominator) if cfg.lm_weight else zero
    if cfg.contrastive_weight:
        con = infonce_loss(out["pooled_video"], out["pooled_text"], out["logit_scale"], gather=gather,
                           rank_offset=rank_offset)
    else:
        con = {"total": zero, "v2t": zero, "t2v": zero}
    total = cfg.lm_weight * lm + cfg.contrastive_weight * con["total"]
    return {"total": total, "lm": lm, "contrastive": con["total"], "v2t": con["v2t"], "t2v": con["t2v"]}
