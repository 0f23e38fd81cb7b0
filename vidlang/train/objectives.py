"""Training objectives, registered by name: `objective(model, batch, gather, cfg) -> dict of named losses`.

Every objective runs the model's forward once (through the DDP wrapper, so gradients synchronise), calls a pure
loss from vidlang.losses and returns a dict whose "total" is minimised; other entries are logged. The loop looks
the objective up in `OBJECTIVES` and never branches on its name.

- `infonce`: VideoCLIP's symmetric InfoNCE over all clips of the (global) batch. With several processes the
  pooled embeddings are all-gathered with gradient (vidlang.train.dist), so negatives come from the global batch
  and the loss equals the single-process loss on the same global batch.
- `norton`: Norton's clip + paragraph OT loss. With several processes it gets the same differentiable gather:
  the clip negatives, the rectification plan, the paragraph negatives and the bucket quantile come from the
  global batch, so the mean over processes equals the single-process loss on the same global batch (the
  reference implementation is local to each GPU). One process: the plain local loss (no gather overhead).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from vidlang.data.collate import Batch
from vidlang.losses.contrastive import infonce_loss
from vidlang.losses.norton import norton_loss

Objective = Callable[..., dict[str, Tensor]]


def infonce_objective(model: nn.Module, batch: Batch, gather, cfg) -> dict[str, Tensor]:
    out = model(**batch.model_inputs())
    n = out["pooled_video"].shape[0]
    rank = getattr(gather, "rank", 0)
    losses = infonce_loss(out["pooled_video"], out["pooled_text"], out["logit_scale"], gather=gather,
                          rank_offset=rank * n)
    losses["logit_scale"] = out["logit_scale"].detach().exp()
    return losses


def norton_objective(model: nn.Module, batch: Batch, gather, cfg) -> dict[str, Tensor]:
    out = model(**batch.model_inputs())
    n = out["pooled_video"].shape[0]
    distributed = getattr(gather, "world", 1) > 1
    return norton_loss(out["pooled_video"], out["pooled_text"], out["video_tokens"], out["text_tokens"],
                       batch.video_mask, batch.attention_mask, cfg.loss.norton, logit_scale=out["logit_scale"],
                       clips_per_video=batch.clips_per_video, gather=gather if distributed else None,
                       rank_offset=getattr(gather, "rank", 0) * n)


OBJECTIVES: dict[str, Objective] = {"infonce": infonce_objective, "norton": norton_objective}
