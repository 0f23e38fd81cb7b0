"""The model registry (`model.arch`) and the interface every registered model implements.

A model is one `VidlangModel` subclass registered under a name with its config dataclass:

    @dataclass
    class ToyConfig(ModelSection):
        arch: str = "toy"
        width: int = 16

    @register_model("toy")
    class Toy(VidlangModel):
        config_class = ToyConfig
        capabilities = frozenset({"embed"})
        outputs = frozenset({"pooled_video", "pooled_text", "logit_scale"})
        ...

The trainer, the checkpoints and the evaluation suite only talk to this interface, so a model needs no edit
outside its own files (docs/interfaces.md has the full example). What a model declares:

- `outputs`: the keys of the dict `forward(**batch.model_inputs())` returns; an objective names the keys it needs
  and the config is refused when the model does not provide them.
- `capabilities` for evaluation: `embed` (an `Embedder`: texts, windows and seconds into one space), `score`
  (log-likelihood of candidate texts given a clip), `generate` (text from clips). A task needing a capability the
  model lacks is skipped with the reason printed.
- its data: `dataset(...)` builds the sampler of training examples and `collate_fn()` the picklable function that
  turns a batch of samples into tensors (tokenisation included), run in DataLoader workers.
- its persistence: `save_extras(dir)` writes what rebuilding needs besides the weights (configs, tokenizers);
  `from_checkpoint(dir, cfg)` rebuilds the architecture from those files without loading pretrained weights;
  `saved_state()` is what checkpoints and training states hold (default: every weight) and `frozen_weights()`
  names, by path and sha256, the frozen parts a model leaves out and rebuilds from local files (COSMO's frozen
  LM), so that loading onto other weights is refused; `init_from_checkpoint(dir)` is `--init-from` (default: a
  strict load of the whole checkpoint).
- its selection metrics on held-out training videos (`selection_metrics`, `heldout_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vidlang.config import Choice
from vidlang.errors import ConfigError
from vidlang.registry import Registry

CAPABILITIES = ("embed", "score", "generate")


class VidlangModel(nn.Module):
    """Base class of registered models (see the module docstring). Subclasses override what they support."""

    arch: ClassVar[str] = ""
    config_class: ClassVar[type]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    outputs: ClassVar[frozenset[str]] = frozenset()

    # -- configuration --------------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg) -> None:
        """Checks across sections of a TrainConfig (raise ValueError); the model section checks itself."""

    @classmethod
    def resolve_config(cls, cfg, feature_dim: int, fps: float):
        """Fill data-dependent fields of `cfg.model` (e.g. the input feature width) in place; raise ConfigError
        when the data cannot feed this model."""

    @classmethod
    def build(cls, cfg) -> "VidlangModel":
        """A new model from a resolved TrainConfig (pretrained parts loaded from their local paths)."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, ckpt: Path, cfg) -> "VidlangModel":
        """The architecture of a checkpoint, from its own files; the caller loads the weights strictly."""
        raise NotImplementedError

    def save_extras(self, dest: Path) -> None:
        """Write what `from_checkpoint` needs besides the weights and the config (tokenizers, model configs)."""

    def feature_dim(self) -> int | None:
        """Width of the per-second features the model reads (None: any)."""
        return None

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The weights checkpoints and training states hold (default: all of `state_dict()`); loading is strict
        against exactly these keys. Leaving a part out needs `frozen_weights` to name it."""
        return self.state_dict()

    def frozen_weights(self) -> dict[str, dict]:
        """The parts left out of `saved_state`, rebuilt from local files: name -> {"path": str, "sha256": str}.
        Stored beside the weights; a load whose rebuilt parts have another sha256 is refused."""
        return {}

    def init_from_checkpoint(self, ckpt: Path) -> None:
        """`vidlang train --init-from CKPT` (before the first step): default a strict load of the whole
        checkpoint, which must be of this architecture and size."""
        from vidlang.models.checkpoint import load_weights

        load_weights(self, ckpt)

    # -- training -------------------------------------------------------------------------------------------
    def dataset(self, features, captions, video_ids: Sequence[str], data_cfg, fps: float, seed: int):
        """The sampler of training examples (vidlang.data.longvideo.LongVideoDataset's interface)."""
        raise NotImplementedError

    def collate_fn(self) -> Callable:
        """A picklable `collate(samples, video_ids) -> batch` (batch has `.to(device)` and `.model_inputs()`)."""
        raise NotImplementedError

    def prepare_training(self, datasets: Sequence) -> None:
        """Called once after weights are loaded (fresh, --init-from or resumed), before the first step."""

    @classmethod
    def selection_metrics(cls) -> dict[str, str]:
        """Held-out metrics the trainer can select checkpoints on: name -> "max" | "min"."""
        return {}

    def heldout_metrics(self, held: list, device: torch.device, batch_videos: int) -> dict[str, float]:
        """Metrics on fixed samples of held-out TRAINING videos: [(video id, samples)] -> {name: value}."""
        return {}

    def hard_negative_embeddings(self, ds, device: torch.device) -> torch.Tensor:
        """One embedding per training video (rows in ds.video_ids order), for hard-negative batches."""
        raise ConfigError(f"model {self.arch!r} cannot rank videos for data.hard_negatives=true")

    # -- evaluation -----------------------------------------------------------------------------------------
    def evaluator(self, capability: str, meta: dict, device: torch.device | str) -> Any:
        """The object evaluation tasks use for `capability` (e.g. an Embedder for "embed")."""
        raise ConfigError(f"model {self.arch!r} has no {capability!r} capability")


MODELS: Registry[type[VidlangModel]] = Registry("model architecture (model.arch)")


@dataclass
class ModelSection(Choice):
    """The `model:` section of a training config: `arch` names a registered model, the rest is its config."""

    arch: str = ""
    __selector__: ClassVar[str] = "arch"
    __default__: ClassVar[str] = "dual_encoder"

    @classmethod
    def config_class(cls, name: str) -> type:
        _ensure_builtin_models()
        return MODELS.get(name).config_class


def register_model(name: str) -> Callable[[type[VidlangModel]], type[VidlangModel]]:
    """Class decorator: register a VidlangModel subclass under `name` (its `config_class` must derive from
    ModelSection with `arch` defaulting to `name`)."""

    def deco(cls: type[VidlangModel]) -> type[VidlangModel]:
        cfg_cls = getattr(cls, "config_class", None)
        if not (isinstance(cfg_cls, type) and issubclass(cfg_cls, ModelSection)):
            raise TypeError(f"{cls.__name__}.config_class must be a ModelSection dataclass")
        if cfg_cls().arch != name:
            raise TypeError(f"{cfg_cls.__name__}.arch must default to {name!r}")
        bad = set(cls.capabilities) - set(CAPABILITIES)
        if bad:
            raise TypeError(f"{cls.__name__}: unknown capabilities {sorted(bad)} (known: {CAPABILITIES})")
        cls.arch = name
        MODELS.add(name, cls)
        return cls

    return deco


def model_class(name: str) -> type[VidlangModel]:
    _ensure_builtin_models()
    return MODELS.get(name)


def _ensure_builtin_models() -> None:
    """The models shipped with vidlang register themselves on import."""
    import vidlang.models.cosmo.model  # noqa: F401
    import vidlang.models.dual  # noqa: F401
