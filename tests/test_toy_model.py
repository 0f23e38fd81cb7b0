"""A second model registered from this file alone trains through the one trainer and is evaluated by the suite.

The toy model (a linear video encoder averaged over seconds, and a bag of hashed words) touches nothing outside
this file: it registers its config section and class, reuses the long-video sampler, and writes checkpoints the
generic loader reads back. This is the architecture's promise: a new model needs no edit elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.eval.world import DIM, build_world
from tests.train.conftest import make_corpus
from vidlang.config import from_dict
from vidlang.models.base import MODELS, ModelSection, VidlangModel, register_model

VOCAB = 257


def _word_id(word: str) -> int:
    return int.from_bytes(hashlib.sha1(word.lower().encode()).digest()[:4], "little") % (VOCAB - 1) + 1


@dataclass
class ToyConfig(ModelSection):
    arch: str = "toy_bow"
    input_dim: int = 0
    embed_dim: int = 16


@dataclass
class ToyBatch:
    video: torch.Tensor  # (N, V, Din)
    video_mask: torch.Tensor  # (N, V)
    words: torch.Tensor  # (N, W) hashed word ids, 0 = padding
    video_ids: list

    def to(self, device):
        return ToyBatch(self.video.to(device), self.video_mask.to(device), self.words.to(device), self.video_ids)

    def model_inputs(self) -> dict:
        return {"video": self.video, "video_mask": self.video_mask, "words": self.words}


def toy_collate(samples, video_ids) -> ToyBatch:
    from vidlang.data.collate import pad_clips

    flat = [c for clips in samples for c in clips]
    video, mask = pad_clips([c["features"] for c in flat])
    ids = [[_word_id(w) for w in c["text"].split()] or [0] for c in flat]
    words = torch.zeros(len(ids), max(len(i) for i in ids), dtype=torch.long)
    for row, i in enumerate(ids):
        words[row, : len(i)] = torch.tensor(i)
    return ToyBatch(torch.from_numpy(video), torch.from_numpy(mask), words, list(video_ids))


class ToyEmbedder:
    def __init__(self, model):
        self.model = model.eval()

    @torch.no_grad()
    def embed_texts(self, texts):
        batch = toy_collate([[{"features": np.zeros((1, 1), np.float32), "text": t} for t in texts]], ["x"])
        return F.normalize(self.model.text(batch.words), dim=-1)

    @torch.no_grad()
    def embed_windows(self, features, windows, fps):
        f = torch.from_numpy(np.array(features, np.float32))
        rows = [f[int(s * fps): max(int(np.ceil(e * fps)), int(s * fps) + 1)].mean(0) for s, e in windows]
        return F.normalize(self.model.video_proj(torch.stack(rows)), dim=-1)

    @torch.no_grad()
    def embed_seconds(self, features, fps=None):
        return F.normalize(self.model.video_proj(torch.from_numpy(np.array(features, np.float32))), dim=-1)


@register_model("toy_bow")
class ToyBow(VidlangModel):
    config_class = ToyConfig
    capabilities = frozenset({"embed"})
    outputs = frozenset({"pooled_video", "pooled_text", "logit_scale"})

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.video_proj = nn.Linear(cfg.input_dim, cfg.embed_dim)
        self.words = nn.EmbeddingBag(VOCAB, cfg.embed_dim, mode="mean", padding_idx=0)
        self.log_scale = nn.Parameter(torch.tensor(2.0))

    @classmethod
    def resolve_config(cls, cfg, feature_dim, fps):
        cfg.model.input_dim = cfg.model.input_dim or int(feature_dim)

    @classmethod
    def build(cls, cfg):
        return cls(cfg.model)

    @classmethod
    def from_checkpoint(cls, ckpt, cfg):
        return cls(cfg.model)

    def feature_dim(self):
        return self.cfg.input_dim

    def text(self, words):
        return self.words(words)

    def forward(self, video, video_mask, words):
        m = video_mask.unsqueeze(-1).float()
        pooled = (self.video_proj(video) * m).sum(1) / m.sum(1).clamp_min(1.0)
        return {"pooled_video": pooled, "pooled_text": self.text(words), "logit_scale": self.log_scale}

    def dataset(self, features, captions, video_ids, data_cfg, fps, seed):
        from vidlang.data.longvideo import LongVideoDataset

        return LongVideoDataset(features, captions, video_ids, data_cfg, lambda ts: [len(t.split()) for t in ts],
                                fps=fps, seed=seed)

    def collate_fn(self):
        return toy_collate

    @classmethod
    def selection_metrics(cls):
        return {"loss": "min"}

    @torch.no_grad()
    def heldout_metrics(self, held, device, batch_videos):
        batch = toy_collate([c for _, c in held], [v for v, _ in held]).to(device)
        out = self(**batch.model_inputs())
        logits = F.normalize(out["pooled_text"], dim=-1) @ F.normalize(out["pooled_video"], dim=-1).T
        return {"loss": float(F.cross_entropy(logits * out["logit_scale"].exp(), torch.arange(len(logits))))}

    def evaluator(self, capability, meta, device):
        if capability == "embed":
            return ToyEmbedder(self)
        return super().evaluator(capability, meta, device)


@pytest.fixture(scope="module", autouse=True)
def _unregister():
    yield
    MODELS.remove("toy_bow")


def toy_train_config(**data):
    from vidlang.train.config import TrainConfig

    return from_dict(TrainConfig, {
        "model": {"arch": "toy_bow", "embed_dim": 16},
        "data": {"clips_per_video": 4, "batch_videos": 4, "text_budget": 6, "min_clip_len": 2, "max_clip_len": 6,
                 "heldout_frac": 0.2, **data},
        "loss": {"objective": "infonce"},
        "optim": {"lr": 1e-2, "warmup_steps": 0, "schedule": "constant"},
        "train": {"steps": 6, "log_every": 1, "eval_every": 3, "select_metric": "loss", "progress": False,
                  "tensorboard": False}})


def test_toy_model_trains_checkpoints_and_evaluates(tmp_path):
    from vidlang.eval.capabilities import CheckpointModel
    from vidlang.eval.cli import evaluate
    from vidlang.eval.config import EvalConfig
    from vidlang.io import read_jsonl
    from vidlang.train.trainer import train

    world = build_world(tmp_path / "world")
    data = make_corpus(dim=DIM)  # the training corpus has the evaluation world's feature width
    summary = train(toy_train_config(), tmp_path / "run", data=data)
    assert summary["arch"] == "toy_bow" and summary["steps"] == 6 and summary["best_step"] in (3, 6)
    log = [r for r in read_jsonl(tmp_path / "run/train_log.jsonl") if "total" in r]
    assert len(log) == 6 and log[-1]["total"] < log[0]["total"]
    assert "arch: toy_bow" in (tmp_path / "run/best/config.yaml").read_text()
    # the generic checkpoint loader rebuilds the toy model, and the suite evaluates it on a real task
    model = CheckpointModel(tmp_path / "run/best")
    assert isinstance(model.model, ToyBow) and model.expected_dim == DIM
    cfg = from_dict(EvalConfig, {"data": {"features": str(world["store"]), "youcookii": str(world["youcookii"])},
                                 "tasks": ["clip-youcookii"]})
    res = evaluate(cfg, model=model, progress=False)
    assert 0.0 <= res["tasks"]["clip-youcookii"]["metrics"]["t2v"]["R@5"] <= 100.0
    assert json.loads((tmp_path / "run/best/meta.json").read_text())["arch"] == "toy_bow"


def test_a_task_the_model_cannot_do_is_skipped_with_its_reason(tmp_path):
    from vidlang.eval.capabilities import RandomEmbedder
    from vidlang.eval.cli import evaluate
    from vidlang.eval.config import EvalConfig
    from vidlang.eval.registry import TASKS, register_task

    register_task("toy-captions", data=("youcookii", "features"), capability="generate")(lambda *a: {})
    try:
        world = build_world(tmp_path / "world")
        cfg = from_dict(EvalConfig, {"data": {"features": str(world["store"]), "youcookii": str(world["youcookii"])},
                                     "tasks": ["clip-youcookii", "toy-captions", "crosstask"]})
        res = evaluate(cfg, model=RandomEmbedder(8), progress=False)
    finally:
        TASKS.remove("toy-captions")
    assert set(res["tasks"]) == {"clip-youcookii"}
    assert res["skipped"]["toy-captions"] == "the model cannot generate (its capabilities: embed)"
    assert res["skipped"]["crosstask"] == "data.crosstask not configured"


def test_an_objective_needing_outputs_the_model_lacks_is_refused():
    from vidlang.errors import ConfigError
    from vidlang.train.config import TrainConfig

    with pytest.raises(ConfigError, match=r"loss\.objective='norton' needs model outputs \['text_tokens', "
                                          r"'video_tokens'\] that model\.arch='toy_bow' does not produce"):
        from_dict(TrainConfig, {"model": {"arch": "toy_bow"}, "loss": {"objective": "norton", "clips_per_paragraph": 4},
                                "train": {"select_metric": "loss"}})
