"""GPU check of preprocessing: the `clip` backbone (ViT-B/16, 224 px, random weights in the published layout) with
``--device cuda`` beside the same run on the CPU, and torchcodec's CUDA decoder beside the CPU decoders when it loads.

    python tools/gpu_preprocess_check.py                       # 2-min 640x360 30 fps test video, ~1-3 min on a GPU
    python tools/gpu_preprocess_check.py --minutes 10 --cpu-minutes 1

Prints one table: frames/s (sampled frames per wall second) and x realtime for
1. pipeline, CPU backbone (on a ``--cpu-minutes`` cut of the video: frames/s does not depend on the length);
2. pipeline, ``--device cuda`` (PyAV decodes on the CPU, one chunk ahead of the backbone);
3. decode only, PyAV (CPU), the same sampled frames;
4. decode only, torchcodec on the GPU (NVDEC) with ``device="cuda"``, the same frame indices, if it loads
   (otherwise the reason is printed);
and the largest difference between CPU and GPU features of the same frames (float32 on both; cuDNN/cuBLAS sum in
another order, so expect ~1e-5, not 0). Needs a CUDA build of torch and vidlang installed (``make venv``);
nothing is downloaded: the weights are random, the video is generated with PyAV.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=2.0, help="test video length for the GPU runs")
    p.add_argument("--cpu-minutes", type=float, default=0.5, help="test video length for the CPU backbone run")
    p.add_argument("--batch", type=int, default=64, help="feature windows per backbone call")
    p.add_argument("--cache", default=str(REPO / "runs" / "bench_cache"))
    args = p.parse_args(argv)

    import torch

    from bench_preprocess import make_moving_shapes, random_weights
    from preprocessing.decoders import open_video, probe
    from preprocessing.runner import run_corpus
    from preprocessing.sampling import feature_frame_times
    from vidlang.data import FeatureStore

    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to check", file=sys.stderr)
        return 1
    gpu = torch.cuda.get_device_name(0)
    cache = Path(args.cache)
    long_v = make_moving_shapes(cache / f"shapes_640x360_30fps_{args.minutes:g}min.mp4", args.minutes, 640, 360)
    short_v = make_moving_shapes(cache / f"shapes_640x360_30fps_{args.cpu_minutes:g}min.mp4", args.cpu_minutes,
                                 640, 360)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = Path(tmp)
        weights = random_weights("clip", tmp)

        def pipeline(video: Path, device: str, out: Path) -> float:
            t0 = time.perf_counter()
            s = run_corpus([video], out, backbone="clip", weights=weights, fps=1.0, batch=args.batch,
                           device=device, progress=False)
            if device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            if s.failed:
                raise SystemExit(f"pipeline failed: {s.failures}")
            return dt

        n_long = feature_frame_times(probe(long_v).meta.duration, 1.0, 1).size
        n_short = feature_frame_times(probe(short_v).meta.duration, 1.0, 1).size
        pipeline(short_v, "cuda", tmp / "warm")  # CUDA context, cuDNN autotuning: not timed
        t_cpu = pipeline(short_v, "cpu", tmp / "cpu")
        t_gpu_short = pipeline(short_v, "cuda", tmp / "gpu_short")
        t_gpu = pipeline(long_v, "cuda", tmp / "gpu")
        rows.append(("pipeline, clip on the CPU", n_short, t_cpu, args.cpu_minutes))
        rows.append(("pipeline, clip with --device cuda", n_long, t_gpu, args.minutes))
        a, b = FeatureStore(tmp / "cpu"), FeatureStore(tmp / "gpu_short")
        diff = float(np.abs(np.asarray(a[a.ids()[0]]) - np.asarray(b[b.ids()[0]])).max())

        times = feature_frame_times(probe(long_v).meta.duration, 1.0, 1).reshape(-1)
        t0 = time.perf_counter()
        with open_video(long_v, "pyav") as r:
            for _ in r.frames_at(times, batch=args.batch):
                pass
        rows.append(("decode only, PyAV (CPU)", n_long, time.perf_counter() - t0, args.minutes))
        note = ""
        try:
            from torchcodec.decoders import VideoDecoder

            info = probe(long_v)
            idx = np.clip(np.searchsorted(info.pts, times + 1e-9, side="right") - 1, 0, len(info.pts) - 1)
            VideoDecoder(str(long_v), device="cuda").get_frames_at([0])  # load NVDEC once: not timed
            t0 = time.perf_counter()
            dec = VideoDecoder(str(long_v), device="cuda", seek_mode="exact")
            for s in range(0, len(idx), args.batch):
                dec.get_frames_at(idx[s:s + args.batch].tolist())
            torch.cuda.synchronize()
            rows.append(("decode only, torchcodec on the GPU (NVDEC)", n_long, time.perf_counter() - t0,
                         args.minutes))
        except Exception as e:  # noqa: BLE001 - report why the CUDA decoder is unavailable, keep the other rows
            note = f"torchcodec CUDA decoder unavailable: {type(e).__name__}: {str(e).splitlines()[0][:200]}"

    print(f"\ncommand: python tools/gpu_preprocess_check.py {' '.join(argv or sys.argv[1:])}")
    print(f"device: {gpu}; clip ViT-B/16 224 px (random weights), 1 frame per second of 640x360 30 fps H.264\n")
    print("| method | frames | seconds | frames/s | x realtime |")
    print("|---|---:|---:|---:|---:|")
    for name, n, t, minutes in rows:
        print(f"| {name} | {n} | {t:.2f} | {n / t:.1f} | {minutes * 60 / t:.1f} |")
    print(f"\nlargest |CPU - GPU| feature difference on the same frames: {diff:.2e}")
    if note:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
