"""`vidlang preprocess`: decode videos, extract per-window features, clean narration (see preprocessing/runner.py).

    vidlang preprocess --videos DIR|LIST.txt|VIDEO --out OUT [--captions raw_caption.json] [--backbone thumbnail]
        [--weights PATH] [--fps 1] [--decoder pyav|torchcodec|decord] [--decode exact|scaled] [--workers N]
        [--shard i/N] [--batch N] [--device cpu|cuda] [--merge-sentences] [--opt key=value ...]
        [--executor local|ray|slurm] [--address auto] [--slurm key=value ...]
    vidlang preprocess verify OUT [--videos DIR] [--quick] [--missing-list FILE] [--remove-bad]
    vidlang preprocess import --features DIR --fps 1 --out OUT [--captions raw_caption.json] [--copy]

Exit status 0 even when some videos failed (they are listed in OUT/failures.jsonl); 2 for unusable arguments.
`verify` exits 0 when the store is complete and consistent, 1 when it lists problems.
Under torchrun / accelerate launch each process takes shard (RANK, WORLD_SIZE) unless --shard is given.
"""

from __future__ import annotations

import argparse
import sys

from vidlang.errors import ConfigError, VidlangError


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

    try:
        return k.strip(), yaml.safe_load(v)  # "3" -> 3, "true" -> True, "a" -> "a"
    except yaml.YAMLError:
        return k.strip(), v


def _fps(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidlang preprocess", description=__doc__.splitlines()[0],
                                epilog="subcommands: `vidlang preprocess verify -h`, `vidlang preprocess import -h`")
    p.add_argument("--videos", required=True,
                   help="folder of videos (searched recursively), one video file, or a text file of paths")
    p.add_argument("--out", required=True, help="output feature store directory")
    p.add_argument("--captions", default=None, help="HowTo100M raw_caption.json: write cleaned OUT/text/<id>.json")
    p.add_argument("--merge-sentences", action="store_true", help="merge cleaned ASR lines into sentences")
    p.add_argument("--backbone", default="thumbnail", help="backbone registry name (default: thumbnail)")
    p.add_argument("--weights", default=None, help="local weights file/folder for the backbone")
    p.add_argument("--opt", action="append", type=_opt, default=[], metavar="KEY=VALUE",
                   help="backbone option, repeatable (e.g. --opt frames=4)")
    p.add_argument("--fps", type=_fps, default=1.0,
                   help="features per second, 0 < fps <= 60 (default 1, as HowTo100M S3D)")
    p.add_argument("--decoder", default="pyav",
                   help="pyav | torchcodec | decord (default pyav: fastest here and flat memory, see decoders.py)")
    p.add_argument("--decode", default="exact", choices=("exact", "scaled"),
                   help="exact (default): the frame shown at each sampled time, native size; scaled: the same "
                        "frames scaled down by the decoder for backbones that average them anyway (thumbnail), "
                        "features within a fraction of a grey level; pyav only")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes over videos (local), or CPUs of the local Ray cluster (default 1)")
    p.add_argument("--shard", type=_shard, default=None, help="process shard i of N (i/N); default RANK/WORLD_SIZE")
    p.add_argument("--batch", type=int, default=16, help="feature windows per backbone call (default 16)")
    p.add_argument("--device", default="cpu", help="torch device of the backbone: cpu (default) or cuda")
    p.add_argument("--executor", default="local", choices=("local", "ray", "slurm"),
                   help="local (default): this machine; ray: videos as Ray tasks; slurm: --shard jobs via submitit")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (e.g. auto); default: start a local Ray with --workers CPUs")
    p.add_argument("--slurm", action="append", type=_opt, default=[], metavar="KEY=VALUE",
                   help="submitit/Slurm setting, repeatable: jobs=N (shards), partition, time (minutes), cpus, "
                        "mem_gb, array_parallelism, retries, folder, cluster (slurm|local)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "verify":
        from preprocessing.verify import main as verify_main

        return _guard(verify_main, argv[1:])
    if argv and argv[0] == "import":
        from preprocessing.importer import main as import_main

        return _guard(import_main, argv[1:])
    return _guard(_extract_main, argv)


def _guard(fn, argv) -> int:
    """Run a subcommand; an OSError the code did not anticipate still becomes one line (the dispatcher prints
    VidlangError as `vidlang preprocess: error: ...`, exit 2; `vidlang --debug` keeps the traceback)."""
    try:
        return fn(argv)
    except VidlangError:
        raise
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        raise VidlangError(f"{where}{e.strerror or e}") from e


def _extract_main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed usage + the error line
        return int(e.code or 0)
    from preprocessing.runner import run_corpus

    opts = dict(args.opt)
    if len(opts) != len(args.opt):
        raise ConfigError("--opt: a key is given twice")
    slurm = dict(args.slurm)
    if len(slurm) != len(args.slurm):
        raise ConfigError("--slurm: a key is given twice")
    if slurm and args.executor != "slurm":
        raise ConfigError("--slurm settings need --executor slurm")
    if args.address is not None and args.executor != "ray":
        raise ConfigError("--address needs --executor ray")
    summary = run_corpus(
        args.videos, args.out, backbone=args.backbone, weights=args.weights, fps=args.fps, decoder=args.decoder,
        captions=args.captions, merge_sentences=args.merge_sentences, workers=args.workers, shard=args.shard,
        batch=args.batch, backbone_opts=opts or None, progress=not args.no_progress, executor=args.executor,
        device=args.device, decode=args.decode, ray_address=args.address, slurm=slurm or None,
    )
    if summary.took_over:
        h = summary.took_over
        print(f"note: took over the lock of a run that ended without releasing it (pid {h.get('pid', '?')} on "
              f"{h.get('host', '?')}, since {h.get('since', '?')})", file=sys.stderr)
    print(summary.line())
    if summary.failed:
        print(f"  {summary.failed} failure(s) listed in {args.out}/failures.jsonl, e.g. "
              f"{summary.failures[0]['video_id']}: {summary.failures[0]['reason']}")
    for line in summary.failures_of_jobs[:5]:
        print(f"  {line}")
    return 0
