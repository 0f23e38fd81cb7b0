"""Preprocessing throughput: vidlang's pipeline vs the decode-only bound vs an MMPT-style ffmpeg pipe.

    .venv/bin/python tools/bench_preprocess.py --repeats 3                 # 10-min 640x360 30 fps video
    .venv/bin/python tools/bench_preprocess.py --minutes 2 --repeats 5     # quicker
    .venv/bin/python tools/bench_preprocess.py --backbone clip --random-weights --minutes 1 --modes exact
    .venv/bin/python tools/bench_preprocess.py --backbone s3d_howto100m --random-weights --minutes 0.5 --modes exact

On the same file(s), all timed in this process, one after the other, ``--repeats`` times (the order rotates each
repeat, so no method always runs first; the table gives the median and the min-max spread of the wall time):

1. pipeline, ``--decode exact`` (the default): ``run_corpus`` (decode -> sample -> backbone -> .npy + manifest);
2. decode-only bound, exact: the same decoder returning the same sampled frames, no features, nothing written;
3. pipeline and bound with ``--decode scaled`` (the same frames, scaled down by the decoder for backbones that
   average them anyway), and its feature difference from the exact pipeline;
4. before: the pipeline as it was before the exact speed-ups (every frame decoded, decode not overlapped with the
   backbone, the thumbnail's float pooling with torch's default threads; same features as 1 to float32 rounding),
   for the before/after row;
5. MMPT-style baseline: ffmpeg (imageio-ffmpeg's static binary) pipes every frame at 30 fps as raw RGB, then the
   frames at the sampled times are picked and embedded in the same batches. MMPT holds the whole pipe output in
   memory; here it is consumed in chunks so the benchmark cannot exhaust RAM, and the memory MMPT would need is
   printed (computed, not allocated). Also timed without features.
The ratios printed are bound time / pipeline time (goal >= 0.80) and MMPT-style time / pipeline time (goal >= 3),
from the medians, with their spread over the repeats. CPU seconds (this process's threads plus children) are
printed beside wall seconds: on a shared machine they vary less. Then the pipeline runs again in a child process
whose peak RSS is read, on the long video and on a short one: equal peaks show memory does not grow with length.

``--random-weights`` builds the real backbones from random weights in their published layouts (CLIP ViT-B/16 at
224 px, S3D-G of MIL-NCE), for frames/s and the share of time that is decode. Test videos (moving shapes, scene
changes every 20 s, H.264 by libx264 "veryfast") are generated once with PyAV into --cache.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
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


# -- random-weight backbones in the published layouts ---------------------------------------------------------------
def random_weights(backbone: str, folder: Path) -> Path:
    """Weights of the published architecture with random values (no download exists offline)."""
    import torch

    torch.manual_seed(0)
    if backbone == "clip":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        # openai/clip-vit-base-patch16: width 768, 12 layers, 12 heads, patch 16, 224 px, projection 512
        cfg = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, image_size=224, patch_size=16, projection_dim=512)
        out = folder / "clip-vit-b16-random"
        CLIPVisionModelWithProjection(cfg).save_pretrained(out)
        return out
    if backbone == "s3d_howto100m":
        from preprocessing.backbones.s3d import S3DG

        out = folder / "s3d_howto100m-random.pth"
        torch.save(S3DG().state_dict(), out)
        return out
    raise SystemExit(f"--random-weights: no published layout known for {backbone!r}")


# -- timing helpers ---------------------------------------------------------------------------------------------
def cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children) of fn()."""
    c0, t0 = cpu_now(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_now() - c0


def sampled_times(path: Path, fps: float, frames_per_feature: int) -> tuple[np.ndarray, float]:
    from preprocessing.decoders import probe
    from preprocessing.sampling import feature_frame_times

    meta = probe(path).meta
    return feature_frame_times(meta.duration, fps, frames_per_feature).reshape(-1), meta.duration


# -- the measured methods ---------------------------------------------------------------------------------------
def run_pipeline(videos, args, bb, weights, mode: str, keep: Path | None = None) -> None:
    from preprocessing.runner import run_corpus

    out = keep if keep is not None else Path(tempfile.mkdtemp(prefix="bench_pre_"))
    try:
        s = run_corpus(videos, out, backbone=args.backbone, weights=weights, fps=args.fps, decoder=args.decoder,
                       batch=args.batch, progress=False, decode=mode)
        if s.failed:
            raise SystemExit(f"pipeline failed on {s.failures}")
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)


def run_before(videos, args, bb, weights) -> None:
    """The pipeline as it was before the exact speed-ups: every frame decoded, decode in the calling thread, the
    thumbnail's float pooling with torch's default threads (same features, to float32 rounding)."""
    import preprocessing.backbones.thumbnail as thumb
    import preprocessing.decoders as dec
    import preprocessing.runner as runner

    saved = dec.DISCARD_UNPICKED, runner.PREFETCH_DEPTH, thumb.INTEGER_POOLING, thumb.ThumbnailBackbone.torch_threads
    dec.DISCARD_UNPICKED, runner.PREFETCH_DEPTH, thumb.INTEGER_POOLING = False, 0, False
    thumb.ThumbnailBackbone.torch_threads = None
    try:
        run_pipeline(videos, args, bb, weights, "exact")
    finally:
        (dec.DISCARD_UNPICKED, runner.PREFETCH_DEPTH, thumb.INTEGER_POOLING,
         thumb.ThumbnailBackbone.torch_threads) = saved


def run_decode_only(videos, args, bb, mode: str) -> None:
    from preprocessing.decoders import open_video

    f, size = bb.frames_per_feature(args.fps), bb.frame_size
    for v in videos:
        times, _ = sampled_times(v, args.fps, f)
        with open_video(v, args.decoder) as r:
            dsize = bb.decoder_size(r.meta.height, r.meta.width) if mode != "exact" else None
            for _ in r.frames_at(times, batch=args.batch * f, size=size, decoder_size=dsize):
                pass


def run_ffmpeg_pipe(videos, args, bb, with_features: bool) -> int:
    """MMPT-style: every frame at 30 fps as raw RGB through a pipe, then subsample (and, with features, embed
    the picked frames in the same batches as the pipeline). Returns bytes piped."""
    import imageio_ffmpeg
    import torch

    from preprocessing.decoders import probe, resize_frames
    from preprocessing.runner import torch_threads

    f, size = bb.frames_per_feature(args.fps), bb.frame_size
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    total = 0
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
            if picked and (force or len(picked) >= args.batch * f) and with_features:
                x = resize_frames(np.stack(picked), size)
                with torch.inference_mode(), torch_threads(getattr(bb, "torch_threads", None)):
                    bb(torch.from_numpy(x).reshape(-1, f, *x.shape[1:]))  # as the pipeline runs it
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
    return total


def feature_difference(videos, args, bb, weights, mode: str) -> tuple[float, float, float]:
    """(max, mean) |mode - exact| over all features of the first benchmark video, and the features' std."""
    from vidlang.data import FeatureStore

    with tempfile.TemporaryDirectory(prefix="bench_diff_") as d:
        a, b = Path(d) / "exact", Path(d) / mode
        run_pipeline(videos[:1], args, bb, weights, "exact", keep=a)
        run_pipeline(videos[:1], args, bb, weights, mode, keep=b)
        sa, sb = FeatureStore(a), FeatureStore(b)
        x, y = np.asarray(sa[sa.ids()[0]]), np.asarray(sb[sb.ids()[0]])
        d = np.abs(x - y)
        return float(d.max()), float(d.mean()), float(x.std())


_CHILD = """
import sys, tempfile
sys.path.insert(0, sys.argv[1])
from preprocessing.runner import run_corpus
weights = None if sys.argv[6] == "-" else sys.argv[6]
with tempfile.TemporaryDirectory() as out:
    run_corpus(sys.argv[7:], out, backbone=sys.argv[2], fps=float(sys.argv[3]), decoder=sys.argv[4],
               batch=int(sys.argv[5]), weights=weights, progress=False)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")]
print(hwm[0] if hwm else -1)
"""


def child_peak_rss_mb(videos, args, weights) -> float:
    """Peak resident memory (VmHWM, MiB) of the pipeline run in a fresh child process (ru_maxrss of a child is
    never below the parent's size at the fork on Linux, VmHWM is the child's own)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), args.backbone, str(args.fps), args.decoder,
                          str(args.batch), str(weights or "-"), *map(str, videos)],
                         check=True, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return int(out.stdout.strip().splitlines()[-1]) / 1024


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
    p.add_argument("--weights", default=None, help="backbone weights (see also --random-weights)")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights in the published layout (clip: ViT-B/16 224 px; s3d_howto100m)")
    p.add_argument("--decoder", default="pyav")
    p.add_argument("--fps", type=float, default=1.0, help="features per second")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1, help="time every method this many times (default 1)")
    p.add_argument("--modes", default="exact,scaled", help="--decode modes to time (default both)")
    p.add_argument("--no-before", action="store_true", help="skip the 'before' pipeline row")
    p.add_argument("--no-baseline", action="store_true", help="skip the ffmpeg-pipe baseline")
    p.add_argument("--no-rss", action="store_true", help="skip the child-process memory measurements")
    args = p.parse_args(argv)

    import torch

    from preprocessing.backbones import build_backbone

    tmp_root = Path(tempfile.mkdtemp(prefix="bench_weights_"))
    weights = args.weights
    if args.random_weights:
        weights = str(random_weights(args.backbone, tmp_root))
    cache = Path(args.cache)
    long_v = make_moving_shapes(cache / f"shapes_{args.width}x{args.height}_30fps_{args.minutes:g}min.mp4",
                                args.minutes, args.width, args.height)
    videos = [long_v]
    if args.copies > 1:  # distinct ids for the runner: hard links (or copies) of the same file
        videos = []
        for i in range(args.copies):
            dst = tmp_root / f"copy{i}.mp4"
            try:
                os.link(long_v, dst)
            except OSError:
                shutil.copy(long_v, dst)
            videos.append(dst)
    bb = build_backbone(args.backbone, weights=weights)
    f, size = bb.frames_per_feature(args.fps), bb.frame_size
    _, duration = sampled_times(long_v, args.fps, f)
    video_s = duration * len(videos)
    n_frames = len(sampled_times(long_v, args.fps, f)[0]) * len(videos)

    # Warm-up (untimed): imports and library initialisation must not count against whichever method runs first.
    from preprocessing.decoders import open_video
    from preprocessing.runner import run_corpus  # noqa: F401

    with open_video(long_v, args.decoder) as r:
        list(r.frames_at(np.array([0.0, 1.0, 2.0]), size=size))

    methods: dict[str, callable] = {}
    selections = [m for m in args.modes.split(",") if m]
    for sel in selections:
        methods[f"pipeline, --decode {sel}"] = lambda sel=sel: run_pipeline(videos, args, bb, weights, sel)
        methods[f"decode-only bound, --decode {sel}"] = lambda sel=sel: run_decode_only(videos, args, bb, sel)
    if not args.no_before:
        methods["before: every frame decoded, no decode thread"] = lambda: run_before(videos, args, bb, weights)
    piped = [0]
    if not args.no_baseline:
        def pipe_feats():
            piped[0] = run_ffmpeg_pipe(videos, args, bb, True)
        methods["MMPT-style ffmpeg pipe + same features"] = pipe_feats
        methods["MMPT-style ffmpeg pipe, decode only (all frames @30 fps, rgb24)"] = \
            lambda: run_ffmpeg_pipe(videos, args, bb, False)

    names = list(methods)
    walls: dict[str, list[float]] = {k: [] for k in names}
    cpus: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no method always first
        for name in order:
            w, c = timed(methods[name])
            walls[name].append(w)
            cpus[name].append(c)
            print(f"  repeat {r + 1}/{args.repeats}: {name}: {w:.2f} s wall, {c:.2f} s CPU", file=sys.stderr,
                  flush=True)

    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"\ncommand: {' '.join(['python', 'tools/bench_preprocess.py', *(argv or sys.argv[1:])])}")
    print(f"input: {len(videos)} x {duration / 60:.1f} min {args.width}x{args.height} 30 fps H.264; {args.backbone}"
          f"{' (random weights)' if args.random_weights else ''} at {args.fps:g} feature/s, {f} frame(s) each, "
          f"frame size {size or 'native'}; decoder {args.decoder}; torch threads {torch.get_num_threads()}; "
          f"{os.cpu_count()} CPUs; {args.repeats} repeat(s), median [min-max]\n")
    print("| method | wall s | CPU s | x realtime | frames/s |")
    print("|---|---:|---:|---:|---:|")
    for k in names:
        spread = f" [{min(walls[k]):.2f}-{max(walls[k]):.2f}]" if args.repeats > 1 else ""
        rate = n_frames / med[k]
        rate_s = f"{rate:.0f}" if rate >= 100 else f"{rate:.2f}"
        print(f"| {k} | {med[k]:.2f}{spread} | {statistics.median(cpus[k]):.2f} | {video_s / med[k]:.1f} | "
              f"{rate_s} |")

    def ratio(num: str, den: str) -> str:
        if num not in walls or den not in walls:
            return "-"
        per = [a / b for a, b in zip(walls[num], walls[den])]
        spread = f" [{min(per):.2f}-{max(per):.2f}]" if len(per) > 1 else ""
        return f"{med[num] / med[den]:.2f}{spread}"

    print("\n| --decode | bound / pipeline (goal >= 0.80) | MMPT-style / pipeline (goal >= 3.0) | before / pipeline | "
          "features vs exact: max, mean abs difference (feature std) |")
    print("|---|---:|---:|---:|---|")
    mmpt = "MMPT-style ffmpeg pipe + same features"
    before = "before: every frame decoded, no decode thread"
    for sel in selections:
        pipe = f"pipeline, --decode {sel}"
        diff = "identical (same frames, same code)"
        if sel != "exact":
            mx, mean, std = feature_difference(videos, args, bb, weights, sel)
            diff = f"{mx:.3f}, {mean:.4f} ({std:.3f})"
        print(f"| {sel} | {ratio(f'decode-only bound, --decode {sel}', pipe)} | {ratio(mmpt, pipe)} | "
              f"{ratio(before, pipe)} | {diff} |")
    for sel in selections:
        share = med[f"decode-only bound, --decode {sel}"] / med[f"pipeline, --decode {sel}"]
        print(f"decode share of the --decode {sel} pipeline (bound / pipeline): {share:.0%}")
    if piped[0]:
        print(f"\nMMPT-style memory: the raw RGB pipe output of one video is "
              f"{piped[0] / len(videos) / 2**30:.1f} GiB (held whole in memory by MMPT's loader; not allocated here)")
    if not args.no_rss:
        short_v = make_moving_shapes(cache / f"shapes_{args.width}x{args.height}_30fps_{args.short_minutes:g}min.mp4",
                                     args.short_minutes, args.width, args.height)
        hl, hs = child_peak_rss_mb([long_v], args, weights), child_peak_rss_mb([short_v], args, weights)
        print(f"\npeak RSS of the pipeline (child process, VmHWM): {hl:.0f} MiB on the {args.minutes:g}-min video, "
              f"{hs:.0f} MiB on the {args.short_minutes:g}-min video")
    shutil.rmtree(tmp_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
