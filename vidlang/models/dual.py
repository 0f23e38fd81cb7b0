"""Dual encoder (`model.arch: dual_encoder`): text tower + video tower + projection heads + learnable temperature.

`DualEncoder(cfg)` takes its `DualEncoderConfig` (the `model:` section). `forward(...)` runs both towers at once
(DistributedDataParallel only synchronises gradients of computations that go through the wrapped module's
forward) and returns a dict:

    pooled_video (N, D), video_tokens (N, V, D), pooled_text (N, D), text_tokens (N, T, D), logit_scale ()

Embeddings are NOT normalised here: the losses normalise (cosine similarity), evaluation uses `Embedder`.
`logit_scale` is the LOG of the inverse temperature (CLIP's parameterisation, the convention of
vidlang.losses: logits = logit_scale.exp() * cos_sim; init log(1/0.07)), clamped at log(`logit_scale_max`)
(CLIP: 100). One learnable temperature is shared by every objective and it actually trains (Norton's reference
keeps its temperature on a non-Module, where it never trains).

Training data: K time-ordered clip/narration pairs per video (vidlang.data.longvideo); checkpoint selection on
held-out training videos by narration -> window retrieval (`heldout_retrieval`). Evaluation capability: `embed`.
A checkpoint keeps the text tower's config and tokenizer in CKPT/text/, so loading needs no other folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidlang.errors import ConfigError
from vidlang.models.base import ModelSection, VidlangModel, register_model
from vidlang.models.text import TextConfig, TextEncoder, Tokenize, masked_mean
from vidlang.models.video import VideoConfig, VideoEncoder

TEXT_DIR = "text"


@dataclass
class DualEncoderConfig(ModelSection):
    arch: str = "dual_encoder"
    # Shared embedding size D. VideoCLIP compares BERT-width (768) pooled states; small default for CPU.
    embed_dim: int = 256
    # `linear` projection heads, or a 2-layer `mlp` (Linear-GELU-Linear on a frozen MiniLM, the demo's choice).
    head: Literal["linear", "mlp"] = "mlp"
    # CLIP's temperature init 1/0.07 and clamp 100 (Radford et al. 2021); Norton's temperature_init is 0.07 too.
    logit_scale_init: float = 1.0 / 0.07
    logit_scale_max: float = 100.0
    learn_logit_scale: bool = True
    text: TextConfig = field(default_factory=TextConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

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


class DualCollate:
    """Picklable `collate(samples, video_ids) -> Batch` for DataLoader workers (the text tower's tokenizer)."""

    def __init__(self, tokenize: Tokenize):
        self.tokenize = tokenize

    def __call__(self, samples: list[list[dict]], video_ids: list[str]):
        from vidlang.data.collate import collate_clips

        return collate_clips(samples, self.tokenize, video_ids)


@register_model("dual_encoder")
class DualEncoder(VidlangModel):
    config_class = DualEncoderConfig
    capabilities = frozenset({"embed"})
    outputs = frozenset({"pooled_video", "video_tokens", "pooled_text", "text_tokens", "logit_scale"})

    def __init__(self, cfg: DualEncoderConfig, pretrained_text: bool = True):
        super().__init__()
        self.model_cfg = cfg
        self.text_cfg: TextConfig = cfg.text
        self.video_cfg: VideoConfig = cfg.video
        self.text = TextEncoder(cfg.text, pretrained=pretrained_text)
        self.video = VideoEncoder(cfg.video)
        d = cfg.embed_dim
        self.text_head = _head(cfg.head, self.text.hidden_size, d)
        self.video_head = _head(cfg.head, self.video.width, d)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale_init)),
                                            requires_grad=cfg.learn_logit_scale)

    # -- configuration and persistence ----------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.data.max_clip_len > cfg.model.video.max_len:
            raise ValueError(f"data.max_clip_len={cfg.data.max_clip_len} exceeds model.video.max_len="
                             f"{cfg.model.video.max_len} (the video tower's position table)")

    @classmethod
    def resolve_config(cls, cfg, feature_dim: int, fps: float) -> None:
        video = cfg.model.video
        if video.input_dim == 0:
            video.input_dim = int(feature_dim)
        elif video.input_dim != feature_dim:
            raise ConfigError(f"model.video.input_dim={video.input_dim} but the features have dimension {feature_dim}")
        steps = int(cfg.data.max_clip_len * fps)
        if steps > video.max_len:
            raise ConfigError(f"data.max_clip_len={cfg.data.max_clip_len} s at {fps} features/s is {steps} steps > "
                              f"model.video.max_len={video.max_len}")

    @classmethod
    def build(cls, cfg) -> "DualEncoder":
        return cls(cfg.model)

    @classmethod
    def from_checkpoint(cls, ckpt: Path, cfg) -> "DualEncoder":
        import dataclasses

        text = dataclasses.replace(cfg.model.text, model_path=str(Path(ckpt) / TEXT_DIR))
        return cls(dataclasses.replace(cfg.model, text=text), pretrained_text=False)

    def save_extras(self, dest: Path) -> None:
        self.text.backbone.config.save_pretrained(Path(dest) / TEXT_DIR)
        self.text.tokenizer.save_pretrained(Path(dest) / TEXT_DIR)

    def feature_dim(self) -> int:
        return int(self.video_cfg.input_dim)

    @property
    def tokenizer(self):
        return self.text.tokenizer

    # -- forward --------------------------------------------------------------------------------------------
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

    # -- training -------------------------------------------------------------------------------------------
    def dataset(self, features, captions, video_ids, data_cfg, fps: float, seed: int):
        from vidlang.data.longvideo import LongVideoDataset

        return LongVideoDataset(features, captions, video_ids, data_cfg, self.text.count_tokens, fps=fps, seed=seed)

    def collate_fn(self) -> DualCollate:
        return DualCollate(Tokenize(self.text.tokenizer, self.text_cfg.max_length))

    def prepare_training(self, datasets) -> None:
        if datasets and all(d.cfg.max_lines == 1 for d in datasets):
            # One line per clip: the spans are exactly the narration lines, so a frozen text tower can encode all
            # of them once up front (sorted by length) instead of a few per step (TextEncoder.warm_cache).
            self.text.warm_cache([line.text.strip() for d in datasets for lines in d.lines.values()
                                  for line in lines])

    @classmethod
    def selection_metrics(cls) -> dict[str, str]:
        return {"R@1": "max", "R@5": "max", "R@10": "max", "MedR": "min", "MeanR": "min", "loss": "min"}

    def heldout_metrics(self, held, device, batch_videos: int) -> dict[str, float]:
        return heldout_retrieval(self, held, device, batch_videos=batch_videos)

    @torch.no_grad()
    def hard_negative_embeddings(self, ds, device) -> Tensor:
        """Mean normalised pooled embedding of each video over consecutive max_len windows."""
        from vidlang.data.collate import pad_clips

        was = self.training
        self.eval()
        out = []
        max_len = self.video_cfg.max_len
        for vid in ds.video_ids:
            feats = np.asarray(ds.features[vid], dtype=np.float32)
            x, m = pad_clips([feats[s : s + max_len] for s in range(0, feats.shape[0], max_len)])
            pooled, _ = self.encode_video(torch.from_numpy(x).to(device), torch.from_numpy(m).to(device))
            out.append(F.normalize(pooled.float(), dim=-1).mean(0).cpu())
        self.train(was)
        return torch.stack(out)

    # -- evaluation -----------------------------------------------------------------------------------------
    def evaluator(self, capability: str, meta: dict, device):
        if capability != "embed":
            return super().evaluator(capability, meta, device)
        from vidlang.models.embed import Embedder

        return Embedder(self, clip_len=meta.get("clip_len"), device=device)


@torch.no_grad()
def heldout_retrieval(model: DualEncoder, clips: list[tuple[str, list[dict]]], device,
                      batch_videos: int = 32) -> dict[str, float]:
    """Narration -> window retrieval on held-out TRAINING videos (checkpoint selection; never the eval split).

    Each held-out video contributes K fixed (seeded) clips from the training sampler; every narration span is a
    query and every clip window of every held-out video the gallery (the truth is its own window).
    Shapes: `clips` = [(video id, K clip dicts)] -> {"R@1","R@5","R@10","MedR","MeanR","loss"} floats; R@K in
    percent (vidlang.eval.retrieval.rank_metrics, pessimistic ties); "loss" is the symmetric InfoNCE of the
    held-out pairs at the model's temperature. A ranking metric is the default selection criterion: the held-out
    contrastive loss bottoms out early while ranking still improves.
    """
    from vidlang.data.collate import collate_clips
    from vidlang.eval.retrieval import rank_metrics

    was_training = model.training
    model.eval()
    videos, texts = [], []
    try:
        for i in range(0, len(clips), batch_videos):
            chunk = clips[i : i + batch_videos]
            batch = collate_clips([c for _, c in chunk], model.text.tokenize, [v for v, _ in chunk]).to(device)
            pv, _ = model.encode_video(batch.video, batch.video_mask)
            pt, _ = model.encode_text(batch.input_ids, batch.attention_mask)
            videos.append(F.normalize(pv.float(), dim=-1).cpu())
            texts.append(F.normalize(pt.float(), dim=-1).cpu())
        scale = float(model.logit_scale().exp())
    finally:
        model.train(was_training)
    v, t = torch.cat(videos), torch.cat(texts)
    sim = t @ v.T  # (queries = narration spans, gallery = windows)
    gt = torch.arange(sim.shape[0])
    out = rank_metrics(sim, gt)
    logits = scale * sim
    out["loss"] = float((F.cross_entropy(logits, gt) + F.cross_entropy(logits.T, gt)) / 2)
    return out


def trainable_parameter_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}
