"""`CosmoModel`: a transformers causal LM split into unimodal and multimodal layers, gated cross-attention to
perceiver-resampled clip features, and contrastive heads (COSMO, Wang et al. 2024; code: showlab/cosmo).

Data flow for a batch of B interleaved documents, each with M clips of S per-second features::

    media (B, M, S, F) --[Linear to visual_dim]--> resampler --> (B, M, 1 + L, Dv)
        index 0: the clip's contrastive latent; 1..L: media tokens for cross-attention
    input_ids (B, T) "<visual> caption <|endofchunk|> <visual> caption <|endofchunk|> ..."
        --> LM layers 0 .. U-1 (text only; U = unimodal_depth) --> unimodal states (B, T, H)
        --> before each layer i >= U with (i - U) % interval == 0: gated cross-attention to the media tokens
        --> LM head --> logits

How the LM is extended without forking it: the LM object stays a stock transformers model. Cross-attention
blocks live in `self.xattn` and run from forward pre-hooks on the LM's decoder blocks, reading the media of the
current call from a context the model sets for the duration of the call. `<visual>` and `<|endofchunk|>` get
their own trainable input rows and output rows (`special_embed`, `special_head`), so the LM's embedding matrix
is never resized and a frozen LM stays bit-identical to the stock model: with every gate at 0 the logits equal
the plain LM's on the same tokens.

Where this differs from the release, and why:
- Contrastive text state: read after layer `unimodal_depth` (the input of the first multimodal layer). The
  release reads `hidden_states[unimodal_depth - 1]` (HF's tuple starts with the embeddings), one layer early.
- Text pooling excludes padding (the release pools over every position, so a text's embedding depends on how
  much padding its batch needed); `contrastive_unit="clip"` pools each chunk's own tokens instead of the whole
  document (the release only has the document form).
- Temperature: a learnable log inverse temperature initialised at log(1/0.2) and clamped at log(100) (the
  release multiplies by exp(0.2): its 0.2 is used as the log-scale itself and never clamped).
- Special tokens: their own rows instead of `resize_token_embeddings`; input rows frozen by default as in the
  release (`train_special_tokens`), but initialised from the LM's mean and end-of-text rows instead of random,
  and output rows that train (the release's stay at their random init, so only the cross-attention can make
  `<|endofchunk|>` predictable). With a frozen LM its dropout is off (eval mode).
- Padded seconds of a clip are masked in the resampler (the release's clips are fixed frame sets).
- Gradient checkpointing of the LM is not supported (the cross-attention runs in hooks that a recomputation
  would replay outside the forward call).
- Optional video tower (`video_tower`): the dual encoder's VideoCLIP-style transformer runs over each clip's
  per-second features before the resampler, so that `--init-from` a Norton/InfoNCE checkpoint starts the visual
  side from its `video.*` weights (the release feeds frozen CLIP features to the resampler directly).

Registered as `model.arch: cosmo` (vidlang.models.base): it trains through the one trainer on interleaved
documents (vidlang.data.interleaved) with the `cosmo` objective, and offers the `embed` (contrastive heads),
`score` (log-likelihood of texts given a clip) and `generate` (captions, answers) capabilities
(vidlang.models.cosmo.evaluate). Checkpoints hold every weight except a frozen LM, which they name by folder and
sha256 (`frozen_weights`): loading onto another LM is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidlang.errors import ConfigError
from vidlang.losses.lm import IGNORE, next_token_targets
from vidlang.models.base import VidlangModel, register_model
from vidlang.models.cosmo.causal_lm import END_OF_CHUNK, VISUAL, decoder_layers, load_causal_lm
from vidlang.models.cosmo.config import CosmoConfig
from vidlang.models.cosmo.layers import AttentionPool, GatedCrossAttention, PerceiverResampler


@dataclass
class MediaContext:
    """What the hooks read during one LM call (and across the steps of one generation)."""

    media: Tensor | None  # (B, M, L, Dv) media tokens; None = text-only run
    text_time: Tensor | None = None  # (B, T) 1-based media index of each token of the current call, 0 = none
    valid: Tensor | None = None  # (B, T) real tokens of the current call
    kv: dict = field(default_factory=dict)  # layer -> media keys/values, computed once
    count: Tensor | None = None  # (B,) <visual> tokens seen before the current call (generation)
    unimodal: Tensor | None = None  # (B, T, H) captured input of layer unimodal_depth
    stop_after_unimodal: bool = False


class _StopAfterUnimodal(Exception):
    pass


@register_model("cosmo")
class CosmoModel(VidlangModel):
    """See the module docstring. `feature_dim` overrides `cfg.feature_dim` (the store's feature width)."""

    config_class = CosmoConfig
    capabilities = frozenset({"embed", "score", "generate"})
    outputs = frozenset({"logits", "lm_targets", "pooled_text", "pooled_video", "logit_scale"})

    def __init__(self, cfg: CosmoConfig, feature_dim: int | None = None):
        super().__init__()
        cfg = dataclasses.replace(cfg, feature_dim=int(feature_dim or cfg.feature_dim))
        if cfg.feature_dim <= 0:
            raise ConfigError("model.feature_dim must be set (> 0): the width of the store's per-second features")
        if cfg.video_tower is not None and cfg.video_tower.input_dim in (0, cfg.feature_dim):
            cfg = dataclasses.replace(cfg, video_tower=dataclasses.replace(cfg.video_tower, input_dim=cfg.feature_dim))
        elif cfg.video_tower is not None:
            raise ConfigError(f"model.video_tower.input_dim={cfg.video_tower.input_dim} but the features have "
                              f"dimension {cfg.feature_dim}")
        self.cfg = cfg
        self.lm, self.tokenizer, self.lm_dir = load_causal_lm(cfg.lm_path, cfg.lm_layers, cfg.lm_last_layers)
        n_layers = int(self.lm.config.num_hidden_layers)
        if cfg.unimodal_depth >= n_layers:
            raise ConfigError(f"model.unimodal_depth={cfg.unimodal_depth} must be smaller than the number of LM "
                              f"layers ({n_layers}{' kept' if cfg.lm_layers else ''} in {self.lm_dir})")
        hidden = int(self.lm.config.hidden_size)
        self._init_special_tokens()
        self.video_tower = None
        tower_out = cfg.feature_dim
        if cfg.video_tower is not None:
            from vidlang.models.video import VideoEncoder

            self.video_tower = VideoEncoder(cfg.video_tower)
            tower_out = self.video_tower.width
            if cfg.freeze_video_tower:
                self.video_tower.requires_grad_(False)
        dv = cfg.visual_dim or tower_out
        self.visual_in = nn.Linear(tower_out, dv) if dv != tower_out else nn.Identity()
        self.resampler = PerceiverResampler(dv, cfg.resampler_depth, cfg.resampler_latents, cfg.resampler_heads,
                                            cfg.resampler_dim_head, cfg.resampler_ff_mult, cfg.latent_init_std)
        u, k = cfg.unimodal_depth, cfg.cross_attn_interval
        self.xattn_layers = [i for i in range(u, n_layers) if (i - u) % k == 0]
        self.xattn = nn.ModuleDict({
            str(i): GatedCrossAttention(hidden, dv, cfg.xattn_heads, cfg.xattn_dim_head, cfg.xattn_ff_mult,
                                        cfg.compress_ratio, cfg.only_attend_immediate_media)
            for i in self.xattn_layers})
        # Release: PerceiverAttention(dim=text_dim) (8 heads of 64) + FeedForward(text_dim) (x4) + LayerNorm.
        self.text_pool = AttentionPool(hidden, heads=8, dim_head=64, ff_mult=4, init_std=cfg.latent_init_std)
        self.text_to_latent = nn.Linear(hidden, cfg.contrastive_dim, bias=False)
        self.visual_to_latent = nn.Linear(dv, cfg.contrastive_dim, bias=False)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale_init)))
        self._ctx: MediaContext | None = None
        for i, layer in enumerate(decoder_layers(self.lm)[2]):
            if i == u or str(i) in self.xattn:
                layer.register_forward_pre_hook(partial(self._layer_pre_hook, i), with_kwargs=True)
        self.lm.requires_grad_(cfg.lm_trainable)
        self._lm_digest: str | None = None
        self.train()

    # -- special tokens --------------------------------------------------------------------------------------
    def _init_special_tokens(self) -> None:
        tok = self.tokenizer
        ids = [int(i) for i in tok.convert_tokens_to_ids([VISUAL, END_OF_CHUNK])]
        self.visual_token_id, self.eoc_token_id = ids
        emb, out = self.lm.get_input_embeddings(), self.lm.get_output_embeddings()
        self.lm_vocab = int(out.weight.shape[0])
        extra = [i for i in ids if i >= self.lm_vocab]
        if extra and sorted(extra) != list(range(self.lm_vocab, self.lm_vocab + len(extra))):
            raise ConfigError(f"model.lm_path: the tokenizer ({len(tok)} tokens) does not fit the LM's "
                              f"vocabulary of {self.lm_vocab}")
        self.vocab_size = max(self.lm_vocab, max(ids) + 1)
        # When the special ids are exactly the ids after the LM's vocabulary, their logits are appended columns
        # (in id order); otherwise they overwrite unused columns of the LM's vocabulary.
        appended = sorted(ids) == list(range(self.lm_vocab, self.lm_vocab + len(ids)))
        self._special_order = sorted(range(len(ids)), key=lambda i: ids[i]) if appended else None
        self.register_buffer("special_ids", torch.tensor(ids), persistent=False)
        # Input rows: <visual> starts at the mean of the LM's rows (transformers' mean_resizing does the same for
        # resized embeddings), <|endofchunk|> at the LM's own end-of-text row when it has one, so that the two
        # differ even when they stay frozen. Output rows start at the mean: a low initial probability.
        with torch.no_grad():
            rows = emb.weight.float().mean(0).repeat(2, 1)
            eos = tok.eos_token_id
            if eos is not None and eos < emb.weight.shape[0]:
                rows[1] = emb.weight[eos].float()
            self.special_embed = nn.Parameter(rows.to(emb.weight.dtype),
                                              requires_grad=self.cfg.train_special_tokens)
            self.special_head = nn.Parameter(out.weight.float().mean(0).repeat(2, 1).to(out.weight.dtype))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_token_id = int(pad) if pad is not None else 0
        self.prefix_ids = [int(i) for i in tok("", add_special_tokens=True)["input_ids"]]

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        """Shapes: (B, T) -> (B, T, E): the LM's embeddings, with the special tokens' own rows."""
        match = input_ids.unsqueeze(-1) == self.special_ids  # (B, T, 2)
        is_special = match.any(-1)
        e = self.lm.get_input_embeddings()(torch.where(is_special, 0, input_ids))
        sp = self.special_embed.to(e.dtype)[match.long().argmax(-1)]
        return torch.where(is_special.unsqueeze(-1), sp, e)

    def output_logits(self, hidden: Tensor) -> Tensor:
        """Shapes: final hidden states (B, T, H) -> logits (B, T, vocab_size); special tokens from special_head.

        The LM head is a 49k-row matmul for SmolLM2, the largest single cost of a step once the LM is truncated,
        so the logits are written once: when the special ids follow the LM's vocabulary, either the head weight
        is extended by the two rows (many tokens: copying the weight is cheaper than copying the logits) or the
        two columns are appended (few tokens, e.g. generation).
        """
        head = self.lm.get_output_embeddings()
        special_rows = self.special_head.to(hidden.dtype)
        if self._special_order is not None and isinstance(head, nn.Linear):
            rows = special_rows[self._special_order]
            if hidden.shape[:-1].numel() > head.weight.shape[1]:
                bias = None if head.bias is None else torch.cat([head.bias, head.bias.new_zeros(len(rows))])
                return F.linear(hidden, torch.cat([head.weight, rows.to(head.weight.dtype)]), bias)
            return torch.cat([head(hidden), F.linear(hidden, rows)], dim=-1)
        logits = head(hidden)
        if self.vocab_size > self.lm_vocab:
            pad = logits.new_zeros(*logits.shape[:-1], self.vocab_size - self.lm_vocab)
            logits = torch.cat([logits, pad], dim=-1)
        return logits.index_copy(-1, self.special_ids, F.linear(hidden, special_rows).to(logits.dtype))

    # -- hooks and the LM call -------------------------------------------------------------------------------
    def _layer_pre_hook(self, index: int, module: nn.Module, args: tuple, kwargs: dict):
        ctx = self._ctx
        if ctx is None:
            return None
        h = args[0] if args else kwargs["hidden_states"]
        if index == self.cfg.unimodal_depth:
            ctx.unimodal = h
            if ctx.stop_after_unimodal:
                raise _StopAfterUnimodal
        block = self.xattn[str(index)] if str(index) in self.xattn else None
        if block is None or ctx.media is None:
            return None
        if index not in ctx.kv:
            ctx.kv[index] = block.media_kv(ctx.media)
        h = block(h, ctx.kv[index], ctx.text_time, ctx.valid)
        if args:
            return (h, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": h}

    def run_lm(self, input_ids: Tensor, attention_mask: Tensor, ctx: MediaContext | None, cache=None,
               use_cache: bool = False, position_ids: Tensor | None = None):
        """One LM call with the hooks reading `ctx` -> (final hidden states (B, T, H), cache).

        `attention_mask` covers the cached tokens plus the new ones; positions follow the mask (left padding
        is allowed). With `ctx.stop_after_unimodal` the call stops at layer unimodal_depth (hidden is None).
        """
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)[:, -input_ids.shape[1]:]
        if ctx is not None:
            hits = (input_ids == self.visual_token_id).long().cumsum(-1)
            ctx.text_time = hits if ctx.count is None else hits + ctx.count[:, None]
            ctx.valid = attention_mask[:, -input_ids.shape[1]:].bool()
        kwargs = {"inputs_embeds": self.embed_tokens(input_ids), "attention_mask": attention_mask,
                  "position_ids": position_ids, "use_cache": use_cache}
        if cache is not None:
            kwargs[_cache_kwarg(self.lm.base_model)] = cache
        self._ctx = ctx
        try:
            out = self.lm.base_model(**kwargs)
        except _StopAfterUnimodal:
            return None, None
        finally:
            self._ctx = None
        if ctx is not None:
            ctx.count = ctx.text_time[:, -1]
        new_cache = getattr(out, "cache", None) if hasattr(out, "cache") else getattr(out, "past_key_values", None)
        return out.last_hidden_state, new_cache

    # -- visual side -----------------------------------------------------------------------------------------
    def encode_media(self, media: Tensor, media_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: media (B, M, S, F), media_mask (B, M, S) bool -> (contrastive latents (B, M, Dv),
        media tokens (B, M, L, Dv))."""
        b, m, s, f = media.shape
        x, mask = media.reshape(b * m, s, f), media_mask.reshape(b * m, s)
        if self.video_tower is not None:
            _, x = self.video_tower(x, mask)  # (B*M, S, W) per-second states
        x = self.visual_in(x)
        lat = self.resampler(x, mask).view(b, m, -1, x.shape[-1])
        return lat[:, :, 0], lat[:, :, 1:]

    def logit_scale(self) -> Tensor:
        """Log inverse temperature, clamped at log(logit_scale_max). Shapes: () scalar."""
        return self.log_logit_scale.clamp(max=math.log(self.cfg.logit_scale_max))

    # -- text side -------------------------------------------------------------------------------------------
    def pooling_groups(self, input_ids: Tensor, attention_mask: Tensor, clips: int) -> Tensor:
        """Tokens pooled into each contrastive text embedding. Shapes -> (B, G, T) bool; G = 1 ("document":
        every real token) or `clips` ("clip": the tokens after the m-th <visual> up to its <|endofchunk|>)."""
        real = attention_mask.bool()
        if self.cfg.contrastive_unit == "document":
            return real.unsqueeze(1)
        is_visual = input_ids == self.visual_token_id
        text_time = is_visual.long().cumsum(-1)
        media = torch.arange(1, clips + 1, device=input_ids.device)
        return (text_time.unsqueeze(1) == media[None, :, None]) & (real & ~is_visual).unsqueeze(1)

    def pool_text(self, unimodal: Tensor, groups: Tensor) -> Tensor:
        """Shapes: unimodal (B, T, H), groups (B, G, T) -> contrastive text embeddings (B*G, C)."""
        pooled = self.text_pool(unimodal, groups)
        return self.text_to_latent(pooled).reshape(-1, self.cfg.contrastive_dim)

    def lm_targets(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Next-token targets (B, T) long: token t+1, or -100 where it is padding or <visual> (media markers are
        inputs, never predicted) and where t itself is padding (vidlang.losses.lm.next_token_targets)."""
        return next_token_targets(input_ids, attention_mask, never_predict=(self.visual_token_id,))

    # -- training forward ------------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor, attention_mask: Tensor, media: Tensor, media_mask: Tensor) -> dict:
        """One pass over interleaved documents.

        Shapes: input_ids / attention_mask (B, T); media (B, M, S, F) per-second features; media_mask (B, M, S)
        bool (True = a real second; a clip slot with no real second is padding). The m-th <visual> of a row
        stands for its clip m.
        Returns {"logits" (B, T, V), "lm_targets" (B, T) long (-100 = ignored), "pooled_text" (N, C),
        "pooled_video" (N, C), "logit_scale" ()} with N = B ("document") or B*M ("clip"); embeddings are not
        normalised (the losses normalise).
        """
        b, m = media.shape[:2]
        visuals = (input_ids == self.visual_token_id).sum(-1)
        if int(visuals.max()) > m:
            raise ValueError(f"a document has {int(visuals.max())} <visual> tokens but only {m} clips were given")
        real_clips = media_mask.any(-1)  # (B, M)
        if self.cfg.contrastive_unit == "clip" and not (bool(real_clips.all()) and bool((visuals == m).all())):
            raise ValueError("contrastive_unit='clip' needs every document to hold exactly M real clips, each "
                             "with its <visual> token")
        cls, tokens = self.encode_media(media, media_mask)
        ctx = MediaContext(media=tokens)
        hidden, _ = self.run_lm(input_ids, attention_mask, ctx)
        groups = self.pooling_groups(input_ids, attention_mask, m)
        if self.cfg.contrastive_unit == "clip":
            vis = cls.reshape(b * m, -1)
        else:
            w = real_clips.to(cls.dtype).unsqueeze(-1)
            vis = (cls * w).sum(1) / w.sum(1).clamp_min(1.0)
        return {"logits": self.output_logits(hidden), "lm_targets": self.lm_targets(input_ids, attention_mask),
                "pooled_text": self.pool_text(ctx.unimodal, groups), "pooled_video": self.visual_to_latent(vis),
                "logit_scale": self.logit_scale()}

    # -- inference helpers -----------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_text(self, input_ids: Tensor, attention_mask: Tensor, clips: int = 1) -> Tensor:
        """Contrastive text embeddings (N, C), L2-normalised; runs only the unimodal layers."""
        ctx = MediaContext(media=None, stop_after_unimodal=True)
        self.run_lm(input_ids, attention_mask, ctx)
        emb = self.pool_text(ctx.unimodal, self.pooling_groups(input_ids, attention_mask, clips))
        return torch.nn.functional.normalize(emb, dim=-1)

    @torch.no_grad()
    def embed_media(self, media: Tensor, media_mask: Tensor) -> Tensor:
        """Contrastive visual embeddings, L2-normalised: (B, C) ("document") or (B*M, C) ("clip")."""
        cls, _ = self.encode_media(media, media_mask)
        if self.cfg.contrastive_unit == "clip":
            emb = self.visual_to_latent(cls.reshape(-1, cls.shape[-1]))
        else:
            w = media_mask.any(-1).to(cls.dtype).unsqueeze(-1)
            emb = self.visual_to_latent((cls * w).sum(1) / w.sum(1).clamp_min(1.0))
        return torch.nn.functional.normalize(emb, dim=-1)

    def text_only_logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits of the LM with no cross-attention at all (the text-only baseline). Shapes: (B, T, V)."""
        hidden, _ = self.run_lm(input_ids, attention_mask, None)
        return self.output_logits(hidden)

    def generate(self, *args, **kwargs):
        """See `vidlang.models.cosmo.generate.generate`."""
        from vidlang.models.cosmo.generate import generate

        return generate(self, *args, **kwargs)

    def log_likelihood(self, *args, **kwargs):
        """See `vidlang.models.cosmo.generate.log_likelihood`."""
        from vidlang.models.cosmo.generate import log_likelihood

        return log_likelihood(self, *args, **kwargs)

    def make_collate(self, max_tokens: int):
        """The batch builder for DataLoader workers: samples -> vidlang.data.interleaved.InterleavedBatch."""
        from vidlang.data.interleaved import InterleavedCollate

        return InterleavedCollate(self.tokenizer, max_tokens)

    # -- train / eval modes, parameters ----------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if not self.cfg.lm_trainable:
            self.lm.eval()  # a frozen LM is a fixed function: no dropout
        if self.video_tower is not None and self.cfg.freeze_video_tower:
            self.video_tower.eval()
        return self

    def trainable_parameter_names(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.requires_grad}

    # -- save / load -----------------------------------------------------------------------------------------
    def lm_digest(self) -> str:
        """sha256 over the (possibly truncated) LM's frozen tensors: a checkpoint names the LM it was trained on."""
        if self._lm_digest is None:
            h = hashlib.sha256()
            for name, t in self.lm.state_dict().items():
                h.update(name.encode())
                h.update(str(t.dtype).encode())
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._lm_digest = h.hexdigest()
        return self._lm_digest

    def saved_state(self) -> dict[str, Tensor]:
        """The weights a checkpoint or training state holds: everything but a frozen LM (named by `frozen_weights`)."""
        state = self.state_dict()
        if self.cfg.lm_trainable:
            return state
        return {k: v for k, v in state.items() if not k.startswith("lm.")}

    def frozen_weights(self) -> dict[str, dict]:
        if self.cfg.lm_trainable:
            return {}
        return {"lm": {"path": str(self.lm_dir.resolve()), "sha256": self.lm_digest(),
                       "layers": int(self.lm.config.num_hidden_layers)}}

    # -- the registered model's interface (vidlang.models.base.VidlangModel) ---------------------------------
    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.data.hard_negatives:
            raise ValueError("data.hard_negatives=true is not supported by model.arch=cosmo")
        if cfg.model.max_tokens < 3 * cfg.data.clips_per_video:
            raise ValueError(f"model.max_tokens={cfg.model.max_tokens} cannot hold data.clips_per_video="
                             f"{cfg.data.clips_per_video} clips (each needs <visual>, a text token, <|endofchunk|>)")

    @classmethod
    def resolve_config(cls, cfg, feature_dim: int, fps: float) -> None:
        m = cfg.model
        if m.feature_dim and m.feature_dim != feature_dim:
            raise ConfigError(f"model.feature_dim={m.feature_dim} but the features have dimension {feature_dim}")
        m.feature_dim = int(feature_dim)
        if m.video_tower is not None:
            if m.video_tower.input_dim not in (0, feature_dim):
                raise ConfigError(f"model.video_tower.input_dim={m.video_tower.input_dim} but the features have "
                                  f"dimension {feature_dim}")
            m.video_tower.input_dim = int(feature_dim)
            steps = math.ceil(cfg.data.max_clip_len * fps)
            if steps > m.video_tower.max_len:
                raise ConfigError(f"data.max_clip_len={cfg.data.max_clip_len} s at {fps:g} features/s is {steps} "
                                  f"steps > model.video_tower.max_len={m.video_tower.max_len}")

    @classmethod
    def build(cls, cfg) -> "CosmoModel":
        model = cls(cfg.model)
        need = len(model.prefix_ids) + 3 * cfg.data.clips_per_video
        if need > cfg.model.max_tokens:
            raise ConfigError(f"model.max_tokens={cfg.model.max_tokens} cannot hold data.clips_per_video="
                              f"{cfg.data.clips_per_video} clips after the tokenizer's {len(model.prefix_ids)}-token "
                              "prefix")
        return model

    @classmethod
    def from_checkpoint(cls, ckpt: Path, cfg) -> "CosmoModel":
        """The architecture, with the frozen LM loaded from `model.lm_path` (checked against the checkpoint's
        sha256 when the weights are loaded)."""
        return cls(cfg.model)

    def feature_dim(self) -> int:
        return int(self.cfg.feature_dim)

    def init_from_checkpoint(self, ckpt: Path) -> None:
        """A COSMO checkpoint: a strict load of all of it. A dual-encoder (Norton/InfoNCE) checkpoint: its video
        tower's `video.*` weights, strictly, into `video_tower` (which must be configured with the same sizes)."""
        from vidlang.models.checkpoint import WEIGHTS, load_state_strict, read_train_config, read_weights

        arch = read_train_config(ckpt).model.arch
        if arch == self.arch:
            return super().init_from_checkpoint(ckpt)
        if self.video_tower is None:
            raise ConfigError(f"--init-from {ckpt}: a {arch} checkpoint can only start COSMO's visual side through "
                              "model.video_tower (set it to that checkpoint's model.video sizes)")
        state = {k[len("video."):]: v for k, v in read_weights(Path(ckpt) / WEIGHTS).items() if k.startswith("video.")}
        if not state:
            raise ConfigError(f"--init-from {ckpt}: the {arch} checkpoint has no video.* weights")
        load_state_strict(self.video_tower, state, f"{Path(ckpt) / WEIGHTS} (video.* into model.video_tower)")

    def dataset(self, features, captions, video_ids, data_cfg, fps: float, seed: int):
        from vidlang.data.interleaved import InterleavedDataset

        return InterleavedDataset(features, captions, video_ids, data_cfg, fps=fps, seed=seed)

    def collate_fn(self):
        return self.make_collate(self.cfg.max_tokens)

    @classmethod
    def selection_metrics(cls) -> dict[str, str]:
        return {"lm_loss": "min", "contrastive": "min", "R@1": "max", "R@5": "max", "R@10": "max", "MedR": "min",
                "MeanR": "min"}

    @torch.no_grad()
    def heldout_metrics(self, held: list, device, batch_videos: int) -> dict[str, float]:
        """On one fixed document per held-out TRAINING video: next-token loss per text token ("lm_loss"), and
        document text -> document clips retrieval through the contrastive heads (R@K percent, MedR, MeanR) with
        its symmetric InfoNCE ("contrastive") at the model's temperature."""
        from vidlang.eval.retrieval import rank_metrics

        collate, was = self.collate_fn(), self.training
        self.eval()
        nll, count, videos, texts = 0.0, 0, [], []
        try:
            for i in range(0, len(held), batch_videos):
                chunk = held[i : i + batch_videos]
                batch = collate([c for _, c in chunk], [v for v, _ in chunk]).to(device)
                out = self(**batch.model_inputs())
                targets = out["lm_targets"]
                nll += float(F.cross_entropy(out["logits"].flatten(0, 1).float(), targets.flatten(),
                                             ignore_index=IGNORE, reduction="sum"))
                count += int((targets != IGNORE).sum())
                videos.append(F.normalize(out["pooled_video"].float(), dim=-1).cpu())
                texts.append(F.normalize(out["pooled_text"].float(), dim=-1).cpu())
            scale = float(self.logit_scale().exp())
        finally:
            self.train(was)
        sim = torch.cat(texts) @ torch.cat(videos).T
        gt = torch.arange(sim.shape[0])
        metrics = rank_metrics(sim, gt)
        metrics["contrastive"] = float((F.cross_entropy(scale * sim, gt) + F.cross_entropy(scale * sim.T, gt)) / 2)
        metrics["lm_loss"] = nll / max(1, count)
        return metrics

    def evaluator(self, capability: str, meta: dict, device):
        from vidlang.models.cosmo import evaluate

        makers = {"embed": evaluate.CosmoEmbedder, "score": evaluate.CosmoScorer, "generate": evaluate.CosmoGenerator}
        if capability not in makers:
            return super().evaluator(capability, meta, device)
        return makers[capability](self, clip_len=meta.get("clip_len"), device=device)


def _cache_kwarg(base_model: nn.Module) -> str:
    """transformers 5.x renamed the forward argument `past_key_values` to `cache`; use whichever it takes."""
    import inspect

    params = inspect.signature(base_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
