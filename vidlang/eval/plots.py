"""`vidlang plot-alignment`: heatmap of one video's transport plan (narration lines x seconds, bucket included).

    vidlang plot-alignment --checkpoint CKPT --features DIR --ground-truth GT.json --video syn00012 --out plan.png

The plan is the one `vidlang.eval.alignment.align_lines_ot` solves (content z-score + Laplace time prior, Norton's
alignable prompt bucket as the extra last row/column; count units). Marked on top: each relevant line's true step
(green span), each line's own timestamp (white tick) and its predicted second (red dot); irrelevant lines are
labelled with their kind. matplotlib Agg backend.
"""

from __future__ import annotations

import argparse

from vidlang.errors import VidlangError


def plot_plan(full, lines: list[dict], steps: list[dict], fps: float, out: str, title: str = "") -> None:
    """full: (L+1, T+1) plan with bucket row/column; lines/steps: ground-truth records of the video."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    P = np.asarray(full, dtype=np.float64)
    L, T = P.shape[0] - 1, P.shape[1] - 1
    fig, ax = plt.subplots(figsize=(min(16, 3 + 0.08 * T), min(12, 1.5 + 0.25 * (L + 1))))
    # every real line/second carries mass 1 (count units); the bucket corner holds more: cap the scale at 1
    im = ax.imshow(P, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0.0, vmax=1.0,
                   extent=(0, (T + 1) / fps, L + 1, 0))
    fig.colorbar(im, ax=ax, fraction=0.03, label="transported mass (capped at 1)")
    for i, line in enumerate(lines):
        if line.get("relevant") and line.get("step") is not None:
            st = steps[line["step"]]
            ax.plot([st["start"], st["end"]], [i + 0.5, i + 0.5], color="lime", lw=3, alpha=0.8)
        mid = (line["start"] + line["end"]) / 2
        ax.plot([mid, mid], [i + 0.15, i + 0.85], color="white", lw=1.5)
        pred = (int(np.argmax(P[i, :T])) + 0.5) / fps
        ax.plot(pred, i + 0.5, "o", color="red", ms=3)
    ax.axvline(T / fps, color="white", lw=0.5)
    ax.axhline(L, color="white", lw=0.5)
    labels = [(l.get("text", "")[:28] + ("" if l.get("relevant") else f" [{l.get('kind', 'irrelevant')}]"))
              for l in lines] + ["(bucket)"]
    ax.set_yticks([i + 0.5 for i in range(L + 1)], labels, fontsize=6)
    ax.set_xlabel("time (s); last column = bucket")
    ax.set_title(title or "transport plan", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vidlang plot-alignment", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--ground-truth", required=True, help="synthetic corpus ground_truth.json")
    ap.add_argument("--video", required=True)
    ap.add_argument("--out", required=True, help="PNG path")
    ap.add_argument("--prior-scale", type=float, default=3.0)
    ap.add_argument("--bucket", type=float, default=0.0, help="bucket value (z + log-prior scale)")
    ap.add_argument("--epsilon", type=float, default=0.3)
    args = ap.parse_args(argv)
    from pathlib import Path

    from vidlang.datasets.alignment_truth import load_ground_truth
    from vidlang.eval.alignment import ot_alignment_plan
    from vidlang.eval.capabilities import StoreCache, line_similarity, load_evaluated

    gt = load_ground_truth(args.ground_truth)
    if args.video not in gt["videos"]:
        raise VidlangError(f"{args.ground_truth}: video {args.video!r} not found")
    rec = gt["videos"][args.video]
    if not rec["narration"]:
        raise VidlangError(f"{args.ground_truth}: video {args.video!r} has no narration")
    model = load_evaluated(args.checkpoint)
    store = StoreCache(model.expected_fps, model.expected_dim).get(args.features)
    if args.video not in store:
        raise VidlangError(f"{args.features}: video {args.video!r} is not in the feature store")
    fps = store.fps
    if not fps:
        raise VidlangError(f"{args.features}: the feature store does not record its fps")
    embedder = model.evaluator("embed")
    lines = rec["narration"]
    sim = line_similarity(embedder, store[args.video], [l["text"] for l in lines], fps)
    res = ot_alignment_plan(sim, [l["start"] for l in lines], [l["end"] for l in lines], fps,
                            prior_scale=args.prior_scale, bucket_value=args.bucket, epsilon=args.epsilon)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    plot_plan(res.full.numpy(), lines, rec["steps"], fps, args.out,
              title=f"{args.video}: lines x seconds (green: true step, white: own timestamp, red: predicted)")
    print(f"wrote {args.out}")
    return 0
