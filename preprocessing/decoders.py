"""Video decoders behind one interface: ``open_video(path, decoder) -> VideoReader``.

Default decoder: ``pyav`` (DEFAULT_DECODER, measured below). Every reader returns, for each requested time t (seconds from the first frame), the frame *displayed* at t: the
last frame whose presentation timestamp (pts) is <= t. Times are mapped through the real pts of the stream, never
``index / fps``, so variable-frame-rate files sample correctly. Times before the first frame give the first frame,
times after the last frame give the last frame.

Frames are yielded in chunks (``batch`` frames at a time) so memory does not grow with the video's length:
- ``pyav``: decodes sequentially once and converts only the frames that are picked (no seeking: exact on any GOP).
  Before a call's first frame it knows every frame the call will pick, so it tells FFmpeg to discard the
  *non-reference* frames that are not picked (``skip_frame`` set per packet: "NONREF" for unpicked packets,
  "DEFAULT" for picked ones). A non-reference frame is, by definition (H.264/HEVC ``nal_ref_idc`` = 0, MPEG-4 part 2
  and VP8/VP9 droppable frames), never used to predict another frame, so the picked frames are bit-identical to a
  full decode, while a 1 frame/s sampling of x264's default B-frame layout decodes about 2/3 of the frames;
- ``decord``: ``get_batch`` per chunk; ``torchcodec``: ``get_frames_at`` per chunk. Both index frames in pts order,
  like the probe, so the probe's exact pts pick the index (falls back to the library's own timestamps,
  ``get_frames_played_at`` for torchcodec, if a library counts a different number of frames).

Rotation metadata (display matrix) is applied so frames come out upright, as ``ffmpeg`` shows them: PyAV frames
are rotated here, torchcodec (>= 0.17) rotates them itself, and decord 0.6 returns garbage for rotated streams
(its output buffer keeps the unrotated size), so a ``decord`` reader on a rotated file delegates to PyAV and
reports ``name == "pyav"`` so manifests record what really decoded the file. Flips in the display matrix are
ignored (phones write pure rotations).

Failure policy (every failure is a ``DecodeError`` naming the file and the reason): missing or zero-byte file,
not a media file, no video stream, no frames, no decodable frame, or a *truncated* file. A file is truncated when
the frames its packets cover end far before the duration its header declares (short by more than
``max(1 s, 5%)``): a partial download is a data problem the user must see in ``failures.jsonl``; its prefix would
silently misalign with narration timed against the full video. Errors while decoding a frame that was asked for
are DecodeErrors too.

``VideoMeta.width``/``height`` are the *display* size (after rotation).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidlang.errors import ConfigError, DecodeError

DECODERS = ("decord", "torchcodec", "pyav")
# the exact path discards unpicked non-reference frames; tools/bench_preprocess.py turns this off to time the
# decoder that decodes every frame (the "before" row), nothing else should
DISCARD_UNPICKED = True
# PyAV is the default: on a 10-min 640x360 30 fps H.264 file, sampling 3 frames per second, it took 5.9 s with
# flat memory, torchcodec 6.4 s (+~90 MiB peak vs a 1-min file), decord 16 s with peak memory growing with the
# video's length (+440 MiB vs a 1-min file; decord issues #197/#208). Measured with tools/bench_preprocess.py.
DEFAULT_DECODER = "pyav"

# Truncation rule: packets must cover the header's duration up to this slack (see module docstring).
_TRUNCATION_SLACK_S = 1.0
_TRUNCATION_SLACK_FRAC = 0.05


@dataclass(frozen=True)
class VideoMeta:
    fps: float  # average frame rate (num_frames / duration for VFR files)
    num_frames: int
    duration: float  # seconds from the first frame's pts to the end of the last frame
    width: int  # display width (after rotation)
    height: int  # display height (after rotation)
    rotation: int  # counter-clockwise degrees in {0, 90, 180, 270} applied to make frames upright


@dataclass
class _Probe:
    meta: VideoMeta
    pts: np.ndarray  # float64 (num_frames,), sorted, seconds relative to the first frame
    pts_int: np.ndarray  # int64 (num_frames,), the same pts in stream time-base units (as packets carry them)
    start: float  # absolute pts (seconds) of the first frame
    coded_size: tuple[int, int]  # (H, W) as stored, before rotation


def _fail(path: str | Path, reason: str) -> DecodeError:
    return DecodeError(f"{path}: {reason}")


def _av_reason(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def probe(path: str | Path) -> _Probe:
    """Validate a file and read its timing without decoding it (demux only, plus the first frame).

    Reads every video packet's pts (cheap: no decoding) so VFR timing, frame count and truncation are exact.
    """
    import av

    path = Path(path)
    if not path.exists():
        raise _fail(path, "file not found")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    if path.stat().st_size == 0:
        raise _fail(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except Exception as e:  # av raises many FFmpegError subclasses; all mean "not readable media"
        raise _fail(path, f"not a readable media file ({_av_reason(e)})") from None
    try:
        if not container.streams.video:
            raise _fail(path, "no video stream")
        stream = container.streams.video[0]
        tb = stream.time_base
        if tb is None:
            raise _fail(path, "video stream has no time base")
        pts_int: list[int] = []
        last_dur, max_ts = 0, None
        try:
            for packet in container.demux(stream):
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None or packet.size == 0:
                    continue  # flush packets carry no frame
                pts_int.append(ts)
                if max_ts is None or ts >= max_ts:
                    max_ts, last_dur = ts, packet.duration or 0
        except Exception as e:
            raise _fail(path, f"corrupt container ({_av_reason(e)})") from None
        if not pts_int:
            raise _fail(path, "no video frames")
        pts_sorted = np.unique(np.asarray(pts_int, dtype=np.int64))
        abs_s = pts_sorted.astype(np.float64) * float(tb)
        start = float(abs_s[0])
        rel = abs_s - start
        n = len(rel)
        if last_dur > 0:
            last_frame = float(last_dur * tb)
        elif n > 1:
            last_frame = float(np.median(np.diff(rel)))
        elif stream.average_rate:
            last_frame = 1.0 / float(stream.average_rate)
        else:
            last_frame = 0.0
        duration = float(rel[-1] + last_frame)
        header = None
        if stream.duration:
            header = float(stream.duration * tb)
        elif container.duration:
            header = container.duration / 1_000_000  # AV_TIME_BASE
        if header and duration < header - max(_TRUNCATION_SLACK_S, _TRUNCATION_SLACK_FRAC * header):
            raise _fail(path, f"truncated: frames cover {duration:.2f} s of the {header:.2f} s the header declares")
        fps = n / duration if duration > 0 else float(stream.average_rate or 0.0)
        coded = (int(stream.height or 0), int(stream.width or 0))
    finally:
        container.close()

    # Decode the first frame: proves the stream is decodable and gives the rotation (display matrix).
    try:
        with av.open(str(path)) as c2:
            frame = next(iter(c2.decode(video=0)), None)
    except Exception as e:
        raise _fail(path, f"no decodable video frame ({_av_reason(e)})") from None
    if frame is None:
        raise _fail(path, "no decodable video frame")
    rotation = _norm_rotation(getattr(frame, "rotation", 0) or 0)
    h, w = frame.height, frame.width
    coded = (h, w)
    if rotation in (90, 270):
        h, w = w, h
    meta = VideoMeta(fps=float(fps), num_frames=n, duration=duration, width=int(w), height=int(h), rotation=rotation)
    return _Probe(meta=meta, pts=rel, pts_int=pts_sorted, start=start, coded_size=coded)


def _norm_rotation(deg: float) -> int:
    return int(round(float(deg) / 90.0)) % 4 * 90


def rotate_upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate decoded frames counter-clockwise by ``rotation`` degrees (the display-matrix angle) so they are upright.

    Shapes: frames (n, H, W, 3) -> (n, H', W', 3) with H', W' swapped for 90/270.
    Matches ffmpeg's autorotate: a stream tagged 90 (counter-clockwise) is shown turned a quarter to the left.
    """
    k = _norm_rotation(rotation) // 90
    if k == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=k, axes=(1, 2)))


def resize_frames(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Bilinear (antialiased) resize of a chunk to ``size`` = (H, W); identical for every decoder.

    Shapes: frames uint8 (n, H, W, 3) -> uint8 (n, size[0], size[1], 3).
    """
    if size is None or tuple(frames.shape[1:3]) == tuple(size):
        return frames
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class VideoReader:
    """Base reader: maps times to frames through pts and yields chunks. Use as a context manager."""

    name = "base"

    def __init__(self, path: str | Path, info: _Probe):
        self.path = Path(path)
        self._info = info
        self.meta: VideoMeta = info.meta
        self._decoder_size: tuple[int, int] | None = None

    # -- decoder-specific ---------------------------------------------------------------------------------------
    def _decode(self, times: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, 3), upright, the frame displayed at each time (times clamped, nondecreasing per call)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _prepare(self, times: np.ndarray) -> None:
        """Called once per frames_at call with all of its times, before the first frame is decoded."""

    # -- shared -------------------------------------------------------------------------------------------------
    def frames_at(
        self, times: np.ndarray, batch: int = 64, size: tuple[int, int] | None = None,
        decoder_size: tuple[int, int] | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(times_chunk, frames uint8 (n, H, W, 3))`` for the frame displayed at each time, ``batch`` at a time.

        ``times`` are seconds from the first frame (any order; sorted times stream fastest). ``size`` = (H, W)
        resizes each chunk. ``decoder_size`` = (H, W) lets a decoder that can (PyAV: swscale's area filter, in the
        same pass as the YUV -> RGB conversion) deliver the picked frames at that size instead of the native one;
        others ignore it. Raises DecodeError if a requested frame cannot be decoded.
        """
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(times)):
            raise ValueError("frames_at: times must be finite")
        if batch < 1:
            raise ValueError(f"frames_at: batch must be >= 1, got {batch}")
        self._decoder_size = None if decoder_size is None else (int(decoder_size[0]), int(decoder_size[1]))
        self._prepare(times)
        for s in range(0, len(times), batch):
            chunk = times[s : s + batch]
            try:
                frames = self._decode(chunk)
            except DecodeError:
                raise
            except Exception as e:  # library errors (av / decord / torchcodec) while decoding a requested frame
                raise _fail(self.path, f"decoding failed near {float(chunk[0]):.2f} s ({_av_reason(e)})") from None
            yield chunk, resize_frames(frames, size)

    def _indices(self, times: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """Index of the last frame with pts <= t (clamped to the first/last frame)."""
        idx = np.searchsorted(pts, times + 1e-9, side="right") - 1
        return np.clip(idx, 0, len(pts) - 1)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PyAVReader(VideoReader):
    """Sequential decode; picks frames by pts. A request earlier than the current position restarts the stream.

    Unpicked non-reference frames are discarded by FFmpeg; picked frames are exact (module docstring)."""

    name = "pyav"

    def __init__(self, path, info):
        super().__init__(path, info)
        self._want: set[int] | None = None  # integer pts of the frames the current call picks (exact mode)
        self.decoded = 0  # frames the decoder returned (what FFmpeg did not discard), for tests and benchmarks
        self._open()

    def _open(self) -> None:
        import av

        self._container = av.open(str(self.path))
        self._stream = stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading: several x faster, output identical
        self._tb = float(stream.time_base)
        self._frames = self._iter_frames()
        self._cur = None  # (pts_rel, frame) last frame decoded with pts <= the last request
        self._cur_arr = None
        self._next = None
        self._eof = False

    def _prepare(self, times: np.ndarray) -> None:
        if DISCARD_UNPICKED:
            pts = self._info.pts
            self._want = set(self._info.pts_int[self._indices(times, pts)].tolist())

    def _iter_frames(self):
        cc = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            # The decision is taken when the packet is sent, which is what frame threading honours too.
            ts = packet.pts if packet.pts is not None else packet.dts
            keep = self._want is None or ts is None or packet.size == 0 or ts in self._want
            cc.skip_frame = "DEFAULT" if keep else "NONREF"
            for frame in cc.decode(packet):
                self.decoded += 1
                yield frame

    def _advance_to(self, t: float) -> None:
        while not self._eof:
            if self._next is None:
                try:
                    self._next = next(self._frames)
                except StopIteration:
                    self._eof = True
                    break
                if self._next.pts is None:
                    raise _fail(self.path, "decoded frame without a timestamp")
            rel = self._next.pts * self._tb - self._info.start
            if rel <= t + 1e-9 or self._cur is None:
                self._cur, self._cur_arr, self._next = (rel, self._next), None, None
            else:
                break

    def _decode(self, times):
        pts = self._info.pts
        targets = pts[self._indices(times, pts)]  # exact pts of the frame wanted, so truncation is detectable
        h, w = self._decoder_size or (self.meta.height, self.meta.width)
        out = np.empty((len(times), h, w, 3), np.uint8)
        for i, t in enumerate(targets):
            if self._cur is not None and t < self._cur[0] - 1e-9:
                self.close()
                self._open()  # rewind: callers asked for an earlier time
            self._advance_to(t)
            if self._cur is None:
                raise _fail(self.path, "no decodable video frame")
            if self._cur[0] < t - 1e-6 and self._eof:
                raise _fail(self.path, f"truncated: decoding stopped at {self._cur[0]:.2f} s, frame at {t:.2f} s missing")
            if self._cur_arr is None:
                frame = self._cur[1]
                if self._decoder_size is not None:
                    # scale the coded picture so that it is (h, w) once upright
                    ch, cw = (w, h) if self.meta.rotation in (90, 270) else (h, w)
                    arr = frame.reformat(width=cw, height=ch, format="rgb24", interpolation="AREA").to_ndarray()
                else:
                    arr = frame.to_ndarray(format="rgb24")
                self._cur_arr = rotate_upright(arr[None], self.meta.rotation)[0]
            out[i] = self._cur_arr
        return out

    def close(self):
        c = getattr(self, "_container", None)
        if c is not None:
            c.close()
            self._container = None


class DecordReader(VideoReader):
    name = "decord"

    def __init__(self, path, info):
        super().__init__(path, info)
        import decord

        try:
            self._vr = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=0)
            n = len(self._vr)
            if n == 0:
                raise _fail(self.path, "decord found no frames")
            if n == info.meta.num_frames:
                # Same frames, same (pts-sorted) order: index through the exact probe pts. decord's own timestamps
                # are float32, ~1 ms coarse after a few hours, enough to pick the neighbouring frame.
                self._pts = info.pts
            else:
                ts = self._vr.get_frame_timestamp(range(n))[:, 0].astype(np.float64)
                self._pts = np.sort(ts) - ts.min()
        except DecodeError:
            raise
        except Exception as e:
            raise _fail(self.path, f"decord cannot open it ({_av_reason(e)})") from None

    def _decode(self, times):
        idx = self._indices(times, self._pts)
        uniq, inv = np.unique(idx, return_inverse=True)
        frames = self._vr.get_batch(uniq.tolist()).asnumpy()
        return frames[inv.reshape(-1)]

    def close(self):
        self._vr = None


class TorchCodecReader(VideoReader):
    name = "torchcodec"

    def __init__(self, path, info):
        super().__init__(path, info)
        from torchcodec.decoders import VideoDecoder

        try:
            self._dec = VideoDecoder(str(self.path), dimension_order="NHWC", seek_mode="exact")
            md = self._dec.metadata
            self._by_index = md.num_frames == info.meta.num_frames
            self._begin = float(md.begin_stream_seconds or 0.0)
            self._end = float(md.end_stream_seconds or (self._begin + info.meta.duration))
        except Exception as e:
            raise _fail(self.path, f"torchcodec cannot open it ({_av_reason(e)})") from None

    def _decode(self, times):
        # torchcodec applies the display rotation itself.
        if self._by_index:  # same pts-sorted frame list as the probe: exact indices, no float boundary issues
            return self._dec.get_frames_at(self._indices(times, self._info.pts).tolist()).data.numpy()
        t = np.clip(times + self._begin, self._begin, np.nextafter(self._end, -np.inf) - 1e-6)
        return self._dec.get_frames_played_at(t.tolist()).data.numpy()


def check_decoder(name: str) -> None:
    """Raise ConfigError if ``name`` is unknown or its library cannot load (checked once, before a run)."""
    if name not in DECODERS:
        raise ConfigError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}")
    try:
        if name == "decord":
            import decord  # noqa: F401
        elif name == "torchcodec":
            from torchcodec.decoders import VideoDecoder  # noqa: F401
        else:
            import av  # noqa: F401
    except Exception as e:  # torchcodec raises RuntimeError when the system FFmpeg libraries are missing
        raise ConfigError(f"decoder {name!r} is unavailable: {_av_reason(e)}") from None


def open_video(path: str | Path, decoder: str = DEFAULT_DECODER) -> VideoReader:
    """Open ``path`` with ``decoder`` (``decord`` | ``torchcodec`` | ``pyav``). Raises DecodeError for bad files."""
    if decoder not in DECODERS:
        raise ConfigError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    info = probe(os.fspath(path))
    if decoder == "pyav" or (decoder == "decord" and info.meta.rotation != 0):
        return PyAVReader(path, info)  # decord 0.6 corrupts rotated streams (module docstring)
    if decoder == "decord":
        return DecordReader(path, info)
    return TorchCodecReader(path, info)
