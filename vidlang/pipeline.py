"""End-to-end stages shared by `vidlang demo` and `vidlang study`.

Each stage calls the same `main(argv)` a user would run from the shell (so the demo exercises the real CLI) and
is idempotent: a finished stage is detected by its output and skipped, so an interrupted demo or study resumes.
The paper's protocol (Norton, Sec. 4): pretrain VideoCLIP-style with InfoNCE, then post-train with Norton from
that checkpoint; the fair baseline continues InfoNCE from the same checkpoint for the same number of steps.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from vidlang.config import parse_overrides
from vidlang.errors import VidlangError
from vidlang.io import atomic_write_json

# The configs shipped with vidlang (configs/ of the source tree; vidlang/configs inside an installed wheel).
CONFIGS = Path(__file__).resolve().parent / "configs"


def run_cli(argv: list[str]) -> None:
    """Run `vidlang <argv>` in-process; a non-zero status becomes a VidlangError naming the command."""
    from vidlang.cli import main

    rc = main([str(a) for a in argv])
    if rc:
        raise VidlangError(f"`vidlang {' '.join(map(str, argv))}` failed with status {rc}")


# A corpus folder in the public layout: what `vidlang synth` writes and what `vidlang demo --corpus DIR` reads.
ANNOTATIONS = {  # data.<key> of configs/eval/synthetic.yaml -> file under DIR/annotations/
    "youcookii": "youcookii_annotations_trainval.json",
    "msrvtt_jsfusion": "MSRVTT_JSFUSION_test.csv", "msrvtt_mc": "MSR_MC_test.csv",
    "coin": "COIN.json", "crosstask": "crosstask_release", "msrvtt_qa": "msrvtt_qa_test.json",
}
CAPTIONS = "howto100m_captions.json"  # DIR/annotations/: the long videos' ASR narration (HowTo100M format)
HTM_ALIGN = "htm_align.json"  # DIR/annotations/: HTM-Align ground truth of the evaluation videos (optional)
INTERLINK = "howto_interlink7m.tsv"  # DIR/annotations/: Howto-Interlink7M clip captions of the long videos (optional)


@dataclass
class CorpusPaths:
    root: Path  # public layout: videos/, msrvtt/videos/, annotations/ (ANNOTATIONS, CAPTIONS, HTM_ALIGN)
    features: Path  # long-video feature store (with cleaned narration in text/)
    msrvtt_features: Path  # feature store of the MSR-VTT-style clips
    splits: Path  # {"train": [...], "val": [...]}: training reads only "train"
    ground_truth: Path | None  # synthetic ground_truth.json, HTM-Align's htm_align.json, or None (no alignment task)

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    @property
    def msrvtt_videos(self) -> Path:
        return self.root / "msrvtt" / "videos"

    @property
    def interlink(self) -> Path | None:
        """The corpus's Howto-Interlink7M clip captions (COSMO's clean captions), or None."""
        path = self.annotations / INTERLINK
        return path if path.is_file() else None

    def train_overrides(self) -> list[str]:
        return [f"data.features={self.features}", f"data.splits={self.splits}"]

    def eval_overrides(self) -> list[str]:
        """Every task whose annotation file exists; a missing one is `null`, which `vidlang eval all` skips."""
        pairs: dict[str, object] = {"features": self.features, "msrvtt_features": self.msrvtt_features}
        clips = self.msrvtt_videos.is_dir()  # MSR-VTT tasks need the clips as well as the CSVs
        for key, name in ANNOTATIONS.items():
            usable = (self.annotations / name).exists() and (clips or not key.startswith("msrvtt"))
            pairs[key] = self.annotations / name if usable else "null"
        pairs["ground_truth"] = self.ground_truth or "null"
        out = [f"data.{k}={v}" for k, v in pairs.items()]
        if self.ground_truth is not None and self.ground_truth.name == HTM_ALIGN:
            # HTM-Align holds the true times; the narration's own (ASR) times come from the caption file
            out.append(f"alignment.captions={self.annotations / CAPTIONS}")
        return out


def _preprocess(corpus: CorpusPaths, workers: int) -> None:
    common = ["--fps", "1", "--workers", workers, "--no-progress"]
    run_cli(["preprocess", "--videos", corpus.root / "videos", "--out", corpus.features,
             "--captions", corpus.annotations / CAPTIONS, *common])
    if corpus.msrvtt_videos.is_dir():
        run_cli(["preprocess", "--videos", corpus.msrvtt_videos, "--out", corpus.msrvtt_features, *common])


def prepare_corpus(out: Path, synth_args: list[str], workers: int = 2, log=print) -> CorpusPaths:
    """synth -> preprocess (thumbnail features at 1/s + cleaned narration) for the long videos and MSR-VTT clips."""
    out = Path(out)
    root = out / "corpus"
    corpus = CorpusPaths(root, out / "features", out / "msrvtt_features", root / "splits.json",
                         root / "ground_truth.json")
    t0 = time.perf_counter()
    if not corpus.ground_truth.exists():
        run_cli(["synth", corpus.root, *synth_args, "--workers", workers, "--no-progress"])
    _preprocess(corpus, workers)
    log(f"corpus ready in {time.perf_counter() - t0:.0f} s: {corpus.root}")
    return corpus


def splits_from_youcookii(path: Path) -> dict[str, list[str]]:
    """{"train": YouCookII "training" videos, "val": its "validation" videos}, each sorted (other subsets ignored)."""
    from vidlang.datasets.youcookii import read_youcookii

    videos = read_youcookii(path)
    return {name: sorted(v.video_id for v in videos if v.subset == subset)
            for name, subset in (("train", "training"), ("val", "validation"))}


def validate_annotations(corpus: CorpusPaths) -> None:
    """Read every annotation file the demo's stages will use with its strict reader (a FormatError names the file
    and the entry), so that a malformed file stops the run before preprocessing and training, not after."""
    from vidlang import datasets as D
    from vidlang.datasets.alignment_truth import load_alignment_truth

    ann = corpus.annotations
    D.read_howto100m_captions(ann / CAPTIONS)
    from vidlang.datasets.msrvtt_qa import read_msrvtt_qa

    readers = {"youcookii": D.read_youcookii, "msrvtt_jsfusion": D.read_msrvtt_jsfusion,
               "msrvtt_mc": D.read_msrvtt_mc, "coin": D.read_coin, "crosstask": D.read_crosstask,
               "msrvtt_qa": read_msrvtt_qa}
    for key, value in (ov.split("=", 1) for ov in corpus.eval_overrides()):
        name = key.removeprefix("data.")
        if name in readers and value != "null":
            readers[name](value)
    if corpus.ground_truth is not None:
        captions = ann / CAPTIONS if corpus.ground_truth.name == HTM_ALIGN else None
        load_alignment_truth(str(corpus.ground_truth), str(captions) if captions else None)
    if corpus.interlink is not None:
        D.read_interlink(corpus.interlink)


def prepare_public_corpus(out: Path, root: Path, workers: int = 2, log=print) -> CorpusPaths:
    """A corpus vidlang did not generate, in the public layout -> features + splits under `out`.

    Needs DIR/videos/ and DIR/annotations/{howto100m_captions.json, youcookii_annotations_trainval.json}; the
    train/val split is YouCookII's training/validation subset (written to OUT/splits.json); the other annotation
    files, DIR/msrvtt/videos/ and DIR/annotations/htm_align.json (alignment ground truth) are optional.
    """
    out, root = Path(out), Path(root)
    ann = root / "annotations"
    missing = [str(p) for p in (root / "videos", ann / CAPTIONS, ann / ANNOTATIONS["youcookii"]) if not p.exists()]
    if missing:
        raise VidlangError(f"{root} is not a corpus in the public layout: missing {', '.join(missing)}")
    htm = ann / HTM_ALIGN
    corpus = CorpusPaths(root, out / "features", out / "msrvtt_features", out / "splits.json",
                    htm if htm.exists() else None)
    t0 = time.perf_counter()
    validate_annotations(corpus)  # every file a later stage reads, before the first expensive one
    splits = splits_from_youcookii(ann / ANNOTATIONS["youcookii"])
    if not splits["train"]:
        raise VidlangError(f"{ann / ANNOTATIONS['youcookii']}: no video has subset 'training', nothing to train on")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(corpus.splits, splits)
    _preprocess(corpus, workers)
    log(f"corpus ready in {time.perf_counter() - t0:.0f} s: {root} ({len(splits['train'])} training, "
        f"{len(splits['val'])} validation videos)")
    return corpus


def train_stage(config: str, out: Path, corpus: CorpusPaths, overrides: list[str] = (),
                init_from: Path | None = None) -> Path:
    """Train (or resume, or skip when finished) one run; returns its best checkpoint directory. `config`: a file
    of configs/norton/, or a path under configs/ (e.g. "cosmo/demo_cpu.yaml")."""
    out = Path(out)
    if (out / "summary.json").exists() and (out / "best").is_dir():
        return out / "best"
    path = CONFIGS / config if "/" in str(config) else CONFIGS / "norton" / config
    argv = ["train", "--config", path, *corpus.train_overrides(), *overrides, "--out", out]
    if init_from is not None:
        argv += ["--init-from", init_from]
    run_cli(argv)
    return out / "best"


def untrained_checkpoint(config: str, out: Path, corpus: CorpusPaths, seed: int = 0) -> Path:
    """The model a run would start from (packaged MiniLM text tower, random video tower and heads), saved as a
    checkpoint."""
    out = Path(out)
    if (out / "model.safetensors").exists():
        return out
    import torch

    from vidlang.config import load_config
    from vidlang.data.store import FeatureStore
    from vidlang.models import model_class, save_checkpoint
    from vidlang.train.config import TrainConfig

    cfg = load_config(TrainConfig, CONFIGS / "norton" / config, corpus.train_overrides())
    store = FeatureStore(corpus.features)
    arch = model_class(cfg.model.arch)
    arch.resolve_config(cfg, store.dim, store.fps)
    torch.manual_seed(seed)
    model = arch.build(cfg)
    save_checkpoint(out, model, cfg, {"step": 0, "epoch": 0, "metrics": {}, "objective": "untrained",
                                      "fps": store.fps, "clip_len": int(cfg.data.max_clip_len * store.fps)})
    return out


def eval_stage(checkpoint: Path | str, out_json: Path, corpus: CorpusPaths, overrides: list[str] = ()) -> dict:
    """`vidlang eval all` on every task of the synthetic corpus (or the `tasks=[...]` of `overrides`); cached in
    out_json, which is reused only if it was run on at least the requested tasks (the study evaluates two tasks
    per run and may share a corpus folder with the demo, which needs all of them)."""
    out_json = Path(out_json)
    stale = False
    if out_json.exists():
        from vidlang.eval.registry import task_names

        # parsed the way `vidlang eval --set` parses them (YAML values), so the comparison sees the same list
        wanted = parse_overrides(list(overrides)).get("tasks", task_names())
        done = json.loads(out_json.read_text()).get("config", {}).get("tasks", [])
        stale = not set(wanted) <= set(done)  # rerun; the eval writes its JSON atomically over the old one
    if stale or not out_json.exists():
        sets = []
        for ov in [*corpus.eval_overrides(), *overrides]:
            sets += ["--set", ov]
        run_cli(["eval", "all", "--config", CONFIGS / "eval" / "synthetic.yaml", "--checkpoint", checkpoint,
                 *sets, "--out", out_json, "--no-progress"])
    return json.loads(out_json.read_text())


def realign_stage(checkpoint: Path, corpus: CorpusPaths, out_json: Path, drop_frac: float = 0.3) -> Path:
    """`vidlang align` the corpus's narration with `checkpoint`, dropping the least alignable lines; the output
    (HowTo100M caption format) feeds training through `data.captions=...`. Cached in out_json."""
    out_json = Path(out_json)
    if not out_json.exists():
        run_cli(["align", "--checkpoint", checkpoint, "--features", corpus.features,
                 "--captions", corpus.annotations / CAPTIONS, "--out", out_json,
                 "--drop-frac", drop_frac])
    return out_json


# How narration is cleaned by Norton's OT before COSMO reads it: `vidlang align --method ot-clean` with a trained
# dual encoder: the transport plan with the prompt bucket moves each line to the seconds it sends its mass to and
# drops the lines it sends to the bucket (vidlang.eval.alignment.ot_clean_lines). The one place that says how
# (`vidlang demo` calls ot_clean_stage).
OT_CLEAN_ARGS = ["--method", "ot-clean"]


def ot_clean_stage(checkpoint: Path, corpus: CorpusPaths, out_json: Path) -> Path:
    """The corpus's narration cleaned by OT with `checkpoint` (HowTo100M caption format, for data.captions).
    Cached in out_json."""
    out_json = Path(out_json)
    if not out_json.exists():
        run_cli(["align", "--checkpoint", checkpoint, "--features", corpus.features,
                 "--captions", corpus.annotations / CAPTIONS, "--out", out_json, *OT_CLEAN_ARGS])
    return out_json


def mean_std(values) -> tuple[float, float, int]:
    """(mean, sample std, n) of the finite values (None/NaN skipped); std 0 for one value, NaN for none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan, 0
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd, len(vals)


def paired(runs: list[dict], baseline: list[dict], key: str, higher: bool) -> tuple[list[float], int]:
    """Per-seed differences runs[i][key] - baseline[i][key] (flattened result rows) and how many favour `runs`."""
    diffs = [a.get(key, math.nan) - b.get(key, math.nan) for a, b in zip(runs, baseline)]
    wins = sum((d > 0) if higher else (d < 0) for d in diffs if not math.isnan(d))
    return diffs, wins
