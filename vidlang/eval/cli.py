"""`vidlang eval`: run evaluation tasks on a checkpoint and write one results JSON plus a printed table.

    vidlang eval all --config configs/eval/synthetic.yaml [--checkpoint CKPT] [--features DIR] [--out R.json]
    vidlang eval clip-youcookii --checkpoint CKPT --features DIR --annotations youcookii.json [--out R.json]
    vidlang eval <task> ... --set clip.max_clip_seconds=null --set segmentation.head=mlp

Tasks come from the task registry (vidlang.eval.registry; `vidlang eval --help` lists them). `--checkpoint
random` evaluates deterministic random embeddings (the measured chance level). `all` runs every configured task;
a task whose annotation is not configured, or that needs a capability the model lacks (embed, score, generate),
is recorded under "skipped" with the reason, which is also printed. Relative paths in the YAML are resolved
against the current directory. The output path is checked before any work starts.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from vidlang.config import from_dict, load_config, to_dict
from vidlang.errors import ConfigError
from vidlang.eval.capabilities import StoreCache, load_evaluated
from vidlang.eval.config import EvalConfig
from vidlang.eval.registry import get_task, task_names
from vidlang.io import atomic_write_json


def check_output_file(path: str | Path | None, flag: str = "--out") -> None:
    """Refuse an output path that cannot be written, before the work that would fill it."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{flag} {p}: {parent} is not a directory")
    probe = parent if parent.exists() else next((q for q in parent.parents if q.exists()), Path("."))
    import os

    if not os.access(probe, os.W_OK):
        raise ConfigError(f"{flag} {p}: {probe} is not writable")


def evaluate(cfg: EvalConfig, tasks: list[str] | None = None, model=None, progress: bool = True) -> dict:
    """Run `tasks` (default cfg.tasks) on `model` (default: cfg.checkpoint); tasks without configured data or
    whose capability the model lacks are skipped with the reason."""
    model = model if model is not None else load_evaluated(cfg.checkpoint, cfg.device, cfg.random_dim, cfg.seed)
    results = {"vidlang_eval": 1, "checkpoint": cfg.checkpoint,
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "config": to_dict(cfg), "tasks": {}, "skipped": {}}
    stores = StoreCache(getattr(model, "expected_fps", None), getattr(model, "expected_dim", None))
    from tqdm import tqdm

    for name in tqdm(list(tasks or cfg.tasks), desc="eval", disable=not progress, file=sys.stderr):
        task = get_task(name)
        if not getattr(cfg.data, task.annotation):
            results["skipped"][name] = f"data.{task.annotation} not configured"
        elif task.capability not in model.capabilities:
            results["skipped"][name] = (f"the model cannot {task.capability} (its capabilities: "
                                        f"{', '.join(sorted(model.capabilities)) or 'none'})")
        else:
            results["tasks"][name] = task.run(model.evaluator(task.capability), cfg, stores)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vidlang eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("task", choices=["all", *task_names()])
    ap.add_argument("--config", help="YAML (EvalConfig); flags below override it")
    ap.add_argument("--checkpoint", help="checkpoint directory, or 'random'")
    ap.add_argument("--features", help="feature store root")
    ap.add_argument("--msrvtt-features", help="feature store of MSR-VTT clips (default: --features)")
    ap.add_argument("--annotations", help="the task's annotation file/folder (single-task runs)")
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. clip.max_clip_seconds=null")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    cfg = load_config(EvalConfig, args.config, args.overrides)
    raw = to_dict(cfg)
    for key, value in (("checkpoint", args.checkpoint), ("out", args.out)):
        if value:
            raw[key] = value
    for key, value in (("features", args.features), ("msrvtt_features", args.msrvtt_features)):
        if value:
            raw["data"][key] = value
    if args.annotations:
        if args.task == "all":
            raise ConfigError("--annotations needs a single task (use the config's data section for 'all')")
        raw["data"][get_task(args.task).annotation] = args.annotations
    cfg = from_dict(EvalConfig, raw)
    tasks = cfg.tasks if args.task == "all" else [args.task]
    if args.task != "all" and not getattr(cfg.data, get_task(args.task).annotation):
        raise ConfigError(f"{args.task}: no annotations given (--annotations or data.{get_task(args.task).annotation})")
    check_output_file(cfg.out)
    results = evaluate(cfg, tasks, progress=not args.no_progress)
    from vidlang.eval.report import format_results

    print(format_results(results))
    for name, why in results["skipped"].items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    if cfg.out:
        atomic_write_json(cfg.out, results)
        print(f"results written to {cfg.out}")
    if not results["tasks"]:
        print("no task could run (see the reasons above); nothing was evaluated", file=sys.stderr)
        return 1
    return 0


__all__ = ["EvalConfig", "evaluate", "main", "check_output_file"]
