"""`vidlang demo`: the main job end to end on the embedded synthetic corpus (what `make demo` runs).

    vidlang demo [--out runs/demo] [--videos 400] [--seeds 0 1 2] [--cosmo-seeds 0] [--cosmo-full] [--quick]
                 [--corpus DIR]

1. `vidlang synth`: a noisy narrated long-video world (public formats) -> OUT/corpus; or, with `--corpus DIR`, a
   corpus vidlang did not generate, in the public layout (see vidlang.pipeline.prepare_public_corpus: YouCookII's
   training/validation subsets are the split, HTM-Align is the alignment ground truth)
2. `vidlang preprocess`: thumbnail features at 1/s + cleaned narration -> OUT/features, OUT/msrvtt_features
3. `vidlang train` (configs/norton/pretrain_demo_cpu.yaml): VideoCLIP-style InfoNCE pretraining -> OUT/pretrain
4. post-training from that checkpoint, per seed: Norton (configs/norton/demo_cpu.yaml) and the fair baseline,
   continued InfoNCE for the same steps (configs/norton/infonce_demo_cpu.yaml) -> OUT/norton_s<seed>, OUT/infonce_s<seed>
5. `vidlang eval all` on every task for chance (random embeddings), the untrained model, the pretrained model and
   both post-trained models -> OUT/results/*.json; a headline table (mean ± std over seeds) -> stdout + OUT/results.md
6. `vidlang report` -> the full side-by-side table and figures in OUT/report/
7-8. COSMO (vidlang.demo_cosmo, configs/cosmo/demo_cpu.yaml; needs the LM of `make lm`): the narration cleaned by
   OT with the pretrained dual encoder (`vidlang align`), then per `--cosmo-seeds` seed one interleaved model on
   each caption source (raw narration, OT-cleaned narration, the corpus's Interlink captions) -> OUT/cosmo<steps>_*,
   evaluated on captioning, open and multiple-choice QA and retrieval -> OUT/results/cosmo<steps>_*.json and a
   table. `make demo` runs one seed at a small budget (vidlang.demo_cosmo.DEMO: 40 steps, 30 evaluation items: a
   smoke check of the pipeline, ~100 s per model on 2 cores); `vidlang demo --cosmo-full --cosmo-seeds 0 1 2` is
   the paired comparison over three seeds at the config's budget.

Checkpoints are selected on held-out *training* videos; the evaluation split is only used for the table.
Every stage is skipped when its output exists, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vidlang import pipeline as P
from vidlang.io import atomic_write_text

# (column label, flattened result key from vidlang.eval.report.task_rows, higher is better)
HEADLINE = [
    ("YC2 clip t2v R@5", "clip-youcookii / t2v / R@5", True),
    ("YC2 clip MedR", "clip-youcookii / t2v / MedR", False),
    ("MSR-VTT t2v R@5", "clip-msrvtt / t2v / R@5", True),
    ("MSR-VTT MC acc", "videoqa-msrvtt / accuracy", True),
    ("YC2 paragraph R@1 (OT)", "paragraph-youcookii / bg_removed / ot / R@1", True),
    ("COIN frame acc (sup.)", "segmentation-coin / supervised_linear / frame_accuracy", True),
    ("COIN step-only acc (sup.)", "segmentation-coin / supervised_linear / step_accuracy", True),
    ("CrossTask recall", "crosstask / recall", True),
    ("align recall (DP)", "alignment / recall_dp", True),
    ("relevance AUC (max sim)", "alignment / auc_max_sim", True),
]
# Baselines computed by the evaluation code itself (not by a model): shown as their own rows.
BASELINES = [
    ("raw timestamps", {"align recall (DP)": "alignment / baseline / timestamps / recall"}),
    ("all background", {"COIN frame acc (sup.)": "segmentation-coin / baseline / all_background / frame_accuracy",
                        "COIN step-only acc (sup.)": "segmentation-coin / baseline / all_background / step_accuracy"}),
]


def _mean_std(values: list[float]) -> str:
    m, sd, n = P.mean_std(values)
    return "-" if n == 0 else f"{m:.1f}" if n == 1 else f"{m:.1f} ± {sd:.1f}"


def headline_table(rows: dict[str, list[dict]]) -> str:
    """rows: name -> list of results dicts (one per seed) -> markdown table (mean ± std over seeds)."""
    from vidlang.eval.report import task_rows

    flat = {name: [task_rows(r) for r in runs] for name, runs in rows.items()}
    head = "| model | " + " | ".join(label for label, _, _ in HEADLINE) + " |"
    lines = [head, "|---|" + "---|" * len(HEADLINE)]
    for name, runs in flat.items():
        cells = [_mean_std([f.get(key) for f in runs]) for _, key, _ in HEADLINE]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    any_run = next(iter(flat.values()))
    for name, cols in BASELINES:
        cells = [_mean_std([f.get(cols[label]) for f in any_run]) if label in cols else "" for label, _, _ in HEADLINE]
        lines.append(f"| *{name}* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gate_note(rows: dict[str, list[dict]]) -> str:
    """A line naming the runs whose aligners fell back to the raw timestamps (label-free gate), or ""."""
    def content_off(r: dict) -> bool:
        hyper = r.get("tasks", {}).get("alignment", {}).get("hyperparameters", {})
        return bool(hyper.get("content_off")) or "content off" in hyper.get("source", "")  # results without the flag

    off = [name for name, runs in rows.items() if any(content_off(r) for r in runs)]
    if not off:
        return ""
    return ("Alignment: the label-free check switched the model's content off for " + ", ".join(off) +
            " (some or all seeds); there the aligners return the raw timestamps.")


def paired_differences(norton: list[dict], infonce: list[dict]) -> str:
    """Per-metric paired difference norton - infonce over seeds (mean ± std, wins/seeds)."""
    from vidlang.eval.report import task_rows

    out = ["| metric | norton − infonce (paired, mean ± std) | seeds where norton is better |", "|---|---|---|"]
    a, b = [task_rows(r) for r in norton], [task_rows(r) for r in infonce]
    for label, key, higher in HEADLINE:
        diffs, wins = P.paired(a, b, key, higher)
        out.append(f"| {label} | {_mean_std(diffs)} | {wins}/{len(diffs)} |")
    return "\n".join(out)


# The configs each stage runs, shipped inside the package (vidlang/configs).
STAGE_CONFIGS = [("pretraining", "norton/pretrain_demo_cpu.yaml"), ("Norton post-training", "norton/demo_cpu.yaml"),
                 ("continued InfoNCE", "norton/infonce_demo_cpu.yaml"), ("evaluation", "eval/synthetic.yaml"),
                 ("COSMO", "cosmo/demo_cpu.yaml")]


def _stage_configs_epilog() -> str:
    """The packaged config of each stage with its launch line (read from the file, so --help shows what runs)."""
    from vidlang.config import packaged_config

    lines = ["configs (packaged with vidlang):"]
    for stage, name in STAGE_CONFIGS:
        path = packaged_config(name)
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ") if path else "MISSING"
        lines.append(f"  {stage}: {name}  ({first})")
    return "\n".join(lines)


def _cosmo_section(out: Path, corpus, pretrained: Path, seeds: list[int], quick: bool, stage, full: bool) -> str:
    """The COSMO rows (vidlang.demo_cosmo), or one line saying why they were left out."""
    from vidlang import demo_cosmo

    if not seeds:
        return ""
    missing = demo_cosmo.lm_available()
    if missing is not None:
        stage(f"7-8/8 COSMO rows skipped: {missing}")
        return f"\nCOSMO rows skipped: {missing}\n"
    budget = demo_cosmo.FULL if full else demo_cosmo.DEMO
    return "\n" + demo_cosmo.run_cosmo(out, corpus, pretrained, seeds, quick, stage, budget)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vidlang demo", description=__doc__.split("\n")[0],
                                 epilog=_stage_configs_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--videos", type=int, default=400,
                    help="synthetic videos (learning from noisy narration shows from a few hundred on)")
    ap.add_argument("--corpus-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="post-training seeds")
    ap.add_argument("--cosmo-seeds", type=int, nargs="*", default=[0],
                    help="COSMO seeds (one model per caption source and seed); none = no COSMO rows")
    ap.add_argument("--cosmo-full", action="store_true",
                    help="COSMO at the config's budget (150 steps, 100 clips/questions, beam 3) instead of make "
                         "demo's (40 steps, 30 clips/questions, no beam row)")
    ap.add_argument("--quick", action="store_true", help="tiny run for smoke tests (40 videos, few steps, 1 seed)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--corpus", type=Path, default=None,
                    help="run on this public-layout corpus folder instead of synthesising one (--videos is ignored)")
    args = ap.parse_args(argv)

    out = Path(args.out)
    t0 = time.perf_counter()
    videos, seeds = (40, [0]) if args.quick else (args.videos, args.seeds)
    quick = ["train.steps=30", "train.eval_every=10", "data.batch_videos=8"] if args.quick else []
    synth = ["--videos", videos, "--seed", args.corpus_seed] + (["--msrvtt-clips", 30] if args.quick else [])

    def stage(msg: str) -> None:
        print(f"\n[demo {time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    if args.corpus is not None:
        stage(f"1-2/8 features of the corpus {args.corpus}")
        corpus = P.prepare_public_corpus(out, args.corpus, workers=args.workers)
        what = f"the corpus {args.corpus}"
    else:
        stage(f"1-2/8 synthetic corpus ({videos} videos) and features")
        corpus = P.prepare_corpus(out, synth, workers=args.workers)
        what = f"the synthetic corpus ({videos} videos)"
    stage("3/8 InfoNCE pretraining (VideoCLIP-style)")
    pre = P.train_stage("pretrain_demo_cpu.yaml", out / "pretrain", corpus, quick)
    post: dict[str, list[Path]] = {"norton": [], "infonce": []}
    for seed in seeds:
        for name, cfg in (("norton", "demo_cpu.yaml"), ("infonce", "infonce_demo_cpu.yaml")):
            stage(f"4/8 post-training {name}, seed {seed}, from the pretrained checkpoint")
            post[name].append(P.train_stage(cfg, out / f"{name}_s{seed}", corpus, [*quick, f"train.seed={seed}"],
                                            init_from=pre))

    stage("5/8 evaluation on every task (the evaluation split; never used for selection)")
    res = out / "results"
    untrained = P.untrained_checkpoint("pretrain_demo_cpu.yaml", out / "untrained", corpus)
    rows = {
        "chance (random embeddings)": [P.eval_stage("random", res / "chance.json", corpus)],
        "untrained": [P.eval_stage(untrained, res / "untrained.json", corpus)],
        "pretrained (InfoNCE)": [P.eval_stage(pre, res / "pretrain.json", corpus)],
        "+ InfoNCE (continued)": [P.eval_stage(c, res / f"infonce_s{s}.json", corpus)
                                  for s, c in zip(seeds, post["infonce"])],
        "+ Norton": [P.eval_stage(c, res / f"norton_s{s}.json", corpus) for s, c in zip(seeds, post["norton"])],
    }
    table = headline_table(rows)
    note = gate_note(rows)
    if note:
        table += "\n\n" + note
    diffs = paired_differences(rows["+ Norton"], rows["+ InfoNCE (continued)"])

    stage("6/8 report and figures")
    names = ["chance", "untrained", "pretrain", "infonce_s0", "norton_s0"]
    P.run_cli(["report", *[res / f"{n}.json" for n in names], "--names", *names, "--out-dir", out / "report"])
    cosmo = _cosmo_section(out, corpus, pre, args.cosmo_seeds[:1] if args.quick else args.cosmo_seeds, args.quick,
                           stage, args.cosmo_full)
    text = (f"# vidlang demo on {what}, seeds {seeds}, {time.perf_counter() - t0:.0f} s\n\n"
            f"Evaluation split; percent; mean ± std over post-training seeds.\n\n{table}\n\n"
            f"Paired differences over seeds:\n\n{diffs}\n{cosmo}")
    atomic_write_text(out / "results.md", text)
    print("\n" + text)
    print(f"full table and figures: {out / 'report'}; per-run results: {res}")
    return 0
