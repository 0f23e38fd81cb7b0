"""The COSMO rows of `vidlang demo`: interleaved training on three caption sources, evaluated with an LM.

Per seed, configs/cosmo/demo_cpu.yaml (SmolLM2-135M-Instruct cut to 8 layers, frozen; the visual side starts
from the pretrained dual encoder's video tower, `--init-from`, kept frozen) trains on the same feature store with `data.captions` set to
- the raw narration (the store's cleaned ASR lines: what a user has),
- the narration cleaned by Norton's OT (`vidlang align` with the pretrained dual encoder, vidlang.pipeline.
  ot_clean_stage: lines re-timed to their clips, lines sent to the bucket dropped),
- the corpus's Howto-Interlink7M clip captions, where it has them (clean captions: the upper bound).
Each model is evaluated on the LM tasks (captioning, open and multiple-choice QA) and the contrastive ones, on the
evaluation split only (checkpoints are selected on held-out TRAINING videos by their next-token loss). The table
prints mean ± std over seeds; under each model, the same model given another query's clip (does it use the
video?); the baselines (nearest training caption, text-only LM, most frequent answer, chance) come from the
evaluator. The paired table gives OT-cleaned − raw per seed and the share of the gap from
raw narration to Interlink captions that OT cleaning closes (difference of the means).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from vidlang import pipeline as P

CONFIG = "cosmo/demo_cpu.yaml"
TASKS = ["caption-youcookii", "caption-msrvtt", "videoqa-open-msrvtt", "videoqa-msrvtt-lm", "videoqa-msrvtt",
         "clip-youcookii"]
EVAL = [f"tasks=[{','.join(TASKS)}]"]


@dataclass(frozen=True)
class Budget:
    """How much COSMO the demo runs: training steps, clips per captioning task and questions per QA task (the
    first N, sorted ids; the protocol lines say so), beam width of the beam-search row (1: no beam row)."""

    steps: int
    eval_every: int  # held-out next-token loss for checkpoint selection
    items: int
    beams: int

    def train_overrides(self) -> list[str]:
        return [f"train.steps={self.steps}", f"train.eval_every={self.eval_every}"]

    def eval_overrides(self) -> list[str]:
        return [f"captioning.max_clips={self.items}", f"qa.max_questions={self.items}",
                f"captioning.num_beams={self.beams}"]


# `make demo`: 40 steps, 30 items, no beam row (~100 s per model on 2 cores; the dual-encoder rows take the rest).
DEMO = Budget(steps=40, eval_every=20, items=30, beams=1)
# `vidlang demo --cosmo-full`: the config's 150 steps, 100 clips and questions, beam 3 (~3 min per model).
FULL = Budget(steps=150, eval_every=50, items=100, beams=3)
QUICK_TRAIN = ["train.steps=4", "train.eval_every=2", "train.log_every=1", "data.batch_videos=4"]
QUICK_EVAL = ["captioning.max_clips=6", "qa.max_questions=6", "captioning.max_new_tokens=4", "qa.max_new_tokens=2",
              "captioning.num_beams=2"]

# (column label, flattened result key, higher is better)
HEADLINE = [
    ("YC2 CIDEr-D greedy", "caption-youcookii / 0-shot greedy / CIDEr-D", True),
    ("YC2 CIDEr-D beam", "caption-youcookii / 0-shot beam3 / CIDEr-D", True),
    ("YC2 CIDEr-D 4-shot", "caption-youcookii / 4-shot greedy / CIDEr-D", True),
    ("YC2 BLEU-4 greedy", "caption-youcookii / 0-shot greedy / BLEU-4", True),
    ("MSR-VTT CIDEr-D greedy", "caption-msrvtt / 0-shot greedy / CIDEr-D", True),
    ("MSR-VTT CIDEr-D 4-shot", "caption-msrvtt / 4-shot greedy / CIDEr-D", True),
    ("open QA acc 0-shot", "videoqa-open-msrvtt / 0-shot / accuracy", True),
    ("open QA acc 4-shot", "videoqa-open-msrvtt / 4-shot / accuracy", True),
    ("MC acc (LM likelihood)", "videoqa-msrvtt-lm / accuracy", True),
    ("MC acc (contrastive)", "videoqa-msrvtt / accuracy", True),
    ("YC2 t2v R@5 (contrastive)", "clip-youcookii / t2v / R@5", True),
]


def _b(task: str, name: str, metric: str) -> str:
    return f"{task} / baseline / {name} / {metric}"


# The same model given another query's clip (the evaluator's control for using the video): one row per source.
OTHER_CLIPS = {
    "YC2 CIDEr-D greedy": _b("caption-youcookii", "other clips 0-shot", "CIDEr-D"),
    "YC2 CIDEr-D 4-shot": _b("caption-youcookii", "other clips 4-shot", "CIDEr-D"),
    "YC2 BLEU-4 greedy": _b("caption-youcookii", "other clips 0-shot", "BLEU-4"),
    "MSR-VTT CIDEr-D greedy": _b("caption-msrvtt", "other clips 0-shot", "CIDEr-D"),
    "MSR-VTT CIDEr-D 4-shot": _b("caption-msrvtt", "other clips 4-shot", "CIDEr-D"),
    "open QA acc 0-shot": _b("videoqa-open-msrvtt", "other clips 0-shot", "accuracy"),
    "open QA acc 4-shot": _b("videoqa-open-msrvtt", "other clips 4-shot", "accuracy"),
    "MC acc (LM likelihood)": _b("videoqa-msrvtt-lm", "other clips", "accuracy"),
}

BASELINES = [
    ("nearest training caption", {
        "YC2 CIDEr-D greedy": _b("caption-youcookii", "nearest training caption", "CIDEr-D"),
        "YC2 CIDEr-D beam": _b("caption-youcookii", "nearest training caption", "CIDEr-D"),
        "YC2 CIDEr-D 4-shot": _b("caption-youcookii", "nearest training caption", "CIDEr-D"),
        "YC2 BLEU-4 greedy": _b("caption-youcookii", "nearest training caption", "BLEU-4"),
        "MSR-VTT CIDEr-D greedy": _b("caption-msrvtt", "nearest training caption", "CIDEr-D"),
        "MSR-VTT CIDEr-D 4-shot": _b("caption-msrvtt", "nearest training caption", "CIDEr-D")}),
    ("text-only LM (gates at 0)", {
        "YC2 CIDEr-D greedy": _b("caption-youcookii", "text-only LM 0-shot", "CIDEr-D"),
        "YC2 CIDEr-D 4-shot": _b("caption-youcookii", "text-only LM 4-shot", "CIDEr-D"),
        "YC2 BLEU-4 greedy": _b("caption-youcookii", "text-only LM 0-shot", "BLEU-4"),
        "MSR-VTT CIDEr-D greedy": _b("caption-msrvtt", "text-only LM 0-shot", "CIDEr-D"),
        "MSR-VTT CIDEr-D 4-shot": _b("caption-msrvtt", "text-only LM 4-shot", "CIDEr-D"),
        "open QA acc 0-shot": _b("videoqa-open-msrvtt", "text-only LM 0-shot", "accuracy"),
        "open QA acc 4-shot": _b("videoqa-open-msrvtt", "text-only LM 4-shot", "accuracy"),
        "MC acc (LM likelihood)": _b("videoqa-msrvtt-lm", "text-only LM", "accuracy")}),
    ("most frequent answer", {
        "open QA acc 0-shot": _b("videoqa-open-msrvtt", "most frequent answer (overall)", "accuracy"),
        "open QA acc 4-shot": _b("videoqa-open-msrvtt", "most frequent answer (overall)", "accuracy")}),
    ("most frequent answer per question word", {
        "open QA acc 0-shot": _b("videoqa-open-msrvtt", "most frequent answer (per question word)", "accuracy"),
        "open QA acc 4-shot": _b("videoqa-open-msrvtt", "most frequent answer (per question word)", "accuracy")}),
    ("chance", {"MC acc (LM likelihood)": _b("videoqa-msrvtt-lm", "chance", "accuracy"),
                "MC acc (contrastive)": _b("videoqa-msrvtt", "chance", "accuracy"),
                "YC2 t2v R@5 (contrastive)": "clip-youcookii / baseline / chance / R@5"}),
]


def _cell(values: list) -> str:
    m, sd, n = P.mean_std(values)
    return "-" if n == 0 else f"{m:.1f}" if n == 1 else f"{m:.1f} ± {sd:.1f}"


def cosmo_table(rows: dict[str, list[dict]]) -> str:
    """rows: caption source -> results dicts (one per seed) -> markdown table (mean ± std over seeds)."""
    from vidlang.eval.report import task_rows

    flat = {name: [task_rows(r) for r in runs] for name, runs in rows.items() if runs}
    lines = ["| COSMO trained on | " + " | ".join(label for label, _, _ in HEADLINE) + " |",
             "|---|" + "---|" * len(HEADLINE)]
    for name, runs in flat.items():
        lines.append(f"| {name} | " + " | ".join(_cell([f.get(key) for f in runs]) for _, key, _ in HEADLINE) + " |")
        cells = [_cell([f.get(OTHER_CLIPS[label]) for f in runs]) if label in OTHER_CLIPS else ""
                 for label, _, _ in HEADLINE]
        lines.append("| ↳ same model, other clips | " + " | ".join(cells) + " |")
    any_run = next(iter(flat.values()), [{}])
    for name, cols in BASELINES:
        cells = [_cell([f.get(cols[label]) for f in any_run]) if label in cols else "" for label, _, _ in HEADLINE]
        lines.append(f"| *{name}* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cosmo_paired(raw: list[dict], cleaned: list[dict], clean: list[dict]) -> str:
    """OT-cleaned − raw narration paired over seeds, and the share of the raw -> Interlink gap it closes."""
    from vidlang.eval.report import task_rows

    a, b = [task_rows(r) for r in cleaned], [task_rows(r) for r in raw]
    c = [task_rows(r) for r in clean]
    out = ["| metric | OT-cleaned − raw (paired, mean ± std) | seeds where OT-cleaned is better | share of the "
           "raw → Interlink gap closed |", "|---|---|---|---|"]
    for label, key, higher in HEADLINE:
        diffs, wins = P.paired(a, b, key, higher)
        share = "-"
        if c:
            gap = P.mean_std([f.get(key) for f in c])[0] - P.mean_std([f.get(key) for f in b])[0]
            gain = P.mean_std([f.get(key) for f in a])[0] - P.mean_std([f.get(key) for f in b])[0]
            if math.isfinite(gap) and math.isfinite(gain) and abs(gap) > 1e-9:
                share = f"{100 * gain / gap:.0f}% (gap {gap:+.1f})"
            elif math.isfinite(gap):
                share = "no gap"
        out.append(f"| {label} | {_cell(diffs)} | {wins}/{len(diffs)} | {share} |")
    return "\n".join(out)


def lm_available() -> str | None:
    """None when the configured LM can be loaded, else why not (one line)."""
    from vidlang.config import load_config
    from vidlang.errors import ConfigError
    from vidlang.models.cosmo.causal_lm import resolve_lm_path
    from vidlang.train.config import TrainConfig

    try:
        resolve_lm_path(load_config(TrainConfig, P.CONFIGS / CONFIG).model.lm_path)
    except ConfigError as e:
        return str(e)
    return None


def run_cosmo(out: Path, corpus: P.CorpusPaths, pretrained: Path, seeds: list[int], quick: bool, stage,
              budget: Budget = DEMO) -> str:
    """Train and evaluate the COSMO rows; returns the markdown section of results.md. Runs are kept per budget
    (OUT/cosmo<steps>_<source>_s<seed>), so a larger budget never reuses a smaller one's models."""
    res = out / "results"
    stage("7/8 narration cleaned by OT with the pretrained dual encoder (vidlang align)")
    cleaned = P.ot_clean_stage(pretrained, corpus, out / "ot_cleaned_captions.json")
    sources = {"raw narration": ("raw", ""), "OT-cleaned narration": ("otclean", str(cleaned))}
    if corpus.interlink is not None:
        sources["Interlink captions (clean)"] = ("interlink", str(corpus.interlink))
    rows: dict[str, list[dict]] = {name: [] for name in sources}
    for seed in seeds:
        for name, (key, captions) in sources.items():
            stage(f"8/8 COSMO on {name}, seed {seed}: train (configs/{CONFIG}) and evaluate")
            run = f"cosmo{budget.steps}_{key}_s{seed}"
            ckpt = P.train_stage(CONFIG, out / run, corpus,
                                 [f"data.captions={captions}", f"train.seed={seed}", "train.progress=false",
                                  *budget.train_overrides(), *(QUICK_TRAIN if quick else [])],
                                 init_from=pretrained)
            rows[name].append(P.eval_stage(ckpt, res / f"{run}.json", corpus,
                                           [*EVAL, *budget.eval_overrides(), *(QUICK_EVAL if quick else [])]))
    text = (f"## COSMO (interleaved clips and captions, SmolLM2-135M cut to 8 layers), {budget.steps} steps, "
            f"seeds {seeds}\n\n"
            "Evaluation split; CIDEr-D and BLEU-4 x100, accuracy and R@5 in percent; mean ± std over seeds; "
            f"captioning on the first {budget.items} clips, open and MC QA on the first {budget.items} questions "
            f"(protocol lines in {res}/cosmo{budget.steps}_*.json).\n\n{cosmo_table(rows)}\n")
    clean = rows.get("Interlink captions (clean)", [])
    text += ("\nOT-cleaned vs raw narration, paired over seeds:\n\n"
             f"{cosmo_paired(rows['raw narration'], rows['OT-cleaned narration'], clean)}\n")
    return text
