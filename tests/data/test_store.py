"""FeatureStore: memory-mapped reads, manifest semantics (reruns supersede), narration, failures, and refusal of
manifest paths that escape the store root."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vidlang.data import FeatureStore
from vidlang.data.store import resolve_under
from vidlang.errors import FormatError, VidlangError
from vidlang.io import append_jsonl, atomic_save_npy, atomic_write_json


def _add(root, vid, arr, location=None, **extra):
    location = location or f"shards/00/{vid}.npy"
    atomic_save_npy(root / location, arr)
    rec = {"video_id": vid, "num_features": arr.shape[0], "feature_dim": arr.shape[1], "fps": 1.0,
           "duration": float(arr.shape[0]), "backbone": "thumbnail", "location": location, "decoder": "pyav",
           "seconds": 0.1, **extra}
    append_jsonl(root / "manifest.jsonl", rec)
    return rec


@pytest.fixture
def store_root(tmp_path):
    rng = np.random.default_rng(0)
    atomic_write_json(tmp_path / "run.json", {"backbone": "thumbnail", "fps": 1.0, "feature_dim": 4})
    _add(tmp_path, "b", rng.standard_normal((3, 4)).astype(np.float32))
    _add(tmp_path, "a", rng.standard_normal((5, 4)).astype(np.float32))
    return tmp_path


def test_reads_memory_mapped_arrays_and_records(store_root):
    st = FeatureStore(store_root)
    assert st.ids() == ["a", "b"] and len(st) == 2 and "a" in st and "zz" not in st
    assert st.fps == 1.0 and st.dim == 4
    arr = st["a"]
    assert isinstance(arr, np.memmap) and arr.dtype == np.float32 and arr.shape == (5, 4)
    assert not arr.flags.writeable
    expected = np.load(store_root / "shards/00/a.npy")
    torch.testing.assert_close(torch.from_numpy(np.array(arr)), torch.from_numpy(expected))
    assert st.record("b")["num_features"] == 3
    with pytest.raises(KeyError, match="'zz'"):
        st.record("zz")


def test_rerun_line_supersedes_and_failures_are_filtered(store_root):
    new = np.ones((2, 4), np.float32)
    _add(store_root, "a", new, location="shards/01/a.npy")  # a rerun wrote a newer line
    append_jsonl(store_root / "failures.jsonl", {"video_id": "a", "path": "a.mp4", "reason": "old failure"})
    append_jsonl(store_root / "failures.jsonl", {"video_id": "c", "path": "c.mp4", "reason": "first"})
    append_jsonl(store_root / "failures.jsonl", {"video_id": "c", "path": "c.mp4", "reason": "second"})
    st = FeatureStore(store_root)
    assert len(st) == 2 and st["a"].shape == (2, 4)
    torch.testing.assert_close(torch.from_numpy(np.array(st["a"])), torch.from_numpy(new))
    assert st.failures() == [{"video_id": "c", "path": "c.mp4", "reason": "second"}]


def test_torn_last_manifest_line_is_ignored(store_root):
    with open(store_root / "manifest.jsonl", "a") as f:
        f.write('{"video_id": "half", "num_feat')  # SIGKILL mid-append
    st = FeatureStore(store_root)
    assert st.ids() == ["a", "b"]


@pytest.mark.parametrize("location", ["../outside.npy", "/etc/passwd", "shards/../../x.npy", "", "..\\x.npy"])
def test_escaping_locations_are_rejected(store_root, location):
    append_jsonl(store_root / "manifest.jsonl", {"video_id": "evil", "num_features": 1, "feature_dim": 4,
                                                 "location": location})
    st = FeatureStore(store_root)
    with pytest.raises(FormatError, match="evil") as ei:
        st["evil"]
    assert "manifest.jsonl" in str(ei.value)


def test_symlink_out_of_root_is_rejected(store_root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    np.save(outside / "x.npy", np.zeros((1, 4), np.float32))
    os.symlink(outside, store_root / "shards" / "link")
    append_jsonl(store_root / "manifest.jsonl", {"video_id": "sym", "num_features": 1, "feature_dim": 4,
                                                 "location": "shards/link/x.npy"})
    with pytest.raises(FormatError, match="outside the store root"):
        FeatureStore(store_root)["sym"]
    assert resolve_under(store_root, "shards/00/a.npy") == (store_root / "shards/00/a.npy").resolve()


def test_shape_mismatch_and_missing_file_are_clear_errors(store_root):
    _add(store_root, "c", np.zeros((2, 4), np.float32))
    lines = (store_root / "manifest.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    rec["num_features"] = 9
    lines[-1] = json.dumps(rec)
    (store_root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    st = FeatureStore(store_root)
    with pytest.raises(FormatError, match=r"shape \(2, 4\) != manifest \(9, 4\)"):
        st["c"]
    (store_root / "shards/00/b.npy").unlink()
    with pytest.raises(VidlangError, match="b.npy.*missing"):
        st["b"]


def test_missing_store_and_manifest(tmp_path):
    with pytest.raises(VidlangError, match="not found"):
        FeatureStore(tmp_path / "nope")
    with pytest.raises(VidlangError, match="manifest not found"):
        FeatureStore(tmp_path)


def test_text_roundtrip(store_root):
    atomic_write_json(store_root / "text" / "a.json",
                      {"video_id": "a", "lines": [{"start": 0.5, "end": 2.0, "text": "crack the eggs"}]})
    st = FeatureStore(store_root)
    (line,) = st.text("a")
    assert (line.start, line.end, line.text) == (0.5, 2.0, "crack the eggs")
    assert st.text("b") is None
    (store_root / "text" / "b.json").write_text('{"video_id": "b"}')
    with pytest.raises(FormatError, match="bad narration file"):
        st.text("b")


def test_package_import_stays_light():
    import subprocess
    import sys

    code = "import sys, vidlang.data; assert 'torch' not in sys.modules, 'vidlang.data imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
