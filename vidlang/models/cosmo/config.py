"""`CosmoConfig`: the COSMO model's settings (the `model:` section with `arch: cosmo`), with the release's values
as defaults.

Sources of the defaults (the public repository showlab/cosmo, which builds on mlfoundations/open_flamingo):
- `src/config/train_server/base_180m.yaml` (`model_params`): `unimodal_depth: 12`, `interval_layer: 2`,
  `cross_attention_compress_ratio: 2`, `latent_dim: 512`, `contrastive_temperature: 0.2`,
  `only_attend_immediate_media: True`; the language model is frozen (`src/multimodal_model/load_model.py`:
  `lang_model.requires_grad_(False)`).
- `src/multimodal_model/vision_model/model_helper.py`, `PerceiverResampler`: depth 6, 64 latents (+1 for the
  contrastive latent), 8 heads of 64, feed-forward multiplier 4, no time embeddings (`max_num_media` and
  `max_num_frames` are None).
- `src/multimodal_model/language_model/model_helper.py`, `GatedCrossAttentionBlock`: 8 heads of 64,
  feed-forward multiplier 4; tanh gates initialised at 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vidlang.models.base import ModelSection
from vidlang.models.video import VideoConfig

# Where `make lm` writes SmolLM2-135M-Instruct as a plain transformers folder (relative to the source checkout).
DEFAULT_LM_SUBDIR = Path(".lm") / "smollm2-135m-instruct"
LM_ENV = "VIDLANG_LM"


def default_lm_dir() -> Path:
    """The LM folder used when `lm_path` is empty: $VIDLANG_LM, else `<checkout>/.lm/smollm2-135m-instruct`."""
    env = os.environ.get(LM_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / DEFAULT_LM_SUBDIR


@dataclass
class CosmoConfig(ModelSection):
    arch: str = "cosmo"
    # A local transformers causal-LM folder (Llama, GPT-2, OPT families); "" = default_lm_dir().
    lm_path: str = ""
    # Keep only the LM's first N decoder layers (0 = all), plus its last `lm_last_layers` ones. A pretrained LM cut
    # after its first layers predicts badly: SmolLM2-135M's next-token cross-entropy on Howto-Interlink7M-style
    # captions is 4.8 nats with its 30 layers, 21.6 with the first 8, 11.5 with the first 4 + last 4, 6.3 with
    # the first 16 + last 6 (vidlang's synthetic captions; measured with the closed-gate model).
    lm_layers: int = 0
    lm_last_layers: int = 0
    # Lower layers that see text only; their output is the contrastive text state. Release: 12 (of OPT-IML's 24).
    # 0 = Flamingo's layout (cross-attention from the first layer on; the text state is then the embeddings).
    unimodal_depth: int = 12
    # A gated cross-attention block before decoder layer i when i >= unimodal_depth and
    # (i - unimodal_depth) % cross_attn_interval == 0. Release base_180m: interval_layer 2.
    cross_attn_interval: int = 2
    # Divides the cross-attention inner width and feed-forward width. Release base_180m: 2.
    compress_ratio: int = 2
    xattn_heads: int = 8
    xattn_dim_head: int = 64
    xattn_ff_mult: int = 4
    # A text token sees only the media of its most recent <visual> (release: only_attend_immediate_media True);
    # False: every earlier <visual>'s media.
    only_attend_immediate_media: bool = True
    # The LM's weights train too (release: frozen).
    lm_trainable: bool = False
    # The input rows of <visual> and <|endofchunk|> train. Release: frozen (its resized rows keep their init);
    # training them makes every step back-propagate through the unimodal layers too. Their output rows always
    # train (cheap: no gradient enters the LM for them).
    train_special_tokens: bool = False
    # Per-second feature width of the store; 0 = set from the feature store when the model is built.
    feature_dim: int = 0
    # Resampler width; 0 = feature_dim (the release runs its resampler at the vision encoder's width), otherwise
    # a linear projection maps the features to this width first.
    visual_dim: int = 0
    resampler_depth: int = 6
    resampler_latents: int = 64
    resampler_heads: int = 8
    resampler_dim_head: int = 64
    resampler_ff_mult: int = 4
    # Standard deviation of the resampler's latents and the text pooling query at init. Release: 1 (torch.randn).
    # Those vectors are residuals of their blocks, so at 1 they dominate every document's contrastive embedding at
    # first (cosine ~0.9998 between documents); a short run's contrastive loss then stays at chance.
    latent_init_std: float = 1.0
    # Contrastive embedding size (release latent_dim 512).
    contrastive_dim: int = 512
    # What one contrastive pair is: "document" (release: the mean contrastive latent of a document's clips vs
    # the document's pooled text) or "clip" (each clip's contrastive latent vs its own chunk of text).
    contrastive_unit: Literal["document", "clip"] = "document"
    # Tokens per interleaved document, special tokens included (the collate function fits the texts into it).
    # Release (inter_vid_txt): MAX_NUM_TOKENS 128.
    max_tokens: int = 128
    # An optional video tower under the resampler (the dual encoder's VideoCLIP-style transformer over the
    # per-second features, vidlang.models.video), so that `--init-from` a Norton/InfoNCE checkpoint can start the
    # visual side from its `video.*` weights. null = the resampler reads the features directly (the release).
    video_tower: VideoConfig | None = None
    # Keep that tower fixed (eval mode, no gradient): its pretrained features as they are.
    freeze_video_tower: bool = False
    # Inverse temperature at init, as a plain scale (the parameter is its log). The release sets 0.2 and uses it
    # as the log-scale itself (scale e^0.2 = 1.22, never clamped); here 0.2 is the temperature: scale 1/0.2.
    logit_scale_init: float = 5.0
    # Clamp of the inverse temperature (CLIP, Radford et al. 2021: 100).
    logit_scale_max: float = 100.0

    def validate(self) -> None:
        if self.lm_layers < 0:
            raise ValueError(f"lm_layers must be >= 0, got {self.lm_layers}")
        if self.unimodal_depth < 0:
            raise ValueError(f"unimodal_depth must be >= 0, got {self.unimodal_depth}")
        if self.lm_last_layers < 0 or (self.lm_last_layers and not self.lm_layers):
            raise ValueError(f"lm_last_layers must be >= 0 and needs lm_layers > 0, got {self.lm_last_layers}")
        kept = self.lm_layers + self.lm_last_layers
        if self.lm_layers and self.unimodal_depth >= kept:
            raise ValueError(f"unimodal_depth {self.unimodal_depth} must be < the {kept} kept LM layers "
                             "(at least one multimodal layer)")
        for name in ("cross_attn_interval", "compress_ratio", "xattn_heads", "xattn_dim_head", "xattn_ff_mult",
                     "resampler_depth", "resampler_latents", "resampler_heads", "resampler_dim_head",
                     "resampler_ff_mult", "contrastive_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.xattn_dim_head % self.compress_ratio:
            raise ValueError(f"xattn_dim_head {self.xattn_dim_head} is not divisible by compress_ratio "
                             f"{self.compress_ratio}")
        if self.feature_dim < 0 or self.visual_dim < 0:
            raise ValueError("feature_dim and visual_dim must be >= 0")
        if self.latent_init_std <= 0:
            raise ValueError(f"latent_init_std must be > 0, got {self.latent_init_std}")
        if self.max_tokens < 3:
            raise ValueError(f"max_tokens must be >= 3 (<visual>, one text token, <|endofchunk|>), got "
                             f"{self.max_tokens}")
        if not 0 < self.logit_scale_init <= self.logit_scale_max:
            raise ValueError(f"need 0 < logit_scale_init <= logit_scale_max, got {self.logit_scale_init} and "
                             f"{self.logit_scale_max}")
