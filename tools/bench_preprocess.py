"""Preprocessing throughput: vidlang's pipeline vs the decode-only bound vs an MMPT-style ffmpeg pipe.

    .venv/bin/python tools/bench_preprocess.py                      # 10-min 640x360 30 fps video, ~3-5 min
    .venv/bin/python tools/bench_preprocess.py --minutes 2          # quicker
    .venv/bin/python tools/bench_preprocess.py --decoder torchcodec --fps 2 --no-baseline

On the same file(s), all timed in this process, one after the other:
1. pipeline: ``run_corpus`` (decode -> sample -> backbone -> .npy + manifest), default thumbnail backbone/decoder;
2. decode-only bound: the same decoder returning the same sampled frames, no features, nothing written;
3. MMPT-style baseline: ffmpeg (imageio-ffmpeg's static binary) pipes every frame at 30 fps as raw RGB, then the
   frames at the sampled times are picked. MMPT holds the whole pipe output in memory; here it is consumed in
   chunks so the benchmark cannot exhaust RAM, and the memory MMPT would need is printed (computed, not allocated).
Then the pipeline runs again in a child process whose peak RSS (ru_maxrss) is read, on the long video and on a
short one: equal peaks show memory does not grow with video length.

Test videos (moving shapes, scene changes every 20 s, H.264) are generated once with PyAV into --cache.
Timings on a shared 2-core CPU machine are noisy: compare ratios within one run, not numbers across machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vidlang.io import atomic_path  # noqa: E402  (after the repo is on the path)


# -- test video ---------------------------------------------------------------------------------------------------
def make_moving_shapes(path: Path, minutes: float, width: int, height: int, fps: int = 30, seed: int = 0) -> Path:
    """H.264 video of coloured shapes moving over a gradient that changes every 20 s; written atomically."""
    import av

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    n = int(round(minutes * 60 * fps))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    grad = (xx / width)[..., None] * 0.6 + (yy / height)[..., None] * 0.4
    shapes = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-4, 4), rng.uniform(-3, 3),
               int(rng.integers(20, 80)), rng.integers(0, 256, 3).astype(np.uint8)) for _ in range(6)]
    t0 = time.perf_counter()
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        bg = None
        for k in range(n):
            if k % (20 * fps) == 0:  # a new "scene"
                colour = rng.uniform(40, 220, 3).astype(np.float32)
                bg = np.clip(grad * colour, 0, 255).astype(np.uint8)
            img = bg.copy()
            for x0, y0, vx, vy, r, col in shapes:
                x = int((x0 + vx * k) % (width - r))
                y = int((y0 + vy * k) % (height - r))
                img[y:y + r, x:x + r] = col
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    print(f"generated {path} ({n} frames, {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return path


# -- the three measurements ---------------------------------------------------------------------------------------
def sampled_times(path: Path, fps: float, frames_per_feature: int) -> tuple[np.ndarray, float]:
    from preprocessing.decoders import probe
    from preprocessing.sampling import feature_frame_times

    meta = probe(path).meta
    return feature_frame_times(meta.duration, fps, frames_per_feature).reshape(-1), meta.duration


def time_pipeline(videos, args) -> float:
    from preprocessing.runner import run_corpus

    with tempfile.TemporaryDirectory(prefix="bench_pre_") as out:
        t0 = time.perf_counter()
        s = run_corpus(videos, out, backbone=args.backbone, fps=args.fps, decoder=args.decoder, batch=args.batch,
                       progress=False)
        dt = time.perf_counter() - t0
    if s.failed:
        raise SystemExit(f"pipeline failed on {s.failures}")
    return dt


def time_decode_only(videos, args, f: int, size) -> float:
    from preprocessing.decoders import open_video

    t0 = time.perf_counter()
    for v in videos:
        times, _ = sampled_times(v, args.fps, f)
        with open_video(v, args.decoder) as r:
            for _ in r.frames_at(times, batch=args.batch * f, size=size):
                pass
    return time.perf_counter() - t0


def time_ffmpeg_pipe(videos, args, f: int, size, backbone=None) -> tuple[float, int]:
    """MMPT-style: every frame at 30 fps as raw RGB through a pipe, then subsample (and, with ``backbone``, embed
    the picked frames in the same batches as the pipeline). Returns (seconds, bytes piped)."""
    import imageio_ffmpeg
    import torch

    from preprocessing.decoders import probe, resize_frames

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    total = 0
    t0 = time.perf_counter()
    for v in videos:
        meta = probe(v).meta
        times, _ = sampled_times(v, args.fps, f)
        want = np.clip(np.floor(times * 30 + 1e-9).astype(np.int64), 0, None)  # frame index at 30 fps
        frame_bytes = meta.width * meta.height * 3
        cmd = [exe, "-v", "error", "-i", str(v), "-vf", "fps=30", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=frame_bytes * 8)
        picked, k, j, last = [], 0, 0, None

        def flush(force=False):
            nonlocal picked
            if picked and (force or len(picked) >= args.batch * f) and backbone is not None:
                x = resize_frames(np.stack(picked), size)
                with torch.inference_mode():
                    backbone(torch.from_numpy(x).reshape(-1, f, *x.shape[1:]))
            if force or len(picked) >= args.batch * f:
                picked = []

        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            total += frame_bytes
            while j < len(want) and want[j] == k:
                last = np.frombuffer(buf, np.uint8).reshape(meta.height, meta.width, 3)
                picked.append(last)
                j += 1
                flush()
            k += 1
        proc.wait()
        picked.extend([last] * (len(want) - j))  # times past the last frame repeat it, as in our sampler
        flush(force=True)
    return time.perf_counter() - t0, total


_CHILD = """
import sys, tempfile
sys.path.insert(0, sys.argv[1])
from preprocessing.runner import run_corpus
with tempfile.TemporaryDirectory() as out:
    run_corpus(sys.argv[6:], out, backbone=sys.argv[2], fps=float(sys.argv[3]), decoder=sys.argv[4],
               batch=int(sys.argv[5]), progress=False)
import resource
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, hwm[0] if hwm else -1)
"""


def child_peak_rss_mb(videos, args) -> tuple[float, float]:
    """Run the pipeline in a fresh child process; its peak resident memory in MiB as (VmHWM, ru_maxrss).

    VmHWM (the child's own address space, /proc/self/status) is the number to read: Linux carries ru_maxrss over
    fork+exec, so a child's ru_maxrss is never below the parent's resident size at the fork (here, the benchmark
    process after the baseline ran).
    """
    out = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), args.backbone, str(args.fps), args.decoder,
                          str(args.batch), *map(str, videos)],
                         check=True, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    maxrss_kb, hwm_kb = map(int, out.stdout.strip().splitlines()[-1].split())
    return hwm_kb / 1024, maxrss_kb / 1024


# -- main -----------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the long test video (default 10)")
    p.add_argument("--short-minutes", type=float, default=1.0, help="short video for the memory comparison")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--copies", type=int, default=1, help="process the long video this many times (as a corpus)")
    p.add_argument("--cache", default=str(REPO / "runs" / "bench_cache"), help="where test videos are kept")
    p.add_argument("--backbone", default="thumbnail")
    p.add_argument("--decoder", default="pyav")
    p.add_argument("--fps", type=float, default=1.0, help="features per second")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--no-baseline", action="store_true", help="skip the ffmpeg-pipe baseline")
    p.add_argument("--no-rss", action="store_true", help="skip the child-process memory measurements")
    args = p.parse_args(argv)

    from preprocessing.backbones import build_backbone

    cache = Path(args.cache)
    long_v = make_moving_shapes(cache / f"shapes_{args.width}x{args.height}_30fps_{args.minutes:g}min.mp4",
                                args.minutes, args.width, args.height)
    videos = [long_v]
    if args.copies > 1:  # distinct ids for the runner: hard links (or copies) of the same file
        tmpd = Path(tempfile.mkdtemp(prefix="bench_copies_"))
        videos = []
        for i in range(args.copies):
            dst = tmpd / f"copy{i}.mp4"
            try:
                os.link(long_v, dst)
            except OSError:
                shutil.copy(long_v, dst)
            videos.append(dst)
    bb = build_backbone(args.backbone)
    f, size = bb.frames_per_feature(args.fps), bb.frame_size
    _, duration = sampled_times(long_v, args.fps, f)
    video_s = duration * len(videos)

    # Warm-up (untimed): imports and library initialisation must not count against whichever method runs first.
    from preprocessing.decoders import open_video
    from preprocessing.runner import run_corpus  # noqa: F401

    with open_video(long_v, args.decoder) as r:
        list(r.frames_at(np.array([0.0, 1.0, 2.0]), size=size))

    rows = []
    t = time_pipeline(videos, args)
    rows.append((f"pipeline ({args.backbone}, {args.decoder})", t))
    t = time_decode_only(videos, args, f, size)
    rows.append((f"decode-only bound ({args.decoder}, same frames)", t))
    piped = 0
    if not args.no_baseline:
        t, piped = time_ffmpeg_pipe(videos, args, f, size, backbone=bb)
        rows.append((f"MMPT-style ffmpeg pipe + same features ({args.backbone})", t))
        t, _ = time_ffmpeg_pipe(videos, args, f, size)
        rows.append(("MMPT-style ffmpeg pipe, decode only (all frames @30 fps, rgb24)", t))

    base = rows[0][1]
    print(f"\ncommand: {' '.join([Path(sys.executable).name, 'tools/bench_preprocess.py', *(argv or sys.argv[1:])])}")
    print(f"input: {len(videos)} x {duration / 60:.1f} min {args.width}x{args.height} 30 fps H.264; features at "
          f"{args.fps:g}/s, {f} frames each, frame size {size or 'native'}; {os.cpu_count()} CPUs\n")
    print("| method | seconds | videos/s | x realtime | time / pipeline time |")
    print("|---|---:|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {len(videos) / t:.3f} | {video_s / t:.1f} | {t / base:.2f} |")
    if piped:
        print(f"\nMMPT-style memory: the raw RGB pipe output of one video is "
              f"{piped / len(videos) / 2**30:.1f} GiB (held whole in memory by MMPT's loader; not allocated here)")
    if not args.no_rss:
        short_v = make_moving_shapes(cache / f"shapes_{args.width}x{args.height}_30fps_{args.short_minutes:g}min.mp4",
                                     args.short_minutes, args.width, args.height)
        (hwm_long, rss_long), (hwm_short, rss_short) = child_peak_rss_mb([long_v], args), child_peak_rss_mb([short_v], args)
        print(f"\npeak RSS of the pipeline (child process; VmHWM, ru_maxrss in brackets): {hwm_long:.0f} MiB "
              f"({rss_long:.0f}) on the {args.minutes:g}-min video, {hwm_short:.0f} MiB ({rss_short:.0f}) on the "
              f"{args.short_minutes:g}-min video; torch alone takes ~690 MiB here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
