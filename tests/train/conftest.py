"""Tiny seeded training fixtures: an in-memory corpus whose narration is predictable from the features."""

from __future__ import annotations


import numpy as np
import pytest

WORDS = ["cut the onion", "boil water", "add salt", "stir the sauce", "fry the egg", "slice bread",
         "pour milk", "whisk eggs", "peel potato", "grate cheese"]


def make_corpus(n_videos: int = 12, seconds: int = 40, dim: int = 16, seed: int = 0):
    """Each 4-second block shows one action (a fixed random feature direction + noise) narrated by its sentence."""
    from vidlang.data.train_data import TrainData
    from vidlang.datasets import CaptionLine

    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(len(WORDS), dim)).astype(np.float32)
    features, captions = {}, {}
    for v in range(n_videos):
        vid = f"v{v:03d}"
        acts = rng.integers(len(WORDS), size=seconds // 4)
        feats = protos[np.repeat(acts, 4)] + 0.3 * rng.normal(size=(seconds, dim)).astype(np.float32)
        features[vid] = feats.astype(np.float32)
        captions[vid] = [CaptionLine(float(4 * i), float(4 * i + 3), WORDS[a]) for i, a in enumerate(acts)]
    return TrainData(features, captions, sorted(features), fps=1.0, dim=dim)


def with_overrides(d: dict, over: dict) -> dict:
    """Set nested keys of a config dict in place: model__video__dropout=0.0 -> d["model"]["video"]["dropout"]."""
    for key, value in over.items():
        *secs, name = key.split("__")
        target = d
        for sec in secs:
            target = target[sec]
        target[name] = value
    return d


def tiny_config(text_dir, objective: str = "infonce", **over):
    from vidlang.config import from_dict
    from vidlang.train.config import TrainConfig

    d = {
        "model": {"arch": "dual_encoder", "embed_dim": 32, "head": "linear",
                  "text": {"model_path": str(text_dir), "max_length": 16, "trainable": "all"},
                  "video": {"width": 32, "layers": 1, "heads": 2, "max_len": 8, "dropout": 0.1}},
        "data": {"clips_per_video": 4, "batch_videos": 4, "text_budget": 6, "min_clip_len": 2, "max_clip_len": 6,
                 "heldout_frac": 0.2},
        "loss": {"objective": objective, **({"clips_per_paragraph": 2, "n_iters": 10} if objective == "norton"
                                           else {})},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "constant"},
        "train": {"steps": 4, "log_every": 1, "eval_every": 0, "progress": False, "tensorboard": False},
    }
    return from_dict(TrainConfig, with_overrides(d, over))


@pytest.fixture(scope="session")
def corpus():
    return make_corpus()
