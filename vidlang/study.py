"""`vidlang study`: does Norton post-training beat continued InfoNCE, and where? (the noise study)

    vidlang study --out runs/study [--corpora s400 s400-heavy s1200] [--seeds 0 1 2] [--steps 600]
                  [--variant norton=demo_cpu.yaml --variant infonce=infonce_demo_cpu.yaml ...]
                  [--variant norton_realigned=demo_cpu.yaml,data.captions={realigned}]
                  [--variant norton_hn=demo_cpu.yaml,data.hard_negatives=true
                   --variant infonce_hn=infonce_demo_cpu.yaml,data.hard_negatives=true --pair norton_hn:infonce_hn]

A variant override may use `{realigned}`: the corpus's narration realigned by the pretrained checkpoint with
`vidlang align` (unalignable lines dropped, `--realign-drop`), so that variant trains on the realigned captions.

For each corpus (a preset of `vidlang synth` dials: size, timestamp offset spread, irrelevant and unnarrated
fractions) it prepares the corpus, pretrains one InfoNCE model (the shared starting point), post-trains every
variant from it for the same number of steps with each seed, and evaluates clip retrieval (YouCookII-style,
evaluation split) and narration alignment. It prints, per corpus, mean ± std over seeds and the paired difference
of every variant against the `infonce` baseline (same seed, same init), and writes OUT/study.json + OUT/study.md.
Checkpoints are selected on held-out training videos only. Every finished run is reused when the study reruns.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from vidlang import pipeline as P
from vidlang.errors import ConfigError
from vidlang.io import atomic_write_json, atomic_write_text

# name -> synth flags. Default noise = `vidlang synth`'s defaults (offset std 3 s, 30% irrelevant lines, 15% unnarrated
# steps); heavy = offset std 6 s, half the lines irrelevant, 30% unnarrated steps.
HEAVY = ["--offset-std", 6, "--irrelevant-frac", 0.5, "--unnarrated-frac", 0.3]
CORPORA: dict[str, list] = {
    "s400": ["--videos", 400],
    "s400-heavy": ["--videos", 400, *HEAVY],
    "s1200": ["--videos", 1200, "--size", 48, "--fps", 4],
    "s1200-heavy": ["--videos", 1200, "--size", 48, "--fps", 4, *HEAVY],
}
METRICS = [  # (label, flattened result key, higher is better)
    ("R@5", "clip-youcookii / t2v / R@5", True),
    ("MedR", "clip-youcookii / t2v / MedR", False),
    ("align recall (DP)", "alignment / recall_dp", True),
    ("align argmax", "alignment / recall_argmax", True),
    ("relevance AUC", "alignment / auc_max_sim", True),
]
TASKS = ["clip-youcookii", "alignment"]


def _parse_variant(text: str) -> tuple[str, str, list[str]]:
    """`name=config.yaml[,key=value,...]` -> (name, config, overrides)."""
    if "=" not in text:
        raise ConfigError(f"--variant {text!r}: expected name=config.yaml[,key=value...]")
    name, rest = text.split("=", 1)
    config, *overrides = rest.split(",")
    if not (P.CONFIGS / "norton" / config).exists():
        raise ConfigError(f"--variant {name}: configs/norton/{config} does not exist")
    return name, config, overrides


def study_table(results: dict, baseline: str = "infonce", pairs: list[tuple[str, str]] = ()) -> str:
    """results[corpus][variant] = list of flattened result dicts (one per seed) -> markdown.

    Paired rows: every variant − ``baseline``, then each extra (variant, its own baseline) of ``pairs`` (e.g.
    norton_hn − infonce_hn: both with hard-negative batches)."""
    lines = []
    for corpus, variants in results.items():
        lines += [f"### {corpus}", "", "| variant | " + " | ".join(m for m, _, _ in METRICS) + " |",
                  "|---|" + "---|" * len(METRICS)]
        for name, runs in variants.items():
            cells = []
            for _, key, _ in METRICS:
                m, sd, _ = P.mean_std([r.get(key, math.nan) for r in runs])
                cells.append(f"{m:.1f} ± {sd:.1f}")
            lines.append(f"| {name} (n={len(runs)}) | " + " | ".join(cells) + " |")
        rows = [(name, baseline) for name in variants if name != baseline] + list(pairs)
        for name, base_name in rows:
            if name not in variants or base_name not in variants:
                continue
            cells = []
            for _, key, higher in METRICS:
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vidlang study", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--corpora", nargs="+", default=["s400", "s400-heavy"], choices=sorted(CORPORA))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=600, help="post-training steps (same for every variant)")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="override pretraining steps")
    ap.add_argument("--variant", action="append", default=None, metavar="NAME=CONFIG[,k=v...]",
                    help="post-training variant (default: norton=demo_cpu.yaml and infonce=infonce_demo_cpu.yaml)")
    ap.add_argument("--realign-drop", type=float, default=0.3,
                    help="for variants using {realigned}: fraction of least alignable lines `vidlang align` drops")
    ap.add_argument("--pair", action="append", default=[], metavar="VARIANT:BASELINE",
                    help="extra paired row against another variant (default rows: every variant vs infonce)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    variants = [_parse_variant(v) for v in (args.variant or ["norton=demo_cpu.yaml", "infonce=infonce_demo_cpu.yaml"])]
    if "infonce" not in [v[0] for v in variants]:
        raise ConfigError("--variant: one variant must be named infonce (the paired baseline)")
    pairs = [_parse_pair(p, [v[0] for v in variants]) for p in args.pair]

    out = Path(args.out)
    t0 = time.perf_counter()
    from vidlang.eval.report import task_rows

    results: dict[str, dict[str, list[dict]]] = {}
    raw: dict = {"corpora": {}, "seeds": args.seeds, "steps": args.steps,
                 "variants": {n: [c, o] for n, c, o in variants}, "pairs": pairs}
    for cname in args.corpora:
        root = out / cname
        print(f"[study {time.perf_counter() - t0:6.0f} s] corpus {cname}: {CORPORA[cname]}", flush=True)
        corpus = P.prepare_corpus(root, [*CORPORA[cname], "--seed", 0], workers=args.workers)
        pre_ov = [f"train.steps={args.pretrain_steps}"] if args.pretrain_steps else []
        pre = P.train_stage("pretrain_demo_cpu.yaml", root / "pretrain", corpus, pre_ov)
        results[cname] = {}
        raw["corpora"][cname] = {"synth": [str(a) for a in CORPORA[cname]], "runs": {}}
        for name, config, overrides in variants:
            if any("{realigned}" in o for o in overrides):
                # Narration realigned by the pretrained model (content + time prior + order), unalignable lines
                # dropped: the offline counterpart of Norton's in-batch OT realignment.
                realigned = P.realign_stage(pre, corpus, root / "realigned.json", args.realign_drop)
                overrides = [o.replace("{realigned}", str(realigned)) for o in overrides]
            runs = []
            for seed in args.seeds:
                print(f"[study {time.perf_counter() - t0:6.0f} s] {cname} {name} seed {seed}", flush=True)
                ckpt = P.train_stage(config, root / f"{name}_s{seed}", corpus,
                                     [*overrides, f"train.steps={args.steps}", f"train.seed={seed}"], init_from=pre)
                res = P.eval_stage(ckpt, root / "results" / f"{name}_s{seed}.json", corpus,
                                   [f"tasks=[{','.join(TASKS)}]"])
                runs.append(task_rows(res))
            results[cname][name] = runs
            raw["corpora"][cname]["runs"][name] = runs
        # Print as we go: a long study shows its first corpus while the next one trains.
        print(study_table({cname: results[cname]}, pairs=pairs), flush=True)
    table = study_table(results, pairs=pairs)
    atomic_write_json(out / "study.json", raw)
    atomic_write_text(out / "study.md", f"# vidlang study ({time.perf_counter() - t0:.0f} s)\n\n{table}\n")
    print(table)
    return 0
