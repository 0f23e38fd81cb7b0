"""Tiny random causal LMs of three families (Llama, GPT-2, OPT), saved as local transformers folders.

Each folder holds a byte-level BPE tokenizer trained in a fraction of a second on a few sentences (the
`tokenizers` library, offline) and a 4-layer model built from a config with a fixed seed. OPT's vocabulary is
made larger than its tokenizer (as the released OPT checkpoints are), so the special tokens land inside the LM's
vocabulary there and after it for the other two families.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = [
    "cut the onion into small pieces and put them in a bowl",
    "fry the onions in a pan with some oil until they are golden",
    "move the red square to the left then grow the blue circle",
    "the green triangle spins in place while the yellow star stays still",
    "add salt and pepper, stir well and serve the soup hot",
    "a person is cooking pasta in the kitchen and talking about it",
]
FAMILIES = ("llama", "gpt2", "opt")


def train_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.save_pretrained(out)
    return fast


def build_lm(family: str, out: Path, layers: int = 4, seed: int = 0) -> Path:
    """Save a tiny random causal LM of `family` with its tokenizer into `out`; returns `out`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(out)
    n = len(tok)
    torch.manual_seed(seed)
    if family == "llama":
        cfg = LlamaConfig(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, tie_word_embeddings=True)
        model = LlamaForCausalLM(cfg)
    elif family == "gpt2":
        cfg = GPT2Config(vocab_size=n, n_embd=32, n_layer=layers, n_head=4, n_positions=256,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
        model = GPT2LMHeadModel(cfg)
    elif family == "opt":
        cfg = OPTConfig(vocab_size=n + 16, hidden_size=32, ffn_dim=64, num_hidden_layers=layers,
                        num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=256,
                        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                        pad_token_id=tok.eos_token_id)
        model = OPTForCausalLM(cfg)
    else:
        raise ValueError(family)
    model.save_pretrained(out)
    return out


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run on one thread: with several intra-op threads on a busy 2-core machine every small op
    waits for its worker threads to be scheduled (measured here: 6 greedy tokens of the tiny GPT-2 took 2 s
    with the default threads while other jobs ran, 0.02-0.07 s with one)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
