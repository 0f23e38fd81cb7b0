"""Frame-time sampling: which instants of a video each feature looks at.

At feature rate F (features per second) feature i covers the window [i/F, (i+1)/F). A backbone that wants f frames
per feature gets f times evenly inside that window, at the centres of f equal sub-windows:
``t_ij = (i + (j + 0.5) / f) / F``. Each time then maps to the frame displayed at that instant (decoders.py).
With a 30 fps video, F = 1 and f = 30 this picks exactly frames 30i .. 30i+29: the reference S3D setting
(HowTo100M S3D features: 30 fps input, one 512-d feature per second; Miech et al. 2019). Times past the last
frame are clamped to it, so a partial last window repeats the final frame. The number of features is T = ceil(duration * F).
"""

from __future__ import annotations

import math

import numpy as np

# Durations come from float pts arithmetic (2.5000000000000004 s); a margin keeps ceil() from adding a feature.
_CEIL_EPS = 1e-6


def num_features(duration: float, fps: float) -> int:
    """T = ceil(duration * fps), at least 1 for any video with a frame."""
    if fps <= 0:
        raise ValueError(f"feature fps must be > 0, got {fps}")
    if duration < 0 or not math.isfinite(duration):
        raise ValueError(f"duration must be finite and >= 0, got {duration}")
    return max(1, math.ceil(duration * fps - _CEIL_EPS))


def feature_frame_times(
    duration: float, fps: float, frames_per_feature: int, last_frame_time: float | None = None
) -> np.ndarray:
    """Sample times (seconds) for every feature.

    Shapes: returns float64 (T, f) with T = num_features(duration, fps), f = frames_per_feature;
    row i holds f increasing times inside [i/fps, (i+1)/fps), clamped to ``last_frame_time`` when given.
    """
    if frames_per_feature < 1:
        raise ValueError(f"frames_per_feature must be >= 1, got {frames_per_feature}")
    T = num_features(duration, fps)
    i = np.arange(T, dtype=np.float64)[:, None]
    j = np.arange(frames_per_feature, dtype=np.float64)[None, :]
    times = (i + (j + 0.5) / frames_per_feature) / fps
    if last_frame_time is not None:
        times = np.minimum(times, last_frame_time)
    return times
