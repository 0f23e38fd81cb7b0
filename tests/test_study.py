"""`vidlang study`: tables, argument checks and the one-pass protocol's corpus plumbing (disjoint pretraining and
post-training splits, corpora sharing videos, merged public-layout chunks). The study's training runs are
exercised by tests/test_integration.py through the same pipeline stages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vidlang import pipeline as P
from vidlang.errors import ConfigError, VidlangError
from vidlang.study import (PRETRAINED, _parse_pair, merge_public_corpora, narration_overrides,
                           prepare_shared_corpus, public_chunks, split_pretrain_posttrain, study_table,
                           write_disjoint_splits)

R5 = "clip-youcookii / t2v / R@5"
PARA = "paragraph-youcookii / bg_kept / otam / R@1"


def _runs(*r5: float) -> list[dict]:
    return [{R5: v} for v in r5]


def _rows(table: str) -> dict[str, str]:
    return {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}


def test_study_table_pairs_every_variant_with_infonce_and_extra_pairs_with_their_own_baseline():
    results = {"s400": {"infonce": _runs(50, 52, 51), "norton": _runs(51, 51, 53),
                        "infonce_hn": _runs(40, 41, 42), "norton_hn": _runs(43, 43, 45)}}
    table = study_table(results, pairs=[("norton_hn", "infonce_hn")])
    rows = {k: v for k, v in _rows(table).items() if "paired" in k}
    assert set(rows) == {"norton − infonce, paired", "infonce_hn − infonce, paired",
                         "norton_hn − infonce, paired", "norton_hn − infonce_hn, paired"}
    # R@5 is the first metric: paired differences 3, 2, 3 -> mean +2.7, 3/3 seeds better
    assert rows["norton_hn − infonce_hn, paired"].split("|")[2].strip() == "+2.7 ± 0.6 (3/3)"
    assert rows["norton − infonce, paired"].split("|")[2].strip() == "+0.7 ± 1.5 (2/3)"  # +1, -1, +2


def test_study_table_shows_the_pretrained_row_unpaired_and_only_measured_columns():
    results = {"c": {PRETRAINED: [{R5: 40.0, PARA: 9.0}], "infonce": [{R5: 50.0, PARA: 10.0}, {R5: 52.0, PARA: 12.0}],
                     "norton": [{R5: 51.0, PARA: 13.0}, {R5: 51.0, PARA: 11.0}]}}
    table = study_table(results)
    header = table.splitlines()[2]
    assert "para R@1 (bg kept, OTAM)" in header and "align recall (DP)" not in header  # no alignment in these runs
    rows = _rows(table)
    assert rows["pretrained (n=1)"].split("|")[2].strip() == "40.0"
    assert not any(k.startswith("pretrained −") for k in rows)
    # paragraph: +3, -1 -> +1.0 ± 2.8, 1/2
    assert rows["norton − infonce, paired"].split("|")[3].strip() == "+1.0 ± 2.8 (1/2)"


def test_pair_must_name_two_variants():
    assert _parse_pair("norton_hn:infonce_hn", ["infonce", "norton_hn", "infonce_hn"]) == ("norton_hn", "infonce_hn")
    with pytest.raises(ConfigError, match="expected VARIANT:BASELINE"):
        _parse_pair("norton_hn", ["norton_hn"])
    with pytest.raises(ConfigError, match="'infonce_x' is not a --variant"):
        _parse_pair("norton_hn:infonce_x", ["infonce", "norton_hn"])


def test_pretrain_and_posttrain_videos_are_disjoint_complete_and_seeded(tmp_path):
    ids = [f"v{i:03d}" for i in range(50)]
    pre, post = split_pretrain_posttrain(list(reversed(ids)), 12)
    assert len(pre) == 12 and len(post) == 38 and sorted(pre + post) == ids and not set(pre) & set(post)
    assert (pre, post) == split_pretrain_posttrain(ids, 12)  # a function of the id set, not its order
    assert pre != split_pretrain_posttrain(ids, 12, seed=1)[0]
    with pytest.raises(ConfigError, match="need 0 < N < 50"):
        split_pretrain_posttrain(ids, 50)
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ids, "val": ["e1", "e2"]}))
    corpus = P.CorpusPaths(tmp_path, tmp_path / "f", tmp_path / "m", splits, None)
    a, b = write_disjoint_splits(corpus, tmp_path / "run", 12)
    assert json.loads(a.read_text()) == {"train": pre, "val": ["e1", "e2"]}
    assert json.loads(b.read_text()) == {"train": post, "val": ["e1", "e2"]}


def _chunk(root: Path, ids: list[str], val: set[str]) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "videos").mkdir()
    for v in ids:
        (root / "videos" / f"{v}.mp4").write_bytes(v.encode())
    caps = {v: {"start": [0.0], "end": [2.0], "text": [f"line of {v}"]} for v in ids}
    db = {v: {"duration": 10.0, "subset": "validation" if v in val else "training", "recipe_type": "1",
              "annotations": [{"segment": [1, 3], "id": 0, "sentence": "cut it"}]} for v in ids}
    htm = {v: [[1, 0.0, 2.0, f"line of {v}"]] for v in ids if v in val}
    (root / "annotations" / P.CAPTIONS).write_text(json.dumps(caps))
    (root / "annotations" / P.ANNOTATIONS["youcookii"]).write_text(json.dumps({"database": db}))
    (root / "annotations" / P.HTM_ALIGN).write_text(json.dumps(htm))
    return root


def test_merged_public_chunks_keep_a_seeded_evaluation_subset(tmp_path):
    _chunk(tmp_path / "chunks" / "c0", ["a0", "a1", "a2", "a3"], {"a0", "a1"})
    _chunk(tmp_path / "chunks" / "c1", ["b0", "b1", "b2"], {"b0", "b1"})
    chunks = public_chunks(tmp_path / "chunks")
    assert [c.name for c in chunks] == ["c0", "c1"] and public_chunks(chunks[0]) == [chunks[0]]
    out = merge_public_corpora(chunks, tmp_path / "merged", max_eval=3)
    ann = out / "annotations"
    db = json.loads((ann / P.ANNOTATIONS["youcookii"]).read_text())["database"]
    val = {v for v, r in db.items() if r["subset"] == "validation"}
    assert set(db) == {"a0", "a1", "a2", "a3", "b0", "b1", "b2"} and len(val) == 3 and val < {"a0", "a1", "b0", "b1"}
    assert set(json.loads((ann / P.HTM_ALIGN).read_text())) == val  # HTM-Align holds evaluation videos only
    assert set(json.loads((ann / P.CAPTIONS).read_text())) == set(db)
    assert os.path.samefile(out / "videos" / "b2.mp4", chunks[1] / "videos" / "b2.mp4")
    assert P.splits_from_youcookii(ann / P.ANNOTATIONS["youcookii"])["val"] == sorted(val)
    # a finished merge is reused; overlapping chunks are refused
    assert merge_public_corpora(chunks, out, max_eval=1) == out
    assert json.loads((ann / P.ANNOTATIONS["youcookii"]).read_text())["database"] == db
    _chunk(tmp_path / "dup", ["a0"], set())
    with pytest.raises(VidlangError, match="also in another chunk, e.g. a0"):
        merge_public_corpora([chunks[0], tmp_path / "dup"], tmp_path / "merged2")


def test_a_corpus_sharing_videos_renders_nothing_and_trains_on_its_own_narration(tmp_path):
    tiny = ["--videos", 3, "--size", 16, "--fps", 1, "--min-duration", 12, "--max-duration", 16, "--step-min", 2,
            "--step-max", 3, "--msrvtt-clips", 0, "--val-frac", 0.34, "--seed", 0]
    base_root = tmp_path / "base" / "corpus"
    P.run_cli(["synth", base_root, *tiny, "--workers", 1, "--no-progress"])
    base = P.CorpusPaths(base_root, tmp_path / "base" / "features", tmp_path / "base" / "m",
                         base_root / "splits.json", base_root / "ground_truth.json")
    heavy = prepare_shared_corpus(tmp_path / "heavy", base, [*tiny, "--irrelevant-frac", 0.6], workers=1)
    assert heavy.features == base.features and heavy.root == tmp_path / "heavy" / "corpus"
    for mp4 in (base_root / "videos").glob("*.mp4"):  # hard links of the base videos, found up to date
        assert os.path.samefile(mp4, heavy.root / "videos" / mp4.name)
    gt = [json.loads(p.read_text())["noise"] for p in (base.ground_truth, heavy.ground_truth)]
    assert gt[0] != gt[1]  # other narration over the same videos
    assert narration_overrides("onepass-heavy", heavy) == [f"data.captions={heavy.annotations / P.CAPTIONS}"]
    assert narration_overrides("onepass", base) == []


def test_independent_chunks_are_small_distinct_resumable_and_merge(tmp_path):
    import subprocess
    import sys

    import av

    tool = Path(__file__).resolve().parents[1] / "tools" / "study_independent_corpus.py"
    cmd = [sys.executable, str(tool), str(tmp_path / "chunks"), "--chunks", "2", "--videos-per-chunk", "2",
           "--first-seed", "3", "--workers", "1"]
    subprocess.run(cmd, check=True, capture_output=True)
    chunks = public_chunks(tmp_path / "chunks")
    assert [c.name for c in chunks] == ["c3", "c4"]
    videos = sorted((tmp_path / "chunks").glob("c*/videos/*.mp4"))
    assert len(videos) == 4 and len({v.stem for v in videos}) == 4
    for v in videos:
        with av.open(str(v)) as c:
            s = c.streams.video[0]
            assert s.codec_context.width == 64 and s.codec_context.height in (36, 48) and s.average_rate == 4
    again = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert again.stdout.count(": done") == 2
    merged = merge_public_corpora(chunks, tmp_path / "merged")
    assert sorted(p.name for p in (merged / "videos").iterdir()) == sorted(v.name for v in videos)
