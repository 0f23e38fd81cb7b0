"""Dual encoder: text tower + video tower + projection heads into a shared space + the learnable temperature.

`DualEncoder(cfg)` takes any object with `.model` (ModelConfig), `.text` (TextConfig) and `.video` (VideoConfig)
sections, i.e. a `vidlang.train.config.TrainConfig`. `forward(...)` runs both towers at once (DistributedDataParallel
only synchronises gradients of computations that go through the wrapped module's forward) and returns a dict:

    pooled_video (N, D), video_tokens (N, V, D), pooled_text (N, D), text_tokens (N, T, D), logit_scale ()

Embeddings are NOT normalised here: the losses normalise (cosine similarity), evaluation uses `Embedder`.
`logit_scale` is the LOG of the inverse temperature (CLIP's parameterisation, the convention of
vidlang.losses: logits = logit_scale.exp() * cos_sim; init log(1/0.07)), clamped at log(`logit_scale_max`)
(CLIP: 100). One learnable temperature is shared by every objective and it actually trains (Norton's reference
keeps its temperature on a non-Module, where it never trains).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from vidlang.models.text import TextConfig, TextEncoder, masked_mean
from vidlang.models.video import VideoConfig, VideoEncoder


@dataclass
class ModelConfig:
    # Shared embedding size D. VideoCLIP compares BERT-width (768) pooled states; small default for CPU.
    embed_dim: int = 256
    # `linear` projection heads, or a 2-layer `mlp` (Linear-GELU-Linear; FINDINGS: frozen MiniLM + MLP head).
    head: Literal["linear", "mlp"] = "mlp"
    # CLIP's temperature init 1/0.07 and clamp 100 (Radford et al. 2021); Norton's temperature_init is 0.07 too.
    logit_scale_init: float = 1.0 / 0.07
    logit_scale_max: float = 100.0
    learn_logit_scale: bool = True

    def validate(self) -> None:
        if self.embed_dim <= 0:
            raise ValueError(f"embed_dim must be > 0, got {self.embed_dim}")
        if not 0 < self.logit_scale_init <= self.logit_scale_max:
            raise ValueError(f"need 0 < logit_scale_init <= logit_scale_max, got {self.logit_scale_init} and "
                             f"{self.logit_scale_max}")


def _head(kind: str, d_in: int, d_out: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, d_in), nn.GELU(), nn.Linear(d_in, d_out))


class DualEncoder(nn.Module):
    def __init__(self, cfg, pretrained_text: bool = True):
        super().__init__()
        self.model_cfg: ModelConfig = cfg.model
        self.text_cfg: TextConfig = cfg.text
        self.video_cfg: VideoConfig = cfg.video
        self.text = TextEncoder(cfg.text, pretrained=pretrained_text)
        self.video = VideoEncoder(cfg.video)
        d = cfg.model.embed_dim
        self.text_head = _head(cfg.model.head, self.text.hidden_size, d)
        self.video_head = _head(cfg.model.head, self.video.width, d)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(cfg.model.logit_scale_init)),
                                            requires_grad=cfg.model.learn_logit_scale)

    @property
    def tokenizer(self):
        return self.text.tokenizer

    def logit_scale(self) -> Tensor:
        """Log inverse temperature, clamped at log(logit_scale_max). Shapes: () scalar."""
        return self.log_logit_scale.clamp(max=math.log(self.model_cfg.logit_scale_max))

    def encode_video(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: features (B, V, Din), mask (B, V) -> pooled (B, D), tokens (B, V, D)."""
        _, tokens = self.video(features, mask)
        tokens = self.video_head(tokens)
        # Pool after the head so the pooled embedding is the mean of the token embeddings (what Norton's
        # token-level term and the per-second evaluation compare against).
        return masked_mean(tokens, mask), tokens

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: input_ids (B, T), attention_mask (B, T) -> pooled (B, D), tokens (B, T, D)."""
        _, tokens = self.text(input_ids, attention_mask)
        tokens = self.text_head(tokens)
        return masked_mean(tokens, attention_mask), tokens

    def forward(self, video: Tensor, video_mask: Tensor, input_ids: Tensor, attention_mask: Tensor) -> dict:
        pv, vt = self.encode_video(video, video_mask)
        pt, tt = self.encode_text(input_ids, attention_mask)
        return {"pooled_video": pv, "video_tokens": vt, "pooled_text": pt, "text_tokens": tt,
                "logit_scale": self.logit_scale()}


def trainable_parameter_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}
