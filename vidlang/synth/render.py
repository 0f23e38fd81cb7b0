"""Pixel side of the synthetic world: render a video plan with numpy and encode it to H.264 MP4 with PyAV.

A render spec is plain data (dict of lists/numbers/strings) so it pickles to worker processes and hashes stably:
```
{"video_id": str, "size": int, "fps": int, "n_frames": int, "bg": [r, g, b], "noise_std": float,
 "crf": int, "gop": int, "render_seed": [seed, index],
 "objects": [{"rgb": [r, g, b], "shape": str, "x": float, "y": float}],      # home centre, fraction of size
 "segments": [{"start": int, "end": int,                                    # seconds, end exclusive
               "kind": "step", "object": int, "action": str}
            | {"start": int, "end": int, "kind": "background", "mode": "idle"|"jitter"|"distractor",
               "distractor": {"shape": str, "x0", "y0", "x1", "y1": float} | None}]}
```
Shapes are drawn from signed distance functions with a one-pixel soft edge (cheap anti-aliasing), so motion
of a fraction of a pixel per frame still changes pixel values smoothly. Steps animate in 2-second cycles (move a
span of 0.25 x size and snap back, grow/shrink, blink at 1 Hz, rotate at 60 deg/s) so that every second of a step
shows its action. The acting object performs at the centre of the frame (the "stage"); the other objects wait
at home positions around it. Background keeps every object at home (idle, +-1 px jitter, or a slow grey
distractor), so "something at the centre is changing" is what a step looks like.
"""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidlang.io import atomic_path

CYCLE_S = 2.0  # one action cycle; a 1 s feature window always sees half a cycle of motion
MOVE_SPAN = 0.25  # fraction of the frame an object travels per move cycle (stays clear of the home objects)
STAGE = (0.5, 0.5)  # where steps happen (frame fractions); homes are the 8 outer cells of a 3x3 grid
RADIUS = 0.1  # object radius as a fraction of the frame
GROW_TO = 1.8
SHRINK_TO = 0.45
ROTATE_DEG_PER_S = 60.0  # squares/crosses are 90-degree symmetric: 60 deg/s stays unambiguous down to 1 fps
DISTRACTOR_RGB = (128, 128, 128)  # grey: no step sentence names it
RENDER_VERSION = 2  # bump when rendering changes, so re-runs re-render instead of skipping stale files


def spec_hash(spec: dict) -> str:
    """Stable digest of everything that determines a file's frames (stored in the MP4's `comment` tag)."""
    blob = json.dumps({"v": RENDER_VERSION, "spec": spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()


def _sdf(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a shape of radius r centred at the origin, in local axes."""
    if shape == "circle":
        return np.sqrt(u * u + v * v) - r
    if shape == "square":
        h = 0.85 * r
        return np.maximum(np.abs(u), np.abs(v)) - h
    if shape == "triangle":
        # Equilateral, apex up (image y points down); inradius r/2, edge normals 120 degrees apart.
        return np.maximum(np.maximum(v, 0.866 * u - 0.5 * v), -0.866 * u - 0.5 * v) - 0.5 * r
    if shape == "cross":
        w = 0.35 * r
        au, av = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(au - r, av - w), np.maximum(au - w, av - r))
    raise ValueError(f"unknown shape {shape!r}")


def _draw(frame: np.ndarray, xs: np.ndarray, ys: np.ndarray, shape: str, rgb: np.ndarray, cx: float, cy: float,
          r: float, angle: float) -> None:
    """Alpha-composite one shape into `frame` (H, W, 3 float32), touching only its bounding box."""
    size = frame.shape[0]
    ext = r * 1.5 + 2
    x0, x1 = max(0, int(cx - ext)), min(size, int(cx + ext) + 1)
    y0, y1 = max(0, int(cy - ext)), min(size, int(cy + ext) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    dx = xs[y0:y1, x0:x1] - cx
    dy = ys[y0:y1, x0:x1] - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    alpha = np.clip(0.5 - _sdf(shape, dx, dy, r), 0.0, 1.0)[..., None]
    patch = frame[y0:y1, x0:x1]
    patch += alpha * (rgb - patch)


def _step_state(action: str, tau: float, size: int) -> tuple[float, float, float, float, bool]:
    """(dx, dy, scale, angle, visible) of the acting object `tau` seconds into its step."""
    p = (tau % CYCLE_S) / CYCLE_S
    span = MOVE_SPAN * size
    if action == "left":
        return span * (0.5 - p), 0.0, 1.0, 0.0, True
    if action == "right":
        return span * (p - 0.5), 0.0, 1.0, 0.0, True
    if action == "up":
        return 0.0, span * (0.5 - p), 1.0, 0.0, True
    if action == "down":
        return 0.0, span * (p - 0.5), 1.0, 0.0, True
    if action == "grow":
        return 0.0, 0.0, 1.0 + (GROW_TO - 1.0) * p, 0.0, True
    if action == "shrink":
        return 0.0, 0.0, 1.0 - (1.0 - SHRINK_TO) * p, 0.0, True
    if action == "blink":
        return 0.0, 0.0, 1.0, 0.0, int(math.floor(tau * 2.0)) % 2 == 0
    if action == "rotate":
        return 0.0, 0.0, 1.0, math.radians(ROTATE_DEG_PER_S * tau), True
    raise ValueError(f"unknown action {action!r}")


def render_frames(spec: dict, start_frame: int = 0, end_frame: int | None = None) -> np.ndarray:
    """Frames [start_frame, end_frame) of a render spec as uint8 (n, size, size, 3), RGB.

    Pixel noise comes from one generator seeded by `render_seed` and advanced frame by frame from frame 0, so a
    sub-range equals the same rows of the full render.
    """
    size, fps, n = spec["size"], spec["fps"], spec["n_frames"]
    end_frame = n if end_frame is None else min(end_frame, n)
    rng = np.random.default_rng([*spec["render_seed"], 7])
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs += 0.5
    ys += 0.5
    bg = np.asarray(spec["bg"], np.float32)
    objs = [(o["shape"], np.asarray(o["rgb"], np.float32), o["x"] * size, o["y"] * size) for o in spec["objects"]]
    grey = np.asarray(DISTRACTOR_RGB, np.float32)
    stage = (STAGE[0] * size, STAGE[1] * size)
    radius = RADIUS * size
    seg_of = np.empty(n, np.int64)
    for si, seg in enumerate(spec["segments"]):
        seg_of[seg["start"] * fps:seg["end"] * fps] = si
    noise_std = float(spec["noise_std"])
    out = np.empty((max(0, end_frame - start_frame), size, size, 3), np.uint8)
    frame = np.empty((size, size, 3), np.float32)
    for f in range(end_frame):
        # Draw the random numbers of every frame (even skipped ones) so sub-ranges match the full render.
        jitter = rng.integers(-1, 2, size=(len(objs), 2))
        noise = rng.standard_normal((size, size, 3), dtype=np.float32) if noise_std > 0 else None
        if f < start_frame:
            continue
        t = f / fps
        seg = spec["segments"][seg_of[f]]
        frame[:] = bg
        jitter_px = max(1.0, size / 64.0)
        for oi, (shape, rgb, hx, hy) in enumerate(objs):
            dx = dy = angle = 0.0
            scale, visible = 1.0, True
            if seg["kind"] == "step" and seg["object"] == oi:
                # The demonstrator brings the acting object to the centre stage for the step (a cut in, a cut
                # back home at the end): its colour/shape then sit on the same grid cells in every video.
                dx, dy, scale, angle, visible = _step_state(seg["action"], t - seg["start"], size)
                dx += stage[0] - hx
                dy += stage[1] - hy
            elif seg["kind"] == "background" and seg["mode"] == "jitter":
                dx, dy = jitter[oi] * jitter_px
            if visible:
                _draw(frame, xs, ys, shape, rgb, hx + dx, hy + dy, radius * scale, angle)
        if seg["kind"] == "background" and seg["mode"] == "distractor" and seg.get("distractor"):
            d = seg["distractor"]
            q = (t - seg["start"]) / max(1e-6, seg["end"] - seg["start"])
            cx = (d["x0"] + (d["x1"] - d["x0"]) * q) * size
            cy = (d["y0"] + (d["y1"] - d["y0"]) * q) * size
            _draw(frame, xs, ys, d["shape"], grey, cx, cy, radius * 0.8, 0.0)
        if noise is not None:
            frame += noise * noise_std
        np.clip(frame, 0, 255, out=frame)
        out[f - start_frame] = (frame + 0.5).astype(np.uint8)
    return out


def encode_mp4(path: str | Path, frames: np.ndarray, fps: int, crf: int = 23, gop: int = 10,
               comment: str = "") -> Path:
    """Write RGB uint8 frames (n, H, W, 3) as H.264 yuv420p MP4, atomically (temp name, then os.replace).

    One encoder thread: corpus generation parallelises across videos, and x264 threads would oversubscribe.
    """
    import av

    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            if comment:
                container.metadata["comment"] = comment
            stream = container.add_stream(
                "libx264", rate=fps,
                options={"preset": "ultrafast", "crf": str(crf), "g": str(gop), "threads": "1"},
            )
            stream.width = frames.shape[2]
            stream.height = frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, fps)
            for i, arr in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                vf.pts = i
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def mp4_comment(path: str | Path) -> str | None:
    """The `comment` tag of an MP4 (our spec hash), or None if the file is missing or unreadable."""
    import av

    try:
        with av.open(str(path)) as c:
            return c.metadata.get("comment")
    except (OSError, av.error.FFmpegError):
        return None


def render_job(job: dict) -> dict:
    """Worker entry: render one long video (and the MSR-VTT clips cut from it) unless up to date on disk.

    job = {"spec": render spec, "path": str, "clips": [{"path": str, "start": s, "end": s}]}.
    Returns {"video_id", "rendered": bool, "clips_rendered": int}.
    """
    spec = job["spec"]
    fps = spec["fps"]
    h = spec_hash(spec)
    todo_video = mp4_comment(job["path"]) != h
    todo_clips = []
    for clip in job["clips"]:
        ch = spec_hash({"clip_of": h, "start": clip["start"], "end": clip["end"]})
        if mp4_comment(clip["path"]) != ch:
            todo_clips.append((clip, ch))
    if todo_video or todo_clips:
        frames = render_frames(spec)
        if todo_video:
            encode_mp4(job["path"], frames, fps, spec["crf"], spec["gop"], comment=h)
        for clip, ch in todo_clips:
            encode_mp4(clip["path"], frames[clip["start"] * fps:clip["end"] * fps], fps, spec["crf"], spec["gop"],
                       comment=ch)
    return {"video_id": spec["video_id"], "rendered": todo_video, "clips_rendered": len(todo_clips)}
