"""What a training run reads: per-video features, timestamped narration, the training ids, fps and feature width.

`open_train_data(cfg.data)` opens the feature store of `data.features`, the "train" ids of `data.splits` (every
store id when empty) and the timestamped captions of `data.captions` (`load_captions`, the one caption-source
loader of every model):
- "" : the store's cleaned narration (text/ files, raw ASR after the rolling-caption dedup of `vidlang preprocess`);
- a HowTo100M-format caption JSON: raw ASR narration, or narration re-timed and filtered by an aligner
  (`vidlang align` output), cleaned the way `vidlang preprocess` cleans;
- a Howto-Interlink7M TSV (`.tsv`/`.txt`; vidlang.datasets.read_interlink): one caption per clip, in time order;
  a row's video id is the file stem of its `video` (or `path`) column.
Tests build `TrainData` from in-memory dicts instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from vidlang.errors import ConfigError


class TrainData:
    """features[vid] -> (T, Din) array, captions[vid] -> lines (.start, .end, .text), training ids, fps, dim."""

    def __init__(self, features: Mapping, captions: Mapping, train_ids: Sequence[str], fps: float, dim: int):
        self.features, self.captions = features, captions
        self.train_ids, self.fps, self.dim = list(train_ids), float(fps), int(dim)


def read_train_ids(splits: str | Path, available: Sequence[str]) -> list[str]:
    """The "train" list of a splits.json, restricted to `available` ids, in the store's order."""
    path = Path(splits)
    if not path.is_file():
        raise ConfigError(f"data.splits: {path} not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"data.splits: {path} is not valid JSON ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("train"), list):
        raise ConfigError(f"data.splits: {path} has no 'train' list")
    wanted = set(obj["train"])
    return [v for v in available if v in wanted]


def load_captions(source: str, store, video_ids: Sequence[str]) -> dict[str, list]:
    """Caption lines (`.start`, `.end`, `.text`) per video from a caption source (see the module docstring);
    videos without lines are left out. A missing file is a ConfigError, a malformed one a FormatError."""
    from vidlang.datasets import CaptionLine, clean_captions, read_howto100m_captions, read_interlink

    if not source:
        return {vid: lines for vid in video_ids if (lines := store.text(vid))}
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"data.captions: {path} not found")
    wanted = set(video_ids)
    if path.suffix.lower() in (".tsv", ".txt"):
        out = {}
        for row in read_interlink(path):
            vid = Path(row.video).stem
            if vid in wanted and row.clips:
                out[vid] = [CaptionLine(c.start, c.end, c.caption) for c in sorted(row.clips, key=lambda c: c.start)]
        return out
    raw = read_howto100m_captions(path)
    return {vid: lines for vid in video_ids if vid in raw and (lines := clean_captions(raw[vid]))}


def open_train_data(data_cfg) -> TrainData:
    """Open `data.features` (a FeatureStore), the training ids of `data.splits` and the captions."""
    from vidlang.data.store import FeatureStore

    if not data_cfg.features:
        raise ConfigError("data.features: no feature store given (set data.features=PATH)")
    store = FeatureStore(data_cfg.features)
    ids = read_train_ids(data_cfg.splits, store.ids()) if data_cfg.splits else store.ids()
    captions = load_captions(data_cfg.captions, store, ids)
    if not captions:
        where = data_cfg.captions or f"{data_cfg.features} (text/)"
        raise ConfigError(f"data: {where} has no captions for the training videos")
    if store.fps is None or store.dim is None:
        raise ConfigError(f"data.features: {data_cfg.features} does not record its fps/feature dim (run.json)")
    return TrainData(store, captions, [v for v in ids if v in captions], store.fps, store.dim)
