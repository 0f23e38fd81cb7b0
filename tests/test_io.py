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
