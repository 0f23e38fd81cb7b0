"""Atomic writes and crash-tolerant JSONL."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from vidlang.errors import FormatError
from vidlang.io import append_jsonl, atomic_save_npy, atomic_write_json, read_jsonl


def test_atomic_write_leaves_no_temporaries(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_save_npy(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npy"]
    arr = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert arr.shape == (2, 3) and arr[1, 2] == 5


def test_failed_write_keeps_old_file(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "a.json", {"x": object()})
    assert (tmp_path / "a.json").read_text().strip().replace(" ", "").replace("\n", "") == '{"x":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_torn_last_line_is_skipped_and_next_append_starts_fresh(tmp_path):
    p = tmp_path / "m.jsonl"
    append_jsonl(p, {"id": 1})
    with open(p, "a") as f:
        f.write('{"id": 2, "trunc')  # a writer killed mid-line
    assert [r["id"] for r in read_jsonl(p)] == [1]
    append_jsonl(p, {"id": 3})
    assert [r["id"] for r in read_jsonl(p)] == [1, 3]


def test_corruption_in_the_middle_is_an_error(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"id": 1}\nnot json at all\n{"id": 2}\n')
    with pytest.raises(FormatError, match=r"m\.jsonl \[line 2\]"):
        list(read_jsonl(p))


def _writer(path, start):
    for i in range(start, start + 50):
        append_jsonl(path, {"id": i, "pad": "x" * 200})


def test_concurrent_appends_do_not_interleave(tmp_path):
    p = tmp_path / "m.jsonl"
    procs = [mp.get_context("fork").Process(target=_writer, args=(p, k * 100)) for k in range(3)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join()
    ids = sorted(r["id"] for r in read_jsonl(p))
    assert ids == sorted(list(range(0, 50)) + list(range(100, 150)) + list(range(200, 250)))


def test_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        atomic_save_npy(tmp_path / "a.npy", np.zeros(3, np.float32))
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.npy").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


def _hold_lock(folder, ready, release):
    from vidlang.io import RunLock

    with RunLock(folder, "test holder"):
        ready.set()
        release.wait(20)


def test_run_lock_names_the_holder_and_stale_locks_are_taken_over(tmp_path):
    import os
    import signal

    from vidlang.errors import LockedError
    from vidlang.io import RunLock

    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    p.start()
    try:
        assert ready.wait(60)
        with pytest.raises(LockedError, match=rf"in use by test holder \(pid {p.pid} on "):
            RunLock(tmp_path, "second").acquire()
    finally:
        os.kill(p.pid, signal.SIGKILL)  # dies holding the lock: the kernel releases it
        p.join()
    lock = RunLock(tmp_path, "third").acquire()
    assert lock.took_over is not None and lock.took_over["pid"] == p.pid
    lock.release()
    with RunLock(tmp_path, "fourth") as again:  # a clean release leaves nothing to take over
        assert again.took_over is None
