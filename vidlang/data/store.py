"""Read access to a preprocessed feature store (the output of ``vidlang preprocess``).

Layout (docs/interfaces.md; manifest schema: data_manifests/feature_manifest.schema.json)::

    ROOT/run.json                          resolved settings (backbone, weights sha256, fps, decoder, ...)
    ROOT/manifest.jsonl                    one line per finished video
    ROOT/failures.jsonl                    {video_id, path, reason} per failed attempt
    ROOT/shards/<shard>/<video_id>.npy     float32 (T, D), memory-mapped on read
    ROOT/text/<video_id>.json              cleaned narration, when captions were given

Paths in the manifest are relative to ROOT and are resolved under it: an absolute path or one that climbs out of
ROOT (``..``, or a symlink pointing outside) is a FormatError, never followed.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from vidlang.errors import FormatError, VidlangError
from vidlang.io import read_jsonl

MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"
RUN = "run.json"


def resolve_under(root: str | Path, rel: str, source: str | Path | None = None, entry: str | None = None) -> Path:
    """Join ``rel`` (a manifest location) under ``root``; reject absolute paths and escapes with a FormatError."""
    root_p = Path(root).resolve()
    src = source if source is not None else root_p
    if not isinstance(rel, str) or not rel:
        raise FormatError(src, entry, f"location must be a non-empty relative path, got {rel!r}")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or Path(rel).is_absolute() or ".." in pure.parts or "\\" in rel:
        raise FormatError(src, entry, f"location {rel!r} must be relative to the store root without '..'")
    full = (root_p / pure).resolve()
    if not full.is_relative_to(root_p):
        raise FormatError(src, entry, f"location {rel!r} resolves outside the store root {root_p}")
    return full


class FeatureStore:
    """Memory-mapped per-video features plus their manifest records, narration and failures."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise VidlangError(f"{self.root}: feature store directory not found")
        mpath = self.root / MANIFEST
        if not mpath.exists():
            raise VidlangError(f"{mpath}: manifest not found (run `vidlang preprocess` first)")
        self._manifest_path = mpath
        self._records: dict[str, dict[str, Any]] = {}
        for i, rec in enumerate(read_jsonl(mpath)):
            vid = rec.get("video_id")
            if not isinstance(vid, str) or not vid:
                raise FormatError(mpath, f"record {i + 1}", "missing 'video_id'")
            for key in ("location", "num_features", "feature_dim"):
                if key not in rec:
                    raise FormatError(mpath, vid, f"missing {key!r}")
            self._records[vid] = rec  # a later line (a rerun) supersedes an earlier one
        run_path = self.root / RUN
        self.run: dict[str, Any] = {}
        if run_path.exists():
            try:
                self.run = json.loads(run_path.read_text())
            except json.JSONDecodeError as e:
                raise FormatError(run_path, None, f"not valid JSON ({e})") from None
        dims = {r["feature_dim"] for r in self._records.values()}
        if len(dims) > 1:
            raise FormatError(mpath, None, f"mixed feature dims {sorted(dims)}")
        self._dim = dims.pop() if dims else self.run.get("feature_dim")

    # -- lookup -------------------------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        """Video ids in the store, sorted."""
        return sorted(self._records)

    def __contains__(self, vid: object) -> bool:
        return vid in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self):
        return iter(self.ids())

    def record(self, vid: str) -> dict[str, Any]:
        """The manifest line of ``vid`` (a copy)."""
        if vid not in self._records:
            raise KeyError(f"{vid!r} not in feature store {self.root}")
        return dict(self._records[vid])

    def path(self, vid: str) -> Path:
        rec = self.record(vid)
        return resolve_under(self.root, rec["location"], self._manifest_path, vid)

    def __getitem__(self, vid: str):
        """float32 (T, D), memory-mapped read-only."""
        import numpy as np

        path = self.path(vid)
        if not path.is_file():
            raise VidlangError(f"{path}: feature file of {vid!r} listed in {self._manifest_path} is missing")
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        rec = self._records[vid]
        if arr.ndim != 2 or arr.shape != (rec["num_features"], rec["feature_dim"]):
            raise FormatError(path, vid, f"shape {arr.shape} != manifest ({rec['num_features']}, {rec['feature_dim']})")
        return arr

    @property
    def fps(self) -> float | None:
        """Features per second (from run.json, else the manifest)."""
        if "fps" in self.run:
            return float(self.run["fps"])
        fpss = {r.get("fps") for r in self._records.values()}
        return float(fpss.pop()) if len(fpss) == 1 and None not in fpss else None

    @property
    def dim(self) -> int | None:
        return self._dim

    # -- narration and failures ---------------------------------------------------------------------------------
    def text(self, vid: str):
        """Cleaned narration of ``vid`` as a list of CaptionLine, or None when the run had no captions for it."""
        path = resolve_under(self.root, f"text/{vid}.json", self._manifest_path, vid)
        if not path.is_file():
            return None
        from vidlang.datasets.howto100m import CaptionLine

        try:
            obj = json.loads(path.read_text())
            return [CaptionLine(float(x["start"]), float(x["end"]), str(x["text"])) for x in obj["lines"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise FormatError(path, vid, f"bad narration file ({type(e).__name__}: {e})") from None

    def failures(self) -> list[dict]:
        """Latest failure per video id, excluding ids that later succeeded (present in the manifest)."""
        latest: dict[str, dict] = {}
        for rec in read_jsonl(self.root / FAILURES):
            vid = rec.get("video_id")
            if vid is not None and vid not in self._records:
                latest[vid] = rec
        return [latest[k] for k in sorted(latest)]

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r}, videos={len(self)}, dim={self.dim}, fps={self.fps})"
