"""`vidlang preprocess` reliability on real files: changed captions, locked output folders (per shard, stale locks
taken over), bounded --fps, and one-line errors (exit 2) for every unusable argument, each checked before anything
is written."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from preprocessing.runner import list_videos, run_corpus, shard_lock_name, shard_of
from tests.preprocessing.test_decoders import make_video
from vidlang.cli import main as vidlang_main
from vidlang.data import FeatureStore
from vidlang.errors import LockedError
from vidlang.io import RunLock

REPO = Path(__file__).resolve().parents[2]
OPTS = {"frames": 2, "grid": 4}


@pytest.fixture(scope="module")
def vids(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rel_videos")
    make_video(d / "a1.mp4", num_frames=30, fps=10, size=(32, 32))
    make_video(d / "a2.mp4", num_frames=22, fps=10, size=(32, 32))
    make_video(d / "a3.mp4", num_frames=12, fps=4, size=(32, 32))
    return d


def _caps(path: Path, texts: dict[str, list[str]]) -> Path:
    obj = {vid: {"start": [float(i) for i in range(len(t))], "end": [i + 0.9 for i in range(len(t))], "text": t}
           for vid, t in texts.items()}
    path.write_text(json.dumps(obj))
    return path


def _cli(*argv) -> int:
    return vidlang_main(["preprocess", *map(str, argv)])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# -- stale captions (issue 10 item 3) ------------------------------------------------------------------------------
def test_changed_captions_rewrite_the_changed_narration_and_are_recorded(vids, tmp_path, capsys):
    out = tmp_path / "out"
    old = _caps(tmp_path / "old.json", {"a1": ["mix the flour"], "a2": ["cut the onion"], "a3": ["stir well"]})
    new = _caps(tmp_path / "new.json", {"a1": ["mix the flour"], "a2": ["peel the onion"]})  # a3: no narration
    base = ["--videos", vids, "--out", out, "--opt", "frames=2", "--opt", "grid=4", "--no-progress"]
    assert _cli(*base, "--captions", old) == 0
    capsys.readouterr()
    a1_mtime = (out / "text" / "a1.json").stat().st_mtime_ns
    arrays = {p: p.read_bytes() for p in (out / "shards").rglob("*.npy")}

    assert _cli(*base, "--captions", new) == 0
    line = capsys.readouterr().out
    assert "0 done, 3 skipped" in line and "2 narration file(s) rewritten" in line
    st = FeatureStore(out)
    assert [c.text for c in st.text("a2")] == ["peel the onion"]
    assert st.text("a3") is None  # the new file does not narrate a3: its old text is gone
    assert (out / "text" / "a1.json").stat().st_mtime_ns == a1_mtime  # unchanged text is not rewritten
    assert {p: p.read_bytes() for p in (out / "shards").rglob("*.npy")} == arrays  # features untouched
    run = json.loads((out / "run.json").read_text())
    assert run["captions"] == str(new.resolve())
    assert run["captions_sha256"] == hashlib.sha256(new.read_bytes()).hexdigest()

    assert _cli(*base, "--captions", new) == 0  # the same captions again: nothing to rewrite
    assert "rewritten" not in capsys.readouterr().out


# -- locks (issue 10 item 4) ---------------------------------------------------------------------------------------
def _hold(folder, name, ready, release):
    with RunLock(folder, "vidlang preprocess (local, shard 0/1)", name=name):
        ready.set()
        release.wait(60)


def test_second_run_into_a_locked_shard_gets_one_line_naming_the_holder(vids, tmp_path, capsys):
    out = tmp_path / "out"
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(out, shard_lock_name((0, 1)), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        assert _cli("--videos", vids, "--out", out, "--no-progress") == 2
        err = _one_line_error(capsys)
        assert f"pid {holder.pid} on " in err and "in use by" in err
        assert not (out / "manifest.jsonl").exists() and not (out / "run.json").exists()
        with pytest.raises(LockedError):
            run_corpus(vids, out, backbone_opts=OPTS, progress=False)
        # another shard of the same corpus has its own lock and may run meanwhile
        s = run_corpus(vids, out, backbone_opts=OPTS, shard=(1, 2), progress=False)
        assert s.done == sum(shard_of(v, 2) == 1 for v, _ in list_videos(vids))
    finally:
        release.set()
        holder.join(30)


def test_a_lock_left_by_a_killed_run_is_taken_over(vids, tmp_path, capsys):
    out = tmp_path / "out"
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(out, shard_lock_name((0, 1)), ready, release))
    holder.start()
    assert ready.wait(60)
    os.kill(holder.pid, signal.SIGKILL)  # dies holding it
    holder.join(30)
    assert _cli("--videos", vids, "--out", out, "--opt", "frames=2", "--opt", "grid=4", "--no-progress") == 0
    io = capsys.readouterr()
    assert "3 done" in io.out and f"took over the lock of a run that ended without releasing it (pid {holder.pid}" \
        in io.err


# -- --fps (issue 10 item 6) ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fps, msg", [("inf", "must be finite"), ("nan", "must be finite"), ("-1", "must be > 0"),
                                      ("0", "must be > 0"), ("1000", "above 60 features per second")])
def test_unusable_fps_is_refused_before_anything_is_written(vids, tmp_path, capsys, fps, msg):
    out = tmp_path / "new" / "out"
    assert _cli("--videos", vids, "--out", out, "--fps", fps, "--no-progress") == 2
    assert msg in _one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_bad_fps_leaves_an_existing_store_usable(vids, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--videos", vids, "--out", out, "--opt", "frames=2", "--opt", "grid=4", "--no-progress"]
    assert _cli(*base) == 0
    run = (out / "run.json").read_bytes()
    assert _cli(*base, "--fps", "inf") == 2
    assert (out / "run.json").read_bytes() == run
    capsys.readouterr()
    assert _cli(*base) == 0 and "0 done, 3 skipped" in capsys.readouterr().out


def test_fps_above_a_videos_frame_rate_repeats_frames_and_is_counted(vids, tmp_path):
    # a3 has 4 frames per second: at 8 features/s its neighbouring features show the same frames
    s = run_corpus(vids / "a3.mp4", tmp_path / "o", backbone_opts={"frames": 1, "grid": 4}, fps=8.0,
                   progress=False)
    assert (s.done, s.below_fps) == (1, 1) and "1 video(s) below the feature rate" in s.line()
    arr = np.array(FeatureStore(tmp_path / "o")["a3"])
    assert arr.shape[0] == 24  # 3 s at 8/s: one store, one rate
    np.testing.assert_array_equal(arr[0::2], arr[1::2])  # frame k shown during features 2k and 2k+1


# -- one line instead of a traceback -------------------------------------------------------------------------------
def test_out_that_is_a_file(vids, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert _cli("--videos", vids, "--out", f, "--no-progress") == 2
    assert "exists and is not a directory" in _one_line_error(capsys)


def test_a_single_video_file_is_a_one_video_corpus(vids, tmp_path, capsys):
    out = tmp_path / "o"
    assert _cli("--videos", vids / "a2.mp4", "--out", out, "--no-progress") == 0
    assert "1 done" in capsys.readouterr().out and FeatureStore(out).ids() == ["a2"]


def test_a_binary_file_that_is_not_a_video_or_a_list(tmp_path, capsys):
    f = tmp_path / "weights.bin"
    f.write_bytes(bytes(range(256)) * 4)
    assert _cli("--videos", f, "--out", tmp_path / "o", "--no-progress") == 2
    assert "neither a video file" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_empty_video_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no videos here")
    assert _cli("--videos", tmp_path / "empty", "--out", tmp_path / "o", "--no-progress") == 2
    assert "no video files found" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("opt, msg", [("grid=zz", "option grid='zz' must be int"),
                                      ("frames=1.5", "option frames=1.5 must be int"),
                                      ("frames=-1", "frames and grid must be >= 1")])
def test_bad_backbone_option_names_it(vids, tmp_path, capsys, opt, msg):
    assert _cli("--videos", vids, "--out", tmp_path / "o", "--opt", opt, "--no-progress") == 2
    assert msg in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_unknown_device_is_one_line(vids, tmp_path, capsys):
    assert _cli("--videos", vids, "--out", tmp_path / "o", "--device", "abacus", "--no-progress") == 2
    assert "--device 'abacus': not a torch device" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_inputs_are_validated_before_the_first_expensive_stage(vids, tmp_path, capsys):
    bad_caps = tmp_path / "caps.json"
    bad_caps.write_text('{"a1": {"start": [0], "end": [1], "text": [3]}}')
    out = tmp_path / "o"
    assert _cli("--videos", vids, "--out", out, "--captions", bad_caps, "--no-progress") == 2
    assert "text[0]" in _one_line_error(capsys)
    assert _cli("--videos", vids, "--out", out, "--captions", tmp_path / "nope.json", "--no-progress") == 2
    assert "no such file" in _one_line_error(capsys)
    assert _cli("--videos", vids, "--out", out, "--backbone", "clip", "--weights", tmp_path / "w", "--no-progress") \
        == 2
    assert "not found" in _one_line_error(capsys)
    assert not out.exists()  # nothing was created, let alone extracted


def _unshare_works(tmp_path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro none {probe}"], capture_output=True)
    return r.returncode == 0


def test_read_only_file_system_is_one_line(vids, tmp_path):
    """A real read-only mount (tmpfs, ro) inside a private mount namespace (unshare -rm: no root needed)."""
    if not _unshare_works(tmp_path):
        pytest.skip("unshare -rm with a tmpfs mount is not permitted here")
    ro = tmp_path / "ro"
    ro.mkdir()
    for out in (ro, ro / "sub" / "out"):
        cmd = (f"mount -t tmpfs -o ro none {ro} && exec {sys.executable} -m vidlang.cli preprocess "
               f"--videos {vids} --out {out} --no-progress")
        r = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "read-only file system" in r.stderr.lower(), r.stderr

