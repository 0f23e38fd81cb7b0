"""The independent generator's corpus for `vidlang study --public`, in chunks, at the low end of its geometry.

    python tools/study_independent_corpus.py OUT --chunks 14 [--videos-per-chunk 1000] [--first-seed 1000]
    vidlang study --public indep=OUT --max-eval-videos 560 ...

Each chunk is `tools/independent_corpus/make_corpus.py OUT/c<seed> --videos N --clips 0 --seed <seed>` with one
change: every long video is 64 pixels wide (48 or 36 high, by its drawn aspect) at 4 frames per second, the
smallest size and rate the generator draws (widths 64-112, 4-8 fps), so rendering and decoding cost about half.
The generator's random streams are untouched (its geometry function still draws its three numbers, whose size and
rate are then replaced), so the world, steps, narration and noise follow the generator's own distributions;
durations are rounded to whole frames at 4 fps. The generator writes its annotations after its last video, so a
chunk with annotations is finished and skipped on a rerun; an unfinished one is generated again. Chunks use
different seeds, so their video ids differ; `vidlang study` merges them (vidlang.study.merge_public_corpora).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

GENERATOR = Path(__file__).resolve().parent / "independent_corpus"
WIDTH, FPS = 64, 4


def small_geometry(original):
    """video_geometry(rng) -> (64, 48 or 36, 4), drawing what the original draws."""

    def geometry(rng):
        w, h, _ = original(rng)
        return WIDTH, (48 if h * 16 > w * 10 else 36), FPS  # 4:3 -> 64x48, 16:9 -> 64x36

    return geometry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--chunks", type=int, required=True)
    ap.add_argument("--videos-per-chunk", type=int, default=1000)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(GENERATOR))
    import make_corpus

    make_corpus.video_geometry = small_geometry(make_corpus.video_geometry)
    for seed in range(args.first_seed, args.first_seed + args.chunks):
        chunk = Path(args.out) / f"c{seed}"
        if (chunk / "annotations" / "youcookii_annotations_trainval.json").exists():
            print(f"chunk {chunk}: done", flush=True)
            continue
        t0 = time.perf_counter()
        rc = make_corpus.main([str(chunk), "--videos", str(args.videos_per_chunk), "--clips", "0", "--seed", str(seed),
                               "--workers", str(args.workers), "--force"])
        if rc:
            return rc
        print(f"chunk {chunk}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
