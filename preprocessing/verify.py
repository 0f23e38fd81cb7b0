"""`vidlang preprocess verify OUT`: is a feature store complete and consistent with its inputs?

    vidlang preprocess verify OUT [--videos DIR|LIST|VIDEO] [--quick] [--missing-list FILE] [--remove-bad]

Checks, and lists what fails:

- every input is accounted for: each video of the folder (``--videos``, else the one run.json records; for an
  imported store, each file of the imported folder) is in the manifest or in ``failures.jsonl``. Videos in neither
  are *missing* (a run that was stopped, a shard that never ran);
- every manifest line (the latest one per video) points under OUT to a feature file that exists, has the size the
  manifest records, loads as a float32 ``.npy`` without pickles, has the manifest's shape (num_features,
  feature_dim), and hashes to the manifest's SHA-256 fingerprint (``--quick`` skips the hash). A line that fails
  any of these is *bad*;
- *orphans*: arrays under OUT/shards/ that no manifest line names, and temporary files left by killed writers
  (harmless: a rerun overwrites or ignores them).

Exit status 0 when nothing is missing or bad (failures are data problems, reported but not an error), 1 otherwise,
2 for unusable arguments. ``--missing-list FILE`` writes the paths of the missing videos and of the bad ones' sources,
one per line: ``vidlang preprocess --videos FILE ...`` with the store's settings then redoes exactly those.
``--remove-bad`` deletes bad feature files and orphans (a rerun redoes a video whose file is gone or has the wrong
size, but cannot see a same-size corrupt file without this). While a run holds a lock on OUT, verify reports on
what it sees and refuses ``--remove-bad``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidlang.data.store import FAILURES, MANIFEST, resolve_under
from vidlang.errors import ConfigError, VidlangError
from vidlang.io import atomic_write_text, read_jsonl

_LIST_LIMIT = 20  # entries of each kind printed


@dataclass
class VerifyReport:
    root: str
    listed: int | None = None  # inputs in the source folder (None: no source known)
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # id -> latest failure reason
    missing: dict[str, str] = field(default_factory=dict)  # id -> source path
    bad: dict[str, str] = field(default_factory=dict)  # id -> problem
    bad_paths: dict[str, str] = field(default_factory=dict)  # id -> source path (for the missing list)
    bad_files: list[Path] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # in the manifest, not in the source folder
    orphans: list[Path] = field(default_factory=list)
    unhashed: int = 0  # lines without a fingerprint (stores written before fingerprints existed)
    busy: list[str] = field(default_factory=list)  # locks held by running runs

    @property
    def complete(self) -> bool:
        return not self.missing and not self.bad

    def lines(self) -> list[str]:
        head = (f"verify {self.root}: " + (f"{self.listed} inputs, " if self.listed is not None else "")
                + f"{len(self.ok)} complete, {len(self.failed)} failed (failures.jsonl), {len(self.missing)} missing, "
                + f"{len(self.bad)} bad, {len(self.orphans)} orphan file(s)"
                + ("" if self.complete else " -> INCOMPLETE"))
        out = [head]
        for busy in self.busy:
            out.append(f"  warning: a run is writing this store ({busy}); counts may change")
        if self.listed is None:
            out.append("  note: no video folder known (run.json has none; pass --videos): inputs not checked")
        if self.unhashed:
            out.append(f"  note: {self.unhashed} manifest line(s) have no sha256 fingerprint: size and shape checked")
        for title, entries in (("missing", self.missing), ("bad", self.bad), ("failed", self.failed)):
            for k in sorted(entries)[:_LIST_LIMIT]:
                out.append(f"  {title}: {k}: {entries[k]}")
            if len(entries) > _LIST_LIMIT:
                out.append(f"  ... and {len(entries) - _LIST_LIMIT} more {title}")
        for p in self.orphans[:_LIST_LIMIT]:
            out.append(f"  orphan: {p}")
        if self.unlisted:
            out.append(f"  note: {len(self.unlisted)} video(s) in the manifest are not in the video folder, "
                       f"e.g. {self.unlisted[0]}")
        return out


def _held_locks(root: Path) -> list[str]:
    """Describe the run locks of OUT that a live process holds (probed with a shared flock, never taken)."""
    import json

    held = []
    for lock in sorted(root.glob(".vidlang*.lock")):
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            try:
                h = json.loads(lock.read_text() or "{}")
            except ValueError:
                h = {}
            held.append(f"{h.get('what', lock.name)}, pid {h.get('pid', '?')} on {h.get('host', '?')}")
        finally:
            os.close(fd)
    return held


def _source_items(root: Path, run: dict, videos) -> list[tuple[str, Path]] | None:
    if videos is not None:
        from preprocessing.runner import list_videos

        return list_videos(videos)
    if run.get("imported_from"):
        from preprocessing.importer import list_feature_files

        src = Path(run["imported_from"])
        return list_feature_files(src) if src.is_dir() else None
    if run.get("videos"):
        from preprocessing.runner import list_videos

        src = Path(run["videos"])
        if not src.exists():
            raise ConfigError(f"{root}/run.json names the video folder {src}, which does not exist; "
                              f"pass --videos")
        return list_videos(src)
    return None


def _check_record(root: Path, rec: dict, quick: bool) -> tuple[str | None, Path | None, bool]:
    """(problem or None, resolved file, hashed?) for one manifest line."""
    vid = rec.get("video_id")
    try:
        path = resolve_under(root, rec.get("location", ""), root / MANIFEST, vid)
    except VidlangError as e:
        return f"unusable location ({e})", None, False
    if not path.is_file():
        return f"feature file {rec.get('location')} is missing", path, False
    size = path.stat().st_size
    if "nbytes" in rec and rec["nbytes"] != size:
        return f"{rec.get('location')}: {size} bytes, the manifest records {rec['nbytes']} (truncated?)", path, False
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        return f"{rec.get('location')}: unreadable ({type(e).__name__}: {e})", path, False
    want = (rec.get("num_features"), rec.get("feature_dim"))
    if arr.ndim != 2 or tuple(arr.shape) != want:
        return f"{rec.get('location')}: shape {tuple(arr.shape)}, the manifest records {want}", path, False
    if arr.dtype != np.float32:
        return f"{rec.get('location')}: dtype {arr.dtype}, expected float32", path, False
    del arr
    if quick or "sha256" not in rec:
        return None, path, False
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != rec["sha256"]:
        return f"{rec.get('location')}: content differs from its sha256 fingerprint (corrupt)", path, True
    return None, path, True


def verify_store(out: str | Path, videos=None, quick: bool = False) -> VerifyReport:
    """Check a store against its inputs (see module docstring). Raises VidlangError if OUT is not a store."""
    from preprocessing.runner import read_run_json

    root = Path(out)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such feature store directory")
    if not (root / MANIFEST).exists() and not (root / "run.json").exists():
        raise ConfigError(f"{root}: not a feature store (no {MANIFEST}, no run.json)")
    run = read_run_json(root) or {}
    rep = VerifyReport(root=str(root), busy=_held_locks(root))
    latest: dict[str, dict] = {}
    for rec in read_jsonl(root / MANIFEST):
        vid = rec.get("video_id")
        if isinstance(vid, str) and vid:
            latest[vid] = rec
    referenced: set[Path] = set()
    for vid, rec in sorted(latest.items()):
        problem, path, hashed = _check_record(root, rec, quick)
        if path is not None:
            referenced.add(path.resolve())
        if problem:
            rep.bad[vid] = problem
            rep.bad_paths[vid] = str(rec.get("path", ""))
            if path is not None and path.is_file():
                rep.bad_files.append(path)
        else:
            rep.ok.append(vid)
            rep.unhashed += not quick and "sha256" not in rec
    for rec in read_jsonl(root / FAILURES):
        vid = rec.get("video_id")
        if isinstance(vid, str) and vid not in latest:
            rep.failed[vid] = str(rec.get("reason", ""))
    items = _source_items(root, run, videos)
    if items is not None:
        rep.listed = len(items)
        source_ids = set()
        for vid, p in items:
            source_ids.add(vid)
            if vid not in latest and vid not in rep.failed:
                rep.missing[vid] = str(p)
        rep.unlisted = sorted(set(latest) - source_ids)
    shards = root / "shards"
    if shards.is_dir():
        for p in sorted(shards.rglob("*")):
            if p.is_file() and (p.name.endswith(".tmp") or p.resolve() not in referenced):
                rep.orphans.append(p)
    return rep


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidlang preprocess verify",
                                description="check that a feature store is complete and consistent")
    p.add_argument("out", help="feature store directory")
    p.add_argument("--videos", default=None, help="video folder/list to check against (default: run.json's)")
    p.add_argument("--quick", action="store_true", help="skip the sha256 of every feature file")
    p.add_argument("--missing-list", default=None, metavar="FILE",
                   help="write the paths of missing and bad videos, one per line (usable as --videos FILE)")
    p.add_argument("--remove-bad", action="store_true", help="delete bad feature files and orphans")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    rep = verify_store(args.out, videos=args.videos, quick=args.quick)
    for line in rep.lines():
        print(line)
    if args.missing_list:
        paths = [rep.missing[k] for k in sorted(rep.missing)] + [rep.bad_paths[k] for k in sorted(rep.bad_paths)
                                                                 if rep.bad_paths[k]]
        atomic_write_text(args.missing_list, "".join(f"{p}\n" for p in paths))
        print(f"  wrote {len(paths)} path(s) to {args.missing_list}")
    if args.remove_bad:
        if rep.busy:
            raise ConfigError(f"{args.out}: a run is writing this store ({rep.busy[0]}); --remove-bad refused")
        for p in rep.bad_files + rep.orphans:
            p.unlink(missing_ok=True)
        print(f"  removed {len(rep.bad_files)} bad file(s) and {len(rep.orphans)} orphan(s); rerun the same "
              f"command to redo them")
    return 0 if rep.complete else 1
