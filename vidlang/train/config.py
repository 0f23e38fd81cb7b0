"""`TrainConfig`: the resolved training configuration (sections model / data / loss / optim / train).

Loaded strictly with `vidlang.config.load_config(TrainConfig, yaml, overrides)`; every checkpoint stores
`to_dict(cfg)` as config.yaml. `model` is chosen by `model.arch` from the model registry and `loss` by
`loss.objective` from the objective registry: each section holds only the chosen entry's own keys. Defaults
follow the papers where a paper value exists (cited per field); the CPU demo configs override the sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vidlang.data.longvideo import DataConfig
from vidlang.models.base import ModelSection, model_class
from vidlang.models.dual import DualEncoderConfig
from vidlang.train.objectives import OBJECTIVES, LossSection, NortonLoss


@dataclass
class OptimConfig:
    # VideoCLIP pretraining (MMPT how2 config): Adam lr 5e-5, betas (0.9, 0.98), 1000 warmup steps,
    # gradient clipping at 2.0, linear (polynomial power 1) decay.
    lr: float = 5e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    schedule: Literal["cosine", "linear", "constant"] = "linear"
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.0  # the schedule decays to lr * min_lr_ratio at train.steps
    grad_clip: float = 2.0  # 0 = no clipping

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay, warmup_steps and grad_clip must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")


@dataclass
class LoopConfig:
    steps: int = 10000  # optimizer steps (not micro-batches)
    seed: int = 0
    grad_accum: int = 1
    # "no" on CPU; "bf16"/"fp16" autocast on GPU (accelerate's mixed_precision).
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    log_every: int = 10
    eval_every: int = 200  # 0 = only at the end
    save_every: int = 0  # also write last/ + the resumable state every N steps; 0 = at each evaluation
    # Checkpoint selection on held-out TRAINING videos; one of the model's selection metrics (the dual encoder:
    # narration -> window R@1/5/10, MedR, MeanR, loss). A ranking metric is the dual encoder's default because
    # the held-out contrastive loss bottoms out early while ranking keeps improving.
    select_metric: str = "R@5"
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never stop early
    eval_seed: int = 0  # seeds the fixed held-out clip set
    tensorboard: bool = True
    progress: bool = True

    def validate(self) -> None:
        if self.steps < 1 or self.grad_accum < 1:
            raise ValueError(f"steps and grad_accum must be >= 1, got {self.steps} and {self.grad_accum}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.eval_every < 0 or self.save_every < 0 or self.patience < 0:
            raise ValueError("eval_every, save_every and patience must be >= 0")


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=DualEncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossSection = field(default_factory=NortonLoss)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    def validate(self) -> None:
        """Checks across sections: the model's own, the objective's own, and that they fit together."""
        model = model_class(self.model.arch)
        objective = OBJECTIVES.get(self.loss.objective)
        model.check_config(self)
        if objective.check is not None:
            objective.check(self)
        missing = objective.needs - model.outputs
        if missing:
            raise ValueError(f"loss.objective={objective.name!r} needs model outputs {sorted(missing)} that "
                             f"model.arch={model.arch!r} does not produce (it produces {sorted(model.outputs)})")
        metrics = model.selection_metrics()
        if self.train.select_metric not in metrics:
            raise ValueError(f"train.select_metric={self.train.select_metric!r} is not a held-out metric of "
                             f"model.arch={model.arch!r} (choose from {sorted(metrics)})")


def migrate_config_dict(data: dict) -> dict:
    """A config dict written before models and objectives were registry sections -> the current layout.

    That layout had top-level `text:` and `video:` sections beside `model:` (always the dual encoder) and the
    Norton settings under `loss.norton` (present, unused, with `objective: infonce` too). Other dicts are returned
    unchanged.
    """
    if "text" not in data and "video" not in data and "norton" not in data.get("loss", {}):
        return data
    out = dict(data)
    model = dict(out.get("model") or {})
    model.setdefault("arch", "dual_encoder")
    for tower in ("text", "video"):
        if tower in out:
            model[tower] = out.pop(tower)
    out["model"] = model
    loss = dict(out.get("loss") or {})
    norton = loss.pop("norton", None) or {}
    if loss.get("objective", "norton") == "norton":
        loss.update(norton)
    out["loss"] = loss
    return out
