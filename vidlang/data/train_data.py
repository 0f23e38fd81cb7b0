"""What a training run reads: per-video features, timestamped narration, the training ids, fps and feature width.

`open_train_data(cfg.data)` opens the feature store of `data.features`, the "train" ids of `data.splits` (every
store id when empty) and the narration: the store's cleaned text/ files, or `data.captions` (a HowTo100M-format
caption file, e.g. `vidlang align` output), cleaned the way `vidlang preprocess` cleans. Tests build `TrainData`
from in-memory dicts instead.
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


def open_train_data(data_cfg) -> TrainData:
    """Open `data.features` (a FeatureStore), the training ids of `data.splits` and the narration."""
    from vidlang.data.store import FeatureStore

    if not data_cfg.features:
        raise ConfigError("data.features: no feature store given (set data.features=PATH)")
    store = FeatureStore(data_cfg.features)
    ids = read_train_ids(data_cfg.splits, store.ids()) if data_cfg.splits else store.ids()
    if data_cfg.captions:
        from vidlang.datasets import clean_captions, read_howto100m_captions

        if not Path(data_cfg.captions).is_file():
            raise ConfigError(f"data.captions: {data_cfg.captions} not found")
        source = read_howto100m_captions(data_cfg.captions)
        lookup = lambda vid: clean_captions(source.get(vid, []))  # noqa: E731
    else:
        lookup = store.text
    captions = {}
    for vid in ids:
        lines = lookup(vid)
        if lines:
            captions[vid] = lines
    if not captions:
        where = data_cfg.captions or f"{data_cfg.features} (text/)"
        raise ConfigError(f"data: {where} has no narration for the training videos")
    if store.fps is None or store.dim is None:
        raise ConfigError(f"data.features: {data_cfg.features} does not record its fps/feature dim (run.json)")
    return TrainData(store, captions, [v for v in ids if v in captions], store.fps, store.dim)
