"""The resumable, sharded corpus runner behind ``vidlang preprocess``.

For every video: decode -> sample f frames per feature window (sampling.py) -> backbone in chunks -> one float32
(T, D) array, T = ceil(duration * fps), saved atomically as ``OUT/shards/<bucket>/<video_id>.npy``; then (with
captions) the cleaned narration ``OUT/text/<video_id>.json``; and only then the manifest line, which records the
array's size and SHA-256. So a manifest line always means "array (and text) complete", a run killed at any instant
(even SIGKILL) leaves at worst an orphan array that the rerun overwrites, and rerunning is idempotent: ids already
in the manifest whose file is present with the recorded size are skipped. A video that fails appends
``{video_id, path, reason}`` to ``failures.jsonl`` and the run goes on; failed ids are retried by the next run, and
a later success supersedes the failure (FeatureStore.failures()). Errors of the *output* (disk full, read-only
file system) are not data problems: they stop the run with one line.

Who writes what: workers (processes of ``--workers``, Ray tasks) write the per-video files; only the process that
holds the run lock appends manifest and failure lines. Workers orphaned by a killed driver can therefore only
rewrite an array with the same bytes, never add a line behind the back of the next run.

Sharding: a video belongs to shard ``h(id) % N`` where h is the first 8 bytes of sha1(id); its bucket directory
is ``h(id) % 256`` in hex. Both depend only on the id, so ``--shard i/N`` runs are disjoint, their union equals a
single run (same files, same locations), and several shards may write into one OUT concurrently (manifest appends
are locked). Each shard holds its own lock file ``OUT/.vidlang-shard-i-of-N.lock`` (vidlang.io.RunLock): a second
run of the same shard into OUT is refused with one line naming the holder; a lock left by a dead process is taken
over. Under torchrun / accelerate (RANK and WORLD_SIZE set) the shard defaults to (RANK, WORLD_SIZE).

Executors (``--executor``): ``local`` (this process, or ``--workers N`` spawned processes; the default, nothing to
set up), ``ray`` (videos become Ray tasks, retried by Ray when a worker or node dies; preprocessing/distributed.py)
and ``slurm`` (an array of ``--shard i/N`` jobs through submitit; preprocessing/distributed.py). All three write
the same store.

``OUT/run.json`` records the resolved settings; rerunning into OUT with a different backbone, weights, fps,
frames per feature, frame size, feature dim or --decode mode is a ConfigError. The decoder may differ between
runs (decoders agree to within a few grey levels and each manifest line records the one used). Captions may
change: a run with a different ``--captions`` file (or ``--merge-sentences``) rewrites the narration files whose
text changed, removes those of videos the new file does not narrate, and then records the new file and its
SHA-256 in run.json. A run without ``--captions`` leaves existing narration alone.

``--fps`` is the feature rate of the whole store: it must be finite, > 0 and at most MAX_FPS. A video whose own
frame rate is below ``--fps`` is still processed at ``--fps`` (every store has one rate): each feature shows the
frame displayed in its window, so neighbouring features repeat frames; the summary counts such videos.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidlang.data.store import FAILURES, MANIFEST, RUN, resolve_under
from vidlang.errors import ConfigError, VidlangError
from vidlang.io import RunLock, append_jsonl, atomic_write_bytes, atomic_write_json, read_jsonl

VIDEO_EXTS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".3gp",
                        ".wmv", ".ogv"})
RUN_VERSION = 1
# Highest feature rate accepted: 60 is the highest frame rate of common camera and screen video (ATSC/YouTube
# publish up to 60 fps). Beyond a video's frame rate features only repeat frames, and a 1000/s request made a
# store of a thousand rows per second that no video-language model reads.
MAX_FPS = 60.0
EXECUTORS = ("local", "ray", "slurm")
# How frames are decoded (--decode): "exact" gives the frame shown at every sampled time at its native size;
# "scaled" gives the same frames, scaled by the decoder (PyAV: swscale's area filter, in the YUV -> RGB pass) to
# the backbone's decoder_size(), for backbones that average frames down anyway (thumbnail: 64x64). The features
# then differ by the filter and uint8 rounding: measured by tools/bench_preprocess.py, bounded in
# tests/preprocessing/test_decoders.py.
DECODE_MODES = ("exact", "scaled")
# Settings that change the numbers in the arrays; a mismatch with OUT/run.json refuses the run. Stores written
# before a key existed were made with its default.
_LOCKED = ("backbone", "backbone_opts", "weights_sha256", "fps", "frames_per_feature", "frame_size", "feature_dim",
           "decode")
_LOCKED_DEFAULTS = {"decode": "exact"}
TIMING_FIELDS = ("seconds",)  # manifest fields that differ between two runs of the same store
# Decoded chunks the decode thread may hold ahead of the backbone; 0 decodes in the calling thread (the
# benchmark's "before" row), which gives the same features.
PREFETCH_DEPTH = 1


class OutputError(VidlangError):
    """The output folder cannot be written (read-only file system, disk full, permissions): stops the run."""


SLURM_DRIVER_LOCK = ".vidlang-slurm-driver.lock"


def shard_lock_name(shard: tuple[int, int]) -> str:
    """Lock file of one shard in OUT (one per shard, so the shards of one corpus may share OUT)."""
    return f".vidlang-shard-{int(shard[0])}-of-{int(shard[1])}.lock"


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
    hidden entries skipped), a single video file (a one-video corpus), a UTF-8 text file listing one path per line
    (relative to the file; '#' comments), or a list of paths. The id is the file stem; two files with the same
    stem are a ConfigError. An empty result is a ConfigError: a run with nothing to do is almost always a wrong
    path."""
    if isinstance(videos, (str, Path)):
        src = Path(videos)
        if src.is_dir():
            paths = [p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(src).parts)]
            where = f"--videos {src}: no video files found (looked for {', '.join(sorted(VIDEO_EXTS))})"
        elif src.is_file() and src.suffix.lower() in VIDEO_EXTS:
            paths = [src]
            where = ""
        elif src.is_file():
            try:
                text = src.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"--videos {src}: neither a video file (extensions "
                                  f"{', '.join(sorted(VIDEO_EXTS))}) nor a UTF-8 list of paths") from None
            except OSError as e:
                raise ConfigError(f"--videos {src}: cannot read ({e.strerror or e})") from None
            paths = []
            for line in text.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    p = Path(line).expanduser()
                    paths.append(p if p.is_absolute() else src.parent / p)
            where = f"--videos {src}: the list names no video"
        else:
            raise ConfigError(f"--videos {src}: no such directory, video or list file")
    else:
        paths = [Path(p) for p in videos]
        where = "no videos given"
    seen: dict[str, Path] = {}
    for p in paths:
        vid = p.stem
        if not vid or vid.startswith("."):
            raise ConfigError(f"{p}: cannot derive a video id from this file name")
        if vid in seen and seen[vid] != p:
            raise ConfigError(f"duplicate video id {vid!r}: {seen[vid]} and {p}")
        seen[vid] = p
    if not seen:
        raise ConfigError(where)
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


# -- argument checks (all before the first expensive stage) ------------------------------------------------------
def check_fps(fps: Any) -> float:
    """--fps as a float in (0, MAX_FPS]; ConfigError otherwise (checked before anything is written)."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ConfigError(f"--fps must be a number, got {fps!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"--fps must be finite, got {fps}")
    if not value > 0:
        raise ConfigError(f"--fps must be > 0, got {fps}")
    if value > MAX_FPS:
        raise ConfigError(f"--fps {fps}: above {MAX_FPS:g} features per second, more than common video frame "
                          f"rates give (features would only repeat frames)")
    return value


def check_device(device: str) -> None:
    """--device must name a torch device this machine has (ConfigError otherwise, before anything is built)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"--device {device!r}: not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible to torch")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: only cpu and cuda are supported")


def check_out_path(out: Path) -> None:
    """Refuse an --out that cannot become a writable folder, without writing anything: an existing file, or a
    nearest existing ancestor that is not a writable folder (read-only file system, permissions)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    anc = out.absolute()
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"--out {out}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        # access(2) fails with EROFS on a read-only file system and EACCES without permission
        reason = "read-only file system" if _read_only(anc) else "permission denied"
        raise ConfigError(f"--out {out}: cannot write there ({reason}: {anc})")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def prepare_out(out: Path) -> None:
    """Create OUT (and parents) and prove it is writable, or raise one ConfigError line naming the reason."""
    check_out_path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / ".vidlang-write-test", b"")
        (out / ".vidlang-write-test").unlink()
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    text_rewritten: int = 0  # narration files rewritten or removed because the captions changed
    below_fps: int = 0  # videos processed whose frame rate is below --fps (features repeat frames)
    took_over: dict | None = None  # the dead holder of a stale lock, when one was taken over
    executor: str = "local"
    command: str = "preprocess"
    failures_of_jobs: list[str] = field(default_factory=list)  # slurm: shards whose job did not finish

    def line(self) -> str:
        rt = f", {self.video_seconds / self.seconds:.1f}x realtime" if self.seconds > 0 and self.done else ""
        shard = f" shard {self.shard[0]}/{self.shard[1]}" if self.shard[1] > 1 else ""
        extra = ""
        if self.text_rewritten:
            extra += f"; captions changed: {self.text_rewritten} narration file(s) rewritten"
        if self.below_fps:
            extra += f"; {self.below_fps} video(s) below the feature rate (features repeat frames)"
        if self.failures_of_jobs:
            extra += f"; {len(self.failures_of_jobs)} job(s) did not finish (rerun to resume them)"
        return (f"{self.command}{shard}: {self.done} done, {self.skipped} skipped, {self.failed} failed "
                f"in {self.seconds:.1f} s{rt}{extra} -> {self.out_dir}")

    def add(self, res: dict) -> None:
        if res["ok"]:
            self.done += 1
            self.video_seconds += res["record"]["duration"]
            self.below_fps += bool(res.get("below_fps"))
        else:
            self.failed += 1
            self.failures.append(res["failure"])


# -- per-video work (runs in the parent, in a worker process or in a Ray task) ----------------------------------
@dataclass
class _Job:
    out_dir: str
    fps: float
    decoder: str
    batch: int
    backbone_name: str
    write_text: bool
    decode: str = "exact"


_WORKER_BACKBONE = None


def _worker_init(backbone_spec: tuple) -> None:
    """Worker process setup: one torch thread each (the parallelism is over videos), own backbone instance."""
    import torch

    torch.set_num_threads(1)
    global _WORKER_BACKBONE
    _WORKER_BACKBONE = _build_backbone(*backbone_spec)


def _worker_run(job: _Job, vid: str, path: str, captions) -> dict:
    return extract_video(job, vid, path, _WORKER_BACKBONE, captions)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads (None: unchanged), restoring the caller's setting."""
    import torch

    if n is None or n == torch.get_num_threads():
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable, depth: int = 1):
    """Yield ``items`` while a background thread produces up to ``depth`` items ahead (and one in hand).

    Exceptions of the producer are raised here, in order; leaving the loop early stops the producer."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()
    it = iter(items)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in it:
                if not put(item):
                    return
            put(end)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Raised(e))

    thread = threading.Thread(target=work, name="vidlang-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(it, "close", None)
        if close is not None:
            close()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def extract_video(job: _Job, vid: str, path: str, backbone, captions=None) -> dict:
    """Extract one video and write its array (and narration); the manifest line is the caller's to append.

    Returns {"ok": True, "record", "below_fps"} or {"ok": False, "failure"}. Input problems become a failure;
    an OutputError (the output cannot be written) propagates and stops the run.
    """
    import torch

    from preprocessing.decoders import open_video
    from preprocessing.sampling import feature_frame_times

    out = Path(job.out_dir)
    t0 = time.perf_counter()
    try:
        with torch_threads(getattr(backbone, "torch_threads", None)), open_video(path, job.decoder) as reader:
            meta = reader.meta
            f = int(backbone.frames_per_feature(job.fps))
            times = feature_frame_times(meta.duration, job.fps, f)  # (T, f)
            T = times.shape[0]
            hint = getattr(backbone, "decoder_size", None) if job.decode != "exact" else None
            dsize = hint(meta.height, meta.width) if hint is not None else None
            feats = []
            # Chunks hold whole feature windows (batch * f frames), so each chunk is one backbone call. The
            # decoder runs one chunk ahead in a thread (FFmpeg and torch both release the GIL), so decoding the
            # next chunk overlaps the backbone on this one.
            chunks = reader.frames_at(times.reshape(-1), batch=job.batch * f, size=backbone.frame_size,
                                      decoder_size=dsize)
            for _, frames in (prefetch(chunks, PREFETCH_DEPTH) if PREFETCH_DEPTH > 0 else chunks):
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
    except (VidlangError, OSError, ValueError, RuntimeError) as e:
        # Data problems (DecodeError and friends) and library errors on one file must not stop the corpus.
        reason = str(e) if isinstance(e, VidlangError) else f"{type(e).__name__}: {e}"
        return {"ok": False, "failure": {"video_id": vid, "path": str(path), "reason": reason}}
    location = f"shards/{bucket_of(vid)}/{vid}.npy"
    data = npy_bytes(arr)
    try:
        atomic_write_bytes(out / location, data)
        if job.write_text and captions is not None:
            write_text(out, vid, captions)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write {location} ({e.strerror or e})") from None
    record = {
        "video_id": vid, "num_features": int(T), "feature_dim": int(arr.shape[1]), "fps": job.fps,
        "duration": round(float(meta.duration), 6), "backbone": job.backbone_name, "location": location,
        "decoder": decoder_used, "seconds": round(time.perf_counter() - t0, 4), "path": str(path),
        "frames_per_feature": f, "num_frames": meta.num_frames, "width": meta.width, "height": meta.height,
        "rotation": meta.rotation, "nbytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
    }
    # fewer frames than features: the video's own rate is below the feature rate (one-frame videos excepted)
    below = meta.num_frames > 1 and meta.num_frames < T
    return {"ok": True, "record": record, "below_fps": below}


def process_video(job: _Job, vid: str, path: str, backbone, captions=None) -> dict:
    """extract_video, then append the manifest (or failure) line: the whole per-video step of a serial run."""
    res = extract_video(job, vid, path, backbone, captions)
    record_result(Path(job.out_dir), res)
    return res


def record_result(out: Path, res: dict) -> None:
    """Append a result's manifest or failure line (called by the lock holder only)."""
    try:
        if res["ok"]:
            append_jsonl(out / MANIFEST, res["record"])
        else:
            append_jsonl(out / FAILURES, res["failure"])
    except OSError as e:
        raise OutputError(f"--out {out}: cannot append to {MANIFEST if res['ok'] else FAILURES} "
                          f"({e.strerror or e})") from None


def text_payload(vid: str, lines) -> bytes:
    """The bytes of OUT/text/<vid>.json for already cleaned lines (the same bytes for the same lines)."""
    obj = {"video_id": vid, "lines": [{"start": float(c.start), "end": float(c.end), "text": c.text} for c in lines]}
    return (json.dumps(obj, indent=1) + "\n").encode()


def write_text(out: Path, vid: str, lines) -> None:
    """OUT/text/<vid>.json = {"video_id", "lines": [{"start", "end", "text"}]} (already cleaned lines)."""
    atomic_write_bytes(out / "text" / f"{vid}.json", text_payload(vid, lines))


# -- backbone ---------------------------------------------------------------------------------------------------
def _build_backbone(name, weights, opts, device="cpu"):
    if not isinstance(name, str):
        return name  # an already-built backbone object (tests, library use)
    from preprocessing.backbones import build_backbone

    return build_backbone(name, weights=weights, device=device, **(opts or {}))


def _weights_sha256(backbone, weights) -> str | None:
    fn = getattr(backbone, "weights_sha256", None)
    if callable(fn):
        return fn()
    if weights is None:
        return None
    from preprocessing.backbones.base import weights_sha256

    return weights_sha256(weights)


def read_run_json(out: Path) -> dict | None:
    path = out / RUN
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return obj


def check_run_json(out: Path, settings: dict, locked: Iterable[str] = _LOCKED,
                   defaults: dict | None = None) -> dict:
    """Compare ``settings`` with OUT/run.json (ConfigError naming every differing locked key) or write it.

    Returns the run.json content now in force."""
    defaults = _LOCKED_DEFAULTS if defaults is None else defaults
    old = read_run_json(out)
    if old is not None:
        diffs = [f"{k}: {old.get(k, defaults.get(k))!r} -> {settings.get(k)!r}" for k in locked
                 if old.get(k, defaults.get(k)) != settings.get(k)]
        if diffs:
            raise ConfigError(f"{out} was made with different settings ({'; '.join(diffs)}); "
                              f"use a new --out directory or the original settings")
        return old
    try:
        atomic_write_json(out / RUN, settings)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write {RUN} ({e.strerror or e})") from None
    return settings


def finished_ids(out: Path) -> set[str]:
    """Ids whose manifest line points to a present file of the recorded size (a run skips them)."""
    done = set()
    for rec in read_jsonl(out / MANIFEST):
        vid = rec.get("video_id")
        try:
            if not vid:
                continue
            p = resolve_under(out, rec.get("location", ""), out / MANIFEST, vid)
            size = p.stat().st_size if p.is_file() else None
        except (VidlangError, OSError):
            continue  # an unusable location is simply not finished: the video is redone
        if size is not None and rec.get("nbytes", size) == size:
            done.add(vid)
        else:
            done.discard(vid)  # a later line whose file is gone supersedes an earlier one
    return done


# -- the run ----------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """A validated run: every input read and checked and the output proven writable, nothing extracted yet."""

    out: Path
    shard: tuple[int, int]
    listed: list[tuple[str, Path]]  # this shard's videos
    settings: dict
    caption_map: dict | None
    job: _Job
    backbone: Any  # the built backbone (parent process)
    spec: tuple  # what a worker needs to build its own backbone


def plan_run(videos, out_dir, backbone: Any = "thumbnail", weights=None, fps: float = 1.0, decoder: str = "pyav",
             captions=None, merge_sentences: bool = False, workers: int = 1, shard=None, batch: int = 16,
             backbone_opts: dict | None = None, device: str = "cpu", decode: str = "exact",
             executor: str = "local") -> Plan:
    """Validate every argument, input and output path (ConfigError / FormatError on the first problem), then
    build the backbone. Writes nothing except creating OUT."""
    from preprocessing.decoders import check_decoder

    fps = check_fps(fps)
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if decode not in DECODE_MODES:
        raise ConfigError(f"--decode {decode!r}: choose one of {', '.join(DECODE_MODES)}")
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
    check_device(device)
    if decode != "exact" and decoder != "pyav":
        raise ConfigError(f"--decode {decode} needs --decoder pyav (got {decoder})")
    if weights is not None and not Path(weights).exists():
        raise ConfigError(f"--weights {weights}: not found")
    if captions is not None and not Path(captions).is_file():
        raise ConfigError(f"--captions {captions}: no such file")
    out = Path(out_dir)
    check_out_path(out)

    all_videos = list_videos(videos)
    listed = [(v, p) for v, p in all_videos if shard_of(v, sn) == si]
    caption_map = None
    captions_sha = None
    if captions is not None:
        from vidlang.datasets.howto100m import read_howto100m_captions
        from vidlang.datasets.narration import clean_captions

        raw = read_howto100m_captions(captions)  # validates the whole file (FormatError naming the entry)
        caption_map = {v: clean_captions(raw[v], merge=merge_sentences) for v, _ in listed if v in raw}
        captions_sha = file_sha256(captions)

    try:
        bb = _build_backbone(backbone, weights, backbone_opts, device)
    except (TypeError, ValueError) as e:  # library builders: a value of the wrong type reaches the constructor
        raise ConfigError(f"backbone {backbone!r}: invalid option(s) {backbone_opts or {}}: {e}") from None
    prepare_out(out)
    name = backbone if isinstance(backbone, str) else getattr(bb, "name", type(bb).__name__)
    f = int(bb.frames_per_feature(fps))
    size = bb.frame_size
    src = videos if isinstance(videos, (str, Path)) else None
    settings = {
        "version": RUN_VERSION, "backbone": name, "backbone_opts": dict(backbone_opts or {}),
        "weights": None if weights is None else str(weights), "weights_sha256": _weights_sha256(bb, weights),
        "fps": fps, "frames_per_feature": f, "frame_size": None if size is None else [int(s) for s in size],
        "feature_dim": int(bb.dim), "decoder": decoder, "decode": decode,
        "videos": None if src is None else str(Path(src).resolve()),
        "captions": None if captions is None else str(Path(captions).resolve()), "captions_sha256": captions_sha,
        "merge_sentences": bool(merge_sentences),
    }
    job = _Job(out_dir=str(out.resolve()), fps=fps, decoder=decoder, batch=batch, backbone_name=name,
               write_text=caption_map is not None, decode=decode)
    spec = (backbone, weights, backbone_opts, device) if isinstance(backbone, str) else (bb, None, None, device)
    return Plan(out=out, shard=(si, sn), listed=listed, settings=settings, caption_map=caption_map, job=job,
                backbone=bb, spec=spec)


def refresh_text(out: Path, ids: Iterable[str], caption_map: dict | None, finished: set[str]) -> int:
    """Make the narration of finished videos match the captions given now; returns files rewritten or removed.

    Text is compared byte for byte (cleaning is deterministic), so a rerun with the same captions rewrites
    nothing, and a rerun with changed captions rewrites exactly the videos whose narration changed."""
    if caption_map is None:
        return 0
    changed = 0
    for vid in ids:
        if vid not in finished:
            continue  # written together with its array
        path = out / "text" / f"{vid}.json"
        lines = caption_map.get(vid)
        try:
            if lines is None:
                if path.exists():  # the new captions do not narrate this video: the old text is stale
                    path.unlink()
                    changed += 1
                continue
            data = text_payload(vid, lines)
            try:
                same = path.read_bytes() == data
            except FileNotFoundError:
                same = False
            if not same:
                atomic_write_bytes(path, data)
                changed += 1
        except OSError as e:
            raise OutputError(f"--out {out}: cannot write {path} ({e.strerror or e})") from None
    return changed


def update_captions_record(out: Path, settings: dict) -> None:
    """Record the captions now in force (path, SHA-256, merge flag) in run.json once the text matches them."""
    run = read_run_json(out) or {}
    keys = ("captions", "captions_sha256", "merge_sentences")
    if all(run.get(k) == settings.get(k) for k in keys):
        return
    run.update({k: settings.get(k) for k in keys})
    try:
        atomic_write_json(out / RUN, run)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write {RUN} ({e.strerror or e})") from None


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
    executor: str = "local",
    device: str = "cpu",
    decode: str = "exact",
    ray_address: str | None = None,
    slurm: dict | None = None,
) -> Summary:
    """Preprocess a corpus into ``out_dir`` (see module docstring). Returns a Summary; failed videos are data.

    ``backbone``: a registry name (preprocessing.backbones) or an already-built Backbone object.
    ``batch``: feature windows per backbone call. ``shard``: (i, N); default from RANK/WORLD_SIZE, else (0, 1).
    ``executor``: "local" | "ray" (``ray_address``: None starts a local Ray with ``workers`` CPUs, "auto" joins
    the running cluster) | "slurm" (``slurm``: submitit settings, see preprocessing/distributed.py).
    Raises ConfigError for unusable arguments (unknown decoder, bad shard, bad --fps, settings that differ from
    OUT/run.json), LockedError when another live run holds this shard of OUT.
    """
    t0 = time.perf_counter()
    if executor == "slurm":
        if shard is not None:
            raise ConfigError("--executor slurm makes its own shards (--slurm jobs=N); do not pass --shard")
        shard = (0, 1)
    plan = plan_run(videos, out_dir, backbone=backbone, weights=weights, fps=fps, decoder=decoder,
                    captions=captions, merge_sentences=merge_sentences, workers=workers, shard=shard, batch=batch,
                    backbone_opts=backbone_opts, device=device, decode=decode, executor=executor)
    what = f"vidlang preprocess ({executor}, shard {plan.shard[0]}/{plan.shard[1]})"
    # a Slurm driver has a lock of its own: its jobs take the shard locks (with jobs=1, that of shard 0/1)
    lock_name = SLURM_DRIVER_LOCK if executor == "slurm" else shard_lock_name(plan.shard)
    with RunLock(plan.out, what, name=lock_name) as lock:
        check_run_json(plan.out, plan.settings)
        if executor == "slurm":
            from preprocessing.distributed import run_slurm

            kwargs = dict(videos=videos if isinstance(videos, (str, Path)) else [str(p) for p in videos],
                          out_dir=str(plan.out), backbone=backbone, weights=weights, fps=fps, decoder=decoder,
                          captions=captions, merge_sentences=merge_sentences, workers=workers, batch=batch,
                          backbone_opts=backbone_opts, device=device, decode=decode)
            summary = run_slurm(plan, kwargs, slurm or {}, progress)
            summary.took_over = lock.took_over
            if plan.caption_map is not None and not summary.failures_of_jobs:
                update_captions_record(plan.out, plan.settings)
            summary.seconds = time.perf_counter() - t0
            return summary
        finished = finished_ids(plan.out)
        summary = Summary(out_dir=str(plan.out), shard=plan.shard, listed=len(plan.listed), executor=executor,
                          took_over=lock.took_over)
        summary.text_rewritten = refresh_text(plan.out, (v for v, _ in plan.listed), plan.caption_map, finished)
        todo = []
        for vid, p in plan.listed:
            if vid in finished:
                summary.skipped += 1
            else:
                todo.append((vid, str(p)))
        if executor == "ray":
            from preprocessing.distributed import run_ray

            run_ray(plan, todo, summary, workers=workers, address=ray_address, progress=progress)
        else:
            _run_local(plan, todo, summary, workers, progress)
        if plan.caption_map is not None:
            update_captions_record(plan.out, plan.settings)
    summary.seconds = time.perf_counter() - t0
    return summary


def progress_bar(total: int, progress: bool, desc: str = "preprocess"):
    """A tqdm bar and a ``tick(result)`` that updates it with failures and x realtime."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="video", disable=not progress or not total, dynamic_ncols=True,
               file=sys.stderr, desc=desc)
    state = {"video_s": 0.0, "failed": 0, "start": time.perf_counter()}

    def tick(res: dict) -> None:
        if res["ok"]:
            state["video_s"] += res["record"]["duration"]
        else:
            state["failed"] += 1
        el = time.perf_counter() - state["start"]
        bar.set_postfix(failed=state["failed"], xrt=f"{state['video_s'] / el:.1f}" if el > 0 else "-",
                        refresh=False)
        bar.update(1)

    return bar, tick


def _run_local(plan: Plan, todo: list[tuple[str, str]], summary: Summary, workers: int, progress: bool) -> None:
    caption_get = (plan.caption_map or {}).get
    bar, tick = progress_bar(len(todo), progress)

    def finish(res: dict) -> None:
        record_result(plan.out, res)
        summary.add(res)
        tick(res)

    try:
        if workers == 1 or len(todo) <= 1:
            for vid, path in todo:
                finish(extract_video(plan.job, vid, path, plan.backbone, caption_get(vid)))
        else:
            import multiprocessing as mp

            # spawn: a fresh interpreter per worker; forking a process that already ran torch can deadlock.
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init, initargs=(plan.spec,)) as pool:
                for res in bounded_map(lambda item: pool.submit(_worker_run, plan.job, item[0], item[1],
                                                                caption_get(item[0])),
                                       todo, 2 * workers):
                    finish(res)
    finally:
        bar.close()


def bounded_map(submit: Callable[[Any], Any], items: Iterable, in_flight: int):
    """Submit items as futures keeping at most ``in_flight`` pending (a million-video list must not become a
    million futures); yield results in completion order."""
    pending, it = set(), iter(items)
    while True:
        while len(pending) < in_flight:
            nxt = next(it, None)
            if nxt is None:
                break
            pending.add(submit(nxt))
        if not pending:
            return
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            yield fut.result()
