"""Feature backbones: ``build_backbone(name, weights=None, device="cpu", **opts) -> Backbone``.

Registry (name -> builder):

- ``thumbnail``      weight-free colour/layout/motion feature, the embedded default (thumbnail.py);
                     options frames=3, grid=8
- ``clip``           transformers CLIP vision tower from a local folder (clip.py); option projection=True
- ``s3d_howto100m``  S3D-G of MIL-NCE HowTo100M from ``s3d_howto100m.pth`` (s3d.py); options size=224,
                     frames_per_second=30
- ``x3d``            pytorchvideo X3D from a local checkpoint (pytorchvideo_models.py); options variant="xs"
                     (xs/s/m), size=None (the variant's crop)

Builders import their heavy dependencies (transformers, pytorchvideo) lazily so importing this package is cheap.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from preprocessing.backbones.base import Backbone, load_state_dict_file, load_strict, weights_sha256
from vidlang.errors import VidlangError


def _thumbnail(weights=None, device="cpu", frames: int = 3, grid: int = 8) -> Backbone:
    if weights is not None:
        raise VidlangError(f"backbone 'thumbnail' takes no weights (got {weights})")
    from preprocessing.backbones.thumbnail import ThumbnailBackbone

    return ThumbnailBackbone(frames=frames, grid=grid, device=device)


def _clip(weights=None, device="cpu", projection: bool = True) -> Backbone:
    from preprocessing.backbones.clip import ClipBackbone

    return ClipBackbone(weights=weights, device=device, projection=projection)


def _s3d(weights=None, device="cpu", size: int = 224, frames_per_second: int = 30) -> Backbone:
    from preprocessing.backbones.s3d import S3DHowTo100MBackbone

    return S3DHowTo100MBackbone(weights=weights, device=device, size=size, frames_per_second=frames_per_second)


def _x3d(weights=None, device="cpu", variant: str = "xs", size: int | None = None) -> Backbone:
    from preprocessing.backbones.pytorchvideo_models import X3DBackbone

    return X3DBackbone(weights=weights, device=device, variant=variant, size=size)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "thumbnail": _thumbnail,
    "clip": _clip,
    "s3d_howto100m": _s3d,
    "x3d": _x3d,
}


def build_backbone(name: str, weights: str | Path | None = None, device: str = "cpu", **opts) -> Backbone:
    """Build a registered backbone in eval mode.

    Unknown names and options raise VidlangError naming them and listing the known ones; invalid option values
    (e.g. a negative frame count) raise VidlangError too.
    """
    if name not in BACKBONES:
        raise VidlangError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    builder = BACKBONES[name]
    allowed = [p for p in inspect.signature(builder).parameters if p not in ("weights", "device")]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise VidlangError(f"backbone {name!r}: unknown option(s) {', '.join(unknown)}; "
                           f"known: {', '.join(allowed) or 'none'}")
    params = inspect.signature(builder).parameters
    for key, value in opts.items():
        _check_option_type(name, key, value, params[key].default)
    try:
        backbone = builder(weights=weights, device=device, **opts)
    except (TypeError, ValueError) as exc:
        raise VidlangError(f"backbone {name!r}: invalid option(s) "
                           f"{', '.join(f'{k}={v!r}' for k, v in opts.items())}: {exc}") from exc
    return backbone.eval()


def _check_option_type(backbone: str, key: str, value, default) -> None:
    """An option must have its default's type (an int is fine where a float is expected; None default: any).

    Options come from the command line as YAML scalars (``--opt grid=8`` is the int 8), so a wrong type is a
    user's typo (``grid=zz``) that would otherwise surface as a TypeError deep inside the builder."""
    if default is None or default is inspect.Parameter.empty:
        return
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise VidlangError(f"backbone {backbone!r}: option {key}={value!r} must be {expected.__name__} "
                           f"(default {default!r})")


__all__ = ["BACKBONES", "Backbone", "build_backbone", "load_state_dict_file", "load_strict", "weights_sha256"]
