"""Convert a synthetic corpus's ground truth into HTM-Align's public format (for testing the HTM-Align path).

    .venv/bin/python tools/synth_to_htm_align.py runs/demo/corpus/ground_truth.json OUT_DIR [--split val]
    vidlang eval alignment --checkpoint CKPT --features runs/demo/features \\
        --set data.ground_truth=OUT_DIR/htm_align.json --set alignment.captions=OUT_DIR/asr_captions.json

Writes OUT_DIR/htm_align.json, {video_id: [[alignable 0/1, start, end, sentence], ...]} for the videos of
`--split` (relevant narration lines: alignable, with their true step's [start, end]; the others: 0 and their
own ASR time, as in TAN's release), and OUT_DIR/asr_captions.json, the same lines with their ASR timestamps in
HowTo100M caption format (the ground truth's narration lines, one caption line per sentence).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def convert(gt: dict, split: str = "val") -> tuple[dict, dict]:
    """ground_truth.json dict -> (htm_align dict, HowTo100M captions dict) for the videos of `split`."""
    htm, caps = {}, {}
    for vid, rec in gt["videos"].items():
        if rec.get("split") != split or not rec["narration"]:
            continue
        rows = []
        for x in rec["narration"]:
            if x["relevant"]:
                st = rec["steps"][x["step"]]
                rows.append([1, float(st["start"]), float(st["end"]), x["text"]])
            else:
                rows.append([0, float(x["start"]), float(x["end"]), x["text"]])
        htm[vid] = rows
        caps[vid] = {"start": [float(x["start"]) for x in rec["narration"]],
                     "end": [float(x["end"]) for x in rec["narration"]],
                     "text": [x["text"] for x in rec["narration"]]}
    return htm, caps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ground_truth")
    ap.add_argument("out_dir")
    ap.add_argument("--split", default="val")
    args = ap.parse_args(argv)
    from vidlang.io import atomic_write_json

    htm, caps = convert(json.loads(Path(args.ground_truth).read_text()), args.split)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "htm_align.json", htm)
    atomic_write_json(out / "asr_captions.json", caps)
    print(f"{len(htm)} {args.split} videos -> {out / 'htm_align.json'}, {out / 'asr_captions.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
