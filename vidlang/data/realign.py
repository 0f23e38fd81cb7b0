"""`vidlang align`: realign noisy narration with a trained model and write it back in HowTo100M caption format.

    vidlang align --checkpoint CKPT --features DIR --captions raw_caption.json --out realigned.json
                  [--method dp|prior|ot|ot-clean] [--drop-rule video-z|video-frac|global-frac|none]
                  [--ground-truth ground_truth.json|htm_align.json [--splits splits.json] [--report report.json]]

For every video present in both the caption file and the feature store, each line's similarity to the video's
seconds is smoothed over `--smooth` seconds and the line is moved to the second chosen by the aligner
(`--method dp`, default: `vidlang.eval.alignment.align_lines_dp`, content z-score + a time prior flat inside the
line's own [start, end] with Laplace tails, lines kept in narration order unless leaving it pays more than
`--skip-penalty`; `prior`: lines aligned independently; `ot`: joint OT with the prompt bucket). Each line keeps
its duration (clipped to the video). Defaults: `vidlang.eval.alignment.REALIGN_PARAMS` (chosen on training
videos of two generators; a corpus without ground truth has nothing to tune them on).

Dropping unalignable lines is decided inside each video, so videos the model was trained on and new videos are
treated alike (a model scores the lines of its training videos higher; one threshold over the whole file would
drop mostly the new videos' lines). A line's alignability (`--drop-score contrast`, default) is its best
similarity in its own video minus its mean similarity over a reference sample of the corpus's seconds
(`peak_over_baseline`); `--drop-rule video-z` (default) drops a line more than `--drop-z` robust standard
deviations below its video's median, `video-frac` the `--drop-frac` least alignable lines of each video,
`global-frac` the `--drop-frac` least alignable lines of the whole file (for comparison only). Giving
`--drop-frac` alone selects `video-frac`.

`--method ot-clean` writes OT-cleaned narration (e.g. for COSMO's interleaved documents, which read this caption
file): the transport plan with Norton's prompt bucket re-times each line to the seconds it sends its mass to and
drops the lines it sends to the bucket (`vidlang.eval.alignment.ot_clean_lines`); a line's level against the
bucket is its alignability standardised in its video, and the bucket sits at `-drop-z`.

With `--ground-truth` (the synthetic corpus's ground_truth.json, or HTM-Align's htm_align.json whose ASR times
come from `--captions`), the realignment is scored: recall = share of relevant lines whose realigned midpoint
lies inside their true interval (a dropped relevant line is a miss), next to the raw timestamps on the same
lines; relevant lines kept; irrelevant lines dropped. With `--splits` the figures are also given per split
(e.g. the model's training videos vs the videos it has not seen).

Captions are cleaned first (vidlang.datasets.narration.clean_captions, as `vidlang preprocess` does). Output
lines are sorted by start time; the file feeds training directly. Videos of the caption file without features
are left out and counted in the summary.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidlang.errors import FormatError, VidlangError
from vidlang.eval import alignment as al
from vidlang.io import atomic_write_json

METHODS = ("dp", "prior", "ot", "ot-clean")
DROP_SCORES = ("contrast", "max_sim", "aligner")
REFERENCE_VIDEOS = 64  # videos whose seconds form the baseline of the contrast score


@dataclass
class VideoRealignment:
    """One video's realigned lines, in the order of the cleaned input lines."""

    lines: list  # cleaned input CaptionLines
    start: np.ndarray  # (L,) new start (s)
    end: np.ndarray  # (L,) new end (s)
    kept: np.ndarray  # (L,) bool
    score: np.ndarray  # (L,) alignability used by the drop rule


def reference_embedding(embedder, store, video_ids: list[str], max_videos: int = REFERENCE_VIDEOS) -> torch.Tensor:
    """Mean second embedding over up to `max_videos` videos spread evenly over the sorted ids. Shapes: -> (D,).

    The baseline of a line's contrast score is its text embedding dotted with this vector, i.e. its mean
    similarity over these seconds (every second weighted equally).
    """
    ids = sorted(video_ids)
    if not ids:
        raise VidlangError("no video to build the reference sample from")
    pick = [ids[int(i)] for i in np.unique(np.linspace(0, len(ids) - 1, min(max_videos, len(ids))).round())]
    total, count = None, 0
    for vid in pick:
        se = embedder.embed_seconds(store[vid], store.fps).double()
        total = se.sum(dim=0) if total is None else total + se.sum(dim=0)
        count += se.shape[0]
    return total / max(count, 1)


def realign(embedder, store, captions: dict, method: str = "dp", params: al.AlignerParams = al.REALIGN_PARAMS,
            smooth_s: float = al.REALIGN_SMOOTH_S, drop_rule: str = "video-z", drop_value: float = al.REALIGN_DROP_Z,
            drop_score: str = "contrast", ot_epsilon: float = 0.3, ot_bucket: float = 0.0,
            clean_epsilon: float = 0.1) -> tuple[dict, dict, dict[str, VideoRealignment]]:
    """captions {vid: [CaptionLine]} -> ({vid: {"start", "end", "text"}}, summary, {vid: VideoRealignment}).

    `drop_rule`/`drop_value`: see `vidlang.eval.alignment.keep_lines` ("none" keeps every line); with
    method "ot-clean" the bucket decides (rule "video-z" only, `drop_value` = the bucket's depth in robust SDs).
    """
    if method not in METHODS:
        raise VidlangError(f"--method: unknown {method!r} ({', '.join(METHODS)})")
    if drop_score not in DROP_SCORES:
        raise VidlangError(f"--drop-score: unknown {drop_score!r} ({', '.join(DROP_SCORES)})")
    if drop_rule not in (*al.DROP_RULES, "none"):
        raise VidlangError(f"--drop-rule: unknown {drop_rule!r} ({', '.join(al.DROP_RULES)}, none)")
    if method == "ot-clean" and drop_rule != "video-z":
        raise VidlangError(f"--method ot-clean drops the lines its bucket takes: it needs --drop-rule video-z, "
                           f"not {drop_rule}")
    if method == "ot-clean" and drop_score == "aligner":
        raise VidlangError("--drop-score aligner: ot-clean has no aligner score of its own; use contrast or max_sim")
    fps = store.fps
    if not fps:
        raise VidlangError(f"{store.root}: the feature store does not record its fps")
    present = [vid for vid in captions if vid in store]
    skipped = len(captions) - len(present)
    if not present:
        raise VidlangError("no video of the caption file is in the feature store")
    ref = reference_embedding(embedder, store, present) if drop_score == "contrast" else None
    width = int(round(smooth_s * fps))
    videos: dict[str, VideoRealignment] = {}
    for vid in present:
        lines = captions[vid]
        if not lines:
            videos[vid] = VideoRealignment([], np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0))
            continue
        feats = store[vid]
        dur = feats.shape[0] / fps
        starts, ends = [l.start for l in lines], [l.end for l in lines]
        te = embedder.embed_texts([l.text for l in lines]).double()
        sim = te @ embedder.embed_seconds(feats, fps).double().T  # (L, T) cosine similarity
        smooth = al.smooth_over_seconds(sim, width)
        res = None
        if method == "dp":
            res = al.align_lines_dp(smooth, starts, ends, fps, params)
        elif method == "prior":
            res = al.align_lines(smooth, starts, ends, fps, params.prior_scale, params.content_weight,
                                 params.content_threshold)
        elif method == "ot":
            res = al.align_lines_ot(smooth, starts, ends, fps, params.prior_scale, params.content_weight, ot_bucket,
                                    ot_epsilon, content_threshold=params.content_threshold)
        if drop_score == "contrast":
            score = al.peak_over_baseline(sim, te @ ref)
        elif drop_score == "max_sim":
            score = sim.max(dim=1).values.numpy()
        else:
            score = np.asarray(res.alignability, dtype=np.float64)
        half = np.maximum(np.asarray(ends, np.float64) - np.asarray(starts, np.float64), 0.0) / 2
        if method == "ot-clean":
            aligner_score, _ = al.alignment_scores(smooth, starts, ends, fps, params)
            level = al.robust_standardise(score)
            clean = al.ot_clean_lines(aligner_score, level, -drop_value, 2 * half, fps, epsilon=clean_epsilon)
            videos[vid] = VideoRealignment(lines, clean.start, clean.end, clean.kept, score)
            continue
        s = np.minimum(np.maximum(res.time - half, 0.0), np.maximum(dur - 2 * half, 0.0))
        videos[vid] = VideoRealignment(lines, s, np.minimum(s + 2 * half, dur), np.ones(len(lines), bool), score)
    if method != "ot-clean" and drop_rule != "none":
        order = list(videos)
        for vid, keep in zip(order, al.keep_lines([videos[v].score for v in order], drop_rule, drop_value)):
            videos[vid].kept = keep
    out, kept, n_lines = {}, 0, 0
    for vid, v in videos.items():
        rows = sorted((float(s), float(e), l.text) for s, e, l, k in zip(v.start, v.end, v.lines, v.kept) if k)
        kept += len(rows)
        n_lines += len(v.lines)
        out[vid] = {"start": [r[0] for r in rows], "end": [r[1] for r in rows], "text": [r[2] for r in rows]}
    summary = {"videos": len(out), "videos_without_features": skipped, "lines": n_lines, "kept": kept,
               "method": method, "drop_rule": "ot bucket" if method == "ot-clean" else drop_rule,
               "drop_value": drop_value, "drop_score": drop_score, "smooth_s": smooth_s,
               "params": al.params_dict(params)}
    return out, summary, videos


def ground_truth_report(videos: dict[str, VideoRealignment], kind: str, truth: dict,
                        splits: dict[str, list[str]] | None = None) -> dict:
    """Score a realignment against ground truth: {"format", "groups": {name: metrics}} (see `RealignCounts`).

    `kind`, `truth`: what `vidlang.eval.tasks.load_alignment_truth` returns ({vid: {"starts", "ends", "texts",
    "intervals"}}). Groups: "all" and, with `splits`, one per split name (a video listed in several splits
    counts in each). Truth lines are matched to the realigned input lines with `match_lines`; a truth line no
    input line carries counts as dropped. Truth videos the realignment did not cover are counted in
    "videos_not_realigned".
    """
    groups: dict[str, al.RealignCounts] = {"all": al.RealignCounts()}
    n_videos = {"all": 0}
    missing = 0
    member = {}
    for name, ids in (splits or {}).items():
        groups[name], n_videos[name] = al.RealignCounts(), 0
        for vid in ids:
            member.setdefault(vid, []).append(name)
    for vid, rec in truth.items():
        if vid not in videos:
            missing += 1
            continue
        v = videos[vid]
        idx = al.match_lines(rec["texts"], rec["starts"], [l.text for l in v.lines], [l.start for l in v.lines])
        mids = (v.start + v.end) / 2
        times = [float(mids[i]) if i is not None else math.nan for i in idx]
        kept = [bool(v.kept[i]) if i is not None else False for i in idx]
        raw = al.timestamp_alignment(rec["starts"], rec["ends"])
        c = al.realign_counts(times, kept, raw, rec["intervals"])
        for name in ["all", *member.get(vid, [])]:
            groups[name] = groups[name] + c
            n_videos[name] += 1
    return {"format": kind, "hit_rule": "realigned midpoint inside the true interval (start <= t <= end)",
            "videos_not_realigned": missing,
            "groups": {name: {"videos": n_videos[name], **c.metrics()} for name, c in groups.items()}}


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def report_table(report: dict) -> str:
    lines = [f"{'videos':<8} {'n':>5} {'lines':>6} {'relevant':>8} {'recall':>7} {'raw ts':>7} {'rel kept':>8} "
             f"{'irr drop':>8} {'kept':>6}   (percent)"]
    for name, m in report["groups"].items():
        c = m["counts"]
        lines.append(f"{name:<8} {m['videos']:>5} {c['lines']:>6} {c['relevant']:>8} {_fmt(m['recall']):>7} "
                     f"{_fmt(m['recall_raw_timestamps']):>7} {_fmt(m['relevant_kept_pct']):>8} "
                     f"{_fmt(m['irrelevant_dropped_pct']):>8} {_fmt(m['kept_pct']):>6}")
    return "\n".join(lines)


def _read_splits(path: str) -> dict[str, list[str]]:
    p = Path(path)
    if not p.exists():
        raise VidlangError(f"--splits: {p} not found")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(p, None, f"not valid JSON ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise FormatError(p, None, 'expected {"<split>": [video ids], ...}')
    return {str(k): [str(x) for x in v] for k, v in data.items()}


def main(argv: list[str] | None = None) -> int:
    d = al.REALIGN_PARAMS
    ap = argparse.ArgumentParser(prog="vidlang align", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint directory (or 'random')")
    ap.add_argument("--features", required=True, help="feature store root")
    ap.add_argument("--captions", required=True, help="HowTo100M caption JSON")
    ap.add_argument("--out", required=True, help="realigned caption JSON (same format)")
    ap.add_argument("--method", choices=METHODS, default="dp",
                    help="dp (default), prior, ot, or ot-clean (OT re-timing, bucket lines dropped)")
    ap.add_argument("--drop-rule", choices=[*al.DROP_RULES, "none"], default=None,
                    help="video-z (default), video-frac (with --drop-frac), global-frac (comparison only), none")
    ap.add_argument("--drop-z", type=float, default=al.REALIGN_DROP_Z,
                    help="video-z: drop lines more than this many robust SDs below their video's median "
                         "(ot-clean: the bucket's level)")
    ap.add_argument("--drop-frac", type=float, default=None,
                    help="video-frac/global-frac: fraction of least alignable lines to drop (alone: video-frac)")
    ap.add_argument("--drop-score", choices=DROP_SCORES, default="contrast",
                    help="alignability: contrast (best own-video similarity minus the line's corpus baseline), "
                         "max_sim, or the aligner's own score (peak z-score; OT: mass kept out of the bucket)")
    ap.add_argument("--smooth", type=float, default=al.REALIGN_SMOOTH_S,
                    help="seconds of the moving average applied to each line's similarity (0: none)")
    ap.add_argument("--prior-scale", type=float, default=d.prior_scale, help="Laplace scale of the time prior's tails (s)")
    ap.add_argument("--content-weight", type=float, default=d.content_weight)
    ap.add_argument("--content-threshold", type=float, default=d.content_threshold,
                    help="z-scores below this are no evidence (default -inf: plain z-score)")
    ap.add_argument("--skip-penalty", type=float, default=d.skip_penalty, help="dp: cost of leaving the narration order")
    ap.add_argument("--ground-truth", default=None,
                    help="score the realignment: synthetic ground_truth.json or HTM-Align htm_align.json")
    ap.add_argument("--splits", default=None, help="with --ground-truth: splits JSON, figures per split")
    ap.add_argument("--report", default=None, help="with --ground-truth: write the figures to this JSON")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    rule = args.drop_rule or ("video-frac" if args.drop_frac is not None else "video-z")
    if rule in ("video-frac", "global-frac"):
        if args.drop_frac is None:
            raise VidlangError(f"--drop-rule {rule} needs --drop-frac")
        if not 0.0 <= args.drop_frac < 1.0:
            raise VidlangError(f"--drop-frac must be in [0, 1), got {args.drop_frac}")
        drop_value = args.drop_frac
    else:
        if args.drop_frac is not None:
            raise VidlangError(f"--drop-frac does not apply to --drop-rule {rule}")
        if not args.drop_z >= 0:
            raise VidlangError(f"--drop-z must be >= 0, got {args.drop_z}")
        drop_value = args.drop_z
    if not args.prior_scale > 0:
        raise VidlangError(f"--prior-scale must be > 0, got {args.prior_scale}")
    if args.content_weight < 0 or args.skip_penalty < 0 or args.smooth < 0:
        raise VidlangError("--content-weight, --skip-penalty and --smooth must be >= 0")
    if (args.splits or args.report) and not args.ground_truth:
        raise VidlangError("--splits and --report need --ground-truth")
    from vidlang.datasets import read_howto100m_captions
    from vidlang.datasets.narration import clean_captions
    from vidlang.eval.capabilities import StoreCache, load_evaluated

    splits = _read_splits(args.splits) if args.splits else None
    truth = None
    if args.ground_truth:  # read before the realignment: a bad truth file fails at once
        from vidlang.datasets.alignment_truth import load_alignment_truth

        kind, truth_videos, _ = load_alignment_truth(args.ground_truth, args.captions)
        truth = (kind, truth_videos)
    # The same cleaning as `vidlang preprocess --captions` (rolling-ASR dedup), so the output can feed training.
    captions = {vid: clean_captions(lines) for vid, lines in read_howto100m_captions(args.captions).items()}
    model = load_evaluated(args.checkpoint, args.device)
    store = StoreCache(model.expected_fps, model.expected_dim).get(args.features)  # fps / width must match
    embedder = model.evaluator("embed")
    params = al.AlignerParams(args.content_weight, args.content_threshold, args.prior_scale, args.skip_penalty)
    out, summary, videos = realign(embedder, store, captions, args.method, params, args.smooth, rule, drop_value,
                                   args.drop_score)
    report = ground_truth_report(videos, *truth, splits) if truth is not None else None
    atomic_write_json(args.out, out)
    print(f"realigned {summary['videos']} videos ({summary['videos_without_features']} without features skipped): "
          f"kept {summary['kept']}/{summary['lines']} lines ({summary['method']}, drop: {summary['drop_rule']}) "
          f"-> {args.out}")
    if report is not None:
        print(f"against {args.ground_truth} ({report['format']}; recall: {report['hit_rule']}, a dropped relevant "
              f"line is a miss; {report['videos_not_realigned']} truth videos not realigned):")
        print(report_table(report))
        if args.report:
            atomic_write_json(args.report, {"summary": summary, **report})
    return 0
