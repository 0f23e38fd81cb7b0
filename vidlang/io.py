"""Atomic file writes, crash-tolerant JSONL, and run-folder locks.

Every output vidlang writes goes to a temporary name in the same directory and is renamed into place, so a
killed process leaves either the old file or the new one, never half of one. Files get the permissions a plain
`open()` would give (0666 minus the umask), not the 0600 of `tempfile.mkstemp`: a corpus or checkpoint written
on a shared machine stays readable by the group when the umask says so. JSONL manifests are appended one line per
`write` under an exclusive lock; a reader skips a torn final line (a SIGKILL mid-append). `RunLock` keeps two
processes from writing one run folder at once.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import io
import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux exposes it (/proc/self/status, kernel >= 4.7)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it; restore at once
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that needs a file name (an encoder, a library's save);
    on success it is fsynced and renamed into place, on any error removed. The ".tmp" suffix keeps a killed
    writer's leftovers out of globs such as "*.mp4"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600; a renamed file keeps its mode
    finally:
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


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename a finished temporary directory to `dest`, replacing an existing one (the old copy is moved aside
    first and removed last, so a crash in between leaves `.<dest>.old`, which `recover_dir` finds)."""
    import shutil

    old = dest.parent / f".{dest.name}.old"
    if old.exists() and not dest.exists():  # an earlier swap died between its renames: `old` is the good copy
        os.replace(old, dest)
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old.exists():
        shutil.rmtree(old)


def recover_dir(dest: Path) -> Path | None:
    """`dest`, or the `.old` copy left by a crash between the two renames of `swap_into_place`."""
    if dest.exists():
        return dest
    old = dest.parent / f".{dest.name}.old"
    return old if old.exists() else None


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    buf = io.StringIO()
    for r in records:
        buf.write(json.dumps(r) + "\n")
    return atomic_write_text(path, buf.getvalue())


class RunLock:
    """An exclusive lock on a run folder, held for the life of a run: `with RunLock(out, "training"): ...`.

    The lock is `fcntl.flock` on `FOLDER/<name>` (default `.vidlang.lock`), so the kernel releases it when the
    holder dies, even by SIGKILL: a stale lock is simply taken over by the next run. While held, the file records
    the holder (pid, host, what, since) so that a second run can say who has the folder. The file is never
    deleted (deleting a lock file others may have opened breaks the lock); its content is cleared on release.
    """

    def __init__(self, folder: str | Path, what: str, name: str = ".vidlang.lock"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / name
        self._fd: int | None = None
        self.took_over: dict | None = None  # the dead holder's record when a stale lock was taken over

    def holder(self) -> dict | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
            return json.loads(text) if text else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "RunLock":
        from vidlang.errors import LockedError

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder() or {}
            who = (f"{h.get('what', 'another run')} (pid {h.get('pid', '?')} on {h.get('host', '?')}, since "
                   f"{h.get('since', '?')})")
            raise LockedError(f"{self.folder} is in use by {who}; wait for it to finish or use another folder") \
                from None
        self.took_over = self.holder()  # content left behind means its holder died without releasing
        record = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                  "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
