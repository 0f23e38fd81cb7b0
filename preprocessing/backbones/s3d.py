"""``s3d_howto100m``: S3D-G video network of the MIL-NCE HowTo100M model, loading ``s3d_howto100m.pth``.

Architecture (Xie et al. 2018, "Rethinking Spatiotemporal Feature Learning", S3D-G; as trained by Miech et al. 2020,
"End-to-End Learning of Visual Representations from Uncurated Instructional Videos"):

- input (n, 3, T, H, W) in [0, 1] (no mean/std normalisation: the release was trained on [0, 1] pixels);
- a 2×2×2 space-to-depth rearrangement (the TPU trick of the release: 3 channels -> 24 at half T/H/W), then a
  2×4×4 convolution to 64 channels whose first output row in t/h/w is dropped (it reproduces TensorFlow's "SAME"
  padding of the original stride-2 7×7×7 stem);
- max-pool 1×3×3/1×2×2, 1×1×1 conv (64), separable 3×3×3 conv (192) = spatial 1×3×3 then temporal 3×1×1 convs,
  each with BatchNorm and ReLU, then feature gating;
- max-pool, inception blocks mixed_3b/3c, max-pool 3×3×3/2, mixed_4b..4f, max-pool 2×2×2/2, mixed_5b/5c. Each
  inception block has four branches (1×1×1; 1×1×1 -> separable 3×3×3; 1×1×1 -> separable 3×3×3;
  3×3×3 max-pool -> 1×1×1), each gated, concatenated; pools use TensorFlow "SAME" padding (ceil mode);
- global average over t/h/w gives mixed_5c (1024-d); ``fc`` maps it to the 512-d joint text-video space.

Feature gating ("self-gating"): a channel-wise sigmoid gate computed from the block output's spatio-temporal mean.

The state-dict key names follow the public release (conv1, conv_2b, conv_2c, gating, mixed_3b .. mixed_5c, fc;
inside blocks conv_b0, conv_b1_a, conv_b1_b, conv_b2_a, conv_b2_b, conv_b3_b, gating_b0..b3; inside convs conv1/bn1
and, for separable ones, conv2/bn2). The release also holds the text branch (``text_module.*``), which is skipped.

Feature: 30 frames per second of video at 224×224 (as the reference extraction; the network needs an even number
of frames and even H, W), output = L2-normalised ``fc`` embedding (512-d).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from preprocessing.backbones.base import Backbone, load_state_dict_file, load_strict, require_weights

# einops axes: n windows, c channels, t/h/w time/height/width, (p q r) the 2×2×2 space-to-depth blocks.

# Inception widths (branch0 1×1; branch1 1×1 -> 3×3×3; branch2 1×1 -> 3×3×3; branch3 pool -> 1×1), Inception-v1
# (GoogLeNet) channel plan as used by S3D-G and the release.
_INCEPTION = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}
FRAMES_PER_SECOND = 30  # reference extraction: 30 fps video, one embedding per second (VideoCLIP/Norton features)
FRAME_SIZE = 224        # training resolution of the release


class _Unit(nn.Module):
    """Conv3d(no bias) + BN + ReLU; ``separable`` splits a k×k×k kernel into 1×k×k then k×1×1 (each with BN+ReLU)."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int, int], stride=(1, 1, 1),
                 padding=(0, 0, 0), separable: bool = False):
        super().__init__()
        self.separable = separable
        if separable:
            kt, kh, kw = kernel
            self.conv1 = nn.Conv3d(c_in, c_out, (1, kh, kw), (1, stride[1], stride[2]),
                                   (0, padding[1], padding[2]), bias=False)
            self.bn1 = nn.BatchNorm3d(c_out)
            self.conv2 = nn.Conv3d(c_out, c_out, (kt, 1, 1), (stride[0], 1, 1), (padding[0], 0, 0), bias=False)
            self.bn2 = nn.BatchNorm3d(c_out)
        else:
            self.conv1 = nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False)
            self.bn1 = nn.BatchNorm3d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if self.separable:
            x = F.relu(self.bn2(self.conv2(x)))
        return x


class _Gate(nn.Module):
    """S3D-G feature gating: x * sigmoid(W · mean_{t,h,w}(x) + b), channel-wise."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))           # (n, c)
        return x * gate[:, :, None, None, None]


class _Inception(nn.Module):
    def __init__(self, c_in: int, b0: int, b1a: int, b1b: int, b2a: int, b2b: int, b3: int):
        super().__init__()
        self.conv_b0 = _Unit(c_in, b0, (1, 1, 1))
        self.conv_b1_a = _Unit(c_in, b1a, (1, 1, 1))
        self.conv_b1_b = _Unit(b1a, b1b, (3, 3, 3), padding=(1, 1, 1), separable=True)
        self.conv_b2_a = _Unit(c_in, b2a, (1, 1, 1))
        self.conv_b2_b = _Unit(b2a, b2b, (3, 3, 3), padding=(1, 1, 1), separable=True)
        self.conv_b3_b = _Unit(c_in, b3, (1, 1, 1))
        self.gating_b0, self.gating_b1 = _Gate(b0), _Gate(b1b)
        self.gating_b2, self.gating_b3 = _Gate(b2b), _Gate(b3)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.gating_b0(self.conv_b0(x))
        b1 = self.gating_b1(self.conv_b1_b(self.conv_b1_a(x)))
        b2 = self.gating_b2(self.conv_b2_b(self.conv_b2_a(x)))
        # stride-1 3×3×3 max-pool with padding 1 (PyTorch pads max-pool with -inf, i.e. TF "SAME" for stride 1)
        b3 = self.gating_b3(self.conv_b3_b(F.max_pool3d(x, 3, stride=1, padding=1)))
        return torch.cat([b0, b1, b2, b3], dim=1)


def _max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Max-pool with TensorFlow "SAME" padding as the release does it: pad (kernel - stride) split low/high, with
    zeros (inputs are post-ReLU, so zero padding equals -inf padding), ceil mode."""
    pad = []
    for k, s in reversed(list(zip(kernel, stride))):  # F.pad takes the last dim first
        total = max(k - s, 0)
        pad += [total // 2, total - total // 2]
    return F.max_pool3d(F.pad(x, pad), kernel, stride, ceil_mode=True)


def space_to_depth(video: torch.Tensor) -> torch.Tensor:
    """The release's 2×2×2 space-to-depth: (n, c, t, h, w) -> (n, 8c, t/2, h/2, w/2), channels ordered (dt, dh, dw, c).

    The channel order must match the release's conv1 weights (64, 24, 2, 4, 4), so it is pinned by a test.
    """
    return rearrange(video, "n c (t p) (h q) (w r) -> n (p q r c) t h w", p=2, q=2, r=2)


class S3DG(nn.Module):
    """S3D-G video tower. Shapes: video (n, 3, t, h, w) in [0, 1], t/h/w even -> (fc (n, 512), mixed_5c (n, 1024))."""

    def __init__(self, embed_dim: int = 512):
        super().__init__()
        self.conv1 = _Unit(24, 64, (2, 4, 4), padding=(1, 2, 2))
        self.conv_2b = _Unit(64, 64, (1, 1, 1))
        self.conv_2c = _Unit(64, 192, (3, 3, 3), padding=(1, 1, 1), separable=True)
        self.gating = _Gate(192)
        c = 192
        for name, widths in _INCEPTION.items():
            block = _Inception(c, *widths)
            self.add_module(name, block)
            c = block.out_channels
        self.fc = nn.Linear(c, embed_dim)  # c == 1024 (mixed_5c)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = space_to_depth(video)
        x = self.conv1(x)[:, :, 1:, 1:, 1:]  # drop the first row: TF "SAME" padding of the original stem
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.gating(self.conv_2c(self.conv_2b(x)))
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.mixed_3c(self.mixed_3b(x))
        x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for name in ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"):
            x = getattr(self, name)(x)
        x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = self.mixed_5c(self.mixed_5b(x))
        pooled = x.mean(dim=(2, 3, 4))                                    # (n, 1024) mixed_5c
        return self.fc(pooled), pooled


class S3DHowTo100MBackbone(Backbone):
    """Backbone wrapper: frames (n, f, h, w, 3) uint8 -> fc embedding (n, 512), L2-normalised.

    ``size`` (default 224) is the frame size asked of the runner; frames of another size are resized here
    (bilinear, antialiased). An odd frame count is made even by repeating the last frame (space-to-depth needs it).
    """

    name = "s3d_howto100m"
    max_batch = 4  # one 30×224×224 window is ~0.6 GB of activations in float32

    def __init__(self, weights: str | Path | None = None, device: str = "cpu", size: int = FRAME_SIZE,
                 frames_per_second: int = FRAMES_PER_SECOND):
        path = require_weights(weights, "s3d_howto100m", "the published s3d_howto100m.pth state dict")
        super().__init__(device=device, weights=path)
        if size < 32 or size % 2:
            raise ValueError(f"s3d_howto100m: size must be even and >= 32, got {size}")
        if frames_per_second < 1:
            raise ValueError(f"s3d_howto100m: frames_per_second must be >= 1, got {frames_per_second}")
        self.size = int(size)
        self.frames_per_second = int(frames_per_second)
        self.net = S3DG()
        load_strict(self.net, load_state_dict_file(path), path, ignore_prefixes=("text_module.",))
        self.net.eval().to(self.device)
        self.dim = self.net.fc.out_features

    @property
    def frame_size(self) -> tuple[int, int]:
        return (self.size, self.size)

    def frames_per_feature(self, fps: float) -> int:
        if fps <= 0:
            raise ValueError(f"s3d_howto100m: fps must be > 0, got {fps}")
        # 30 frames per second of video -> 30 / fps frames per window, even, at least 2
        f = max(2, math.ceil(self.frames_per_second / float(fps)))
        return f + (f % 2)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        x = rearrange(frames, "n f h w c -> n c f h w").float().div_(255.0)
        n, _, f, h, w = x.shape
        if (h, w) != self.frame_size:
            x = rearrange(x, "n c f h w -> (n f) c h w")
            x = F.interpolate(x, size=self.frame_size, mode="bilinear", antialias=True, align_corners=False)
            x = rearrange(x, "(n f) c h w -> n c f h w", n=n)
        if f % 2:
            x = torch.cat([x, x[:, :, -1:]], dim=2)
        emb, _ = self.net(x)
        return F.normalize(emb, dim=-1)
