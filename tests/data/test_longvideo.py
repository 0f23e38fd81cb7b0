"""Long-video sampler: time order, token budgets, overlapped windows, determinism, padding/skip, hard negatives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from vidlang.config import from_dict
from vidlang.data.longvideo import DataConfig, LongVideoDataset, hard_negative_order, split_train_heldout


@dataclasses.dataclass
class L:
    start: float
    end: float
    text: str


def count_words(texts):
    return [len(t.split()) for t in texts]


def tokenize(texts):
    n = max(len(t.split()) for t in texts)
    ids = torch.zeros(len(texts), n, dtype=torch.long)
    att = torch.zeros(len(texts), n, dtype=torch.long)
    for i, t in enumerate(texts):
        ids[i, : len(t.split())] = torch.arange(1, len(t.split()) + 1)
        att[i, : len(t.split())] = 1
    return ids, att


def corpus(n_videos=6, seconds=60, n_lines=12):
    rng = np.random.default_rng(0)
    feats, caps = {}, {}
    for v in range(n_videos):
        vid = f"v{v}"
        feats[vid] = rng.normal(size=(seconds, 5)).astype(np.float32)
        # Integer timestamps make "shares a boundary" a real possibility for the window sampler.
        starts = np.sort(rng.choice(np.arange(0, seconds - 4), size=n_lines, replace=False))
        caps[vid] = [L(float(s), float(s + rng.integers(1, 4)), " ".join(["w"] * int(rng.integers(1, 5))))
                     for s in starts]
    return feats, caps


def make(alignment="overlap", **over):
    cfg = from_dict(DataConfig, {"clips_per_video": 4, "batch_videos": 2, "text_budget": 6, "min_clip_len": 2,
                                 "max_clip_len": 8, "alignment": alignment, **over})
    feats, caps = corpus()
    return LongVideoDataset(feats, caps, sorted(feats), cfg, count_words, fps=1.0, seed=3), caps


def test_clips_sorted_budgeted_and_overlapping():
    ds, caps = make()
    n_checked = 0
    for vid in ds.video_ids:
        for seed in range(5):
            clips = ds.sample_video(vid, np.random.default_rng(seed))
            assert len(clips) == 4
            starts = [c["span"][0] for c in clips]
            assert starts == sorted(starts)
            for c in clips:
                ts, te = c["span"]
                s, e = c["window"]
                n_tok = len(c["text"].split())
                n_lines = sum(1 for l in caps[vid] if ts <= l.start and l.end <= te)
                assert n_tok <= 6 or n_lines == 1  # within the budget unless one line alone exceeds it
                assert s < te and e > ts  # overlaps the narration span
                assert s != ts and e != te  # ... without sharing its boundaries
                assert 2 <= e - s <= 8 and c["features"].shape == (int(e - s), 5)
                n_checked += 1
    assert n_checked == 6 * 5 * 4


def test_exact_alignment_windows_cover_the_span():
    ds, _ = make("exact")
    clips = ds.sample_video("v0", np.random.default_rng(0))
    for c in clips:
        ts, te = c["span"]
        s, e = c["window"]
        if te - ts <= 8:
            assert s == np.floor(ts) and e == np.ceil(te)


def test_line_budget():
    ds, _ = make(max_lines=1, text_budget=100)
    clips = ds.sample_video("v1", np.random.default_rng(0))
    for c in clips:
        assert len(c["text"].split()) <= 4  # a single line has at most 4 words


def batch(ds, order, epoch, index, rank=0, world=1):
    from vidlang.data.collate import collate_clips

    samples, vids = ds.batch_samples(order, epoch, index, rank, world)
    return collate_clips(samples, tokenize, vids)


def test_batches_deterministic_per_seed_epoch_and_rank_split():
    ds, _ = make()
    order = ds.epoch_order(0)
    assert order == ds.epoch_order(0) and sorted(order) == sorted(ds.video_ids)
    assert ds.epoch_order(1) != order
    b1 = batch(ds, order, 0, 1)
    b2 = batch(ds, order, 0, 1)
    assert_close(b1.video, b2.video)
    assert b1.texts == b2.texts and b1.video.shape[0] == 2 * 4 and b1.clips_per_video == 4
    assert b1.video_ids == order[2:4]
    other_epoch = batch(ds, order, 1, 1)
    assert other_epoch.texts != b1.texts or not torch.equal(other_epoch.clip_times, b1.clip_times)
    # Two ranks each get half of the same global batch, identical to the single-process rows.
    r0, r1 = batch(ds, order, 0, 1, 0, 2), batch(ds, order, 0, 1, 1, 2)
    assert r0.texts + r1.texts == b1.texts
    assert_close(torch.cat([r0.clip_times, r1.clip_times]), b1.clip_times)
    # Video-major rows, real seconds first in the mask.
    assert b1.video_mask[:, 0].all()
    with pytest.raises(ValueError, match="divisible"):
        batch(ds, order, 0, 0, 0, 3)


def test_few_lines_replace_or_skip():
    feats, caps = corpus()
    caps["v0"] = caps["v0"][:2]
    caps["v1"] = []
    base = {"clips_per_video": 4, "batch_videos": 2, "min_clip_len": 2, "max_clip_len": 8}
    rep = LongVideoDataset(feats, caps, sorted(feats), from_dict(DataConfig, base), count_words)
    assert "v0" in rep.video_ids and "v1" in rep.skipped
    assert len(rep.sample_video("v0", np.random.default_rng(0))) == 4  # sampled with replacement
    skip = LongVideoDataset(feats, caps, sorted(feats), from_dict(DataConfig, {**base, "few_lines": "skip"}),
                            count_words)
    assert "v0" in skip.skipped and "v0" not in skip.video_ids


def test_heldout_split_is_seeded_and_disjoint():
    ids = [f"v{i}" for i in range(20)]
    tr, held = split_train_heldout(ids, 0.1, 0)
    assert len(held) == 2 and not set(tr) & set(held) and sorted(tr + held) == sorted(ids)
    assert split_train_heldout(ids, 0.1, 0) == (tr, held)
    assert split_train_heldout(ids, 0.1, 1)[1] != held
    assert split_train_heldout(ids, 0.0, 0) == (sorted(ids), [])


def test_hard_negative_order_groups_neighbours():
    # Two well-separated clusters of 4 videos: each batch of 4 must be one cluster.
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([1.0, 0.0]) + 0.05 * torch.randn(4, 2, generator=g)
    b = torch.tensor([0.0, 1.0]) + 0.05 * torch.randn(4, 2, generator=g)
    emb = torch.cat([a, b])
    order = hard_negative_order(emb, 4, np.random.default_rng(0))
    assert sorted(order) == list(range(8))
    groups = [set(order[:4]), set(order[4:])]
    assert {0, 1, 2, 3} in groups and {4, 5, 6, 7} in groups
