"""Checkpoints: self-contained directories written atomically.

    CKPT/model.safetensors   every weight of the DualEncoder (frozen text tower included)
    CKPT/config.yaml         the resolved TrainConfig (video.input_dim filled in)
    CKPT/meta.json           {"step", "epoch", "metrics", "objective", "fps", "clip_len", "time"}
    CKPT/text/               the text tower's config.json + tokenizer files, so loading needs no other folder

A checkpoint is written to `.<name>.tmp` beside its destination and renamed into place (an older copy is moved
aside first and deleted after), so a crash leaves the previous checkpoint intact. Loading is strict: a weight
file that does not match the model raises a VidlangError naming the missing/unexpected keys (never a silent
`strict=False`). Resumable training state (optimizer, scheduler, RNG, sampler position) is a separate `state/`
folder written by the loop with `accelerator.save_state`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_model

from vidlang.config import dump_yaml, load_config
from vidlang.errors import VidlangError
from vidlang.io import atomic_write_json, atomic_write_text

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
META = "meta.json"
TEXT_DIR = "text"


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename a finished temporary directory to `dest`, replacing an existing one (old copy removed last)."""
    old = dest.parent / f".{dest.name}.old"
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


def save_checkpoint(dest: str | Path, model, cfg, meta: dict) -> Path:
    """Write model weights + resolved config + meta (+ text tower config/tokenizer) atomically to `dest`."""
    dest = Path(dest)
    tmp = dest.parent / f".{dest.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / WEIGHTS))
    atomic_write_text(tmp / CONFIG, dump_yaml(cfg))
    atomic_write_json(tmp / META, {**meta, "time": time.time()})
    text_dir = tmp / TEXT_DIR
    model.text.backbone.config.save_pretrained(text_dir)
    model.text.tokenizer.save_pretrained(text_dir)
    swap_into_place(tmp, dest)
    return dest


def load_weights(model, ckpt_dir: str | Path) -> None:
    """Strictly load CKPT/model.safetensors into `model`; VidlangError naming mismatched keys."""
    path = Path(ckpt_dir) / WEIGHTS
    if not path.exists():
        raise VidlangError(f"{path}: checkpoint weights not found")
    state = load_file(str(path))
    own = model.state_dict()
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
        raise VidlangError(f"{path}: weights do not match the model: {'; '.join(parts)}")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)


def read_meta(ckpt_dir: str | Path) -> dict:
    path = Path(ckpt_dir) / META
    if not path.exists():
        raise VidlangError(f"{path}: checkpoint meta not found")
    return json.loads(path.read_text())


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu"):
    """-> (DualEncoder in eval mode, TrainConfig). The text tower is built from CKPT/text, weights from the file."""
    from vidlang.models.dual import DualEncoder
    from vidlang.train.config import TrainConfig

    ckpt = Path(ckpt_dir)
    if not (ckpt / CONFIG).exists():
        raise VidlangError(f"{ckpt}: not a vidlang checkpoint (no {CONFIG})")
    cfg = load_config(TrainConfig, ckpt / CONFIG)
    build_cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, model_path=str(ckpt / TEXT_DIR)))
    model = DualEncoder(build_cfg, pretrained_text=False)
    load_weights(model, ckpt)
    return model.to(device).eval(), cfg


def load_embedder(ckpt_dir: str | Path, device: str | torch.device = "cpu", batch_size: int = 64):
    """Embedder of a checkpoint, with the training clip length (meta clip_len, in feature steps)."""
    from vidlang.models.embed import Embedder

    model, _ = load_model(ckpt_dir, device)
    clip_len = read_meta(ckpt_dir).get("clip_len")
    return Embedder(model, clip_len=clip_len, device=device, batch_size=batch_size)
