"""Interleaved documents: consecutive clips in time order, caption sources, token fitting, collate, batch."""

from __future__ import annotations

import itertools
import json
import pickle

import numpy as np
import pytest
import torch

from tests.models.tiny_lms import build_lm, one_thread  # noqa: F401  (autouse fixture)
from vidlang.config import from_dict
from vidlang.data import FeatureStore
from vidlang.data.interleaved import (END_OF_CHUNK, VISUAL, InterleavedBatch, InterleavedCollate, InterleavedDataset,
                                      fit_lengths, merge_units)
from vidlang.data.longvideo import DataConfig
from vidlang.data.train_data import load_captions
from vidlang.datasets import CaptionLine
from vidlang.errors import ConfigError, FormatError
from vidlang.io import append_jsonl, atomic_save_npy, atomic_write_json


def corpus(n_videos=5, seconds=60, n_lines=10, seed=0):
    rng = np.random.default_rng(seed)
    feats, caps = {}, {}
    for v in range(n_videos):
        vid = f"v{v}"
        feats[vid] = rng.normal(size=(2 * seconds, 3)).astype(np.float32)  # 2 features per second
        starts = np.sort(rng.choice(np.arange(0, seconds - 5), size=n_lines, replace=False)) + 0.5
        caps[vid] = [CaptionLine(float(s), float(s + rng.integers(1, 5)), f"line {i} of {vid}")
                     for i, s in enumerate(starts)]
    feats["short"] = rng.normal(size=(40, 3)).astype(np.float32)
    caps["short"] = [CaptionLine(1.0, 2.0, "only"), CaptionLine(3.0, 4.0, "two lines")]
    return feats, caps


def make(**over):
    cfg = from_dict(DataConfig, {"clips_per_video": 3, "batch_videos": 2, "min_clip_len": 1, "max_clip_len": 3,
                                 **over})
    feats, caps = corpus()
    return InterleavedDataset(feats, caps, sorted(feats), cfg, fps=2.0, seed=5), feats, caps


def test_documents_are_consecutive_clips_in_time_order():
    ds, feats, caps = make()
    assert ds.skipped == {"short": "2 clips < clips_per_video=3"} and len(ds) == 5
    rng = np.random.default_rng(0)
    for vid in ds.video_ids:
        texts = [l.text for l in caps[vid]]
        for _ in range(5):
            clips = ds.sample_video(vid, rng)
            assert len(clips) == 3
            i = texts.index(clips[0]["text"])
            assert [c["text"] for c in clips] == texts[i : i + 3]  # consecutive lines, in order
            for c, line in zip(clips, caps[vid][i : i + 3]):
                s, e = c["window"]
                assert c["span"] == (line.start, line.end)
                assert e - s <= 3.0 + 1e-9 and e > s
                if line.end - line.start <= 2.5:  # short enough not to be cropped: the window covers the span
                    assert s <= line.start and e >= line.end
                np.testing.assert_array_equal(c["features"], feats[vid][int(s * 2) : int(e * 2)])


def test_merge_units_reaches_the_minimum_length():
    lines = [CaptionLine(0, 1, "a"), CaptionLine(1, 2, "b"), CaptionLine(2.5, 6, "c"), CaptionLine(7, 7.5, "d"),
             CaptionLine(100, 101, "outside"), CaptionLine(3, 4, "  ")]
    units = merge_units(lines, min_len=2.0, duration=50)
    assert [(u.start, u.end, u.text) for u in units] == [(0, 2, "a b"), (2.5, 7.5, "c d")]
    assert [u.text for u in merge_units(lines, 0.0, 50)] == ["a", "b", "c", "d"]


def test_batches_are_deterministic_and_split_over_ranks():
    ds, _, _ = make()
    order = ds.epoch_order(1)
    assert order == ds.epoch_order(1) and sorted(order) == sorted(ds.video_ids)
    assert ds.batches_per_epoch() == 2
    whole, whole_ids = ds.batch_samples(order, 1, 1)
    (p0, i0), (p1, i1) = ds.batch_samples(order, 1, 1, rank=0, world=2), ds.batch_samples(order, 1, 1, rank=1, world=2)
    assert whole_ids == i0 + i1 == order[2:4]
    for a, b in zip(whole, p0 + p1):
        assert [c["text"] for c in a] == [c["text"] for c in b]
    fixed = ds.fixed_clips(3)
    assert [[c["text"] for c in clips] for _, clips in fixed] == \
        [[c["text"] for c in clips] for _, clips in ds.fixed_clips(3)]
    with pytest.raises(ValueError, match="not divisible"):
        ds.batch_samples(order, 0, 0, world=3)


def test_fit_lengths_truncates_the_longest_first():
    assert fit_lengths([3, 4], 10) == [3, 4]
    assert fit_lengths([10, 2, 7], 12) == [5, 2, 5]
    for lengths in itertools.product([1, 2, 5, 9], repeat=3):
        for budget in range(3, sum(lengths) + 1):
            kept = fit_lengths(list(lengths), budget)
            assert sum(kept) == min(budget, sum(lengths)) and all(1 <= k <= n for k, n in zip(kept, lengths))
            # nothing shorter than the cap was cut; the cut texts end within one token of each other
            cut = [k for k, n in zip(kept, lengths) if k < n]
            assert all(k >= max(cut) - 1 for k in cut) if cut else True
            assert all(n <= min(cut) + 1 for k, n in zip(kept, lengths) if k == n) if cut else True


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = build_lm("gpt2", tmp_path_factory.mktemp("tok_lm"))
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.add_special_tokens({"additional_special_tokens": [VISUAL, END_OF_CHUNK]})
    tok.pad_token = tok.eos_token
    return tok


def test_collate_builds_interleaved_documents(tokenizer):
    ds, _, _ = make()
    samples, vids = ds.batch_samples(ds.epoch_order(0), 0, 0)
    collate = InterleavedCollate(tokenizer, max_tokens=40)
    batch = collate(samples, vids)
    vis, eoc = tokenizer.convert_tokens_to_ids([VISUAL, END_OF_CHUNK])
    assert batch.input_ids.shape[1] <= 40 and batch.media.shape[:2] == (2, 3)
    assert batch.video_ids == vids
    for i, clips in enumerate(samples):
        ids = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        assert ids.count(vis) == ids.count(eoc) == 3 and ids[0] == vis  # this tokenizer adds no prefix
        for j, (s, e) in enumerate(batch.text_spans[i]):
            assert ids[s - 1] == vis and ids[e] == eoc
            assert tokenizer.decode(ids[s:e]) == clips[j]["text"]  # fits: nothing truncated
            n = clips[j]["features"].shape[0]
            assert bool(batch.media_mask[i, j, :n].all()) and not bool(batch.media_mask[i, j, n:].any())
            torch.testing.assert_close(batch.media[i, j, :n], torch.from_numpy(clips[j]["features"]))
    assert batch.texts == [[c["text"] for c in clips] for clips in samples]
    again = pickle.loads(pickle.dumps(collate))(samples, vids)  # DataLoader workers receive a pickled copy
    torch.testing.assert_close(again.input_ids, batch.input_ids)
    assert set(batch.model_inputs()) == {"input_ids", "attention_mask", "media", "media_mask"}
    assert isinstance(batch.to("cpu"), InterleavedBatch) and batch.clips_per_video == 3


def test_collate_fits_long_texts_keeping_every_clip(tokenizer):
    long = " ".join(["cut the onion into small pieces"] * 6)
    samples = [[{"features": np.ones((2, 3), np.float32), "window": (0, 1), "span": (0, 1), "text": t}
                for t in (long, "fry", long)]]
    batch = InterleavedCollate(tokenizer, max_tokens=30)(samples, ["v"])
    ids = batch.input_ids[0].tolist()
    assert len(ids) == 30 and ids.count(tokenizer.convert_tokens_to_ids(VISUAL)) == 3
    lengths = [e - s for s, e in batch.text_spans[0]]
    assert lengths[1] == len(tokenizer("fry", add_special_tokens=False)["input_ids"])
    assert abs(lengths[0] - lengths[2]) <= 1 and sum(lengths) == 30 - 6
    prompt, spans = InterleavedCollate(tokenizer, max_tokens=30).document_ids(["fry"], open_end=True)
    assert prompt[-1] == tokenizer.convert_tokens_to_ids(VISUAL) and len(spans) == 1
    with pytest.raises(ValueError, match="does not know"):
        from transformers import AutoTokenizer

        InterleavedCollate(AutoTokenizer.from_pretrained(tokenizer.name_or_path), 30)


def _store(root, feats, texts=None):
    atomic_write_json(root / "run.json", {"backbone": "thumbnail", "fps": 1.0, "feature_dim": 3})
    for vid, arr in feats.items():
        atomic_save_npy(root / f"shards/00/{vid}.npy", arr)
        append_jsonl(root / "manifest.jsonl", {"video_id": vid, "num_features": arr.shape[0], "feature_dim": 3,
                                               "fps": 1.0, "location": f"shards/00/{vid}.npy"})
    for vid, lines in (texts or {}).items():
        atomic_write_json(root / "text" / f"{vid}.json", {"video_id": vid, "lines": lines})
    return FeatureStore(root)


def test_caption_sources(tmp_path):
    feats = {"a": np.zeros((30, 3), np.float32), "b": np.zeros((30, 3), np.float32)}
    store = _store(tmp_path / "store", feats, {"a": [{"start": 1, "end": 3, "text": "store line"}]})
    assert {v: [l.text for l in ls] for v, ls in load_captions("", store, ["a", "b"]).items()} == \
        {"a": ["store line"]}
    # HowTo100M format (raw ASR or realigned): rolling-caption repeats are cleaned as in preprocessing
    h2m = tmp_path / "raw_caption.json"
    h2m.write_text(json.dumps({"a": {"start": [0, 2], "end": [3, 5], "text": ["so today we", "so today we make"]},
                               "zz": {"start": [0], "end": [1], "text": ["not in the store"]}}))
    assert [l.text for l in load_captions(str(h2m), store, ["a", "b"])["a"]] == ["so today we make"]
    # Howto-Interlink7M: one caption per clip, the video id is the file stem of the video column
    tsv = tmp_path / "interlink.tsv"
    clips = [{"clip_id": "1", "clip": "0:00:10 - 0:00:15", "caption": "second"},
             {"clip_id": "0", "clip": "0:00:00 - 0:00:05", "caption": "first"}]
    tsv.write_text("video\tclips\n" + f"videos/b.mp4\t{json.dumps(clips)}\n")
    got = load_captions(str(tsv), store, ["a", "b"])
    assert list(got) == ["b"] and [(l.start, l.text) for l in got["b"]] == [(0.0, "first"), (10.0, "second")]
    tsv.write_text("video\tclips\nvideos/b.mp4\t[{\"clip_id\": 0, \"clip\": \"0:00:09 - 0:00:05\"}]\n")
    with pytest.raises(FormatError) as e:
        load_captions(str(tsv), store, ["b"])
    assert "\n" not in str(e.value) and "interlink.tsv [line 2" in str(e.value)
    with pytest.raises(ConfigError, match="not found"):
        load_captions(str(tmp_path / "missing.json"), store, ["a"])
    # the training data of every model reads the same sources: an Interlink TSV as data.captions
    from vidlang.data.train_data import open_train_data

    tsv.write_text("video\tclips\n" + f"videos/b.mp4\t{json.dumps(clips)}\n")
    data = open_train_data(DataConfig(features=str(tmp_path / "store"), captions=str(tsv)))
    assert data.train_ids == ["b"] and [l.text for l in data.captions["b"]] == ["first", "second"]


def test_cosmo_document_settings_are_checked_with_the_data_section(tmp_path):
    from vidlang.train.config import TrainConfig

    with pytest.raises(ConfigError, match="max_tokens=11 cannot hold data.clips_per_video=4 clips"):
        from_dict(TrainConfig, {"model": {"arch": "cosmo", "max_tokens": 11}, "data": {"clips_per_video": 4},
                                "loss": {"objective": "cosmo"}})
    with pytest.raises(ConfigError, match="unknown config key model.clips"):
        from_dict(TrainConfig, {"model": {"arch": "cosmo", "clips": 4}})
