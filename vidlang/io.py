"""Atomic file writes and crash-tolerant JSONL.

Every output vidlang writes goes to a temporary name in the same directory and is renamed into place, so a
killed process leaves either the old file or the new one, never half of one. JSONL manifests are appended one
line per `write` under an exclusive lock; a reader skips a torn final line (a SIGKILL mid-append).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that needs a file name (an encoder, a library's save);
    on success it is fsynced and renamed into place, on any error removed. The ".tmp" suffix keeps a killed
    writer's leftovers out of globs such as "*.mp4"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _atomic_write(path: str | Path, write_fn, mode: str = "wb") -> Path:
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write_fn(f)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic_write(path, lambda f: f.write(data), "wb")


def atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic_write(path, lambda f: f.write(text), "w")


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save `array` as a .npy file (memory-mappable with np.load(mmap_mode='r'))."""
    return _atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False), "wb")


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line; safe with several processes appending to the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A torn line from a killed writer would glue onto ours; start on a fresh line if needed.
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as r:
                r.seek(size - 1)
                if r.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Yield the records of a JSONL file, skipping blank and torn (unparsable final) lines."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            # Only a torn line (killed mid-write) is tolerated; corruption elsewhere is an error.
            if any(rest.strip() for rest in lines[i + 1 :]) and not _is_torn_prefix(line):
                from vidlang.errors import FormatError

                raise FormatError(path, f"line {i + 1}", "not valid JSON") from None


def _is_torn_prefix(line: str) -> bool:
    return line.lstrip().startswith("{") and not line.rstrip().endswith("}")


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    buf = io.StringIO()
    for r in records:
        buf.write(json.dumps(r) + "\n")
    return atomic_write_text(path, buf.getvalue())
