"""``clip``: a transformers CLIP vision tower from a local folder; one image embedding per feature window.

The folder is what ``save_pretrained`` writes (``config.json`` + ``model.safetensors``), either a vision-only model
(``CLIPVisionModelWithProjection``/``CLIPVisionModel``) or a full ``CLIPModel`` (its text half is skipped). An
optional ``preprocessor_config.json`` (``CLIPImageProcessor``) supplies the resize/crop sizes and normalisation;
without it the model's ``image_size`` and OpenAI's CLIP mean/std are used, as in ``CLIPImageProcessor``'s defaults.

Preprocessing runs in torch, batched, mirroring CLIPImageProcessor: resize the shortest edge (bicubic, antialiased),
centre-crop, scale to [0, 1], normalise. One frame per window (the middle one: the runner samples it there).
Output: ``image_embeds`` (after ``visual_projection``), L2-normalised; with ``projection=False`` the pooled CLS
output of ``CLIPVisionModel`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from preprocessing.backbones.base import Backbone, require_weights
from vidlang.errors import VidlangError

# CLIPImageProcessor defaults (OpenAI CLIP's training statistics), used when the folder has no processor config.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Keys of a full CLIPModel checkpoint that a vision tower legitimately does not use.
_TEXT_HALF = ("text_model.", "text_projection", "logit_scale")


class ClipBackbone(Backbone):
    name = "clip"
    max_batch = 32

    def __init__(self, weights: str | Path | None = None, device: str = "cpu", projection: bool = True):
        path = require_weights(weights, "clip", "a folder written by CLIPVisionModelWithProjection.save_pretrained "
                                               "or CLIPModel.save_pretrained")
        super().__init__(device=device, weights=path)
        if not path.is_dir():
            raise VidlangError(f"clip weights must be a folder with config.json and model weights: {path}")
        from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

        cls = CLIPVisionModelWithProjection if projection else CLIPVisionModel
        try:
            model, info = cls.from_pretrained(str(path), local_files_only=True, output_loading_info=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VidlangError(f"cannot load CLIP vision model from {path}: {reason}") from exc
        missing = sorted(info.get("missing_keys", ()))
        unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not k.startswith(_TEXT_HALF))
        mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
        if missing or unexpected or mismatched:
            hint = (" (a vision tower without projection: pass projection=False)"
                    if any("visual_projection" in k for k in missing) else "")
            raise VidlangError(f"weights in {path} do not match {cls.__name__}: missing {missing[:8]}, "
                               f"unexpected {unexpected[:8]}, mismatched {mismatched[:8]}{hint}")
        self.model = model.float().eval().to(self.device)
        self.projection = projection
        cfg = model.config
        self.dim = int(cfg.projection_dim if projection else cfg.hidden_size)
        self._read_processor(path, int(cfg.image_size))
        self.register_buffer("mean", torch.tensor(self.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.image_std).view(1, 3, 1, 1), persistent=False)
        self.to(self.device)

    def _read_processor(self, folder: Path, image_size: int) -> None:
        """Resize/crop/normalisation settings from preprocessor_config.json, else CLIPImageProcessor's defaults."""
        self.shortest_edge, self.crop = image_size, (image_size, image_size)
        self.image_mean, self.image_std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        self.do_center_crop = True
        file = folder / "preprocessor_config.json"
        if not file.is_file():
            return
        try:
            cfg = json.loads(file.read_text())
            size = cfg.get("size") or {}
            if isinstance(size, int):
                size = {"shortest_edge": size}
            self.shortest_edge = int(size.get("shortest_edge", size.get("height", image_size)))
            crop = cfg.get("crop_size") or {}
            if isinstance(crop, int):
                crop = {"height": crop, "width": crop}
            self.crop = (int(crop.get("height", image_size)), int(crop.get("width", image_size)))
            self.do_center_crop = bool(cfg.get("do_center_crop", True))
            self.image_mean = tuple(float(v) for v in cfg.get("image_mean", OPENAI_CLIP_MEAN))
            self.image_std = tuple(float(v) for v in cfg.get("image_std", OPENAI_CLIP_STD))
        except (ValueError, TypeError, AttributeError) as exc:
            raise VidlangError(f"{file}: invalid image processor config: {exc}") from exc
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise VidlangError(f"{file}: image_mean and image_std need 3 values each")

    def frames_per_feature(self, fps: float) -> int:
        return 1  # one image per window; the runner samples it at the window's middle

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (n, f, h, w, 3) -> pixel_values float32 (n, 3, crop_h, crop_w) of each window's middle frame.

        Mirrors CLIPImageProcessor (transformers 5, torchvision backend): shortest edge to ``shortest_edge``
        (torchvision bicubic with antialias on uint8; the long edge scales with truncation as transformers does),
        centre crop (offset floored, zero padding when smaller), /255, (x - mean) / std.
        """
        from torchvision.transforms.v2 import functional as tvF

        mid = frames[:, frames.shape[1] // 2]                                  # (n, h, w, 3)
        x = mid.permute(0, 3, 1, 2).to(self.device)                           # (n, c, h, w) uint8
        h, w = x.shape[-2:]
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        size = [new_short, new_long] if h <= w else [new_long, new_short]
        if tuple(size) != (h, w):
            # the same torchvision call on uint8 as CLIPImageProcessor (its uint8 kernel rounds differently from
            # a float resize by up to a few grey levels, so resizing in float would break parity)
            x = tvF.resize(x, size, interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
        if self.do_center_crop:
            x = _center_crop(x, self.crop)
        x = x.float() / 255.0
        return (x - self.mean) / self.std

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = self.preprocess(frames)
        out = self.model(pixel_values=pixels)
        emb = out.image_embeds if self.projection else out.pooler_output     # (n, d)
        return F.normalize(emb.float(), dim=-1)


def _center_crop(x: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """Centre crop (n, c, h, w) to crop=(ch, cw), zero-padding first if the image is smaller (as the processor)."""
    ch, cw = crop
    h, w = x.shape[-2:]
    if h < ch or w < cw:
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = x.shape[-2:]
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]
