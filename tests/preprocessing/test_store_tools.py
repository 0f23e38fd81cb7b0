"""`vidlang preprocess verify` on damaged stores, and `vidlang preprocess import` of released-style per-video
features (MMPT's <video_id>.npy layout) with every kind of bad file; the imported store trains like an extracted one."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from preprocessing.runner import run_corpus
from preprocessing.verify import verify_store
from tests.preprocessing.test_decoders import make_video
from vidlang.cli import main as vidlang_main
from vidlang.data import FeatureStore
from vidlang.io import append_jsonl, read_jsonl

OPTS = {"frames": 2, "grid": 4}


@pytest.fixture(scope="module")
def vids(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("verify_videos")
    for i in range(5):
        make_video(d / f"v{i}.mp4", num_frames=15 + 5 * i, fps=10, size=(32, 32))
    (d / "bad.mp4").write_bytes(b"\x00" * 64)
    return d


@pytest.fixture()
def store(vids, tmp_path) -> Path:
    out = tmp_path / "store"
    s = run_corpus(vids, out, backbone_opts=OPTS, progress=False)
    assert (s.done, s.failed) == (5, 1)
    return out


def _cli(*argv) -> int:
    return vidlang_main(["preprocess", *map(str, argv)])


def test_verify_a_complete_store(store, capsys):
    assert _cli("verify", store) == 0
    out = capsys.readouterr().out
    assert "6 inputs, 5 complete, 1 failed (failures.jsonl), 0 missing, 0 bad, 0 orphan" in out
    assert "failed: bad:" in out


def test_verify_catches_deleted_truncated_corrupt_and_lineless_files(store, vids, tmp_path, capsys):
    st = FeatureStore(store)
    deleted, truncated, corrupt = (store / st.record(v)["location"] for v in ("v0", "v1", "v2"))
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:-40])
    data = bytearray(corrupt.read_bytes())
    data[-3] ^= 0xFF  # same size, one value changed: only the fingerprint sees it
    corrupt.write_bytes(bytes(data))
    # a manifest line without a file
    append_jsonl(store / "manifest.jsonl", {"video_id": "v9", "location": "shards/00/v9.npy", "num_features": 1,
                                            "feature_dim": 86, "fps": 1.0})
    rep = verify_store(store)
    assert set(rep.bad) == {"v0", "v1", "v2", "v9"}
    assert "missing" in rep.bad["v0"] and "truncated" in rep.bad["v1"] and "fingerprint" in rep.bad["v2"]
    assert "missing" in rep.bad["v9"] and rep.unlisted == ["v9"]
    assert not rep.complete and sorted(rep.ok) == ["v3", "v4"]

    lst = tmp_path / "redo.txt"
    assert _cli("verify", store, "--missing-list", lst, "--remove-bad") == 1
    printed = capsys.readouterr().out
    assert "-> INCOMPLETE" in printed and "removed 2 bad file(s)" in printed
    assert sorted(Path(p).stem for p in lst.read_text().split()) == ["v0", "v1", "v2"]
    # the same preprocess command redoes exactly what verify found; afterwards the store is complete
    s = run_corpus(vids, store, backbone_opts=OPTS, progress=False)
    assert (s.done, s.skipped) == (3, 2)
    rep = verify_store(store)
    assert set(rep.bad) == {"v9"} and not rep.missing  # v9's line was never a video of this folder


def test_verify_lists_videos_not_yet_processed(store, vids, tmp_path):
    more = tmp_path / "more"
    more.mkdir()
    for p in vids.iterdir():
        os.link(p, more / p.name)
    make_video(more / "new.mp4", num_frames=10, fps=10, size=(32, 32))
    rep = verify_store(store, videos=more)
    assert rep.missing == {"new": str(more / "new.mp4")} and not rep.bad
    assert verify_store(store, videos=more, quick=True).missing == rep.missing


def test_a_truncated_file_is_redone_by_the_next_run_without_verify(store, vids):
    p = store / FeatureStore(store).record("v3")["location"]
    good = p.read_bytes()
    p.write_bytes(good[:100])
    s = run_corpus(vids, store, backbone_opts=OPTS, progress=False)
    assert (s.done, s.skipped) == (1, 4) and p.read_bytes() == good


def test_verify_of_something_that_is_not_a_store(tmp_path, capsys):
    assert _cli("verify", tmp_path) == 2
    assert "not a feature store" in capsys.readouterr().err


# -- import --------------------------------------------------------------------------------------------------------
D = 16


@pytest.fixture()
def released(tmp_path) -> dict[str, np.ndarray]:
    """A folder like MMPT's feature release: <video_id>.npy (T, D) float32, plus every kind of bad file."""
    from tests.train.conftest import make_corpus

    d = tmp_path / "release"
    d.mkdir()
    corpus = make_corpus(n_videos=12, seconds=40, dim=D, seed=0)
    good = {}
    for vid, feats in corpus.features.items():
        np.save(d / f"{vid}.npy", feats)
        good[vid] = feats
    half = np.random.default_rng(1).normal(size=(9, D)).astype(np.float16)
    np.save(d / "half.npy", half)  # float16: converted to float32
    good["half"] = half.astype(np.float32)
    np.save(d / "objects.npy", np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    np.save(d / "flat.npy", np.zeros(D, np.float32))
    nan = np.ones((5, D), np.float32)
    nan[3, 2] = np.nan
    np.save(d / "nanrow.npy", nan)
    np.save(d / "wide.npy", np.ones((4, D + 1), np.float32))
    np.save(d / "ints.npy", np.ones((4, D), np.int64))
    (d / "README.txt").write_text("features of the release")
    with open(d / "pickled.npy", "wb") as f:
        pickle.dump({"not": "an array"}, f)
    caps = {vid: {"start": [l.start for l in lines], "end": [l.end for l in lines], "text": [l.text for l in lines]}
            for vid, lines in corpus.captions.items()}
    (tmp_path / "raw_caption.json").write_text(json.dumps(caps))
    return {"dir": d, "good": good, "captions": tmp_path / "raw_caption.json", "corpus": corpus}


def test_import_takes_the_good_files_and_explains_each_bad_one(released, tmp_path, capsys):
    out = tmp_path / "imported"
    assert _cli("import", "--features", released["dir"], "--fps", 1, "--out", out, "--captions",
                released["captions"], "--backbone-name", "s3d_howto100m", "--no-progress") == 0
    assert "13 done, 0 skipped, 7 failed" in capsys.readouterr().out
    st = FeatureStore(out)
    assert st.ids() == sorted(released["good"]) and st.dim == D and st.fps == 1.0
    for vid, feats in released["good"].items():
        np.testing.assert_array_equal(np.array(st[vid]), feats)
        assert st[vid].dtype == np.float32
    reasons = {f["video_id"]: f["reason"] for f in st.failures()}
    assert set(reasons) == {"objects", "flat", "nanrow", "wide", "ints", "README.txt", "pickled"}
    assert "pickled object array" in reasons["objects"] and "refused without unpickling" in reasons["objects"]
    assert "2-D" in reasons["flat"] and "non-finite value nan at row 3" in reasons["nanrow"]
    assert "dimension 17 differs from the store's 16" in reasons["wide"]
    assert "floating-point" in reasons["ints"] and reasons["README.txt"] == "not a .npy file"
    assert "a pickle, not an .npy array" in reasons["pickled"]
    # float32 files are hard links to the release (no copy); float16 was converted
    src, dst = released["dir"] / "v000.npy", out / st.record("v000")["location"]
    assert os.stat(src).st_ino == os.stat(dst).st_ino and st.record("v000")["stored_as"] == "link"
    assert st.record("half")["stored_as"] == "converted" and st.record("half")["source_dtype"] == "float16"
    assert [c.text for c in st.text("v000")][:1] == [released["corpus"].captions["v000"][0].text]
    run = json.loads((out / "run.json").read_text())
    assert run["backbone"] == "s3d_howto100m" and run["feature_dim"] == D and run["fps"] == 1.0
    # idempotent, and verify agrees (the import folder is the input set)
    assert _cli("import", "--features", released["dir"], "--fps", 1, "--out", out, "--backbone-name",
                "s3d_howto100m", "--no-progress") == 0
    assert "0 done, 13 skipped, 7 failed" in capsys.readouterr().out
    rep = verify_store(out)
    assert rep.complete and rep.listed == 20 and len(rep.ok) == 13 and len(rep.failed) == 7


def test_import_copy_and_settings_lock(released, tmp_path, capsys):
    out = tmp_path / "copied"
    assert _cli("import", "--features", released["dir"], "--fps", 1, "--out", out, "--copy", "--no-progress") == 0
    st = FeatureStore(out)
    assert st.record("v001")["stored_as"] == "copy"
    assert os.stat(released["dir"] / "v001.npy").st_ino != os.stat(out / st.record("v001")["location"]).st_ino
    capsys.readouterr()
    assert _cli("import", "--features", released["dir"], "--fps", 2, "--out", out, "--no-progress") == 2
    assert "fps: 1.0 -> 2.0" in capsys.readouterr().err
    # an extracted store's settings differ from an import's: preprocess into it is refused
    assert _cli("--videos", tmp_path, "--out", out, "--no-progress") == 2


def test_an_imported_store_trains_like_an_extracted_one(released, tmp_path, tiny_text_model_dir, capsys):
    from tests.train.conftest import tiny_config
    from vidlang.config import dump_yaml

    out = tmp_path / "imported"
    assert _cli("import", "--features", released["dir"], "--fps", 1, "--out", out, "--captions",
                released["captions"], "--no-progress") == 0
    ids = sorted(released["corpus"].features)
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ids[:10], "val": ids[10:]}))
    cfg = tmp_path / "t.yaml"
    cfg.write_text(dump_yaml(tiny_config(tiny_text_model_dir, "norton", train__steps=2)))
    capsys.readouterr()
    assert vidlang_main(["train", "--config", str(cfg), f"data.features={out}", f"data.splits={splits}",
                         "--out", str(tmp_path / "run")]) == 0
    assert "trained dual_encoder with norton for 2 steps" in capsys.readouterr().out
    assert list(read_jsonl(out / "manifest.jsonl"))
