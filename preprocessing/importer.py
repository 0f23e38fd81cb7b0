"""`vidlang preprocess import`: wrap released per-video features into a feature store, without re-extracting.

    vidlang preprocess import --features DIR --fps 1 --out OUT [--captions raw_caption.json] [--merge-sentences]
        [--backbone-name s3d_howto100m] [--dim 512] [--copy]

The layout it reads is the one of MMPT's released HowTo100M / YouCookII / MSR-VTT S3D features: one
``<video_id>.npy`` per video, shape (T, D) at ``--fps`` features per second (1 for those releases, D = 512). The
folder is searched recursively; hidden entries are skipped. Every file is validated before it enters the store:

- ``np.load(allow_pickle=False)``: a pickled object array is refused, never unpickled;
- a 2-D array of floating-point values with at least one row;
- one dimension D shared by all files: ``--dim``, else the store's (run.json of an earlier import), else the most
  common dimension among the readable 2-D float files (ties: the smaller);
- finite values only.

Each bad file, and each file that is not ``.npy``, gets a ``failures.jsonl`` line with its reason; the good ones
are imported. A good float32 little-endian C-order file is *hard-linked* into ``OUT/shards/<bucket>/<id>.npy`` (no
copy; the store and the release share the bytes, and vidlang only ever replaces files by renaming, so the release
is never modified through the store); across file systems, or with ``--copy``, it is copied; other float dtypes
are converted to float32. Symbolic links are not used: the store refuses locations that lead outside it. The
manifest lines have the schema of extracted stores (``backbone`` = ``--backbone-name``, ``decoder`` = "none",
``duration`` = T / fps, ``source`` = the file), so FeatureStore, training and evaluation read the result as they
read an extracted store. Rerunning is idempotent and resumes; ``--captions`` behaves as in ``vidlang preprocess``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from preprocessing.runner import (RUN_VERSION, Summary, bucket_of, check_fps, check_out_path, check_run_json,
                                  file_sha256, finished_ids, npy_bytes, prepare_out, progress_bar, read_run_json,
                                  record_result, refresh_text, shard_lock_name, text_payload,
                                  update_captions_record)
from vidlang.errors import ConfigError
from vidlang.io import RunLock, atomic_path, atomic_write_bytes

IMPORT_LOCKED = ("backbone", "fps", "feature_dim")
_ROWS_PER_CHECK = 4096  # rows checked for finiteness at a time (bounded memory for any file size)


def list_feature_files(folder: str | Path) -> list[tuple[str, Path]]:
    """(id, path) for every regular, non-hidden file under ``folder``: the stem for ``.npy`` files, the full
    file name for others (so a stray ``notes.txt`` gets its own failure line). Two ``.npy`` files with one stem
    are a ConfigError."""
    src = Path(folder)
    if not src.is_dir():
        raise ConfigError(f"--features {src}: no such directory")
    seen: dict[str, Path] = {}
    for p in sorted(src.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(src).parts):
            continue
        vid = p.stem if p.suffix.lower() == ".npy" else p.name
        if vid in seen:
            raise ConfigError(f"duplicate video id {vid!r}: {seen[vid]} and {p}")
        seen[vid] = p
    if not seen:
        raise ConfigError(f"--features {src}: no files found")
    return sorted(seen.items())


def _open(path: Path) -> np.ndarray:
    """Memory-map a .npy file without unpickling; ValueError with the reason otherwise."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "pickled" in str(e) and "Object arrays" not in str(e):  # np.load: the file is a pickle, not an .npy
            raise ValueError("a pickle, not an .npy array; refused without unpickling") from None
        # numpy words it "Object arrays cannot be loaded when allow_pickle=False" (np.load) or "Python objects in
        # dtype" (memory-mapping): both mean the payload is a pickle
        if any(k in str(e) for k in ("allow_pickle", "Object arrays", "Python objects")):
            raise ValueError("holds Python objects (a pickled object array); refused without unpickling") from None
        raise ValueError(f"not a readable .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"not a readable .npy file ({type(e).__name__}: {e})") from None


def _shape_problem(arr: np.ndarray) -> str | None:
    if arr.ndim != 2:
        return f"expected a 2-D (T, D) array, got shape {tuple(arr.shape)}"
    if arr.dtype.kind != "f":
        return f"expected floating-point values, got dtype {arr.dtype}"
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        return f"empty array of shape {tuple(arr.shape)}"
    return None


def choose_dim(items: list[tuple[str, Path]]) -> int | None:
    """The most common D among readable 2-D float .npy files (ties: the smaller); None when there is none."""
    dims: Counter[int] = Counter()
    for _, p in items:
        if p.suffix.lower() != ".npy":
            continue
        try:
            arr = _open(p)
        except ValueError:
            continue
        if _shape_problem(arr) is None:
            dims[int(arr.shape[1])] += 1
    if not dims:
        return None
    return min(dims, key=lambda d: (-dims[d], d))


def validate_file(path: Path, dim: int) -> tuple[np.ndarray | None, str | None]:
    """(memory-mapped array, None) for a good file, (None, reason) for a bad one."""
    if path.suffix.lower() != ".npy":
        return None, "not a .npy file"
    try:
        arr = _open(path)
    except ValueError as e:
        return None, str(e)
    problem = _shape_problem(arr)
    if problem:
        return None, problem
    if arr.shape[1] != dim:
        return None, f"feature dimension {arr.shape[1]} differs from the store's {dim}"
    for s in range(0, arr.shape[0], _ROWS_PER_CHECK):
        block = np.asarray(arr[s:s + _ROWS_PER_CHECK])
        bad = ~np.isfinite(block)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            return None, f"non-finite value {block[r, c]} at row {s + r}, column {c}"
    return arr, None


def _store_file(src: Path, arr: np.ndarray, dst: Path, copy: bool) -> tuple[str, int, str]:
    """Put the array at ``dst`` (link, copy or float32 conversion). Returns (how, nbytes, sha256)."""
    exact = arr.dtype == np.dtype("<f4") and arr.flags.c_contiguous  # np.load's memmap is C order unless fortran
    if not exact:
        data = npy_bytes(np.asarray(arr, dtype=np.float32))
        atomic_write_bytes(dst, data)
        return "converted", len(data), hashlib.sha256(data).hexdigest()
    digest = file_sha256(src)
    if not copy:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".{dst.name}.{os.getpid()}.link.tmp"
        try:
            if tmp.exists():
                tmp.unlink()
            os.link(src, tmp)
            os.replace(tmp, dst)
            return "link", src.stat().st_size, digest
        except OSError:  # another file system (EXDEV) or links not allowed: copy instead
            if tmp.exists():
                tmp.unlink()
    with atomic_path(dst) as tmp_path:
        shutil.copyfile(src, tmp_path)
    return "copy", dst.stat().st_size, digest


def import_features(features: str | Path, out_dir: str | Path, fps: float, captions: str | Path | None = None,
                    merge_sentences: bool = False, copy: bool = False, dim: int | None = None,
                    backbone_name: str = "imported", progress: bool = True) -> Summary:
    """Import a folder of per-video ``.npy`` features into a feature store (see module docstring)."""
    t0 = time.perf_counter()
    fps = check_fps(fps)
    if dim is not None and dim < 1:
        raise ConfigError(f"--dim must be >= 1, got {dim}")
    if not backbone_name or not isinstance(backbone_name, str):
        raise ConfigError("--backbone-name must be a non-empty name")
    out = Path(out_dir)
    check_out_path(out)
    items = list_feature_files(features)
    if captions is not None and not Path(captions).is_file():
        raise ConfigError(f"--captions {captions}: no such file")
    caption_map = captions_sha = None
    if captions is not None:
        from vidlang.datasets.howto100m import read_howto100m_captions
        from vidlang.datasets.narration import clean_captions

        raw = read_howto100m_captions(captions)
        caption_map = {v: clean_captions(raw[v], merge=merge_sentences) for v, _ in items if v in raw}
        captions_sha = file_sha256(captions)
    prepare_out(out)

    with RunLock(out, "vidlang preprocess import", name=shard_lock_name((0, 1))) as lock:
        old = read_run_json(out)
        if dim is None:
            dim = (old or {}).get("feature_dim") or choose_dim(items)
        if dim is None:
            raise ConfigError(f"--features {features}: no readable 2-D float .npy file to take the dimension from")
        settings = {
            "version": RUN_VERSION, "backbone": backbone_name, "backbone_opts": {}, "weights": None,
            "weights_sha256": None, "fps": fps, "frames_per_feature": None, "frame_size": None,
            "feature_dim": int(dim), "decoder": None, "decode": None,
            "imported_from": str(Path(features).resolve()), "videos": None,
            "captions": None if captions is None else str(Path(captions).resolve()),
            "captions_sha256": captions_sha, "merge_sentences": bool(merge_sentences),
        }
        check_run_json(out, settings, locked=IMPORT_LOCKED, defaults={})
        finished = finished_ids(out)
        summary = Summary(out_dir=str(out), shard=(0, 1), listed=len(items), command="import",
                          took_over=lock.took_over)
        summary.text_rewritten = refresh_text(out, (v for v, _ in items), caption_map, finished)
        todo = [(v, p) for v, p in items if v not in finished]
        summary.skipped = len(items) - len(todo)
        bar, tick = progress_bar(len(todo), progress, desc="import")
        try:
            for vid, path in todo:
                res = _import_one(out, vid, path, int(dim), fps, backbone_name, copy, caption_map)
                record_result(out, res)
                summary.add(res)
                tick(res)
        finally:
            bar.close()
        if caption_map is not None:
            update_captions_record(out, settings)
    summary.seconds = time.perf_counter() - t0
    return summary


def _import_one(out: Path, vid: str, path: Path, dim: int, fps: float, backbone_name: str, copy: bool,
                caption_map: dict | None) -> dict:
    t0 = time.perf_counter()
    arr, reason = validate_file(path, dim)
    if arr is None:
        return {"ok": False, "failure": {"video_id": vid, "path": str(path), "reason": reason}}
    location = f"shards/{bucket_of(vid)}/{vid}.npy"
    try:
        how, nbytes, digest = _store_file(path, arr, out / location, copy)
        if caption_map is not None and vid in caption_map:
            atomic_write_bytes(out / "text" / f"{vid}.json", text_payload(vid, caption_map[vid]))
    except OSError as e:
        from preprocessing.runner import OutputError

        raise OutputError(f"--out {out}: cannot write {location} ({e.strerror or e})") from None
    T = int(arr.shape[0])
    record = {
        "video_id": vid, "num_features": T, "feature_dim": dim, "fps": fps, "duration": round(T / fps, 6),
        "backbone": backbone_name, "location": location, "decoder": "none",
        "seconds": round(time.perf_counter() - t0, 4), "path": str(path), "source": str(path),
        "stored_as": how, "source_dtype": str(arr.dtype), "nbytes": nbytes, "sha256": digest,
    }
    return {"ok": True, "record": record, "below_fps": False}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidlang preprocess import",
                                description="wrap a folder of per-video <id>.npy features (T, D) into a feature store")
    p.add_argument("--features", required=True, help="folder of <video_id>.npy files (searched recursively)")
    p.add_argument("--fps", type=float, required=True, help="features per second of the released files (MMPT: 1)")
    p.add_argument("--out", required=True, help="output feature store directory")
    p.add_argument("--captions", default=None, help="HowTo100M raw_caption.json: write cleaned OUT/text/<id>.json")
    p.add_argument("--merge-sentences", action="store_true", help="merge cleaned ASR lines into sentences")
    p.add_argument("--backbone-name", default="imported",
                   help="name recorded as the store's backbone, e.g. s3d_howto100m (default: imported)")
    p.add_argument("--dim", type=int, default=None, help="feature dimension (default: the most common one)")
    p.add_argument("--copy", action="store_true", help="copy float32 files instead of hard-linking them")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    s = import_features(args.features, args.out, args.fps, captions=args.captions,
                        merge_sentences=args.merge_sentences, copy=args.copy, dim=args.dim,
                        backbone_name=args.backbone_name, progress=not args.no_progress)
    print(s.line())
    if s.failed:
        print(f"  {s.failed} file(s) refused, listed in {args.out}/failures.jsonl, e.g. "
              f"{s.failures[0]['video_id']}: {s.failures[0]['reason']}")
    return 0
