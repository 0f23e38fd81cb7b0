"""Backbone protocol and the shared weight-loading helpers.

A backbone turns the frames of one feature window into one vector. The corpus runner decides the windows (one per
1/fps seconds of video), samples ``frames_per_feature(fps)`` frames evenly inside each window, resizes them to
``frame_size`` (when not None) and calls the backbone on a batch of windows.

Axis legend (tensor comments in the backbones): ``n`` feature windows in a batch, ``f`` frames per window,
``c`` colour channels, ``h``/``w`` frame height/width, ``d`` feature dimension.

Weight files handed over by users are never unpickled: ``.pth``/``.pt``/``.bin`` load with
``torch.load(map_location="cpu", weights_only=True)`` and ``.safetensors`` with safetensors.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from vidlang.errors import VidlangError

# Containers that training scripts commonly wrap a state dict in: pytorchvideo's hub checkpoints use
# "model_state", Lightning/most research code "state_dict", a few "model".
_CONTAINER_KEYS = ("model_state", "state_dict", "model")
# Prefixes left by wrappers: nn.DataParallel/DistributedDataParallel ("module."), torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_LIST_LIMIT = 8  # how many offending keys an error message names before summarising


class Backbone(nn.Module):
    """Base class: ``backbone(frames uint8 (n, f, h, w, 3)) -> float32 (n, dim)`` on the CPU.

    Subclasses set ``name``, ``dim`` and implement :meth:`embed` (frames already validated, on ``self.device``).
    Calls run under ``torch.inference_mode`` in eval mode; inputs are split into chunks of at most ``max_batch``
    windows and about ``max_input_values`` pixel values, so a large batch from the runner (or large frames) cannot
    exhaust memory. Results are float32 on the CPU whatever ``device`` computes them.
    """

    name: str = "backbone"
    dim: int = 0
    # torch intra-op threads the runner uses while this backbone extracts (None: leave torch's setting alone)
    torch_threads: int | None = None
    max_batch: int = 64
    max_input_values: int = 1 << 25  # 32M values = 128 MB as float32

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None):
        super().__init__()
        self.device = torch.device(device)
        self.weights_path = None if weights is None else Path(weights)

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) the runner should resize decoded frames to, or None for the native size."""
        return None

    def frames_per_feature(self, fps: float) -> int:
        """How many frames to sample evenly inside each feature's 1/fps-second window."""
        raise NotImplementedError

    def decoder_size(self, height: int, width: int) -> tuple[int, int] | None:
        """With ``--frames fast``: a smaller (H, W) the decoder may scale native (height, width) frames to with an
        area filter before the backbone sees them, because the backbone averages them down anyway; None (the
        default) keeps native frames. Changes the numbers slightly (swscale's filter, uint8 rounding)."""
        return None

    def weights_sha256(self) -> str | None:
        """SHA-256 of the weights this backbone loaded (file or folder), for run.json provenance; None if none."""
        return None if self.weights_path is None else weights_sha256(self.weights_path)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8 (n, f, h, w, 3) on self.device -> float32 (n, dim). Called without grad, in eval mode."""
        raise NotImplementedError

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.ndim != 5 \
                or frames.shape[-1] != 3:
            desc = (f"{tuple(frames.shape)} {frames.dtype}" if isinstance(frames, torch.Tensor)
                    else type(frames).__name__)
            raise ValueError(f"{self.name}: expected uint8 frames (n, f, H, W, 3), got {desc}")
        if frames.shape[1] < 1:
            raise ValueError(f"{self.name}: a feature window needs at least one frame, got f=0")
        if self.training:
            self.eval()  # BatchNorm/dropout must never run in training mode during extraction
        if frames.shape[0] == 0:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        # chunk size: at most max_batch windows and about max_input_values input values (float32 copies of a
        # batch of full-HD frames would otherwise need tens of GB)
        per_window = max(1, frames[0].numel())
        step = max(1, min(self.max_batch, self.max_input_values // per_window))
        outs = []
        with torch.inference_mode():
            for start in range(0, frames.shape[0], step):
                chunk = frames[start:start + step].to(self.device, non_blocking=True)
                outs.append(self.embed(chunk).float().cpu())
        return torch.cat(outs)


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of a weights file, or of a folder (over sorted relative names and file contents).

    A folder hash covers every regular file (config, processor settings and weights), so two folders hash the same
    exactly when they hold the same files.
    """
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)
    if path.is_dir():
        h = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
            h.update(_file_sha256(file).encode() + b"\n")
        return h.hexdigest()
    raise VidlangError(f"weights not found: {path}")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def require_weights(weights: str | Path | None, backbone: str, hint: str) -> Path:
    """The weights path as a Path; VidlangError naming the path (or the missing argument) when unusable."""
    if weights is None:
        raise VidlangError(f"backbone {backbone!r} needs local weights: pass weights=<path> ({hint})")
    path = Path(weights).expanduser()
    if not path.exists():
        raise VidlangError(f"weights not found for backbone {backbone!r}: {path}")
    return path


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (weights_only), unwrapping common containers.

    Accepts a plain ``{name: tensor}`` dict or one nested under "model_state" / "state_dict" / "model".
    Raises VidlangError naming the path when the file is missing, unreadable or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise VidlangError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            # weights_only: never execute pickled code from a file a user hands over.
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VidlangError(f"cannot read weights file {path}: {reason}") from exc
    if isinstance(obj, Mapping):
        for key in _CONTAINER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise VidlangError(f"weights file {path} does not hold a state dict of tensors "
                           f"(expected a {{name: tensor}} dict, optionally under 'model_state' or 'state_dict')")
    return dict(obj)


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a prefix that *every* key carries ("module." from DataParallel, "_orig_mod." from torch.compile)."""
    state = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, *,
                ignore_prefixes: Iterable[str] = ()) -> None:
    """Load ``state`` into ``module`` strictly; VidlangError listing missing/unexpected/mis-shaped keys.

    ``ignore_prefixes`` drops keys of parts the backbone deliberately does not build (e.g. S3D's text branch).
    BatchNorm ``num_batches_tracked`` counters are the one tolerated absence (files saved before torch 0.4.1 lack
    them and they do not affect eval-mode outputs); the module keeps its own value.
    """
    state = strip_wrapper_prefixes(state)
    ignore = tuple(ignore_prefixes)
    state = {k: v for k, v in state.items() if not (ignore and k.startswith(ignore))}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs expected {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                more = f", ... ({len(keys)} in all)" if len(keys) > _LIST_LIMIT else ""
                shown = ", ".join(keys[:_LIST_LIMIT]) + more
                parts.append(f"{label}: {shown}")
        raise VidlangError(f"weights file {path} does not match {type(module).__name__}: " + "; ".join(parts))
    full = {k: state.get(k, own[k]) for k in own}
    module.load_state_dict(full, strict=True)
