"""Long-video sampling: per video K time-ordered (video window, narration span) clip pairs.

Per video (VideoCLIP's `ShardedVideoToTextProcessor` + overlapped sampling, Norton's K clips per video):
1. K centre narration lines are drawn without replacement (with replacement when the video has fewer than K
   usable lines and `few_lines="replace"`; with `few_lines="skip"` such videos are dropped from the dataset and
   listed in `dataset.skipped`). Videos with no usable line are always skipped. Clips are sorted by time.
2. Each text span grows from its centre line by adding the previous or next line (random side) while the span
   stays within `text_budget` subword tokens (and `max_lines` lines when > 0). A single line longer than the
   budget is kept alone (the tokenizer truncates it).
3. The video window is either the span itself rounded outwards to feature steps (`alignment="exact"`, centre-
   cropped to `max_clip_len`) or an *overlapped* window (`alignment="overlap"`, VideoCLIP): a length drawn in
   [min_clip_len, max_clip_len] seconds placed around a centre drawn uniformly inside the span, so the window
   overlaps the narration but its start/end differ from the span's (redrawn up to 20 times when a boundary
   coincides; only a degenerate zero-length span can keep a shared boundary).

Determinism: all randomness comes from `np.random.default_rng([seed, epoch, batch_index, slot])`, so a batch is
a pure function of (seed, epoch, batch index) -- on any rank, and after a resume. The epoch's video order is a
seeded permutation, or a hard-negative grouping (`hard_negative_order`) that the training loop recomputes from
the current model at each epoch start and stores in its checkpoint state.

Times: narration in seconds; features at `fps` steps per second; windows are [start, end) in feature steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vidlang.datasets.howto100m import CaptionLine


@dataclass
class DataConfig:
    # Feature store root (`vidlang preprocess` output); its text/ folder gives the cleaned narration.
    features: str = ""
    # Captions that replace the store's narration (text/): a HowTo100M-format caption JSON, e.g. `vidlang align`
    # output (realigned lines, unalignable ones dropped), or a Howto-Interlink7M TSV (one caption per clip).
    # "" = the store's cleaned narration. Read by vidlang.data.train_data.load_captions.
    captions: str = ""
    # splits.json with {"train": [...], "val": [...]}; only "train" is read. "" = every video in the store.
    splits: str = ""
    # Fraction of TRAINING videos held out for checkpoint selection (never the evaluation split).
    heldout_frac: float = 0.1
    heldout_seed: int = 0
    # Norton samples K = 8 clips per video (paper Sec. 4.1 "we sample 8 clips per video"); demo configs set it.
    # Interleaved documents (COSMO, vidlang.data.interleaved): K consecutive clips per document.
    clips_per_video: int = 8
    # Global batch in videos (split over processes); the global clip batch is batch_videos * clips_per_video.
    batch_videos: int = 16
    # Text span budget in subword tokens; VideoCLIP's text side is capped at 32 tokens (MMPT how2 max_len).
    text_budget: int = 32
    max_lines: int = 0  # 0 = no line limit besides the token budget
    alignment: Literal["overlap", "exact"] = "overlap"
    # VideoCLIP's overlapped video clips are 3-32 s long (Xu et al. 2021, Sec. 3.1). Interleaved documents:
    # consecutive caption lines are merged until a clip lasts min_clip_len s; a clip is cropped to max_clip_len s.
    min_clip_len: int = 3
    max_clip_len: int = 32
    few_lines: Literal["replace", "skip"] = "replace"
    hard_negatives: bool = False
    # Stop training at the end of this many passes over the training videos, even before train.steps
    # (1 = every training video is seen at most once, the one-pass regime); 0 = no bound.
    max_epochs: int = 0
    # DataLoader worker processes that sample, tokenise and collate batches ahead of the step (0 = in the
    # training process). Batches are the same whatever the number (see vidlang.data.loader).
    workers: int = 0

    def validate(self) -> None:
        if not 0.0 <= self.heldout_frac < 1.0:
            raise ValueError(f"heldout_frac must be in [0, 1), got {self.heldout_frac}")
        if self.clips_per_video < 1 or self.batch_videos < 1:
            raise ValueError(f"clips_per_video and batch_videos must be >= 1, got {self.clips_per_video} and "
                             f"{self.batch_videos}")
        if self.text_budget < 1:
            raise ValueError(f"text_budget must be >= 1, got {self.text_budget}")
        if self.max_lines < 0:
            raise ValueError(f"max_lines must be >= 0, got {self.max_lines}")
        if self.max_epochs < 0 or self.workers < 0:
            raise ValueError(f"max_epochs and workers must be >= 0, got {self.max_epochs} and {self.workers}")
        if not 1 <= self.min_clip_len <= self.max_clip_len:
            raise ValueError(f"need 1 <= min_clip_len <= max_clip_len, got {self.min_clip_len} and "
                             f"{self.max_clip_len}")


def split_train_heldout(ids: Sequence[str], frac: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of training ids into (train, heldout); heldout = round(frac * N), at least 1 when frac > 0."""
    ids = sorted(ids)
    if frac <= 0 or len(ids) < 2:
        return ids, []
    n_held = min(len(ids) - 1, max(1, round(frac * len(ids))))
    perm = np.random.default_rng([seed, 7]).permutation(len(ids))
    held = sorted(ids[i] for i in perm[:n_held])
    hs = set(held)
    return [v for v in ids if v not in hs], held


class LongVideoDataset:
    """Samples K clips per video from per-second features and narration.

    features: mapping vid -> array (T, Din) (e.g. a FeatureStore); captions: vid -> lines with .start/.end/.text;
    count_tokens: list[str] -> list[int] subword counts (the text tower's tokenizer); fps: feature steps per second.
    """

    def __init__(self, features: Mapping, captions: Mapping[str, Sequence], video_ids: Sequence[str],
                 cfg: DataConfig, count_tokens: Callable[[list[str]], list[int]], fps: float = 1.0, seed: int = 0):
        self.features = features
        self.cfg = cfg
        self.fps = float(fps)
        self.seed = int(seed)
        self.lines: dict[str, list[CaptionLine]] = {}
        self.tokens: dict[str, np.ndarray] = {}
        self.lengths: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        for vid in video_ids:
            raw = captions.get(vid) if hasattr(captions, "get") else captions[vid]
            n_steps = int(features[vid].shape[0])
            duration = n_steps / self.fps
            lines = sorted((CaptionLine(float(l.start), float(l.end), str(l.text)) for l in (raw or [])),
                           key=lambda l: (l.start, l.end))
            # Lines entirely outside the video cannot be paired with any window.
            lines = [l for l in lines if l.start < duration and l.end > 0 and l.text.strip()]
            if not lines:
                self.skipped[vid] = "no usable narration line"
                continue
            if len(lines) < cfg.clips_per_video and cfg.few_lines == "skip":
                self.skipped[vid] = f"{len(lines)} lines < clips_per_video={cfg.clips_per_video}"
                continue
            self.lines[vid] = lines
            self.tokens[vid] = np.asarray(count_tokens([l.text for l in lines]), dtype=np.int64)
            self.lengths[vid] = n_steps
        self.video_ids = [v for v in video_ids if v in self.lines]

    def __len__(self) -> int:
        return len(self.video_ids)

    # -- one video -------------------------------------------------------------------------------------------
    def _grow_span(self, vid: str, c: int, rng: np.random.Generator) -> tuple[int, int]:
        tok = self.tokens[vid]
        lo = hi = c
        used = int(tok[c])
        while not (self.cfg.max_lines and hi - lo + 1 >= self.cfg.max_lines):
            sides = []
            if lo > 0 and used + tok[lo - 1] <= self.cfg.text_budget:
                sides.append(-1)
            if hi + 1 < len(tok) and used + tok[hi + 1] <= self.cfg.text_budget:
                sides.append(1)
            if not sides:
                break
            side = sides[int(rng.integers(len(sides)))]
            if side < 0:
                lo -= 1
                used += int(tok[lo])
            else:
                hi += 1
                used += int(tok[hi])
        return lo, hi

    def _window(self, ts: float, te: float, n_steps: int, rng: np.random.Generator) -> tuple[int, int]:
        """Video window [start, end) in feature steps for the narration span [ts, te] seconds."""
        f = self.fps
        a, b = max(0.0, ts * f), min(float(n_steps), te * f)  # span in steps, inside the video
        max_v = max(1, int(self.cfg.max_clip_len * f))
        if self.cfg.alignment == "exact":
            s, e = int(math.floor(a)), int(math.ceil(b))
            s = min(s, n_steps - 1)
            e = max(e, s + 1)
            if e - s > max_v:  # centre crop to the longest clip the video tower accepts
                s = s + (e - s - max_v) // 2
                e = s + max_v
            return s, e
        min_v = max(1, int(self.cfg.min_clip_len * f))
        s = e = 0
        for _ in range(20):
            length = min(int(rng.integers(min_v, max_v + 1)), n_steps)
            centre = rng.uniform(a, b) if b > a else a
            s = int(round(centre - length / 2))
            s = min(max(s, 0), n_steps - length)
            e = s + length
            overlaps = s < b and e > a
            shares = math.isclose(s, ts * f, abs_tol=1e-6) or math.isclose(e, te * f, abs_tol=1e-6)
            if overlaps and not shares:
                break
        return s, e

    def sample_video(self, vid: str, rng: np.random.Generator) -> list[dict]:
        """K clips sorted by time: dicts {features (n, Din), window (s, e) seconds, span (s, e) seconds, text}."""
        k = self.cfg.clips_per_video
        lines = self.lines[vid]
        n = len(lines)
        centres = np.sort(rng.choice(n, size=k, replace=n < k))
        feats = self.features[vid]
        n_steps = self.lengths[vid]
        clips = []
        for c in centres:
            lo, hi = self._grow_span(vid, int(c), rng)
            span = lines[lo : hi + 1]
            ts, te = span[0].start, max(l.end for l in span)
            s, e = self._window(ts, te, n_steps, rng)
            clips.append({"features": np.asarray(feats[s:e], dtype=np.float32), "window": (s / self.fps, e / self.fps),
                          "span": (ts, te), "text": " ".join(l.text.strip() for l in span)})
        # Sorted by narration start (grown spans of sorted centres can start out of order).
        clips.sort(key=lambda c: (c["span"][0], c["span"][1]))
        return clips

    # -- epochs and batches ----------------------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> list[str]:
        perm = np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.video_ids))
        return [self.video_ids[i] for i in perm]

    def batches_per_epoch(self) -> int:
        return len(self.video_ids) // self.cfg.batch_videos  # drop the last partial batch

    def batch_samples(self, order: Sequence[str], epoch: int, index: int, rank: int = 0,
                      world: int = 1) -> tuple[list[list[dict]], list[str]]:
        """This rank's share of global batch `index` of an epoch whose video order is `order`:
        (per-video clip lists, video ids). The model's collate function turns them into tensors."""
        b = self.cfg.batch_videos
        if b % world:
            raise ValueError(f"batch_videos={b} is not divisible by the number of processes {world}")
        vids = list(order[index * b : (index + 1) * b])
        per = b // world
        slots = range(rank * per, (rank + 1) * per)
        clips = [self.sample_video(vids[j], np.random.default_rng([self.seed, epoch, index, j])) for j in slots]
        return clips, [vids[j] for j in slots]

    def fixed_clips(self, seed: int) -> list[tuple[str, list[dict]]]:
        """One deterministic clip set per video (validation on held-out training videos)."""
        return [(vid, self.sample_video(vid, np.random.default_rng([seed, 99, i])))
                for i, vid in enumerate(self.video_ids)]


def hard_negative_order(embeddings: torch.Tensor, batch_videos: int, rng: np.random.Generator) -> list[int]:
    """Group similar videos into the same batch: greedy nearest neighbours of a random seed video.

    Shapes: embeddings (N, D) (one per video, any scale; cosine similarity is used) -> permutation of range(N)
    whose consecutive chunks of `batch_videos` are neighbourhoods; the chunk order is shuffled.
    """
    n = embeddings.shape[0]
    e = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    remaining = np.ones(n, dtype=bool)
    groups: list[list[int]] = []
    while remaining.any():
        idx = np.flatnonzero(remaining)
        seed_vid = int(idx[rng.integers(len(idx))])
        sims = (e[torch.from_numpy(idx)] @ e[seed_vid]).numpy()
        take = idx[np.argsort(-sims, kind="stable")[:batch_videos]]
        remaining[take] = False
        groups.append([int(t) for t in take])
    full = [g for g in groups if len(g) == batch_videos]
    rest = [i for g in groups if len(g) < batch_videos for i in g]
    order = [full[i] for i in rng.permutation(len(full))]
    return [i for g in order for i in g] + rest
