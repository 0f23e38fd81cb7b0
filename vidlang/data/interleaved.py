"""Interleaved video-text documents (COSMO): K consecutive clips of one long video, each followed by its text.

A document reads ``<visual>{text 1}<|endofchunk|><visual>{text 2}<|endofchunk|>...`` (the Howto-Interlink7M /
OpenFlamingo layout), each `<visual>` standing for the clip whose per-second features fill the matching media
slot, clips and texts in temporal order.

Captions come from the training data's caption source (vidlang.data.train_data.load_captions: the store's
narration, a HowTo100M-format file such as OT-cleaned narration, or a Howto-Interlink7M TSV); the settings are
the shared `data:` section (vidlang.data.longvideo.DataConfig): `clips_per_video` (K), `batch_videos`,
`min_clip_len` and `max_clip_len`; the tokens per document belong to the model (its collate function).

Clips: each caption line is one unit; consecutive lines are merged while a unit lasts less than `min_clip_len`
seconds. A unit's video window is its own time span rounded outwards to feature steps (at least one step), centre-
cropped to `max_clip_len` seconds. A document is K consecutive units starting at a uniformly drawn unit; videos
with fewer than K units are skipped and listed in `skipped` with the reason.

Tokens: the collate function (`InterleavedCollate`, run in DataLoader workers) tokenises each text without special
tokens, adds the tokenizer's own document prefix (e.g. a BOS token) and fits the document into `max_tokens`
by truncating the longest texts first (every clip keeps at least one text token), so every document keeps all K
clips; this is what the contrastive "clip" unit and an even split over processes need.

Determinism: as in vidlang.data.longvideo, a batch is a pure function of (seed, epoch, batch index): sample j
of batch i of epoch e uses `np.random.default_rng([seed, e, i, j])`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

VISUAL = "<visual>"
END_OF_CHUNK = "<|endofchunk|>"


@dataclass(frozen=True)
class Unit:
    """One clip's caption: [start, end] seconds and its text."""

    start: float
    end: float
    text: str


def merge_units(lines: Sequence, min_len: float, duration: float) -> list[Unit]:
    """Lines sorted by start -> units: consecutive lines merged until a unit lasts >= min_len seconds.

    Lines entirely outside [0, duration) or with empty text are dropped.
    """
    ordered = sorted((l for l in lines if str(l.text).strip() and l.start < duration and l.end > 0),
                     key=lambda l: (l.start, l.end))
    units: list[Unit] = []
    cur: list = []
    for line in ordered:
        cur.append(line)
        if max(l.end for l in cur) - cur[0].start >= min_len:
            units.append(Unit(float(cur[0].start), float(max(l.end for l in cur)),
                              " ".join(str(l.text).strip() for l in cur)))
            cur = []
    if cur:  # a short tail joins the last unit (or stands alone when it is the only one)
        if units:
            last = units.pop()
            units.append(Unit(last.start, float(max(last.end, max(l.end for l in cur))),
                              last.text + " " + " ".join(str(l.text).strip() for l in cur)))
        else:
            units.append(Unit(float(cur[0].start), float(max(l.end for l in cur)),
                              " ".join(str(l.text).strip() for l in cur)))
    return units


class InterleavedDataset:
    """Samples one interleaved document (K consecutive clips) per video; the interface of LongVideoDataset.

    features: vid -> array (T, F) (e.g. a FeatureStore); captions: vid -> lines with .start/.end/.text;
    cfg: the `data:` section (DataConfig; reads clips_per_video, batch_videos, min_clip_len, max_clip_len);
    fps: feature steps per second. Documents are fitted to the model's token budget by its collate function.
    """

    def __init__(self, features: Mapping, captions: Mapping[str, Sequence], video_ids: Sequence[str], cfg,
                 fps: float = 1.0, seed: int = 0):
        self.features, self.cfg, self.fps, self.seed = features, cfg, float(fps), int(seed)
        self.units: dict[str, list[Unit]] = {}
        self.lengths: dict[str, int] = {}
        self.skipped: dict[str, str] = {}
        for vid in video_ids:
            raw = captions.get(vid) if hasattr(captions, "get") else captions[vid]
            n_steps = int(features[vid].shape[0])
            units = merge_units(raw or [], cfg.min_clip_len, n_steps / self.fps)
            if not units:
                self.skipped[vid] = "no usable caption line"
            elif len(units) < cfg.clips_per_video:
                self.skipped[vid] = f"{len(units)} clips < clips_per_video={cfg.clips_per_video}"
            else:
                self.units[vid], self.lengths[vid] = units, n_steps
        self.video_ids = [v for v in video_ids if v in self.units]

    def __len__(self) -> int:
        return len(self.video_ids)

    def _window(self, unit: Unit, n_steps: int) -> tuple[int, int]:
        """Feature steps [s, e) covering the unit's time span (at least one step, at most max_clip_len)."""
        s = min(max(int(math.floor(unit.start * self.fps)), 0), n_steps - 1)
        e = min(max(int(math.ceil(unit.end * self.fps)), s + 1), n_steps)
        longest = max(1, int(round(self.cfg.max_clip_len * self.fps)))
        if e - s > longest:
            s += (e - s - longest) // 2
            e = s + longest
        return s, e

    def sample_video(self, vid: str, rng: np.random.Generator) -> list[dict]:
        """K consecutive clips in temporal order: dicts {features (n, F), window (s, e) seconds, span (s, e)
        seconds, text}."""
        k, units = self.cfg.clips_per_video, self.units[vid]
        first = int(rng.integers(0, len(units) - k + 1))
        feats, n_steps = self.features[vid], self.lengths[vid]
        clips = []
        for unit in units[first : first + k]:
            s, e = self._window(unit, n_steps)
            clips.append({"features": np.asarray(feats[s:e], dtype=np.float32),
                          "window": (s / self.fps, e / self.fps), "span": (unit.start, unit.end), "text": unit.text})
        return clips

    # -- epochs and batches ----------------------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> list[str]:
        perm = np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.video_ids))
        return [self.video_ids[i] for i in perm]

    def batches_per_epoch(self) -> int:
        return len(self.video_ids) // self.cfg.batch_videos  # the last partial batch is dropped

    def batch_samples(self, order: Sequence[str], epoch: int, index: int, rank: int = 0,
                      world: int = 1) -> tuple[list[list[dict]], list[str]]:
        """This rank's share of global batch `index` of an epoch with video order `order`: (per-document clip
        lists, video ids), as LongVideoDataset.batch_samples; the collate function turns them into tensors."""
        b = self.cfg.batch_videos
        if b % world:
            raise ValueError(f"batch_videos={b} is not divisible by the number of processes {world}")
        vids = list(order[index * b : (index + 1) * b])
        slots = range(rank * (b // world), (rank + 1) * (b // world))
        clips = [self.sample_video(vids[j], np.random.default_rng([self.seed, epoch, index, j])) for j in slots]
        return clips, [vids[j] for j in slots]

    def fixed_clips(self, seed: int) -> list[tuple[str, list[dict]]]:
        """One deterministic document per video (validation on held-out training videos)."""
        return [(vid, self.sample_video(vid, np.random.default_rng([seed, 99, i])))
                for i, vid in enumerate(self.video_ids)]


# -- tokens ----------------------------------------------------------------------------------------------------


def fit_lengths(lengths: Sequence[int], budget: int) -> list[int]:
    """Truncate the longest texts first: the largest cap c with sum(min(n, c)) <= budget, every text >= 1 token.

    Returns the kept length of each text (its first tokens are kept). `budget` counts text tokens only.
    """
    if sum(lengths) <= budget:
        return list(lengths)
    lo, hi = 1, max(lengths)
    while lo < hi:  # largest cap that fits
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    kept = [min(n, lo) for n in lengths]
    spare = budget - sum(kept)
    for i, n in enumerate(lengths):  # hand the remainder to the first texts still cut
        if spare <= 0:
            break
        if n > kept[i]:
            kept[i] += 1
            spare -= 1
    return kept


class InterleavedCollate:
    """Samples -> `InterleavedBatch`. Picklable (a tokenizer and ints), so DataLoader workers can run it.

    tokenizer: the model's tokenizer, which must know `<visual>` and `<|endofchunk|>` (CosmoModel adds them).
    """

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, int(max_tokens)
        vocab = tokenizer.get_vocab()
        missing = [t for t in (VISUAL, END_OF_CHUNK) if t not in vocab]
        if missing:
            raise ValueError(f"the tokenizer does not know {missing}: use the model's tokenizer")
        self.visual_id, self.eoc_id = vocab[VISUAL], vocab[END_OF_CHUNK]
        self.prefix = [int(i) for i in tokenizer("", add_special_tokens=True)["input_ids"]]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    def document_ids(self, texts: Sequence[str], open_end: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of one document and each text's [start, end) token positions.

        With `open_end` the document ends with a last `<visual>` and no text (a captioning prompt: the model
        writes the text of the last clip); `texts` then holds the earlier clips' texts (in-context examples).
        """
        pieces = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        n_clips = len(texts) + int(open_end)
        budget = self.max_tokens - len(self.prefix) - 2 * len(texts) - int(open_end)
        if pieces and budget < len(pieces):
            raise ValueError(f"max_tokens={self.max_tokens} cannot hold {n_clips} clips")
        kept = fit_lengths([max(1, len(p)) for p in pieces], budget) if pieces else []
        ids, spans = list(self.prefix), []
        for p, n in zip(pieces, kept):
            ids.append(self.visual_id)
            spans.append((len(ids), len(ids) + min(n, len(p))))
            ids += p[:n]
            ids.append(self.eoc_id)
        if open_end:
            ids.append(self.visual_id)
        return ids, spans

    def __call__(self, samples: Sequence[list[dict]], video_ids: Sequence[str]) -> "InterleavedBatch":
        """samples: per document its clip dicts (vidlang.data.interleaved.InterleavedDataset.sample_video)."""
        samples = list(zip(video_ids, samples))
        docs = [self.document_ids([c["text"] for c in clips]) for _, clips in samples]
        b, t = len(docs), max(len(ids) for ids, _ in docs)
        input_ids = torch.full((b, t), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((b, t), dtype=torch.long)
        for i, (ids, _) in enumerate(docs):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention_mask[i, : len(ids)] = 1
        k = max(len(clips) for _, clips in samples)
        s = max(c["features"].shape[0] for _, clips in samples for c in clips)
        f = samples[0][1][0]["features"].shape[1]
        media = np.zeros((b, k, s, f), dtype=np.float32)
        media_mask = np.zeros((b, k, s), dtype=bool)
        clip_times = np.zeros((b, k, 2), dtype=np.float32)
        text_times = np.zeros((b, k, 2), dtype=np.float32)
        for i, (_, clips) in enumerate(samples):
            for j, c in enumerate(clips):
                n = c["features"].shape[0]
                media[i, j, :n], media_mask[i, j, :n] = c["features"], True
                clip_times[i, j], text_times[i, j] = c["window"], c["span"]
        return InterleavedBatch(input_ids=input_ids, attention_mask=attention_mask, media=torch.from_numpy(media),
                                media_mask=torch.from_numpy(media_mask), clip_times=torch.from_numpy(clip_times),
                                text_times=torch.from_numpy(text_times), video_ids=[v for v, _ in samples],
                                texts=[[c["text"] for c in clips] for _, clips in samples],
                                text_spans=[spans for _, spans in docs])


@dataclass
class InterleavedBatch:
    """Shapes (B documents, K clip slots, T tokens, S seconds, F feature width):
    input_ids / attention_mask (B, T) long, right-padded; media (B, K, S, F) float32 per-second features,
    zero-padded; media_mask (B, K, S) bool (real seconds first; a slot with none is an absent clip);
    clip_times (B, K, 2) video window [start, end) seconds; text_times (B, K, 2) caption span [start, end];
    video_ids: B ids; texts: per document its K texts (before truncation); text_spans: per document the
    [start, end) token positions of each text that was kept.
    """

    input_ids: Tensor
    attention_mask: Tensor
    media: Tensor
    media_mask: Tensor
    clip_times: Tensor
    text_times: Tensor
    video_ids: list[str]
    texts: list[list[str]] = field(default_factory=list)
    text_spans: list[list[tuple[int, int]]] = field(default_factory=list)

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    @property
    def clips_per_video(self) -> int:
        return int(self.media.shape[1])

    def to(self, device) -> "InterleavedBatch":
        return replace(self, input_ids=self.input_ids.to(device), attention_mask=self.attention_mask.to(device),
                       media=self.media.to(device), media_mask=self.media_mask.to(device))

    def model_inputs(self) -> dict[str, Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "media": self.media,
                "media_mask": self.media_mask}
