"""`vidlang preprocess`: decode videos, extract per-window features, clean narration (see preprocessing/runner.py).

    vidlang preprocess --videos DIR|LIST.txt --out OUT [--captions raw_caption.json] [--backbone thumbnail]
        [--weights PATH] [--fps 1] [--decoder pyav|torchcodec|decord] [--workers N] [--shard i/N] [--batch N]
        [--merge-sentences] [--opt key=value ...]

Exit status 0 even when some videos failed (they are listed in OUT/failures.jsonl); 2 for unusable arguments.
Under torchrun / accelerate launch each process takes shard (RANK, WORLD_SIZE) unless --shard is given.
"""

from __future__ import annotations

import argparse

from vidlang.errors import ConfigError


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = text.split("/")
        return int(i), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/N (e.g. 0/4), got {text!r}") from None


def _opt(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    import yaml

    return k.strip(), yaml.safe_load(v)  # "3" -> 3, "true" -> True, "a" -> "a"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidlang preprocess", description=__doc__.splitlines()[0])
    p.add_argument("--videos", required=True, help="folder of videos (searched recursively) or a text file of paths")
    p.add_argument("--out", required=True, help="output feature store directory")
    p.add_argument("--captions", default=None, help="HowTo100M raw_caption.json: write cleaned OUT/text/<id>.json")
    p.add_argument("--merge-sentences", action="store_true", help="merge cleaned ASR lines into sentences")
    p.add_argument("--backbone", default="thumbnail", help="backbone registry name (default: thumbnail)")
    p.add_argument("--weights", default=None, help="local weights file/folder for the backbone")
    p.add_argument("--opt", action="append", type=_opt, default=[], metavar="KEY=VALUE",
                   help="backbone option, repeatable (e.g. --opt frames=4)")
    p.add_argument("--fps", type=float, default=1.0, help="features per second (default 1, as HowTo100M S3D)")
    p.add_argument("--decoder", default="pyav",
                   help="pyav | torchcodec | decord (default pyav: fastest here and flat memory, see decoders.py)")
    p.add_argument("--workers", type=int, default=1, help="worker processes over videos (default 1)")
    p.add_argument("--shard", type=_shard, default=None, help="process shard i of N (i/N); default RANK/WORLD_SIZE")
    p.add_argument("--batch", type=int, default=16, help="feature windows per backbone call (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed usage + the error line
        return int(e.code or 0)
    from preprocessing.runner import run_corpus

    opts = dict(args.opt)
    if len(opts) != len(args.opt):
        raise ConfigError("--opt: a key is given twice")
    summary = run_corpus(
        args.videos, args.out, backbone=args.backbone, weights=args.weights, fps=args.fps, decoder=args.decoder,
        captions=args.captions, merge_sentences=args.merge_sentences, workers=args.workers, shard=args.shard,
        batch=args.batch, backbone_opts=opts or None, progress=not args.no_progress,
    )
    print(summary.line())
    if summary.failed:
        print(f"  {summary.failed} failure(s) listed in {args.out}/failures.jsonl, e.g. "
              f"{summary.failures[0]['video_id']}: {summary.failures[0]['reason']}")
    return 0
