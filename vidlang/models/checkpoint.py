"""Checkpoints: self-contained directories written atomically, for any registered model.

    CKPT/model.safetensors   the model's `saved_state()`: every weight (frozen parts included), except parts a model
                             rebuilds from local files and names in `frozen_weights()` (COSMO's frozen LM)
    CKPT/config.yaml         the resolved TrainConfig (model.arch names the model; data-dependent sizes filled in)
    CKPT/meta.json           {"step", "epoch", "metrics", "objective", "fps", "clip_len", "time", ...,
                             "frozen_weights": {name: {"path", "sha256"}} when the model leaves parts out}
    CKPT/...                 what the model needs to rebuild itself (`VidlangModel.save_extras`; the dual encoder:
                             text/ with the text tower's config.json and tokenizer files)

A checkpoint is written to `.<name>.tmp` beside its destination and renamed into place (an older copy is moved
aside first and deleted after; vidlang.io.swap_into_place), so a crash leaves the previous checkpoint intact.
Loading is strict: a weight file that does not match the model raises a VidlangError naming the
missing/unexpected keys (never a silent `strict=False`), and a model whose rebuilt frozen parts differ (sha256)
from those the checkpoint was trained with is refused; a damaged file is a one-line error naming it. Nothing
here unpickles: weights are safetensors, the rest YAML/JSON.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from vidlang.config import dump_yaml, from_dict, read_yaml
from vidlang.errors import ConfigError, FormatError, VidlangError
from vidlang.io import atomic_write_json, atomic_write_text, swap_into_place

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
META = "meta.json"


def saved_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights to save (`VidlangModel.saved_state`, else its whole state_dict)."""
    hook = getattr(model, "saved_state", None)
    return hook() if callable(hook) else model.state_dict()


def frozen_weights(model: torch.nn.Module) -> dict[str, dict]:
    hook = getattr(model, "frozen_weights", None)
    return hook() if callable(hook) else {}


def write_weights(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Save a state dict as safetensors. Tensors sharing memory (tied weights) are saved as copies under each
    name (safetensors refuses shared storage); loading writes the same values into the tied parameter twice."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        v = v.detach().cpu()
        ptr = v.untyped_storage().data_ptr() if v.numel() else None
        if ptr is not None and ptr in seen:
            v = v.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[k] = v.contiguous()
    save_file(out, str(path))


def save_checkpoint(dest: str | Path, model, cfg, meta: dict) -> Path:
    """Write model weights + resolved config + meta + the model's extra files atomically to `dest`."""
    dest = Path(dest)
    tmp = dest.parent / f".{dest.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_weights(saved_state(model), tmp / WEIGHTS)
    atomic_write_text(tmp / CONFIG, dump_yaml(cfg))
    frozen = frozen_weights(model)
    atomic_write_json(tmp / META, {**meta, "arch": cfg.model.arch, "time": time.time(),
                                   **({"frozen_weights": frozen} if frozen else {})})
    model.save_extras(tmp)
    swap_into_place(tmp, dest)
    return dest


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing or damaged file is one VidlangError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise VidlangError(f"{path}: weights not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(path, None, f"corrupt weights ({first})") from None


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load `state` into `model`; its keys must be exactly those of the model's `saved_state()` (every weight
    unless the model leaves frozen parts out), with the same shapes; otherwise one VidlangError naming them."""
    own = saved_state(model)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(state) & set(own))
              if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {shapes[0]})")
        raise VidlangError(f"{source}: weights do not match the model: {'; '.join(parts)}")
    with torch.no_grad():
        result = model.load_state_dict(state, strict=False)
    # strict=False only for the parts the model itself leaves out of its saved state; nothing else may be missing
    left_out = set(model.state_dict()) - set(own)
    if set(result.missing_keys) != left_out or result.unexpected_keys:
        raise VidlangError(f"{source}: weights do not match the model (missing {sorted(result.missing_keys)[:3]})")


def check_frozen_weights(model: torch.nn.Module, recorded: dict, source: str | Path) -> None:
    """Refuse a model whose rebuilt frozen parts are not those `recorded` with its weights (name -> path, sha256)."""
    own = frozen_weights(model)
    if set(own) != set(recorded or {}):
        raise VidlangError(f"{source}: saved with frozen parts {sorted(recorded or {})} left out, but this model "
                           f"leaves out {sorted(own)}")
    for name, info in own.items():
        if info.get("sha256") != recorded[name].get("sha256"):
            raise VidlangError(f"{source}: {name} at {info.get('path')} is not the one these weights were trained "
                               f"with ({recorded[name].get('path')}; sha256 {str(recorded[name].get('sha256'))[:12]}"
                               f" vs {str(info.get('sha256'))[:12]})")


def load_weights(model: torch.nn.Module, ckpt_dir: str | Path) -> None:
    """Strictly load CKPT/model.safetensors into `model` (and check its frozen parts against CKPT/meta.json)."""
    path = Path(ckpt_dir) / WEIGHTS
    state = read_weights(path)
    if frozen_weights(model) or (Path(ckpt_dir) / META).is_file():
        recorded = read_meta(ckpt_dir).get("frozen_weights", {}) if (Path(ckpt_dir) / META).is_file() else {}
        check_frozen_weights(model, recorded, Path(ckpt_dir))
    load_state_strict(model, state, path)


def read_json(path: str | Path, what: str) -> dict:
    """A JSON object from `path`; missing or damaged files are one-line errors naming `what` and the path."""
    path = Path(path)
    if not path.is_file():
        raise VidlangError(f"{path}: {what} not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(path, None, f"corrupt {what} ({e})") from None
    if not isinstance(obj, dict):
        raise FormatError(path, None, f"corrupt {what} (not a JSON object)")
    return obj


def read_meta(ckpt_dir: str | Path) -> dict:
    return read_json(Path(ckpt_dir) / META, "checkpoint meta")


def read_train_config(ckpt_dir: str | Path):
    """The TrainConfig stored in a checkpoint (configs written before the registry layout are migrated)."""
    from vidlang.train.config import TrainConfig, migrate_config_dict

    path = Path(ckpt_dir) / CONFIG
    if not path.is_file():
        raise VidlangError(f"{Path(ckpt_dir)}: not a vidlang checkpoint (no {CONFIG})")
    try:
        return from_dict(TrainConfig, migrate_config_dict(read_yaml(path)))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu"):
    """-> (model in eval mode, TrainConfig): the registered `model.arch`, rebuilt from the checkpoint's files."""
    from vidlang.models.base import model_class

    ckpt = Path(ckpt_dir)
    cfg = read_train_config(ckpt)
    model = model_class(cfg.model.arch).from_checkpoint(ckpt, cfg)
    load_weights(model, ckpt)
    return model.to(device).eval(), cfg


def load_embedder(ckpt_dir: str | Path, device: str | torch.device = "cpu"):
    """The `embed` evaluator of a checkpoint (the dual encoder's Embedder, with the training clip length)."""
    model, _ = load_model(ckpt_dir, device)
    return model.evaluator("embed", read_meta(ckpt_dir), device)
