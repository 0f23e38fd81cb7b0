"""``x3d``: pytorchvideo X3D (Feichtenhofer 2020) from a local checkpoint; pooled pre-classifier features.

The network is ``pytorchvideo.models.x3d.create_x3d`` (imported through preprocessing.compat, which installs the
torchvision alias pytorchvideo 0.1.5 needs). Variants follow pytorchvideo's hub definitions (``x3d_xs``, ``x3d_s``,
``x3d_m``): clip length, crop size and depth factor below. Checkpoints are read with ``weights_only=True``:
pytorchvideo's hub files store ``{"model_state": state_dict}``; plain state dicts (optionally with "module.") work
too. The number of classes of the (unused) classifier is read from the checkpoint so any fine-tuned head loads.
Nothing is ever downloaded.

Feature: the head's projected pool — stage-5 output -> 1×1×1 conv + BN + ReLU (432) -> global average over t/h/w ->
1×1×1 conv + ReLU (2048) — i.e. the input of the classifier ``proj``, L2-normalised. The global average replaces the
head's fixed-size AvgPool3d: identical at the variant's own input size, and valid at any other size.
Input: frames scaled to [0, 1], normalised with mean 0.45 / std 0.225 (pytorchvideo's Kinetics recipe), resized
here to the variant's crop size (or ``size``) if the runner did not.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

from preprocessing.backbones.base import (Backbone, load_state_dict_file, load_strict, require_weights,
                                          strip_wrapper_prefixes)
from preprocessing.compat import import_pytorchvideo
from vidlang.errors import VidlangError

# einops axes: n windows, f frames, c channels, h/w height/width.

# pytorchvideo hub definitions (pytorchvideo/models/hub/x3d.py): frames per clip, crop size, depth factor.
X3D_VARIANTS: dict[str, tuple[int, int, float]] = {
    "xs": (4, 160, 2.2),
    "s": (13, 160, 2.2),
    "m": (16, 224, 2.2),
}
KINETICS_MEAN, KINETICS_STD = 0.45, 0.225  # pytorchvideo's X3D transforms (hub tutorial), same for R, G, B
_PROJ_KEY = "blocks.5.proj.weight"


class X3DBackbone(Backbone):
    name = "x3d"
    max_batch = 16

    def __init__(self, weights: str | Path | None = None, device: str = "cpu", variant: str = "xs",
                 size: int | None = None):
        if variant not in X3D_VARIANTS:
            raise VidlangError(f"x3d: unknown variant {variant!r}; known: {', '.join(X3D_VARIANTS)}")
        path = require_weights(weights, "x3d", "a pytorchvideo X3D checkpoint ({'model_state': ...} or a state dict)")
        super().__init__(device=device, weights=path)
        self.variant = variant
        self.clip_length, self.crop, depth = X3D_VARIANTS[variant]
        if size is not None:  # another input size: the weights do not depend on it (global pooling)
            if size < 32:
                raise ValueError(f"x3d: size must be >= 32 (five stride-2 stages), got {size}")
            self.crop = int(size)
        state = strip_wrapper_prefixes(load_state_dict_file(path))
        if _PROJ_KEY not in state:
            raise VidlangError(f"weights file {path} does not look like an X3D checkpoint: no {_PROJ_KEY!r}")
        x3d = import_pytorchvideo("models.x3d")
        self.net = x3d.create_x3d(input_clip_length=self.clip_length, input_crop_size=self.crop,
                                  depth_factor=depth, model_num_class=int(state[_PROJ_KEY].shape[0]))
        load_strict(self.net, state, path)
        self.net.eval().to(self.device)
        head = self.net.blocks[-1]
        self.dim = int(head.pool.post_conv.out_channels)  # 2048 for every hub variant

    @property
    def frame_size(self) -> tuple[int, int]:
        return (self.crop, self.crop)

    def frames_per_feature(self, fps: float) -> int:
        return self.clip_length

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[0]
        x = rearrange(frames, "n f h w c -> (n f) c h w").float().div_(255.0)
        if tuple(x.shape[-2:]) != self.frame_size:
            x = F.interpolate(x, size=self.frame_size, mode="bilinear", antialias=True, align_corners=False)
        x = (x - KINETICS_MEAN) / KINETICS_STD
        x = rearrange(x, "(n f) c h w -> n c f h w", n=n)
        for block in self.net.blocks[:-1]:  # stem + 4 stages
            x = block(x)
        pool = self.net.blocks[-1].pool
        x = pool.pre_act(pool.pre_norm(pool.pre_conv(x)))
        x = x.mean(dim=(2, 3, 4), keepdim=True)                          # global average (n, 432, 1, 1, 1)
        x = pool.post_act(pool.post_conv(x)).flatten(1)                  # (n, 2048) = input of the classifier
        return F.normalize(x, dim=-1)
