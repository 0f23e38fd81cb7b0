"""The resumable training state, written without pickles: safetensors for tensors, JSON for everything else.

    OUT/state/model.safetensors       the (unwrapped) model's saved_state(): every weight unless the model leaves
                                      frozen parts out (vidlang.models.checkpoint)
    OUT/state/frozen.json             those parts by name, path and sha256 (checked on resume)
    OUT/state/optimizer.safetensors   the optimizer's per-parameter tensors ("<param index>.<name>")
    OUT/state/optimizer.json          its param_groups and non-tensor per-parameter entries
    OUT/state/trainer.json            progress (step, epoch, batch index, the epoch's video order, best metric,
                                      patience), the scheduler's state, the fp16 grad scaler's state
    OUT/state/config.yaml             the resolved config the run was started with (resume compares against it)
    OUT/state/rng_<rank>.safetensors  torch CPU (and CUDA) generator states of each process
    OUT/state/rng_<rank>.json         Python's and NumPy's global generator states of each process

accelerate's own `save_state` pickles the scheduler and the RNG states and reads them back with
`torch.load(weights_only=False)`, so a state folder someone hands over could run code on resume; nothing here is
read with pickle. A state is written into `.state.tmp` and swapped into place (vidlang.io.swap_into_place) only
at optimizer-step boundaries, so a kill at any instant leaves the previous complete state.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from vidlang.errors import FormatError
from vidlang.io import atomic_write_json
from vidlang.models.checkpoint import (check_frozen_weights, frozen_weights, load_state_strict, read_json,
                                       read_weights, saved_state, write_weights)

MODEL = "model.safetensors"
OPTIM_TENSORS = "optimizer.safetensors"
OPTIM_JSON = "optimizer.json"
TRAINER = "trainer.json"
CONFIG = "config.yaml"
FROZEN = "frozen.json"


def _jsonable(x):
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    return x


# -- optimizer ----------------------------------------------------------------------------------------------------
def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split `optimizer.state_dict()` into safetensors-ready tensors and a JSON-ready rest."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[name] = _jsonable(value)
    return tensors, {"param_groups": _jsonable(sd["param_groups"]), "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict,
                         source: Path) -> None:
    try:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        for idx, entries in rest.get("scalars", {}).items():
            state.setdefault(int(idx), {}).update(entries)
        groups = rest["param_groups"]
        if len(groups) != len(optimizer.param_groups) or any(
                len(g["params"]) != len(h["params"]) for g, h in zip(groups, optimizer.param_groups)):
            raise ValueError("its parameter groups do not match the model's trainable parameters")
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, TypeError) as e:
        raise FormatError(source, None, f"optimizer state does not fit this run ({e})") from None


# -- random generators --------------------------------------------------------------------------------------------
def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = st
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return tensors, {"python": [version, list(internal), gauss],
                     "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def set_rng_state(tensors: dict[str, torch.Tensor], rest: dict, source: Path) -> None:
    try:
        torch.set_rng_state(tensors["torch_cpu"])
        cuda = [tensors[f"torch_cuda_{i}"] for i in range(len(tensors) - 1)]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
        version, internal, gauss = rest["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = rest["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise FormatError(source, None, f"corrupt generator state ({e})") from None


# -- whole state --------------------------------------------------------------------------------------------------
def save_train_state(folder: Path, model: torch.nn.Module, optimizer, trainer: dict, config_yaml: str,
                     rank: int, main: bool, rng: tuple[dict, dict] | None = None) -> None:
    """Write this process's part of the state into `folder` (the caller swaps it into place after a barrier).
    `rng`: generator states captured earlier (`rng_state()`), default the current ones."""
    from safetensors.torch import save_file

    from vidlang.io import atomic_path, atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    tensors, rest = rng if rng is not None else rng_state()
    with atomic_path(folder / f"rng_{rank}.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_json(folder / f"rng_{rank}.json", rest)
    if not main:
        return
    with atomic_path(folder / MODEL) as tmp:
        write_weights(saved_state(model), tmp)
    atomic_write_json(folder / FROZEN, frozen_weights(model))
    tensors, rest = optimizer_state(optimizer)
    with atomic_path(folder / OPTIM_TENSORS) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_json(folder / OPTIM_JSON, rest)
    atomic_write_text(folder / CONFIG, config_yaml)
    atomic_write_json(folder / TRAINER, trainer)  # written last: its presence marks a complete main part


def read_trainer_json(folder: Path) -> dict:
    return read_json(folder / TRAINER, "training progress")


def load_train_state(folder: Path, model: torch.nn.Module, optimizer, rank: int) -> dict:
    """Restore weights, optimizer and this process's generators from `folder`; returns trainer.json's dict."""
    trainer = read_trainer_json(folder)
    recorded = read_json(folder / FROZEN, "frozen weights record") if (folder / FROZEN).is_file() else {}
    check_frozen_weights(model, recorded, folder)
    load_state_strict(model, read_weights(folder / MODEL), folder / MODEL)
    load_optimizer_state(optimizer, read_weights(folder / OPTIM_TENSORS),
                         read_json(folder / OPTIM_JSON, "optimizer state"), folder / OPTIM_JSON)
    rng_file = folder / f"rng_{rank}.safetensors"
    set_rng_state(read_weights(rng_file), read_json(folder / f"rng_{rank}.json", "generator state"), rng_file)
    return trainer


def read_state_config(folder: Path) -> str | None:
    path = folder / CONFIG
    return path.read_text(encoding="utf-8") if path.is_file() else None


def diff_configs(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts (a key present on one side only too)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_configs(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {json.dumps(a)} -> {json.dumps(b)}")
    return out
