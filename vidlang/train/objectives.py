"""Training objectives, registered by name (`loss.objective`): `objective(model, batch, gather, cfg) -> dict`.

Every objective runs the model's forward once (through the DDP wrapper, so gradients synchronise), calls a pure
loss from vidlang.losses and returns a dict whose "total" is minimised; other entries are logged. The trainer
looks the objective up in `OBJECTIVES` and never branches on its name. An objective declares the model outputs it
needs (checked against the model's `outputs` when the config loads) and may check other sections of the config.

- `infonce`: VideoCLIP's symmetric InfoNCE over all clips of the (global) batch. With several processes the
  pooled embeddings are all-gathered with gradient (vidlang.train.dist), so negatives come from the global batch
  and the loss equals the single-process loss on the same global batch.
- `norton`: Norton's clip + paragraph OT loss, with the same differentiable gather: the clip negatives, the
  rectification plan, the paragraph negatives and the bucket quantile come from the global batch, so the mean over
  processes equals the single-process loss on the same global batch (the reference implementation is local to
  each GPU).
- `cosmo`: COSMO's next-token loss on the text of interleaved documents plus the contrastive loss between the
  pooled unimodal text state and the contrastive visual latent (vidlang.losses.lm.cosmo_loss; weights
  `lm_weight`, `contrastive_weight`). Negatives are gathered across processes, and the LM loss is divided by
  the global number of counted tokens over the number of processes, so that the mean over processes (DDP's
  gradient averaging) is the single-process loss on the same global batch.

Adding one is new code only:

    @dataclass
    class MyLoss(LossSection):
        objective: str = "mine"
        weight: float = 1.0

    @register_objective("mine", MyLoss, needs={"pooled_video", "pooled_text", "logit_scale"})
    def mine(model, batch, gather, cfg: MyLoss) -> dict[str, Tensor]: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from vidlang.config import Choice
from vidlang.losses.contrastive import infonce_loss
from vidlang.losses.lm import IGNORE, CosmoLossConfig, cosmo_loss
from vidlang.losses.norton import NortonConfig, norton_loss
from vidlang.registry import Registry


@dataclass
class LossSection(Choice):
    """The `loss:` section: `objective` names a registered objective, the rest is that objective's config."""

    objective: str = ""
    __selector__: ClassVar[str] = "objective"
    __default__: ClassVar[str] = "norton"

    @classmethod
    def config_class(cls, name: str) -> type:
        return OBJECTIVES.get(name).config_class


@dataclass(frozen=True)
class Objective:
    name: str
    fn: Callable[..., dict[str, Tensor]]
    config_class: type
    needs: frozenset[str]  # keys of the model's forward() dict this objective reads
    check: Callable | None = None  # check(train_cfg) -> None, raises ValueError naming the keys at fault

    def __call__(self, model: nn.Module, batch, gather, cfg) -> dict[str, Tensor]:
        return self.fn(model, batch, gather, cfg)


OBJECTIVES: Registry[Objective] = Registry("objective (loss.objective)")


def register_objective(name: str, config_class: type, needs: Iterable[str], check: Callable | None = None):
    """Decorator: register `fn(model, batch, gather, cfg)` as objective `name` with its LossSection config."""
    if not (isinstance(config_class, type) and issubclass(config_class, LossSection)):
        raise TypeError(f"{config_class!r} must be a LossSection dataclass")
    if config_class().objective != name:
        raise TypeError(f"{config_class.__name__}.objective must default to {name!r}")

    def deco(fn):
        OBJECTIVES.add(name, Objective(name, fn, config_class, frozenset(needs), check))
        return fn

    return deco


# -- infonce ------------------------------------------------------------------------------------------------------
@dataclass
class InfoNCELoss(LossSection):
    objective: str = "infonce"


@register_objective("infonce", InfoNCELoss, needs={"pooled_video", "pooled_text", "logit_scale"})
def infonce_objective(model: nn.Module, batch, gather, cfg: InfoNCELoss) -> dict[str, Tensor]:
    out = model(**batch.model_inputs())
    n = out["pooled_video"].shape[0]
    rank = getattr(gather, "rank", 0)
    losses = infonce_loss(out["pooled_video"], out["pooled_text"], out["logit_scale"], gather=gather,
                          rank_offset=rank * n)
    losses["logit_scale"] = out["logit_scale"].detach().exp()
    return losses


# -- norton -------------------------------------------------------------------------------------------------------
@dataclass
class NortonLoss(NortonConfig, LossSection):
    """Norton's loss settings (vidlang.losses.norton.NortonConfig, the paper's defaults) as the `loss:` section."""

    objective: str = "norton"


def _check_norton(cfg) -> None:
    k, el = cfg.data.clips_per_video, int(cfg.loss.clips_per_paragraph)
    if el > k:
        raise ValueError(f"loss.clips_per_paragraph={el} is larger than data.clips_per_video={k}")
    if k % el:
        raise ValueError(f"data.clips_per_video={k} is not divisible by loss.clips_per_paragraph={el} "
                         "(paragraphs tile each video's clips)")


@register_objective("norton", NortonLoss, check=_check_norton,
                    needs={"pooled_video", "pooled_text", "video_tokens", "text_tokens", "logit_scale"})
def norton_objective(model: nn.Module, batch, gather, cfg: NortonLoss) -> dict[str, Tensor]:
    out = model(**batch.model_inputs())
    n = out["pooled_video"].shape[0]
    return norton_loss(out["pooled_video"], out["pooled_text"], out["video_tokens"], out["text_tokens"],
                       batch.video_mask, batch.attention_mask, cfg, logit_scale=out["logit_scale"],
                       clips_per_video=batch.clips_per_video, gather=gather,
                       rank_offset=getattr(gather, "rank", 0) * n)


# -- cosmo --------------------------------------------------------------------------------------------------------
@dataclass
class CosmoLoss(CosmoLossConfig, LossSection):
    """COSMO's loss weights (vidlang.losses.lm.CosmoLossConfig, the release's defaults) as the `loss:` section."""

    objective: str = "cosmo"


@register_objective("cosmo", CosmoLoss, needs={"logits", "lm_targets", "pooled_text", "pooled_video", "logit_scale"})
def cosmo_objective(model: nn.Module, batch, gather, cfg: CosmoLoss) -> dict[str, Tensor]:
    out = model(**batch.model_inputs())
    n = out["pooled_video"].shape[0]
    world = getattr(gather, "world", 1)
    # the global count of next-token targets / world: each process's sum over it averages to the global mean
    count = (out["lm_targets"] != IGNORE).sum().float().reshape(1)
    denominator = gather(count).sum() / world
    losses = cosmo_loss(out, cfg, gather=gather, rank_offset=getattr(gather, "rank", 0) * n,
                        lm_denominator=denominator.clamp_min(1.0 / world))
    # A zero weight skips its term; the parts only it trains still enter the graph (with zero gradient), as
    # DistributedDataParallel's gradient reduction expects every trainable parameter to take part.
    if not cfg.contrastive_weight:
        losses["total"] = losses["total"] + 0.0 * (out["pooled_text"].sum() + out["pooled_video"].sum()
                                                   + out["logit_scale"])
    if not cfg.lm_weight:
        losses["total"] = losses["total"] + 0.0 * out["logits"].sum()
    losses["logit_scale"] = out["logit_scale"].detach().exp()
    return losses
