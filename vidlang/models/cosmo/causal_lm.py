"""Loading a transformers causal LM from a local folder, finding its decoder layers, truncating it.

Works on any decoder-only model whose base model runs a `nn.ModuleList` of `config.num_hidden_layers` blocks
with the hidden states as first argument (Llama, Mistral, GPT-2, OPT, GPT-NeoX, ... in transformers 5). Input
errors (no folder, not a causal LM, too few layers) raise ConfigError with one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vidlang.data.interleaved import END_OF_CHUNK, VISUAL
from vidlang.errors import ConfigError
from vidlang.models.cosmo.config import default_lm_dir

SPECIAL_TOKENS = (VISUAL, END_OF_CHUNK)


def resolve_lm_path(lm_path: str) -> Path:
    p = Path(lm_path).expanduser() if lm_path else default_lm_dir()
    if not (p / "config.json").is_file():
        hint = " (run `make lm` to fetch and convert SmolLM2-135M-Instruct)" if not lm_path else ""
        raise ConfigError(f"model.lm_path: {p} is not a local transformers model folder (no config.json){hint}")
    return p


def check_causal_lm(path: Path):
    """The folder's config if it describes a decoder-only causal LM, else ConfigError naming what it is."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"model.lm_path: {path}: cannot read config.json ({str(e).splitlines()[0]})") from None
    causal_classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    archs = list(getattr(config, "architectures", None) or [])
    if getattr(config, "is_encoder_decoder", False):
        ok = False
    elif archs:
        ok = any(a in causal_classes for a in archs)
    else:
        ok = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if not ok:
        what = f"architectures {archs}" if archs else f"model_type {config.model_type!r}"
        raise ConfigError(f"model.lm_path: {path} is not a causal language model ({what}); COSMO needs a "
                          "decoder-only LM such as Llama, GPT-2 or OPT")
    return config


def decoder_layers(lm: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """(parent module, attribute name, the ModuleList of decoder blocks) of a causal LM."""
    n = int(lm.config.num_hidden_layers)
    for name, module in lm.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and name:
            parent_name, _, attr = name.rpartition(".")
            return lm.get_submodule(parent_name) if parent_name else lm, attr, module
    raise ConfigError(f"cannot find the decoder layers of {type(lm).__name__}: no ModuleList of "
                      f"num_hidden_layers={n} blocks")


def truncate_layers(lm: nn.Module, keep: int, keep_last: int = 0) -> list[int]:
    """Keep the first `keep` decoder blocks and the last `keep_last` (and the config fields that count them).

    Returns the kept blocks' original indices. Blocks keep their weights; their `layer_idx` (the KV-cache slot)
    is renumbered to their new position.
    """
    parent, attr, layers = decoder_layers(lm)
    n = len(layers)
    kept = sorted(set(range(min(keep, n))) | set(range(max(0, n - keep_last), n)))
    if len(kept) == n:
        return kept
    setattr(parent, attr, nn.ModuleList([layers[i] for i in kept]))
    for new, block in enumerate(getattr(parent, attr)):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new
    lm.config.num_hidden_layers = len(kept)
    if isinstance(getattr(lm.config, "layer_types", None), list):
        lm.config.layer_types = [lm.config.layer_types[i] for i in kept]
    return kept


def load_causal_lm(lm_path: str, keep_layers: int = 0, keep_last: int = 0, dtype: torch.dtype = torch.float32):
    """-> (model, tokenizer, folder). The tokenizer gains <visual> and <|endofchunk|> as special tokens (and
    the end-of-text token as padding when it has no padding token)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    path = resolve_lm_path(lm_path)
    check_causal_lm(path)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a local load takes ~1 s; its per-file bars would fill every log
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.lm_path: cannot load a causal LM from {path}: {str(e).splitlines()[0]}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    decoder_layers(lm)
    if keep_layers:
        truncate_layers(lm, keep_layers, keep_last)
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # GPT-2 has none; padding is masked out everywhere, any id does
    return lm, tok, path
