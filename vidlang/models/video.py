"""Video tower in the VideoCLIP layout: per-second features -> MLP -> `[CLS] v1..vn [SEP]` -> transformer.

VideoCLIP (Xu et al. 2021, MMPT `MMFusionSeparate`) feeds S3D per-second features through an MLP into BERT's
width, wraps them in CLS/SEP and runs a 6-layer BERT initialised from the text model. Here the transformer is a
plain `nn.TransformerEncoder` with learned CLS/SEP/position embeddings (no pretrained video weights exist
offline); width/layers/heads are configurable, the defaults are small for CPU and configs/norton/howto100m.yaml
sets the paper's 768/6/12.

Pooling is a masked mean over the real frames v1..vn only (not CLS/SEP), so the pooled embedding of a clip
does not depend on how much padding its batch needed (tested). Token states are returned per input second
(CLS/SEP dropped) so they line up with the feature timeline for token-level losses and per-second evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from vidlang.models.text import masked_mean


@dataclass
class VideoConfig:
    # Input feature width Din; 0 = take it from the feature store at build time (S3D HowTo100M features: 512).
    input_dim: int = 0
    # Transformer width / depth / heads. VideoCLIP: 768 / 6 / 12 (BERT-base); small defaults keep CPU fast.
    width: int = 128
    layers: int = 2
    heads: int = 4
    # Longest clip in seconds (VideoCLIP max_video_len = 32 s); sets the position table (+2 for CLS/SEP).
    max_len: int = 32
    dropout: float = 0.1
    # `all` or `layernorm_only` (Norton post-training updates LayerNorms only).
    trainable: Literal["all", "layernorm_only"] = "all"

    def validate(self) -> None:
        if self.input_dim < 0:
            raise ValueError(f"input_dim must be >= 0, got {self.input_dim}")
        if self.width <= 0 or self.layers < 0 or self.heads <= 0:
            raise ValueError(f"width/layers/heads must be positive, got {self.width}/{self.layers}/{self.heads}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class VideoEncoder(nn.Module):
    def __init__(self, cfg: VideoConfig):
        super().__init__()
        if cfg.input_dim <= 0:
            raise ValueError("VideoConfig.input_dim must be set (> 0) before building the video encoder")
        self.cfg = cfg
        w = cfg.width
        # MMPT's VideoTokenMLP: Linear -> GELU -> LayerNorm -> Linear into the transformer width.
        self.proj = nn.Sequential(nn.Linear(cfg.input_dim, w), nn.GELU(), nn.LayerNorm(w), nn.Linear(w, w))
        self.cls = nn.Parameter(torch.randn(w) * 0.02)
        self.sep = nn.Parameter(torch.randn(w) * 0.02)
        self.pos = nn.Parameter(torch.randn(cfg.max_len + 2, w) * 0.02)
        self.norm_in = nn.LayerNorm(w)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(w, cfg.heads, dim_feedforward=4 * w, dropout=cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        # enable_nested_tensor=False: the nested fast path changes numerics between batch compositions.
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False) if cfg.layers else None
        self.norm_out = nn.LayerNorm(w)
        self.width = w
        apply_video_policy(self, cfg.trainable)

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: features (B, V, Din), mask (B, V) (1 = real second, real seconds first) ->
        pooled (B, W), tokens (B, V, W) (one state per input second; padded rows are meaningless)."""
        b, v, _ = features.shape
        if v > self.cfg.max_len:
            raise ValueError(f"clip of {v} seconds exceeds video.max_len={self.cfg.max_len}")
        mask = mask.bool()
        lengths = mask.sum(1)  # (B,)
        x = self.proj(features)  # (B, V, W)
        seq = torch.cat([self.cls.expand(b, 1, -1).to(x.dtype), x, x.new_zeros(b, 1, self.width)], dim=1)
        # SEP goes right after each clip's last real second, so padding never shifts real positions.
        seq = seq.clone()
        seq[torch.arange(b, device=x.device), lengths + 1] = self.sep.to(x.dtype)
        positions = torch.arange(v + 2, device=x.device)
        real = positions[None, :] <= (lengths + 1)[:, None]  # CLS, v1..vn, SEP  (B, V+2)
        seq = self.drop(self.norm_in(seq + self.pos[: v + 2].to(x.dtype)))
        if self.encoder is not None:
            seq = self.encoder(seq, src_key_padding_mask=~real)
        seq = self.norm_out(seq)
        tokens = seq[:, 1 : v + 1]  # drop CLS and the SEP/pad slot after the last second
        return masked_mean(tokens, mask), tokens


def apply_video_policy(module: nn.Module, policy: str) -> None:
    """`all`: everything trains; `layernorm_only`: only LayerNorm parameters of the tower train."""
    for p in module.parameters():
        p.requires_grad_(policy == "all")
    if policy == "layernorm_only":
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
    elif policy != "all":
        raise ValueError(f"video.trainable: {policy!r} is not one of ['all', 'layernorm_only']")
