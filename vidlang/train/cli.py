"""`vidlang train` and `vidlang show-config`.

    vidlang train --config configs/norton/demo_cpu.yaml [key=value ...] [--init-from CKPT] [--out DIR]
                  [--resume | --restart] [--extend]
    vidlang show-config --config configs/norton/demo_cpu.yaml [key=value ...]

Dotted overrides may come anywhere on the line. `--config` takes a path or the name of a config packaged with
vidlang (e.g. `norton/demo_cpu.yaml`). A run folder with a saved state resumes by default; a changed config is
refused unless `--restart` (start over, deleting the old run) or `--extend` (only train.steps grew).

Multi-process: `accelerate launch --multi_gpu --num_processes N -m vidlang.cli train --config ...` (on CPU add
`--num_machines 1 --mixed_precision no --dynamo_backend no`; `accelerate launch --cpu` runs only one process).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vidlang.config import dump_yaml, load_config
from vidlang.errors import ConfigError


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--config", required=True, help="training YAML (a path, or a packaged name like norton/demo_cpu)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4 loss.objective=infonce")
    return p


def _load(args):
    from vidlang.train.config import TrainConfig

    for ov in args.overrides:
        if "=" not in ov:
            raise ConfigError(f"argument {ov!r} is not an override of the form key=value")
    return load_config(TrainConfig, args.config, args.overrides)


def show_config_main(argv: list[str]) -> int:
    args = _parser("vidlang show-config").parse_intermixed_args(argv)
    print(dump_yaml(_load(args)), end="")
    return 0


def main(argv: list[str]) -> int:
    p = _parser("vidlang train")
    p.add_argument("--out", default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--init-from", default=None, help="checkpoint directory whose weights initialise the model")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", default=None,
                   help="resume from OUT/state (error if absent); the default resumes when a state exists")
    g.add_argument("--restart", "--no-resume", dest="resume", action="store_false",
                   help="start over even if OUT/state exists (deletes the old run's state, logs and checkpoints)")
    p.add_argument("--extend", action="store_true",
                   help="resume with a larger train.steps (the schedule is recomputed for the new total)")
    args = p.parse_intermixed_args(argv)
    cfg = _load(args)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    if args.init_from and not Path(args.init_from).is_dir():
        raise ConfigError(f"--init-from: {args.init_from} is not a checkpoint directory")
    from vidlang.train.trainer import train

    summary = train(cfg, out, init_from=args.init_from, resume=args.resume, extend=args.extend)
    from accelerate.state import PartialState

    if PartialState().is_main_process:
        best = summary["best"]
        best_s = f"{best:.2f}" if isinstance(best, float) else "n/a"
        print(f"trained {summary['arch']} with {summary['objective']} for {summary['steps']} steps "
              f"({summary['epochs']} epochs, {summary['time_s']} s, {summary['world_size']} process(es)); best "
              f"held-out {summary['select_metric']} {best_s} at step {summary['best_step']}"
              f"{' (stopped early)' if summary['stopped_early'] else ''}; checkpoints in {out}/best and {out}/last")
        print(json.dumps(summary["last_metrics"]))
    return 0
