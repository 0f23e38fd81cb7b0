"""What evaluation tasks receive from a model, by capability, and the shared plumbing of the task runners.

- `embed` (`Embeds`): texts, windows of a video and its seconds into one L2-normalised space. The dual
  encoder's `vidlang.models.embed.Embedder` implements it, and so does `RandomEmbedder`, the chance baseline.
- `score` / `generate`: log-likelihood of candidate texts given a clip / text generated from clips.

`load_evaluated(cfg)` gives the object `vidlang eval` evaluates (a checkpoint or `random`): its `capabilities`,
`evaluator(capability)` and what features it expects (fps, width), which `StoreCache` checks when it opens a
store, so features extracted at another rate or with another backbone are one clear error, not a silent
mismatch or a matmul traceback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidlang.datasets._validate import need_file  # noqa: F401 (the tasks import it from here)
from vidlang.errors import ConfigError, VidlangError


class Embeds(Protocol):
    """The `embed` capability (vidlang.models.embed.Embedder implements it)."""

    def embed_texts(self, texts: Sequence[str]) -> Tensor: ...  # (N, D) L2-normalised

    def embed_windows(self, features: np.ndarray, windows: Sequence[tuple[float, float]], fps: float) -> Tensor: ...

    def embed_seconds(self, features: np.ndarray, fps: float | None = None) -> Tensor: ...  # (T, D)


class RandomEmbedder:
    """Chance baseline: deterministic random unit vectors (per text string; per window/second of each video).

    Same protocol code, random embeddings: the measured chance level of every `embed` task.
    """

    capabilities = frozenset({"embed"})
    expected_fps = expected_dim = None  # any features

    def __init__(self, dim: int = 64, seed: int = 0):
        self.dim, self.seed = dim, seed

    def evaluator(self, capability: str):
        return self

    def _vec(self, key: str) -> Tensor:
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:{key}".encode()).digest()[:8], "little")
        return F.normalize(torch.randn(self.dim, generator=torch.Generator().manual_seed(h)), dim=0)

    def _video_key(self, features: np.ndarray) -> str:
        a = np.asarray(features)
        return hashlib.sha256(np.ascontiguousarray(a[: min(len(a), 4)]).tobytes()).hexdigest()[:16] + str(a.shape)

    def embed_texts(self, texts):
        return torch.stack([self._vec("t:" + t) for t in texts]) if len(texts) else torch.zeros(0, self.dim)

    def embed_windows(self, features, windows, fps):
        k = self._video_key(features)
        return torch.stack([self._vec(f"w:{k}:{s:.3f}:{e:.3f}") for s, e in windows]) if len(windows) \
            else torch.zeros(0, self.dim)

    def embed_seconds(self, features, fps=None):
        k = self._video_key(features)
        return torch.stack([self._vec(f"s:{k}:{t}") for t in range(len(features))])



class CheckpointModel:
    """A checkpoint loaded for evaluation: the registered model, its meta, and its evaluators by capability."""

    def __init__(self, ckpt: str | Path, device: str = "cpu"):
        from vidlang.models.checkpoint import load_model, read_meta

        self.model, self.train_cfg = load_model(ckpt, device)
        self.meta, self.device = read_meta(ckpt), device
        self.capabilities = frozenset(self.model.capabilities)
        self.expected_fps = self.meta.get("fps")
        self.expected_dim = self.model.feature_dim()
        self._evaluators: dict = {}

    def evaluator(self, capability: str):
        if capability not in self._evaluators:
            self._evaluators[capability] = self.model.evaluator(capability, self.meta, self.device)
        return self._evaluators[capability]


def load_evaluated(checkpoint: str | None, device: str = "cpu", random_dim: int = 64, seed: int = 0):
    """The model `vidlang eval` evaluates: a checkpoint directory, or "random" for the chance baseline."""
    if not checkpoint:
        raise ConfigError("no checkpoint given (--checkpoint DIR, or 'random' for the chance baseline)")
    if checkpoint == "random":
        return RandomEmbedder(random_dim, seed)
    return CheckpointModel(checkpoint, device)


class StoreCache:
    """FeatureStores by root, each checked once against the features the evaluated model expects."""

    def __init__(self, expected_fps: float | None = None, expected_dim: int | None = None):
        self.expected_fps, self.expected_dim = expected_fps, expected_dim
        self._stores: dict = {}

    def get(self, root: str | None):
        from vidlang.data.store import FeatureStore

        if not root:
            raise ConfigError("data.features: no feature store configured")
        if root not in self._stores:
            store = FeatureStore(root)
            fps, dim = store.fps, store.dim
            if self.expected_fps is not None and fps is not None and abs(float(fps) - float(self.expected_fps)) > 1e-9:
                raise VidlangError(f"{root}: features at {fps:g}/s, but the checkpoint was trained on features at "
                                   f"{float(self.expected_fps):g}/s; preprocess at the checkpoint's rate (--fps)")
            if self.expected_dim and dim is not None and int(dim) != int(self.expected_dim):
                raise VidlangError(f"{root}: {dim}-d features, but the checkpoint reads {self.expected_dim}-d "
                                   "features; preprocess with the backbone it was trained on")
            self._stores[root] = store
        return self._stores[root]


def store_fps(store) -> float:
    fps = store.fps
    if not fps:
        raise VidlangError(f"{store.root}: the feature store does not record its fps (run.json or manifest)")
    return float(fps)


def duration(store, vid: str, fps: float) -> float:
    return store[vid].shape[0] / fps



def line_similarity(embedder: Embedder, feats: np.ndarray, texts: Sequence[str], fps: float) -> Tensor:
    """Line x second cosine similarity. Shapes: feats (T, Din), L texts -> (L, T)."""
    return embedder.embed_texts(list(texts)).float() @ embedder.embed_seconds(feats, fps).float().T


