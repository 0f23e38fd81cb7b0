"""``thumbnail``: a deterministic, weight-free feature of colour, layout and motion (the embedded default).

Each feature window gets ``frames`` (default 3) frames. With ``g = grid`` (default 8) the vector is, in order:

====================  ===========  ==========================================================================
slice (g = 8)         size         content (all on fixed scales, never per-video statistics, so features from
                                   different videos are comparable)
====================  ===========  ==========================================================================
[0, 192)              3·g·g        colour layout: the window's mean frame, average-pooled to g×g cells, RGB,
                                   channel-major (r cells, then g, then b), as (value - 0.45) / 0.25
[192, 256)            g·g          motion energy: mean |frame[t+1] - frame[t]| (mean over RGB) per cell, × 10
[256, 320)            g·g          signed brightness change: luma(last) - luma(first) per cell, × 5
[320, 326)            6            global motion summary:
                                   320, 321  shift (x, y) of the centroid of the difference mass from the first
                                             to the last consecutive frame pair, in frame widths/heights, × 10
                                             (the direction of motion: + is right / down)
                                   322, 323  centroid (x, y) of the difference mass, in [-1, 1] (0 = centre)
                                   324       log1p(100 · mean |difference|): how much moves overall
                                   325       luma(last) - luma(first) over the whole frame, × 5
====================  ===========  ==========================================================================

Properties the tests pin: the colour layout ignores the order of frames in a window; reversing the frames keeps
colour, motion energy, centroid and energy and negates the signed parts (brightness change, shift, global change).
With one frame per window the motion parts are zero. Frames are first area-averaged to a working resolution of at
most 4g×4g (32×32), where all parts are computed; it works on any frame size (adaptive pooling: cell i of an axis
of length L averages pixels floor(i L / n) .. ceil((i + 1) L / n) - 1).

That first average reads every pixel and dominates the cost at video resolutions, so on the CPU it is computed in
integers: pixel values shifted to int8 (x - 128), summed over each cell's columns by an int8 matrix product
(``torch._int_mm``, exact int32 sums), then over its rows in float64 (exact), divided once and rounded once to
float32. That is the exact cell mean correctly rounded, equal to PyTorch's float32 ``adaptive_avg_pool2d`` to
within float32 rounding (tests/preprocessing/test_backbones.py), at about a third of its cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from preprocessing.backbones.base import Backbone

# ITU-R BT.601 luma weights: brightness as people perceive it, the usual choice for "brightness".
_LUMA = (0.299, 0.587, 0.114)
# Fixed scales chosen so each part has roughly unit spread on natural and synthetic video (values in [0, 1]):
_COLOUR_CENTRE, _COLOUR_SCALE = 0.45, 0.25  # close to the ImageNet mean/std of RGB values
_DIFF_SCALE = 10.0      # per-cell mean |difference| is ~0.01-0.1 where something moves
_CHANGE_SCALE = 5.0     # per-cell brightness change is ~0.05-0.3 when the scene changes
_SHIFT_SCALE = 10.0     # centroid shifts are a few percent of the frame per window
_EPS = 1e-6
_WORK = 4  # working resolution = _WORK x grid: enough to locate motion inside each cell, cheap for any input


class ThumbnailBackbone(Backbone):
    name = "thumbnail"
    max_batch = 512  # cheap per window; chunking only bounds memory for large frames
    # Small tensors per window: a second intra-op thread costs more than it gives (measured on 2 cores: 2.5x the
    # CPU per frame at 640x360, no faster), and the runner's decode thread wants that core.
    torch_threads = 1

    def __init__(self, frames: int = 3, grid: int = 8, device: str = "cpu"):
        super().__init__(device=device)
        if frames < 1 or grid < 1:
            raise ValueError(f"thumbnail: frames and grid must be >= 1, got frames={frames}, grid={grid}")
        self.frames = int(frames)
        self.grid = int(grid)
        self.dim = 3 * grid * grid + 2 * grid * grid + 6
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 1, 3, 1, 1), persistent=False)

    def frames_per_feature(self, fps: float) -> int:
        return self.frames

    def decoder_size(self, height: int, width: int) -> tuple[int, int] | None:
        # Every part is computed at the working resolution, which the first step area-averages to. The decoder is
        # asked for twice that (then averaged 2x2 here, exactly): swscale's area filter straight to the working
        # size differs from an exact box average by up to ~90 grey levels at sharp edges, at twice the size by up
        # to ~30 (mean 0.8), measured on tools/bench_preprocess.py's 640x360 video.
        size = (min(height, 2 * _WORK * self.grid), min(width, 2 * _WORK * self.grid))
        return None if size == (height, width) else size

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        n, f, h, w, _ = frames.shape
        g = self.grid
        # One conversion pass, then area-average down to the working resolution (at most 4g x 4g): the grids are
        # g x g anyway, and every later pass then touches few pixels. channels-last view: no copy before pooling.
        work = (min(h, _WORK * g), min(w, _WORK * g))
        if work == (h, w):
            x = frames.reshape(n * f, h, w, 3).float().permute(0, 3, 1, 2)  # ((n f), c, h, w) in [0, 255]
        else:
            x = area_average(frames.reshape(n * f, h, w, 3), work)           # ((n f), c, h', w') in [0, 255]
        x = x.contiguous().view(n, f, 3, *work).div_(255.0)              # (n, f, c, h', w') in [0, 1]

        colour = F.adaptive_avg_pool2d(x.mean(dim=1), g)                 # (n, c, g, g)
        colour = (colour - _COLOUR_CENTRE) / _COLOUR_SCALE

        luma = (x * self.luma.to(x.dtype)).sum(dim=2)                    # (n, f, h, w)
        change_map = luma[:, -1] - luma[:, 0]                            # (n, h, w)
        change = F.adaptive_avg_pool2d(change_map.unsqueeze(1), g).squeeze(1) * _CHANGE_SCALE  # (n, g, g)
        global_change = change_map.mean(dim=(1, 2)) * _CHANGE_SCALE      # (n,)

        if f >= 2:
            diff = (x[:, 1:] - x[:, :-1]).abs().mean(dim=2)              # (n, f-1, h, w)
            mean_diff = diff.mean(dim=1)                                 # (n, h, w)
            energy_grid = F.adaptive_avg_pool2d(mean_diff.unsqueeze(1), g).squeeze(1) * _DIFF_SCALE
            cx_first, cy_first, _ = _centroid(diff[:, 0])
            cx_last, cy_last, _ = _centroid(diff[:, -1])
            cx, cy, mass = _centroid(mean_diff)
            # centroids are in [-1, 1] (a span of 2): halve to express the shift in frame widths/heights
            shift = torch.stack([cx_last - cx_first, cy_last - cy_first], dim=1) * (0.5 * _SHIFT_SCALE)
            where = torch.stack([cx, cy], dim=1)
            energy = torch.log1p(100.0 * mass).unsqueeze(1)
        else:
            energy_grid = x.new_zeros(n, g, g)
            shift = x.new_zeros(n, 2)
            where = x.new_zeros(n, 2)
            energy = x.new_zeros(n, 1)

        return torch.cat([colour.reshape(n, -1), energy_grid.reshape(n, -1), change.reshape(n, -1),
                          shift, where, energy, global_change.unsqueeze(1)], dim=1)


def _cells(length: int, cells: int) -> list[tuple[int, int]]:
    """[start, end) of each adaptive-pooling cell along an axis (PyTorch's adaptive_avg_pool rule)."""
    return [((i * length) // cells, -((-(i + 1) * length) // cells)) for i in range(cells)]


_INT_MM_OK: bool | None = None  # torch._int_mm works here (checked once)
# tools/bench_preprocess.py turns this off for its "before" row (PyTorch's float pooling); nothing else should
INTEGER_POOLING = True


def _int_mm_available() -> bool:
    global _INT_MM_OK
    if _INT_MM_OK is None:
        try:
            a = torch.ones(2, 3, dtype=torch.int8)
            _INT_MM_OK = bool((torch._int_mm(a, a.t().contiguous()) == 3).all())
        except (RuntimeError, AttributeError):  # a torch build without the CPU kernel
            _INT_MM_OK = False
    return _INT_MM_OK


def area_average(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Adaptive area average of uint8 RGB frames, as float32 in [0, 255].

    Shapes: frames uint8 (m, h, w, 3) -> float32 (m, 3, size[0], size[1]).
    On the CPU: exact integer sums (module docstring), else PyTorch's float32 adaptive_avg_pool2d.
    """
    m, h, w, _ = frames.shape
    oh, ow = size
    if (not INTEGER_POOLING or frames.device.type != "cpu" or frames.dtype != torch.uint8
            or not _int_mm_available()):
        return F.adaptive_avg_pool2d(frames.float().permute(0, 3, 1, 2), size)
    # columns: an int8 0/1 matrix (w*3, ow*3) sums each cell's columns per channel (the channel stays interleaved)
    cols = torch.zeros(w, ow, dtype=torch.int8)
    col_n = torch.empty(ow, dtype=torch.float64)
    for j, (a, b) in enumerate(_cells(w, ow)):
        cols[a:b, j] = 1
        col_n[j] = b - a
    sel = torch.kron(cols, torch.eye(3, dtype=torch.int8))              # (w*3, ow*3): channel c -> channel c
    # x - 128 as int8 is x ^ 0x80 reinterpreted; its sums + 128 * width are the sums of x, exactly
    shifted = (frames.reshape(m * h, w * 3) ^ 128).view(torch.int8)
    col_sums = torch._int_mm(shifted, sel).view(m, h, ow, 3)            # int32, exact
    col_sums = col_sums.double() + 128.0 * col_n.view(1, 1, ow, 1)
    rows = torch.zeros(oh, h, dtype=torch.float64)
    row_n = torch.empty(oh, dtype=torch.float64)
    for i, (a, b) in enumerate(_cells(h, oh)):
        rows[i, a:b] = 1.0
        row_n[i] = b - a
    sums = torch.einsum("ih,mhjc->mcij", rows, col_sums)                # (m, 3, oh, ow), exact in float64
    return (sums / (row_n.view(1, 1, oh, 1) * col_n.view(1, 1, 1, ow))).float()


def _centroid(mass_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centroid of a non-negative map in [-1, 1] coordinates and its mean mass.

    Shapes: mass_map (n, h, w) -> cx (n,), cy (n,), mean mass (n,). A map with (almost) no mass has centroid 0
    (the centre), so a still window does not produce a spurious direction.
    """
    n, h, w = mass_map.shape
    xs = torch.linspace(-1.0, 1.0, w, dtype=mass_map.dtype, device=mass_map.device) if w > 1 \
        else mass_map.new_zeros(1)
    ys = torch.linspace(-1.0, 1.0, h, dtype=mass_map.dtype, device=mass_map.device) if h > 1 \
        else mass_map.new_zeros(1)
    total = mass_map.sum(dim=(1, 2))
    denom = total.clamp_min(_EPS)
    cx = (mass_map.sum(dim=1) * xs).sum(dim=1) / denom
    cy = (mass_map.sum(dim=2) * ys).sum(dim=1) / denom
    still = total <= _EPS
    cx = torch.where(still, torch.zeros_like(cx), cx)
    cy = torch.where(still, torch.zeros_like(cy), cy)
    return cx, cy, total / (h * w)
