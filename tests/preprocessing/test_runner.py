"""The corpus runner and `vidlang preprocess` on real files: good and bad videos, resume, shards, settings lock,
captions, workers, and a real SIGKILL mid-run followed by a rerun."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from preprocessing.runner import bucket_of, list_videos, run_corpus, shard_of
from tests.preprocessing.test_decoders import make_video
from vidlang.cli import main as vidlang_main
from vidlang.data import FeatureStore
from vidlang.errors import ConfigError
from vidlang.io import read_jsonl

REPO = Path(__file__).resolve().parents[2]
OPTS = {"frames": 2, "grid": 4}  # thumbnail backbone, tiny: dim = 5 * 4 * 4 + 6
DIM = 86
GOOD = {"g1": 3.5, "g2": 2.7, "g3": 0.1, "g4": 5.0}  # duration in seconds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    make_video(d / "g1.mp4", num_frames=35, fps=10, size=(32, 32))
    make_video(d / "g2.mkv", pts_ms=[0, 100, 150, 400, 420, 1000, 1500, 1530, 2600], size=(32, 32))
    make_video(d / "g3.mp4", num_frames=1, fps=10, size=(32, 32))
    (d / "sub").mkdir()  # folders are searched recursively
    make_video(d / "sub" / "g4.mp4", num_frames=25, fps=5, size=(27, 35), pix_fmt="yuv444p")
    (d / "zero.mp4").write_bytes(b"")
    (d / "notvideo.mp4").write_text("hello\n" * 100)
    full = make_video(d / "trunc.mp4", num_frames=60, fps=10, size=(32, 32), options={"movflags": "faststart"})
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])  # index intact, frames gone: a partial download
    (d / "readme.txt").write_text("not listed: wrong extension")
    return d


def _store_arrays(out) -> dict[str, np.ndarray]:
    st = FeatureStore(out)
    return {v: np.array(st[v]) for v in st.ids()}


def _assert_same_arrays(a: dict, b: dict) -> None:
    import torch

    assert sorted(a) == sorted(b)
    for k in a:
        torch.testing.assert_close(torch.from_numpy(a[k]), torch.from_numpy(b[k]), rtol=0, atol=0)


@pytest.fixture(scope="module")
def single_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    s = run_corpus(corpus, out, backbone="thumbnail", backbone_opts=OPTS, fps=2.0, decoder="pyav", progress=False)
    assert (s.done, s.skipped, s.failed, s.listed) == (4, 0, 3, 7)
    return out


def test_good_videos_get_ceil_duration_times_fps_rows_and_bad_ones_a_reason(single_run):
    st = FeatureStore(single_run)
    assert st.ids() == sorted(GOOD) and st.dim == DIM and st.fps == 2.0
    for vid, dur in GOOD.items():
        arr = st[vid]
        rec = st.record(vid)
        assert rec["duration"] == pytest.approx(dur, abs=0.06)
        assert arr.shape == (math.ceil(rec["duration"] * 2.0 - 1e-6), DIM) == (rec["num_features"], DIM)
        assert arr.dtype == np.float32 and isinstance(arr, np.memmap)
        assert rec["location"] == f"shards/{bucket_of(vid)}/{vid}.npy" and rec["backbone"] == "thumbnail"
        assert rec["decoder"] == "pyav" and rec["seconds"] >= 0
    assert st["g1"].shape[0] == 7 and st["g3"].shape[0] == 1  # 3.5 s -> 7 rows; one frame -> 1 row
    fails = {f["video_id"]: f["reason"] for f in st.failures()}
    assert set(fails) == {"zero", "notvideo", "trunc"}
    assert "empty file" in fails["zero"] and "not a readable media file" in fails["notvideo"]
    assert "truncated" in fails["trunc"]
    run = json.loads((single_run / "run.json").read_text())
    assert run["backbone"] == "thumbnail" and run["fps"] == 2.0 and run["feature_dim"] == DIM
    assert run["frames_per_feature"] == 2 and run["weights_sha256"] is None


def test_features_see_the_right_seconds(single_run):
    # g1 frames are uniform greys that change every frame; the colour cells of feature i must match the mean
    # grey of the frames the sampling rule picks (t = i/2 + 0.125, i/2 + 0.375 -> frames floor(10 t)).
    st = FeatureStore(single_run)
    arr = np.array(st["g1"])
    from tests.preprocessing.test_decoders import level_frame

    for i in range(arr.shape[0]):
        ks = [min(34, int(np.floor(10 * (i / 2 + o)))) for o in (0.125, 0.375)]
        grey = np.mean([level_frame(k, 32, 32)[20:, :, 0].mean() for k in ks]) / 255
        # colour layout cells of the bottom rows (no moving block there), red channel
        cells = arr[i, :16].reshape(4, 4)[2:]
        np.testing.assert_allclose(cells * 0.25 + 0.45, grey, atol=0.02)


def test_cli_end_to_end_exit_0_with_failures_and_resume(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["preprocess", "--videos", str(corpus), "--out", str(out), "--fps", "1", "--decoder", "decord",
            "--opt", "frames=2", "--opt", "grid=4", "--no-progress"]
    assert vidlang_main(argv) == 0
    line = capsys.readouterr().out
    assert "4 done, 0 skipped, 3 failed" in line and "failures.jsonl" in line
    lines = list(read_jsonl(out / "manifest.jsonl"))
    assert len(lines) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*.npy")}
    # resume: nothing redone, no new manifest lines; failed ones are retried (and fail again)
    assert vidlang_main(argv) == 0
    assert "0 done, 4 skipped, 3 failed" in capsys.readouterr().out
    assert len(list(read_jsonl(out / "manifest.jsonl"))) == 4
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*.npy")} == mtimes
    # a deleted array is redone
    victim = out / lines[0]["location"]
    victim.unlink()
    assert vidlang_main(argv) == 0
    assert "1 done, 3 skipped" in capsys.readouterr().out and victim.exists()


def test_settings_mismatch_is_refused(single_run, corpus, capsys):
    with pytest.raises(ConfigError, match=r"fps: 2.0 -> 1.0"):
        run_corpus(corpus, single_run, backbone="thumbnail", backbone_opts=OPTS, fps=1.0, progress=False)
    argv = ["preprocess", "--videos", str(corpus), "--out", str(single_run), "--fps", "2", "--no-progress"]
    assert vidlang_main(argv) == 2  # different backbone options -> one-line error, exit 2
    err = capsys.readouterr().err
    assert "different settings" in err and "backbone_opts" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, msg", [
    (["--shard", "2/2"], "0 <= i < N"),
    (["--decoder", "opencv"], "unknown decoder"),
    (["--fps", "0"], "--fps must be > 0"),
    (["--backbone", "nope"], "unknown backbone"),
])
def test_unusable_arguments_exit_2(corpus, tmp_path, capsys, argv, msg):
    rc = vidlang_main(["preprocess", "--videos", str(corpus), "--out", str(tmp_path / "o"), "--no-progress"] + argv)
    assert rc == 2 and msg in capsys.readouterr().err


def test_shards_are_disjoint_and_their_union_equals_a_single_run(corpus, single_run, tmp_path):
    ids = [v for v, _ in list_videos(corpus)]
    parts = [{v for v in ids if shard_of(v, 3) == i} for i in range(3)]
    assert set().union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)
    shared = tmp_path / "shared"
    seen = []
    for i in range(3):
        s = run_corpus(corpus, shared, backbone="thumbnail", backbone_opts=OPTS, fps=2.0, decoder="pyav",
                       shard=(i, 3), progress=False)
        assert s.listed == len(parts[i]) and s.shard == (i, 3)
        seen.append(s.done + s.failed)
    assert seen == [len(p) for p in parts]
    _assert_same_arrays(_store_arrays(shared), _store_arrays(single_run))
    a, b = FeatureStore(shared), FeatureStore(single_run)
    assert all(a.record(v)["location"] == b.record(v)["location"] for v in a.ids())
    assert {f["video_id"] for f in a.failures()} == {f["video_id"] for f in b.failures()}


def test_shard_from_torchrun_env(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    s = run_corpus(corpus, tmp_path / "o", backbone="thumbnail", backbone_opts=OPTS, fps=2.0, decoder="pyav",
                   progress=False)
    assert s.shard == (1, 2)
    assert s.listed == sum(shard_of(v, 2) == 1 for v, _ in list_videos(corpus))


def test_list_file_input_and_failure_superseded(corpus, tmp_path):
    work = tmp_path / "v"
    work.mkdir()
    (work / "late.mp4").write_text("still downloading")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# videos\n{corpus / 'g1.mp4'}\nv/late.mp4\n\n")
    out = tmp_path / "o"
    kw = dict(backbone="thumbnail", backbone_opts=OPTS, fps=2.0, decoder="torchcodec", progress=False)
    s = run_corpus(lst, out, **kw)
    assert (s.done, s.failed) == (1, 1)
    assert [f["video_id"] for f in FeatureStore(out).failures()] == ["late"]
    make_video(work / "late.mp4", num_frames=12, fps=10, size=(32, 32))  # the download finished
    s = run_corpus(lst, out, **kw)
    assert (s.done, s.skipped, s.failed) == (1, 1, 0)
    st = FeatureStore(out)
    assert st.failures() == [] and "late" in st and st["late"].shape == (3, DIM)
    assert len(list(read_jsonl(out / "failures.jsonl"))) == 1  # history kept, superseded by the manifest


def test_captions_written_cleaned(corpus, tmp_path):
    caps = tmp_path / "raw_caption.json"
    caps.write_text(json.dumps({
        "g1": {"start": [0.0, 1.0, 2.0], "end": [1.5, 2.5, 3.4],
               "text": ["so today we", "so today we are going", "[Music]"]},
        "other": {"start": [0.0], "end": [1.0], "text": ["not in the corpus"]},
    }))
    out = tmp_path / "o"
    run_corpus([corpus / "g1.mp4", corpus / "g3.mp4"], out, backbone="thumbnail", backbone_opts=OPTS, fps=2.0,
               decoder="pyav", captions=caps, progress=False)
    st = FeatureStore(out)
    lines = st.text("g1")
    assert [c.text for c in lines] == ["so today we are going"]  # rolling line replaced, tag-only line dropped
    assert st.text("g3") is None and not (out / "text" / "other.json").exists()
    obj = json.loads((out / "text" / "g1.json").read_text())
    assert obj["video_id"] == "g1" and set(obj["lines"][0]) == {"start", "end", "text"}


def test_two_workers_equal_one(corpus, single_run, tmp_path):
    out = tmp_path / "w2"
    s = run_corpus(corpus, out, backbone="thumbnail", backbone_opts=OPTS, fps=2.0, decoder="pyav", workers=2,
                   progress=False)
    assert (s.done, s.failed) == (4, 3)
    a, b = _store_arrays(out), _store_arrays(single_run)
    assert sorted(a) == sorted(b)
    import torch

    for k in a:  # one torch thread per worker may sum in another order
        torch.testing.assert_close(torch.from_numpy(a[k]), torch.from_numpy(b[k]), rtol=1e-5, atol=1e-5)
    assert len(list(read_jsonl(out / "manifest.jsonl"))) == 4


# -- SIGKILL -------------------------------------------------------------------------------------------------------
_KILL_SCRIPT = """
import sys
from preprocessing.runner import run_corpus
run_corpus(sys.argv[1], sys.argv[2], backbone="thumbnail", backbone_opts={"frames": 2, "grid": 4}, fps=4.0,
           decoder="pyav", progress=False)
"""


def test_sigkill_midway_then_rerun_equals_uninterrupted(tmp_path):
    vids = tmp_path / "vids"
    vids.mkdir()
    n = 8
    for i in range(n):
        make_video(vids / f"k{i}.mp4", num_frames=150 + 10 * i, fps=10, size=(48, 48))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(vids), str(killed)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = killed / "manifest.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and len(list(read_jsonl(manifest))) >= 2:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"runner ended before the kill: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(read_jsonl(manifest)))
    assert 2 <= done_before < n, "the kill must land midway"

    s = run_corpus(vids, killed, backbone="thumbnail", backbone_opts=OPTS, fps=4.0, decoder="pyav", progress=False)
    assert s.skipped == done_before and s.done == n - done_before and s.failed == 0
    run_corpus(vids, clean, backbone="thumbnail", backbone_opts=OPTS, fps=4.0, decoder="pyav", progress=False)
    _assert_same_arrays(_store_arrays(killed), _store_arrays(clean))
    ids = [r["video_id"] for r in read_jsonl(manifest)]
    assert len(ids) == len(set(ids)) == n  # no duplicate manifest lines
    assert not (killed / "failures.jsonl").exists()


def test_manifest_lines_follow_the_documented_schema(single_run):
    import re

    schema = json.loads((REPO / "data_manifests" / "feature_manifest.schema.json").read_text())
    types = {"string": str, "integer": int, "number": (int, float)}
    for rec in read_jsonl(single_run / "manifest.jsonl"):
        assert set(schema["required"]) <= set(rec)
        for key, value in rec.items():
            spec = schema["properties"][key]  # every key the runner writes is documented
            assert isinstance(value, types[spec["type"]]) and not isinstance(value, bool), key
            if "enum" in spec:
                assert value in spec["enum"], key
            if "pattern" in spec:
                assert re.search(spec["pattern"], value), key
