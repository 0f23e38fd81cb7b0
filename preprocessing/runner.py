"""The resumable, sharded corpus runner behind ``vidlang preprocess``.

For every video: decode -> sample f frames per feature window (sampling.py) -> backbone in chunks -> one float32
(T, D) array, T = ceil(duration * fps), saved atomically as ``OUT/shards/<bucket>/<video_id>.npy``; then (with
captions) the cleaned narration ``OUT/text/<video_id>.json``; and only then the manifest line. So a manifest line
always means "array (and text) complete", a run killed at any instant (even SIGKILL) leaves at worst an orphan
array that the rerun overwrites, and rerunning is idempotent: ids already in the manifest with their file present
are skipped. A video that fails appends ``{video_id, path, reason}`` to ``failures.jsonl`` and the run goes on;
failed ids are retried by the next run, and a later success supersedes the failure (FeatureStore.failures()).

Sharding: a video belongs to shard ``h(id) % N`` where h is the first 8 bytes of sha1(id); its bucket directory
is ``h(id) % 256`` in hex. Both depend only on the id, so ``--shard i/N`` runs are disjoint, their union equals a
single run (same files, same locations), and several shards may write into one OUT concurrently (manifest appends
are locked). Under torchrun / accelerate (RANK and WORLD_SIZE set) the shard defaults to (RANK, WORLD_SIZE).

``OUT/run.json`` records the resolved settings; rerunning into OUT with a different backbone, weights, fps,
frames per feature, frame size or feature dim is a ConfigError. (The decoder may differ between runs: decoders
agree to within a few grey levels and each manifest line records the one used.)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidlang.data.store import FAILURES, MANIFEST, RUN, resolve_under
from vidlang.errors import ConfigError, VidlangError
from vidlang.io import append_jsonl, atomic_save_npy, atomic_write_json, read_jsonl

VIDEO_EXTS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".3gp",
                        ".wmv", ".ogv"})
RUN_VERSION = 1
# Settings that change the numbers in the arrays; a mismatch with OUT/run.json refuses the run.
_LOCKED = ("backbone", "backbone_opts", "weights_sha256", "fps", "frames_per_feature", "frame_size", "feature_dim")


# -- listing and sharding ---------------------------------------------------------------------------------------
def _id_hash(video_id: str) -> int:
    return int.from_bytes(hashlib.sha1(video_id.encode("utf-8")).digest()[:8], "big")


def shard_of(video_id: str, num_shards: int) -> int:
    """The shard (0..num_shards-1) a video id belongs to; stable across runs, machines and Python versions."""
    return _id_hash(video_id) % num_shards


def bucket_of(video_id: str) -> str:
    """Directory under OUT/shards/ holding a video's array (256 buckets keep directories small)."""
    return f"{_id_hash(video_id) % 256:02x}"


def list_videos(videos: str | Path | Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(video_id, path) pairs sorted by id. ``videos``: a directory (searched recursively for video extensions,
    hidden entries skipped), a text file listing one path per line (relative to the file; '#' comments), or a list
    of paths. The id is the file stem; two files with the same stem are a ConfigError."""
    if isinstance(videos, (str, Path)):
        src = Path(videos)
        if src.is_dir():
            paths = [p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(src).parts)]
        elif src.is_file():
            paths = []
            for line in src.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    p = Path(line).expanduser()
                    paths.append(p if p.is_absolute() else src.parent / p)
        else:
            raise ConfigError(f"--videos {src}: no such directory or list file")
    else:
        paths = [Path(p) for p in videos]
    seen: dict[str, Path] = {}
    for p in paths:
        vid = p.stem
        if not vid or vid.startswith("."):
            raise ConfigError(f"{p}: cannot derive a video id from this file name")
        if vid in seen and seen[vid] != p:
            raise ConfigError(f"duplicate video id {vid!r}: {seen[vid]} and {p}")
        seen[vid] = p
    return sorted(seen.items())


def shard_from_env() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) under torchrun / accelerate launch, else None."""
    world = os.environ.get("WORLD_SIZE")
    rank = os.environ.get("RANK")
    if world is None or rank is None:
        return None
    try:
        w, r = int(world), int(rank)
    except ValueError:
        raise ConfigError(f"RANK={rank!r} / WORLD_SIZE={world!r} are not integers") from None
    return (r, w) if w > 1 else None


# -- summary ----------------------------------------------------------------------------------------------------
@dataclass
class Summary:
    out_dir: str
    shard: tuple[int, int]
    listed: int = 0  # videos in this shard
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    video_seconds: float = 0.0  # duration of the videos processed in this run
    failures: list[dict] = field(default_factory=list)

    def line(self) -> str:
        rt = f", {self.video_seconds / self.seconds:.1f}x realtime" if self.seconds > 0 and self.done else ""
        shard = f" shard {self.shard[0]}/{self.shard[1]}" if self.shard[1] > 1 else ""
        return (f"preprocess{shard}: {self.done} done, {self.skipped} skipped, {self.failed} failed "
                f"in {self.seconds:.1f} s{rt} -> {self.out_dir}")


# -- per-video work (runs in the parent or in a worker process) -------------------------------------------------
@dataclass
class _Job:
    out_dir: str
    fps: float
    decoder: str
    batch: int
    backbone_name: str
    write_text: bool


_WORKER_BACKBONE = None


def _worker_init(backbone_spec: tuple) -> None:
    """Worker process setup: one torch thread each (the parallelism is over videos), own backbone instance."""
    import torch

    torch.set_num_threads(1)
    global _WORKER_BACKBONE
    _WORKER_BACKBONE = _build_backbone(*backbone_spec)


def _worker_run(job: _Job, vid: str, path: str, captions) -> dict:
    return process_video(job, vid, path, _WORKER_BACKBONE, captions)


def process_video(job: _Job, vid: str, path: str, backbone, captions=None) -> dict:
    """Extract one video; append its manifest line (or its failure line). Returns {"ok", "record"|"failure"}."""
    import torch

    from preprocessing.decoders import open_video
    from preprocessing.sampling import feature_frame_times

    out = Path(job.out_dir)
    t0 = time.perf_counter()
    try:
        with open_video(path, job.decoder) as reader:
            meta = reader.meta
            f = int(backbone.frames_per_feature(job.fps))
            times = feature_frame_times(meta.duration, job.fps, f)  # (T, f)
            T = times.shape[0]
            feats = []
            # Chunks hold whole feature windows (batch * f frames), so each chunk is one backbone call.
            for _, frames in reader.frames_at(times.reshape(-1), batch=job.batch * f, size=backbone.frame_size):
                x = torch.from_numpy(frames).reshape(-1, f, *frames.shape[1:])  # (n, f, H, W, 3)
                with torch.inference_mode():
                    y = backbone(x)
                feats.append(y.detach().to(torch.float32).cpu().numpy())
            decoder_used = reader.name
        arr = np.concatenate(feats, axis=0) if feats else np.zeros((0, backbone.dim), np.float32)
        if arr.shape != (T, backbone.dim):
            raise VidlangError(f"backbone returned {arr.shape}, expected ({T}, {backbone.dim})")
        if not np.isfinite(arr).all():
            raise VidlangError("backbone produced non-finite values")
        location = f"shards/{bucket_of(vid)}/{vid}.npy"
        atomic_save_npy(out / location, arr)
        if job.write_text and captions is not None:
            write_text(out, vid, captions)
        record = {
            "video_id": vid, "num_features": int(T), "feature_dim": int(arr.shape[1]), "fps": job.fps,
            "duration": round(float(meta.duration), 6), "backbone": job.backbone_name, "location": location,
            "decoder": decoder_used, "seconds": round(time.perf_counter() - t0, 4), "path": str(path),
            "frames_per_feature": f, "num_frames": meta.num_frames, "width": meta.width, "height": meta.height,
            "rotation": meta.rotation,
        }
        append_jsonl(out / MANIFEST, record)
        return {"ok": True, "record": record}
    except (VidlangError, OSError, ValueError, RuntimeError) as e:
        # Data problems (DecodeError and friends) and library errors on one file must not stop the corpus.
        reason = str(e) if isinstance(e, VidlangError) else f"{type(e).__name__}: {e}"
        failure = {"video_id": vid, "path": str(path), "reason": reason}
        append_jsonl(out / FAILURES, failure)
        return {"ok": False, "failure": failure}


def write_text(out: Path, vid: str, lines) -> None:
    """OUT/text/<vid>.json = {"video_id", "lines": [{"start", "end", "text"}]} (already cleaned lines)."""
    atomic_write_json(out / "text" / f"{vid}.json",
                      {"video_id": vid, "lines": [{"start": float(c.start), "end": float(c.end), "text": c.text}
                                                  for c in lines]})


# -- backbone ---------------------------------------------------------------------------------------------------
def _build_backbone(name, weights, opts):
    if not isinstance(name, str):
        return name  # an already-built backbone object (tests, library use)
    from preprocessing.backbones import build_backbone

    return build_backbone(name, weights=weights, device="cpu", **(opts or {}))


def _weights_sha256(backbone, weights) -> str | None:
    fn = getattr(backbone, "weights_sha256", None)
    if callable(fn):
        return fn()
    if weights is None:
        return None
    p = Path(weights)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    h = hashlib.sha256()
    for q in files:
        h.update(q.relative_to(p).as_posix().encode() if q != p else b"")
        with open(q, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _check_run_json(out: Path, settings: dict) -> None:
    path = out / RUN
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        diffs = [f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in _LOCKED if old.get(k) != settings.get(k)]
        if diffs:
            raise ConfigError(f"{out} was made with different settings ({'; '.join(diffs)}); "
                              f"use a new --out directory or the original settings")
        return
    atomic_write_json(path, settings)


# -- the run ----------------------------------------------------------------------------------------------------
def run_corpus(
    videos: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    backbone: Any = "thumbnail",
    weights: str | Path | None = None,
    fps: float = 1.0,
    decoder: str = "pyav",
    captions: str | Path | None = None,
    merge_sentences: bool = False,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    batch: int = 16,
    backbone_opts: dict | None = None,
    progress: bool = True,
) -> Summary:
    """Preprocess a corpus into ``out_dir`` (see module docstring). Returns a Summary; failed videos are data.

    ``backbone``: a registry name (preprocessing.backbones) or an already-built Backbone object.
    ``batch``: feature windows per backbone call. ``shard``: (i, N); default from RANK/WORLD_SIZE, else (0, 1).
    Raises ConfigError for unusable arguments (unknown decoder, bad shard, settings that differ from OUT/run.json).
    """
    from preprocessing.decoders import check_decoder

    t0 = time.perf_counter()
    fps = float(fps)
    if not fps > 0:
        raise ConfigError(f"--fps must be > 0, got {fps}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    if shard is None:
        shard = shard_from_env() or (0, 1)
    si, sn = int(shard[0]), int(shard[1])
    if sn < 1 or not 0 <= si < sn:
        raise ConfigError(f"--shard {si}/{sn}: need 0 <= i < N")
    check_decoder(decoder)
    if weights is not None and not Path(weights).exists():
        raise ConfigError(f"--weights {weights}: not found")

    out = Path(out_dir)
    bb = _build_backbone(backbone, weights, backbone_opts)
    name = backbone if isinstance(backbone, str) else getattr(bb, "name", type(bb).__name__)
    f = int(bb.frames_per_feature(fps))
    size = bb.frame_size
    settings = {
        "version": RUN_VERSION, "backbone": name, "backbone_opts": dict(backbone_opts or {}),
        "weights": None if weights is None else str(weights), "weights_sha256": _weights_sha256(bb, weights),
        "fps": fps, "frames_per_feature": f, "frame_size": None if size is None else [int(s) for s in size],
        "feature_dim": int(bb.dim), "decoder": decoder, "captions": None if captions is None else str(captions),
        "merge_sentences": bool(merge_sentences),
    }

    listed = [(v, p) for v, p in list_videos(videos) if shard_of(v, sn) == si]
    caption_map = None
    if captions is not None:
        from vidlang.datasets.narration import clean_captions
        from vidlang.datasets.howto100m import read_howto100m_captions

        raw = read_howto100m_captions(captions)
        caption_map = {v: clean_captions(raw[v], merge=merge_sentences) for v, _ in listed if v in raw}

    out.mkdir(parents=True, exist_ok=True)
    _check_run_json(out, settings)

    finished = set()
    for rec in read_jsonl(out / MANIFEST):
        vid = rec.get("video_id")
        try:
            if vid and resolve_under(out, rec.get("location", ""), out / MANIFEST, vid).is_file():
                finished.add(vid)
        except VidlangError:
            pass  # an unusable location is simply not finished: the video is redone
    summary = Summary(out_dir=str(out), shard=(si, sn), listed=len(listed))
    todo = []
    for vid, p in listed:
        if vid in finished:
            summary.skipped += 1
            # Captions supplied after the features were made: add the missing text (cheap, idempotent).
            if caption_map is not None and vid in caption_map and not (out / "text" / f"{vid}.json").exists():
                write_text(out, vid, caption_map[vid])
        else:
            todo.append((vid, str(p)))

    job = _Job(out_dir=str(out), fps=fps, decoder=decoder, batch=batch, backbone_name=name,
               write_text=caption_map is not None)
    results = _run_jobs(job, todo, bb, (backbone, weights, backbone_opts), workers, progress, caption_map or {})
    for res in results:
        if res["ok"]:
            summary.done += 1
            summary.video_seconds += res["record"]["duration"]
        else:
            summary.failed += 1
            summary.failures.append(res["failure"])
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_jobs(job: _Job, todo: list[tuple[str, str]], bb, spec: tuple, workers: int, progress: bool,
              caption_map: dict):
    from tqdm import tqdm

    caption_map_get = caption_map.get
    bar = tqdm(total=len(todo), unit="video", disable=not progress or not todo, dynamic_ncols=True,
               file=sys.stderr, desc="preprocess")
    video_s, failed, start = 0.0, 0, time.perf_counter()

    def tick(res):
        nonlocal video_s, failed
        if res["ok"]:
            video_s += res["record"]["duration"]
        else:
            failed += 1
        el = time.perf_counter() - start
        bar.set_postfix(failed=failed, xrt=f"{video_s / el:.1f}" if el > 0 else "-", refresh=False)
        bar.update(1)

    results = []
    try:
        if workers == 1 or len(todo) <= 1:
            for vid, path in todo:
                res = process_video(job, vid, path, bb, caption_map_get(vid))
                tick(res)
                results.append(res)
        else:
            import multiprocessing as mp

            if not isinstance(spec[0], str):
                spec = (bb, None, None)  # a built object travels to the workers by pickling
            # spawn: a fresh interpreter per worker; forking a process that already ran torch can deadlock.
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init, initargs=(spec,)) as pool:
                pending, it = set(), iter(todo)
                # Keep only a few jobs in flight so a million-video list does not become a million futures.
                while True:
                    while len(pending) < 2 * workers:
                        nxt = next(it, None)
                        if nxt is None:
                            break
                        pending.add(pool.submit(_worker_run, job, nxt[0], nxt[1], caption_map_get(nxt[0])))
                    if not pending:
                        break
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        res = fut.result()
                        tick(res)
                        results.append(res)
    finally:
        bar.close()
    return results
