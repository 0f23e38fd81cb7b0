"""`vidlang study`: does Norton post-training beat continued InfoNCE, and where? (the noise study)

    vidlang study --out runs/study [--corpora s400 s400-heavy s1200] [--seeds 0 1 2] [--steps 600]
                  [--variant norton=demo_cpu.yaml --variant infonce=infonce_demo_cpu.yaml ...]
                  [--variant norton_realigned=demo_cpu.yaml,data.captions={realigned}]
                  [--variant norton_hn=demo_cpu.yaml,data.hard_negatives=true
                   --variant infonce_hn=infonce_demo_cpu.yaml,data.hard_negatives=true --pair norton_hn:infonce_hn]

The one-pass regime (Norton post-trains about one epoch of HowTo100M, so no pair is seen twice):

    vidlang study --out runs/onepass --corpora onepass onepass-heavy --pretrain-videos 2800 --max-epochs 1 \\
                  --post-set data.heldout_frac=0.03 [--public indep=DIR --max-eval-videos 560]

A variant override may use `{realigned}`: the corpus's narration realigned by the pretrained checkpoint with
`vidlang align` (unalignable lines dropped, `--realign-drop`), so that variant trains on the realigned captions.

For each corpus (a preset of `vidlang synth` dials: size, timestamp offset spread, irrelevant and unnarrated
fractions; or, with `--public NAME=DIR`, a corpus in the public layout such as the independent generator's) it
prepares the corpus, pretrains one InfoNCE model (the shared starting point), post-trains every variant from it
for the same number of steps with each seed, and evaluates clip retrieval (YouCookII-style, evaluation split),
narration alignment and, with `--tasks`, paragraph retrieval. It prints, per corpus, mean ± std over seeds and the
paired difference of every variant against the `infonce` baseline (same seed, same init), and writes
OUT/study.json + OUT/study.md. Checkpoints are selected on held-out training videos only. Every finished run is
reused when the study reruns.

`--pretrain-videos N` makes pretraining and post-training disjoint: a seeded draw of N training videos pretrains
(OUT/CORPUS/splits_pretrain.json), the other training videos post-train (splits_posttrain.json), so no
post-training pair was seen before. `--max-epochs 1` bounds every post-training run to one pass over its training
videos (`data.max_epochs`; the learning-rate schedule spans that pass), so none is seen twice.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from vidlang import pipeline as P
from vidlang.errors import ConfigError, VidlangError
from vidlang.io import atomic_write_json, atomic_write_text

# name -> synth flags. Default noise = `vidlang synth`'s defaults (offset std 3 s, 30% irrelevant lines, 15% unnarrated
# steps); heavy = offset std 6 s, half the lines irrelevant, 30% unnarrated steps.
HEAVY = ["--offset-std", 6, "--irrelevant-frac", 0.5, "--unnarrated-frac", 0.3]
# One-pass corpora: 14,000 videos, 4% (560) for evaluation, so that 2,800 can pretrain and over 10,000 post-train.
# 32x32 at 3 fps: the thumbnail features work at 32x32 with 3 frames per second anyway (preprocessing/backbones/
# thumbnail.py), and rendering, encoding and decoding cost a third of 48x48 at 4 fps.
ONEPASS = ["--videos", 14000, "--size", 32, "--fps", 3, "--val-frac", 0.04, "--msrvtt-clips", 0]
CORPORA: dict[str, list] = {
    "s400": ["--videos", 400],
    "s400-heavy": ["--videos", 400, *HEAVY],
    "s1200": ["--videos", 1200, "--size", 48, "--fps", 4],
    "s1200-heavy": ["--videos", 1200, "--size", 48, "--fps", 4, *HEAVY],
    "onepass": ONEPASS,
    "onepass-heavy": [*ONEPASS, *HEAVY],
}
# corpus -> the corpus whose videos (and features) it reuses. `vidlang synth` draws pixels and narration from
# independent random streams, so the same flags but the narration dials give the same videos: only the narration
# (captions, ground truth) is generated again.
SHARED_VIDEOS = {"onepass-heavy": "onepass"}
METRICS = [  # (label, flattened result key, higher is better)
    ("R@5", "clip-youcookii / t2v / R@5", True),
    ("MedR", "clip-youcookii / t2v / MedR", False),
    ("para R@1 (bg kept, OTAM)", "paragraph-youcookii / bg_kept / otam / R@1", True),
    ("para R@1 (bg removed, avg)", "paragraph-youcookii / bg_removed / caption_avg / R@1", True),
    ("align recall (DP)", "alignment / recall_dp", True),
    ("align argmax", "alignment / recall_argmax", True),
    ("relevance AUC", "alignment / auc_max_sim", True),
]
TASKS = ["clip-youcookii", "alignment"]
PARAGRAPH = ["paragraph.methods=[caption_avg,otam]"]  # the study's paragraph columns (DTW and OT are not shown)
PRETRAINED = "pretrained"  # the shared starting point, evaluated once per corpus (a reference row, not a variant)


def _parse_variant(text: str) -> tuple[str, str, list[str]]:
    """`name=config.yaml[,key=value,...]` -> (name, config, overrides)."""
    if "=" not in text:
        raise ConfigError(f"--variant {text!r}: expected name=config.yaml[,key=value...]")
    name, rest = text.split("=", 1)
    config, *overrides = rest.split(",")
    if not (P.CONFIGS / "norton" / config).exists():
        raise ConfigError(f"--variant {name}: configs/norton/{config} does not exist")
    return name, config, overrides


def _metrics_present(results: dict) -> list[tuple[str, str, bool]]:
    """The METRICS some run of `results` has (a study without paragraph retrieval shows no paragraph columns)."""
    keys = {k for variants in results.values() for runs in variants.values() for r in runs for k in r}
    return [m for m in METRICS if m[1] in keys] or METRICS


def study_table(results: dict, baseline: str = "infonce", pairs: list[tuple[str, str]] = ()) -> str:
    """results[corpus][variant] = list of flattened result dicts (one per seed) -> markdown.

    Paired rows: every variant − ``baseline``, then each extra (variant, its own baseline) of ``pairs`` (e.g.
    norton_hn − infonce_hn: both with hard-negative batches). A `pretrained` entry is shown as a row, never paired.
    """
    metrics = _metrics_present(results)
    lines = []
    for corpus, variants in results.items():
        lines += [f"### {corpus}", "", "| variant | " + " | ".join(m for m, _, _ in metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        for name, runs in variants.items():
            cells = []
            for _, key, _ in metrics:
                m, sd, _ = P.mean_std([r.get(key, math.nan) for r in runs])
                cells.append(f"{m:.1f} ± {sd:.1f}" if len(runs) > 1 else f"{m:.1f}")
            lines.append(f"| {name} (n={len(runs)}) | " + " | ".join(cells) + " |")
        rows = [(name, baseline) for name in variants if name not in (baseline, PRETRAINED)] + list(pairs)
        for name, base_name in rows:
            if name not in variants or base_name not in variants:
                continue
            cells = []
            for _, key, higher in metrics:
                d, wins = P.paired(variants[name], variants[base_name], key, higher)
                m, sd, _ = P.mean_std(d)
                cells.append(f"{m:+.1f} ± {sd:.1f} ({wins}/{len(d)})")
            lines.append(f"| {name} − {base_name}, paired | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _parse_pair(text: str, names: list[str]) -> tuple[str, str]:
    """`variant:baseline` -> (variant, baseline); both must be variants of this study."""
    parts = text.split(":")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--pair {text!r}: expected VARIANT:BASELINE")
    for part in parts:
        if part not in names:
            raise ConfigError(f"--pair {text!r}: {part!r} is not a --variant of this study ({', '.join(names)})")
    return parts[0], parts[1]


def _parse_public(text: str) -> tuple[str, Path]:
    """`NAME=DIR` -> (name, dir); DIR is a corpus in the public layout or a folder of such corpora (chunks)."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise ConfigError(f"--public {text!r}: expected NAME=DIR")
    if name in CORPORA:
        raise ConfigError(f"--public {text!r}: {name!r} is a synthetic preset name; choose another")
    if not public_chunks(Path(folder)):
        raise ConfigError(f"--public {text!r}: {folder} holds no corpus in the public layout (annotations/)")
    return name, Path(folder)


def public_chunks(folder: Path) -> list[Path]:
    """`folder` itself when it is a corpus in the public layout, else its sub-folders that are (sorted)."""
    if (folder / "annotations").is_dir():
        return [folder]
    return sorted(p for p in folder.iterdir() if (p / "annotations").is_dir()) if folder.is_dir() else []


def split_pretrain_posttrain(train_ids: list[str], n_pretrain: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """A seeded draw of `n_pretrain` training ids for pretraining; the others post-train. Both sorted, disjoint."""
    ids = sorted(train_ids)
    if not 0 < n_pretrain < len(ids):
        raise ConfigError(f"--pretrain-videos {n_pretrain}: need 0 < N < {len(ids)} (the training videos)")
    perm = np.random.default_rng([seed, 11]).permutation(len(ids))
    pre = sorted(ids[i] for i in perm[:n_pretrain])
    taken = set(pre)
    return pre, [v for v in ids if v not in taken]


def write_disjoint_splits(corpus: P.CorpusPaths, root: Path, n_pretrain: int) -> tuple[Path, Path]:
    """OUT/CORPUS/splits_{pretrain,posttrain}.json from the corpus's splits.json (evaluation list unchanged)."""
    splits = json.loads(Path(corpus.splits).read_text())
    pre, post = split_pretrain_posttrain(splits["train"], n_pretrain)
    paths = root / "splits_pretrain.json", root / "splits_posttrain.json"
    for path, ids in zip(paths, (pre, post)):
        if not path.exists() or json.loads(path.read_text()) != {"train": ids, "val": splits["val"]}:
            atomic_write_json(path, {"train": ids, "val": splits["val"]})
    return paths


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of `src` into `dst` (copy across file systems); existing files are kept."""
    for path in sorted(src.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            target = dst / path.relative_to(src)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def prepare_shared_corpus(root: Path, base: P.CorpusPaths, synth_args: list, workers: int) -> P.CorpusPaths:
    """A corpus whose videos equal `base`'s (same pixel dials): `vidlang synth` into ROOT/corpus over hard links
    of base's videos (it finds them up to date and writes only the narration and annotations); the features are
    base's. Training then reads this corpus's narration through `data.captions` (see `narration_overrides`)."""
    corpus = P.CorpusPaths(root / "corpus", base.features, base.msrvtt_features, root / "corpus" / "splits.json",
                           root / "corpus" / "ground_truth.json")
    if not corpus.ground_truth.exists():
        _link_tree(base.root / "videos", corpus.root / "videos")
        P.run_cli(["synth", corpus.root, *synth_args, "--workers", workers, "--no-progress"])
    if json.loads(corpus.splits.read_text()) != json.loads(base.splits.read_text()):
        raise VidlangError(f"{corpus.splits}: the split differs from {base.splits}; the corpora do not share videos")
    return corpus


def narration_overrides(cname: str, corpus: P.CorpusPaths) -> list[str]:
    """data.captions for a corpus whose feature store is another corpus's (SHARED_VIDEOS): its text/ holds that
    corpus's narration, so training reads this corpus's own captions (cleaned the way preprocessing cleans)."""
    return [f"data.captions={corpus.annotations / P.CAPTIONS}"] if cname in SHARED_VIDEOS else []


def merge_public_corpora(chunks: list[Path], out: Path, max_eval: int = 0, seed: int = 0) -> Path:
    """Several corpora in the public layout (e.g. chunks of the independent generator with different seeds) ->
    one corpus OUT (videos hard-linked) with the files the study reads: the HowTo100M captions, YouCookII
    annotations and, when every chunk has it, HTM-Align ground truth.

    max_eval > 0 keeps a seeded draw of that many YouCookII "validation" videos for evaluation; the other
    validation videos become "training" videos (and leave the HTM-Align file, which holds evaluation videos only).
    Returns OUT; a finished merge (its YouCookII file, written last) is reused."""
    ann = out / "annotations"
    yc_path = ann / P.ANNOTATIONS["youcookii"]
    if yc_path.exists():
        return out
    captions, database, htm = {}, {}, {}
    have_htm = all((c / "annotations" / P.HTM_ALIGN).exists() for c in chunks)
    for chunk in chunks:
        a = chunk / "annotations"
        caps = json.loads((a / P.CAPTIONS).read_text())
        db = json.loads((a / P.ANNOTATIONS["youcookii"]).read_text())["database"]
        clash = (set(caps) & set(captions)) | (set(db) & set(database))
        if clash:
            raise VidlangError(f"{chunk}: video ids also in another chunk, e.g. {sorted(clash)[0]}")
        captions.update(caps)
        database.update(db)
        if have_htm:
            htm.update(json.loads((a / P.HTM_ALIGN).read_text()))
        _link_tree(chunk / "videos", out / "videos")
    val = sorted(v for v, rec in database.items() if rec.get("subset") == "validation")
    if max_eval and len(val) > max_eval:
        perm = np.random.default_rng([seed, 13]).permutation(len(val))
        for i in perm[max_eval:]:
            database[val[i]] = {**database[val[i]], "subset": "training"}
            htm.pop(val[i], None)
    atomic_write_json(ann / P.CAPTIONS, captions, indent=None)
    if have_htm:
        atomic_write_json(ann / P.HTM_ALIGN, htm, indent=None)
    atomic_write_json(yc_path, {"database": database}, indent=None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vidlang study", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--corpora", nargs="*", default=None, choices=sorted(CORPORA),
                    help="synthetic presets (default: s400 s400-heavy, or none when --public is given)")
    ap.add_argument("--public", action="append", default=[], metavar="NAME=DIR",
                    help="a corpus in the public layout (or a folder of such corpora, merged) studied as NAME")
    ap.add_argument("--max-eval-videos", type=int, default=0,
                    help="--public: keep this many validation videos for evaluation, train on the others")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=None,
                    help="post-training steps (same for every variant; default 600, or one pass with --max-epochs)")
    ap.add_argument("--max-epochs", type=int, default=0,
                    help="bound post-training to this many passes over its training videos (data.max_epochs)")
    ap.add_argument("--pretrain-videos", type=int, default=0,
                    help="pretrain on this many training videos, post-train on the others (disjoint)")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="override pretraining steps")
    ap.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for pretraining")
    ap.add_argument("--post-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every post-training run (before the variant's own)")
    ap.add_argument("--variant", action="append", default=None, metavar="NAME=CONFIG[,k=v...]",
                    help="post-training variant (default: norton=demo_cpu.yaml and infonce=infonce_demo_cpu.yaml)")
    ap.add_argument("--realign-drop", type=float, default=0.3,
                    help="for variants using {realigned}: fraction of least alignable lines `vidlang align` drops")
    ap.add_argument("--pair", action="append", default=[], metavar="VARIANT:BASELINE",
                    help="extra paired row against another variant (default rows: every variant vs infonce)")
    ap.add_argument("--tasks", nargs="+", default=TASKS, choices=[*TASKS, "paragraph-youcookii"],
                    help="evaluation tasks of every run")
    ap.add_argument("--eval-pretrained", action="store_true", help="also evaluate the pretrained checkpoint")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    variants = [_parse_variant(v) for v in (args.variant or ["norton=demo_cpu.yaml", "infonce=infonce_demo_cpu.yaml"])]
    if "infonce" not in [v[0] for v in variants]:
        raise ConfigError("--variant: one variant must be named infonce (the paired baseline)")
    pairs = [_parse_pair(p, [v[0] for v in variants]) for p in args.pair]
    public = dict(_parse_public(p) for p in args.public)
    presets = args.corpora if args.corpora is not None else ([] if public else ["s400", "s400-heavy"])
    steps = args.steps if args.steps is not None else (10**6 if args.max_epochs else 600)
    post_common = [*args.post_set, *([f"data.max_epochs={args.max_epochs}"] if args.max_epochs else [])]
    eval_ov = [f"tasks=[{','.join(args.tasks)}]", *(PARAGRAPH if "paragraph-youcookii" in args.tasks else [])]

    out = Path(args.out)
    t0 = time.perf_counter()
    from vidlang.eval.report import task_rows

    def log(msg: str) -> None:
        print(f"[study {time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    def prepare(cname: str) -> P.CorpusPaths:
        root = out / cname
        if cname in public:
            merged = merge_public_corpora(public_chunks(public[cname]), root / "corpus", args.max_eval_videos)
            return P.prepare_public_corpus(root, merged, workers=args.workers, log=log)
        if cname in SHARED_VIDEOS:
            base = prepare(SHARED_VIDEOS[cname])
            return prepare_shared_corpus(root, base, [*CORPORA[cname], "--seed", 0], args.workers)
        return P.prepare_corpus(root, [*CORPORA[cname], "--seed", 0], workers=args.workers, log=log)

    results: dict[str, dict[str, list[dict]]] = {}
    raw: dict = {"corpora": {}, "seeds": args.seeds, "steps": steps, "max_epochs": args.max_epochs,
                 "pretrain_videos": args.pretrain_videos, "post_set": args.post_set,
                 "variants": {n: [c, o] for n, c, o in variants}, "pairs": pairs, "tasks": args.tasks}
    for cname in [*presets, *public]:
        root = out / cname
        log(f"corpus {cname}: {CORPORA.get(cname) or public[cname]}")
        corpus = prepare(cname)
        narration = narration_overrides(cname, corpus)
        pre_ov, post_split = [*narration], []
        if args.pretrain_videos:
            pre_splits, post_splits = write_disjoint_splits(corpus, root, args.pretrain_videos)
            pre_ov.append(f"data.splits={pre_splits}")
            post_split = [f"data.splits={post_splits}"]
        pre_ov += [*([f"train.steps={args.pretrain_steps}"] if args.pretrain_steps else []), *args.pretrain_set]
        log(f"{cname} pretrain")
        pre = P.train_stage("pretrain_demo_cpu.yaml", root / "pretrain", corpus, pre_ov)
        results[cname] = {}
        raw["corpora"][cname] = {"synth": [str(a) for a in CORPORA.get(cname, [])],
                                 "public": str(public.get(cname, "")), "runs": {}, "train": {}}
        if args.eval_pretrained:
            res = P.eval_stage(pre, root / "results" / f"{PRETRAINED}.json", corpus, eval_ov)
            results[cname][PRETRAINED] = [task_rows(res)]
            raw["corpora"][cname]["runs"][PRETRAINED] = results[cname][PRETRAINED]
        resolved = []
        for name, config, overrides in variants:
            if any("{realigned}" in o for o in overrides):
                # Narration realigned by the pretrained model (content + time prior + order), unalignable lines
                # dropped: the offline counterpart of Norton's in-batch OT realignment.
                log(f"{cname} realign")
                realigned = P.realign_stage(pre, corpus, root / "realigned.json", args.realign_drop)
                overrides = [o.replace("{realigned}", str(realigned)) for o in overrides]
            resolved.append((name, config, overrides))
            results[cname][name] = raw["corpora"][cname]["runs"][name] = []
        # Seed-major: every variant of seed 0 before seed 1, so that an interrupted study has complete pairs.
        for seed in args.seeds:
            for name, config, overrides in resolved:
                log(f"{cname} {name} seed {seed}")
                run_dir = root / f"{name}_s{seed}"
                ckpt = P.train_stage(config, run_dir, corpus,
                                     [*narration, *post_split, *post_common, *overrides, f"train.steps={steps}",
                                      f"train.seed={seed}"], init_from=pre)
                res = P.eval_stage(ckpt, root / "results" / f"{name}_s{seed}.json", corpus, eval_ov)
                results[cname][name].append(task_rows(res))
                summary = json.loads((run_dir / "summary.json").read_text())
                raw["corpora"][cname]["train"][f"{name}_s{seed}"] = {
                    k: summary.get(k) for k in ("steps", "epochs", "best_step", "best", "train_videos",
                                                "heldout_videos", "time_s")}
                atomic_write_json(out / "study.json", raw)
            # Print as we go: a long study shows each finished seed while the next one trains.
            print(study_table({cname: results[cname]}, pairs=pairs), flush=True)
    table = study_table(results, pairs=pairs)
    atomic_write_json(out / "study.json", raw)
    atomic_write_text(out / "study.md", f"# vidlang study ({time.perf_counter() - t0:.0f} s)\n\n{table}\n")
    print(table)
    return 0
