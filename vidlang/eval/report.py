"""`vidlang report RESULTS.json...`: a side-by-side markdown table of several runs, plus PNG figures.

    vidlang report runs/norton.json runs/infonce.json --names norton infonce --out-dir report/

Table rows are the flattened metrics (`task / group / metric`, e.g. `clip-youcookii / t2v / R@5`), including the
baselines every task records (chance, all-background, raw timestamps); recall curves, per-task breakdowns and
example timelines are left out of the table and drawn instead:
- `recall_vs_k_<task>_<direction>.png`: R@K against K for every run (clip retrieval);
- `segmentation_<video>.png`: ground truth vs each run's predictions as colour timelines (COIN examples).
Figures use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from vidlang.errors import FormatError, VidlangError
from vidlang.io import atomic_write_text

SKIP_KEYS = {"curve", "per_task", "examples", "protocol", "counts"}


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    """Nested numeric dict -> {"a / b / c": value}; skips SKIP_KEYS and non-numeric leaves."""
    out: dict[str, float] = {}
    for k, v in d.items():
        if k in SKIP_KEYS:
            continue
        key = f"{prefix} / {k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def task_rows(results: dict) -> dict[str, float]:
    rows: dict[str, float] = {}
    for task, res in results.get("tasks", {}).items():
        rows.update(flatten(res.get("metrics", {}), task))
        rows.update(flatten(res.get("baselines", {}), f"{task} / baseline"))
    return rows


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.2f}"


def format_results(results: dict) -> str:
    """Printed table of one results dict: task, metric, value (+ skipped tasks)."""
    lines = []
    for task, res in results.get("tasks", {}).items():
        lines.append(f"== {task} ({res.get('protocol', '')})")
        counts = res.get("counts", {})
        if counts:
            lines.append("   " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        rows = flatten(res.get("metrics", {}))
        rows.update(flatten(res.get("baselines", {}), "baseline"))
        width = max((len(k) for k in rows), default=10)
        lines += [f"   {k:<{width}}  {_fmt(v):>8}" for k, v in rows.items()]
    for task, why in results.get("skipped", {}).items():
        lines.append(f"-- {task}: skipped ({why})")
    return "\n".join(lines)


def markdown_table(runs: list[dict], names: list[str]) -> str:
    """Side-by-side markdown table: one row per metric (union over runs), one column per run."""
    per = [task_rows(r) for r in runs]
    keys: list[str] = []
    for p in per:
        keys += [k for k in p if k not in keys]
    out = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    out += [f"| {k} | " + " | ".join(_fmt(p.get(k)) for p in per) + " |" for k in keys]
    return "\n".join(out)


def _load(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: results file not found")
    try:
        obj = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(p, None, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict) or "tasks" not in obj:
        raise FormatError(p, None, "not a vidlang eval results file (no 'tasks')")
    return obj


def plot_recall_curves(runs: list[dict], names: list[str], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = sorted({t for r in runs for t in r["tasks"]})
    for task in tasks:
        for direction in ("t2v", "v2t"):
            curves = [(n, r["tasks"].get(task, {}).get("metrics", {}).get(direction, {}).get("curve"))
                      for r, n in zip(runs, names)]
            curves = [(n, c) for n, c in curves if c]
            if not curves:
                continue
            fig, ax = plt.subplots(figsize=(4.5, 3.2))
            for n, c in curves:
                ks = sorted(int(k) for k in c)
                ax.plot(ks, [c[str(k)] for k in ks], marker="o", label=n)
            ax.set_xscale("log")
            ax.set_xlabel("K")
            ax.set_ylabel("R@K (%)")
            ax.set_title(f"{task} {direction}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = out_dir / f"recall_vs_k_{task}_{direction}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            written.append(path)
    return written


def plot_segmentation_timelines(runs: list[dict], names: list[str], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    by_video: dict[str, list] = {}
    for r, n in zip(runs, names):
        for ex in r["tasks"].get("segmentation-coin", {}).get("examples", []):
            by_video.setdefault(ex["video_id"], []).append((n, ex))
    for vid, items in by_video.items():
        rows = [("truth", np.asarray(items[0][1]["truth"]))]
        for n, ex in items:
            rows += [(f"{n}: {mode}", np.asarray(p)) for mode, p in ex["pred"].items()]
        labels = sorted({int(x) for _, a in rows for x in np.unique(a)})
        index = {l: i for i, l in enumerate(labels)}
        cmap = plt.get_cmap("tab20", max(len(labels), 2))
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.0))
        for i, (_, a) in enumerate(rows):
            colours = np.array([[1, 1, 1, 1] if x == 0 else cmap(index[int(x)]) for x in a])
            ax.imshow(colours[None], aspect="auto", extent=(0, len(a), i + 0.9, i + 0.1), interpolation="nearest")
            ax.add_patch(plt.Rectangle((0, i + 0.1), len(a), 0.8, fill=False, edgecolor="0.6", lw=0.5))
        ax.set_ylim(len(rows), 0)
        ax.set_yticks([i + 0.5 for i in range(len(rows))], [n for n, _ in rows], fontsize=7)
        ax.set_xlabel("second (white = background)")
        ax.set_title(f"segmentation {vid}")
        fig.tight_layout()
        path = out_dir / f"segmentation_{vid}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vidlang report", description="side-by-side table and figures of results")
    ap.add_argument("results", nargs="+", help="results JSON files from `vidlang eval`")
    ap.add_argument("--names", nargs="+", help="column names (default: file stems)")
    ap.add_argument("--out-dir", help="write report.md and PNG figures here")
    args = ap.parse_args(argv)
    runs = [_load(p) for p in args.results]
    names = args.names or [Path(p).stem for p in args.results]
    if len(names) != len(runs):
        raise VidlangError(f"--names: {len(names)} names for {len(runs)} result files")
    table = markdown_table(runs, names)
    print(table)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "report.md", table + "\n")
        figs = plot_recall_curves(runs, names, out) + plot_segmentation_timelines(runs, names, out)
        print(f"wrote {out / 'report.md'} and {len(figs)} figure(s) to {out}")
    return 0
