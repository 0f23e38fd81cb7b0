"""COSMO on the real SmolLM2-135M-Instruct (`make lm`): closed gates leave the pretrained LM exactly as it is.

Slow (loads 135M parameters); tests/models/test_cosmo.py covers the same behaviour on tiny LMs of three families.
"""

from __future__ import annotations

import pytest
import torch

from vidlang.models.cosmo import CosmoConfig, CosmoModel, default_lm_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    if not (default_lm_dir() / "config.json").is_file():
        pytest.skip(f"{default_lm_dir()} missing: run `make lm`")
    torch.manual_seed(0)
    m = CosmoModel(CosmoConfig(feature_dim=16, unimodal_depth=12, resampler_depth=2))
    m.eval()
    return m


def test_closed_gates_give_the_pretrained_lms_logits(model):
    tok = model.tokenizer
    assert model.lm.config.num_hidden_layers == 30 and model.lm.config.hidden_size == 576
    assert len(model.xattn_layers) == 9  # layers 12, 14, ..., 28
    docs = ["<visual>cut the onions into small pieces<|endofchunk|><visual>fry them in butter<|endofchunk|>",
            "Put the pan on the stove. <visual>add the eggs<|endofchunk|>"]
    enc = tok(docs, return_tensors="pt", padding=True, add_special_tokens=False)
    media = torch.randn(2, 2, 5, 16)
    mm = torch.ones(2, 2, 5, dtype=torch.bool)
    with torch.no_grad():
        out = model(enc["input_ids"], enc["attention_mask"], media, mm)["logits"]
        text_only = model.text_only_logits(enc["input_ids"], enc["attention_mask"])
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(out[real], text_only[real], rtol=0, atol=1e-5)
    plain = tok(["Cut the onions and fry them in butter until they are golden."], return_tensors="pt")
    with torch.no_grad():
        stock = model.lm(**plain).logits
        ours = model.text_only_logits(plain["input_ids"], plain["attention_mask"])
    torch.testing.assert_close(ours[..., : stock.shape[-1]], stock, rtol=0, atol=1e-5)
    for block in model.xattn.values():  # opened gates do change the output (the checks above can fail)
        torch.nn.init.constant_(block.attn_gate, 0.5)
    with torch.no_grad():
        opened = model(enc["input_ids"], enc["attention_mask"], media, mm)["logits"]
    for block in model.xattn.values():
        torch.nn.init.zeros_(block.attn_gate)
    assert (opened - out)[real].abs().max() > 1e-3


def test_greedy_generation_is_the_pretrained_lms(model):
    tok = model.tokenizer
    enc = tok(["Cut the onions and"], return_tensors="pt")
    media, mm = torch.zeros(1, 1, 2, 16), torch.ones(1, 1, 2, dtype=torch.bool)
    ours = model.generate(enc["input_ids"], enc["attention_mask"], media, mm, max_new_tokens=12)[0]
    theirs = model.lm.generate(**enc, max_new_tokens=12, do_sample=False)[0, enc["input_ids"].shape[1]:].tolist()
    assert ours == theirs
    assert tok.decode(ours).split()[0].strip(",.").isalpha()  # English words, not byte soup
