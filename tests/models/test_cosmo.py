"""CosmoModel on tiny random causal LMs of three families (Llama, GPT-2, OPT), built from configs."""

from __future__ import annotations

import pytest
import torch

from tests.models.tiny_lms import FAMILIES, build_lm, one_thread  # noqa: F401  (autouse fixture)
from vidlang.errors import ConfigError, VidlangError
from vidlang.models.cosmo import CosmoConfig, CosmoModel
from vidlang.models.cosmo.layers import attend_all, attend_immediate

F = 6  # feature width of the fake per-second features


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_lms")
    return {fam: build_lm(fam, root / fam) for fam in FAMILIES}


def small_cfg(lm_dir, **over) -> CosmoConfig:
    base = dict(lm_path=str(lm_dir), unimodal_depth=2, cross_attn_interval=1, compress_ratio=2, xattn_heads=2,
                xattn_dim_head=8, feature_dim=F, visual_dim=12, resampler_depth=2, resampler_latents=3,
                resampler_heads=2, resampler_dim_head=8, contrastive_dim=10)
    return CosmoConfig(**{**base, **over})


def make_model(lm_dir, seed: int = 0, gates: float | None = None, **over) -> CosmoModel:
    torch.manual_seed(seed)
    model = CosmoModel(small_cfg(lm_dir, **over))
    if gates is not None:
        for block in model.xattn.values():
            torch.nn.init.constant_(block.attn_gate, gates)
            torch.nn.init.constant_(block.ff_gate, gates)
    return model


DOCS = ["cut the <visual>onion into small pieces<|endofchunk|><visual>fry them in a pan<|endofchunk|>",
        "<visual>add salt and pepper<|endofchunk|><visual>serve the soup<|endofchunk|>"]


def batch(model, docs=DOCS, clips: int = 2, seconds: int = 4, pad_to: int | None = None, seed: int = 1):
    tok = model.tokenizer
    rows = [model.prefix_ids + tok(d, add_special_tokens=False)["input_ids"] for d in docs]
    t = pad_to or max(len(r) for r in rows)
    ids = torch.full((len(rows), t), model.pad_token_id)
    mask = torch.zeros(len(rows), t, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    g = torch.Generator().manual_seed(seed)
    media = torch.randn(len(rows), clips, seconds, F, generator=g)
    media_mask = torch.ones(len(rows), clips, seconds, dtype=torch.bool)
    media_mask[0, 1, 3:] = False  # a shorter second clip
    return ids, mask, media, media_mask


def non_special(model, logits):
    keep = torch.ones(model.vocab_size, dtype=torch.bool)
    keep[model.special_ids] = False
    return logits[..., keep[: logits.shape[-1]]]


@pytest.mark.parametrize("family", FAMILIES)
def test_gates_at_zero_give_the_text_only_lm(lm_dirs, family):
    model = make_model(lm_dirs[family])
    ids, mask, media, mm = batch(model)
    out = model(ids, mask, media, mm)
    real = mask.bool()
    torch.testing.assert_close(out["logits"][real], model.text_only_logits(ids, mask)[real], rtol=0, atol=1e-5)
    # and on plain text the stock transformers model itself (special-token columns aside)
    tok = model.tokenizer
    enc = tok(["cut the onion into small pieces", "fry"], return_tensors="pt", padding=True)
    stock = model.lm(**enc).logits
    mine = model.text_only_logits(enc["input_ids"], enc["attention_mask"])[..., : stock.shape[-1]]
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(non_special(model, mine)[real], non_special(model, stock)[real], rtol=0, atol=1e-5)
    # open gates change the logits (the comparison above can fail)
    opened = make_model(lm_dirs[family], gates=0.5)
    assert (opened(ids, mask, media, mm)["logits"] - out["logits"]).abs().max() > 1e-3


def test_output_keys_and_shapes(lm_dirs):
    model = make_model(lm_dirs["llama"])
    ids, mask, media, mm = batch(model)
    out = model(ids, mask, media, mm)
    assert out["logits"].shape == (*ids.shape, model.vocab_size)
    assert out["pooled_text"].shape == out["pooled_video"].shape == (2, 10)
    assert out["logit_scale"].shape == ()
    torch.testing.assert_close(out["logit_scale"].exp(), torch.tensor(5.0))
    torch.testing.assert_close(model.embed_media(media, mm), torch.nn.functional.normalize(out["pooled_video"], dim=-1))
    clip = make_model(lm_dirs["llama"], contrastive_unit="clip")
    out = clip(ids, mask, media, mm)
    assert out["pooled_text"].shape == out["pooled_video"].shape == (4, 10)
    torch.testing.assert_close(clip.embed_media(media, mm), torch.nn.functional.normalize(out["pooled_video"], dim=-1))
    # a document's embedding averages its real clips only: an absent clip slot changes nothing
    padded_media = torch.cat([media, torch.randn(2, 1, 4, F)], dim=1)
    padded_mask = torch.cat([mm, torch.zeros(2, 1, 4, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model.embed_media(padded_media, padded_mask), model.embed_media(media, mm))


def test_lm_targets_skip_visual_and_padding(lm_dirs):
    model = make_model(lm_dirs["gpt2"])
    ids, mask, _, _ = batch(model)
    tgt = model.lm_targets(ids, mask)
    for i in range(ids.shape[0]):
        n = int(mask[i].sum())
        for t in range(ids.shape[1]):
            expect = int(ids[i, t + 1]) if t + 1 < n and int(ids[i, t + 1]) != model.visual_token_id else -100
            assert int(tgt[i, t]) == expect
    assert (tgt == model.eoc_token_id).sum() == 4  # <|endofchunk|> is predicted


@pytest.mark.parametrize("family, special", [("llama", False), ("opt", True)])
def test_trainable_parts_get_gradients_and_only_they(lm_dirs, family, special):
    model = make_model(lm_dirs[family], gates=0.3, train_special_tokens=special)
    ids, mask, media, mm = batch(model)
    out = model(ids, mask, media, mm)
    tgt = out["lm_targets"]
    loss = torch.nn.functional.cross_entropy(out["logits"].flatten(0, 1), tgt.flatten(), ignore_index=-100)
    loss = loss + out["pooled_text"].square().mean() + out["pooled_video"].square().mean() + out["logit_scale"]
    loss.backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = model.trainable_parameter_names()
    assert not any(n.startswith("lm.") for n in trainable)
    assert got == trainable
    assert {"special_head", "log_logit_scale"} <= trainable and ("special_embed" in trainable) == special
    assert any(n.startswith("xattn.") for n in trainable) and any(n.startswith("resampler.") for n in trainable)


def test_lm_trainable_option(lm_dirs):
    model = make_model(lm_dirs["llama"], gates=0.3, lm_trainable=True)
    ids, mask, media, mm = batch(model)
    out = model(ids, mask, media, mm)
    torch.nn.functional.cross_entropy(out["logits"].flatten(0, 1), out["lm_targets"].flatten()).backward()
    lm_grads = [n for n, p in model.lm.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert lm_grads and model.lm.training


def test_each_token_sees_only_its_most_recent_clip(lm_dirs):
    model = make_model(lm_dirs["llama"], gates=0.8)
    model.eval()
    ids, mask, media, mm = batch(model)
    text_time = (ids == model.visual_token_id).long().cumsum(-1)
    assert int(text_time[0, 0]) == 0  # row 0 starts with text before its first <visual>
    real = mask.bool()
    _, tokens = model.encode_media(media, mm)
    block = model.xattn["2"]
    x = torch.randn(*ids.shape, model.lm.config.hidden_size)
    base = block(x, block.media_kv(tokens), text_time, real) - x
    for clip in range(2):
        changed = tokens.clone()
        changed[:, clip] += 1.0
        diff = (block(x, block.media_kv(changed), text_time, real) - x - base).abs().amax(-1).detach()
        assert bool((diff[(text_time == clip + 1) & real] > 1e-4).all())
        assert float(diff[(text_time != clip + 1) & real].max()) == 0.0
    # Through the whole model: a clip cannot reach tokens before its own <visual> (later chunks do see it
    # indirectly, through self-attention to the earlier chunk's tokens, as in the release).
    out = model(ids, mask, media, mm)["logits"]
    changed = media.clone()
    changed[:, 1] += 3.0
    diff = (model(ids, mask, changed, mm)["logits"] - out).abs().amax(-1).detach()
    assert float(diff[(text_time < 2) & real].max()) == 0.0
    assert bool((diff[(text_time == 2) & real] > 1e-4).all())


def test_attend_all_media_option(lm_dirs):
    model = make_model(lm_dirs["llama"], gates=0.8, only_attend_immediate_media=False)
    ids, mask, media, mm = batch(model)
    vis = (ids == model.visual_token_id).long().cumsum(-1)
    base = model(ids, mask, media, mm)["logits"]
    changed = media.clone()
    changed[:, 0] += 3.0
    diff = (model(ids, mask, changed, mm)["logits"] - base).abs().amax(-1).detach()
    assert bool((diff[(vis >= 1) & mask.bool()] > 1e-4).all())
    assert float(diff[vis == 0].max()) == 0.0  # text before the first <visual> sees no clip


def test_packed_immediate_attention_equals_masked_attention():
    g = torch.Generator().manual_seed(0)
    b, t, h, e, m, n = 3, 11, 2, 4, 3, 5
    q = torch.randn(b, t, h, e, generator=g, requires_grad=True)
    k = torch.randn(b, m, h, n, e, generator=g, requires_grad=True)
    v = torch.randn(b, m, h, n, e, generator=g, requires_grad=True)
    text_time = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3], [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2],
                              [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    sees = (text_time > 0) & torch.tensor([True] * 9 + [False] * 2)
    fast = attend_immediate(q, k, v, text_time, sees)
    naive = attend_all(q, k, v, text_time, sees, immediate=True)
    torch.testing.assert_close(fast, naive)
    gf = torch.autograd.grad(fast.square().sum(), (q, k, v))
    gn = torch.autograd.grad(naive.square().sum(), (q, k, v))
    for a, c in zip(gf, gn):
        torch.testing.assert_close(a, c)
    assert float(fast.detach()[~sees].abs().max()) == 0.0


@pytest.mark.parametrize("unit", ["document", "clip"])
def test_pooling_is_invariant_to_padding_length(lm_dirs, unit):
    model = make_model(lm_dirs["opt"], contrastive_unit=unit)
    model.eval()
    ids, mask, media, mm = batch(model)
    ids2, mask2, _, _ = batch(model, pad_to=ids.shape[1] + 7)
    a = model(ids, mask, media, mm)["pooled_text"]
    b = model(ids2, mask2, media, mm)["pooled_text"]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(model.embed_text(ids2, mask2, clips=2),
                               torch.nn.functional.normalize(a, dim=-1), rtol=0, atol=1e-5)


def test_unimodal_state_is_read_after_unimodal_depth_layers(lm_dirs):
    model = make_model(lm_dirs["llama"], unimodal_depth=3)
    ids, mask, media, mm = batch(model)
    from vidlang.models.cosmo import MediaContext

    ctx = MediaContext(media=None, stop_after_unimodal=True)
    model.run_lm(ids, mask, ctx)
    states = model.lm.base_model(inputs_embeds=model.embed_tokens(ids), attention_mask=mask,
                                 output_hidden_states=True).hidden_states
    real = mask.bool()
    torch.testing.assert_close(ctx.unimodal[real], states[3][real])  # hidden_states[0]: the embeddings


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_with_and_without_cache_agree(lm_dirs, family):
    model = make_model(lm_dirs[family], gates=0.5)
    model.eval()
    ids, mask, media, mm = batch(model)
    greedy = model.generate(ids, mask, media, mm, max_new_tokens=6)
    assert greedy == model.generate(ids, mask, media, mm, max_new_tokens=6, use_cache=False)
    assert all(len(s) == 6 for s in greedy)
    beams = model.generate(ids, mask, media, mm, max_new_tokens=6, num_beams=3)
    assert beams == model.generate(ids, mask, media, mm, max_new_tokens=6, num_beams=3, use_cache=False)
    # a row generated alone gives the same tokens as in the (differently padded) batch
    alone = model.generate(ids[1:, : int(mask[1].sum())], mask[1:, : int(mask[1].sum())], media[1:], mm[1:],
                           max_new_tokens=6)
    assert alone[0] == greedy[1]


def test_greedy_continuation_maximises_each_step(lm_dirs):
    model = make_model(lm_dirs["gpt2"], gates=0.5)
    model.eval()
    ids, mask, media, mm = batch(model, docs=DOCS[1:])
    out = model.generate(ids, mask, media, mm, max_new_tokens=4)[0]
    seq = torch.cat([ids, torch.tensor([out])], dim=1)
    logits = model(seq, torch.ones_like(seq), media, mm)["logits"]
    logits[..., model.visual_token_id] = float("-inf")
    assert logits[0, ids.shape[1] - 1 : -1].argmax(-1).tolist() == out


def test_log_likelihood_matches_forward(lm_dirs):
    model = make_model(lm_dirs["llama"], gates=0.5)
    model.eval()
    ids, mask, media, mm = batch(model)
    target = torch.zeros_like(mask)
    target[:, 3:7] = 1
    ll = model.log_likelihood(ids, mask, media, mm, target)
    logp = torch.log_softmax(model(ids, mask, media, mm)["logits"], -1)
    manual = torch.stack([sum(logp[i, t - 1, ids[i, t]] for t in range(3, 7)) for i in range(2)])
    torch.testing.assert_close(ll["sum"], manual)
    assert ll["tokens"].tolist() == [4, 4]
    text_only = model.log_likelihood(ids, mask, None, None, target)["sum"]
    assert (text_only - ll["sum"]).abs().max() > 1e-4


@pytest.mark.parametrize("lm_trainable", [False, True])
def test_save_load_round_trip_through_the_generic_checkpoint(lm_dirs, tmp_path, lm_trainable):
    """save_checkpoint / load_model (vidlang.models.checkpoint) rebuild the model exactly; a frozen LM is left out of
    the weights file, named by path and sha256, and another LM is refused."""
    from safetensors.torch import load_file

    from vidlang.config import from_dict
    from vidlang.models.checkpoint import load_model, save_checkpoint
    from vidlang.train.config import TrainConfig

    model = make_model(lm_dirs["llama"], gates=0.4, lm_trainable=lm_trainable)
    if lm_trainable:  # a trained LM differs from the folder's: its weights must come from the checkpoint
        with torch.no_grad():
            model.lm.get_input_embeddings().weight.mul_(1.5)
    model.eval()
    ids, mask, media, mm = batch(model)
    cfg = from_dict(TrainConfig, {"model": {**vars(model.cfg)}, "loss": {"objective": "cosmo"}})
    save_checkpoint(tmp_path / "ckpt", model, cfg, {"step": 0})
    saved = load_file(str(tmp_path / "ckpt/model.safetensors"))
    assert any(k.startswith("lm.") for k in saved) == lm_trainable
    loaded, cfg2 = load_model(tmp_path / "ckpt")
    assert isinstance(loaded, CosmoModel) and cfg2.model == cfg.model
    a, b = model(ids, mask, media, mm), loaded(ids, mask, media, mm)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    if not lm_trainable:  # a checkpoint names its frozen LM: another LM is refused
        other = build_lm("llama", tmp_path / "other_lm", seed=1)
        text = (tmp_path / "ckpt/config.yaml").read_text().replace(str(lm_dirs["llama"]), str(other))
        (tmp_path / "ckpt/config.yaml").write_text(text)
        with pytest.raises(VidlangError, match="lm at .* is not the one these weights were trained with") as e:
            load_model(tmp_path / "ckpt")
        assert "\n" not in str(e.value)


def test_truncation_keeps_the_first_layers(lm_dirs):
    model = make_model(lm_dirs["llama"], lm_layers=3)
    assert model.lm.config.num_hidden_layers == 3 and model.xattn_layers == [2]
    ids, mask, _, _ = batch(model)
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(str(lm_dirs["llama"]))
    full.eval()
    states = full.model(input_ids=torch.where(ids >= 400, 0, ids), attention_mask=mask,
                        output_hidden_states=True).hidden_states
    assert len(states) == 5  # embeddings + 4 layers: the folder itself is untouched
    # first 1 + last 2 layers: the stock model with those blocks, and generation with the cache still works
    skip = make_model(lm_dirs["llama"], lm_layers=1, lm_last_layers=2, unimodal_depth=1)
    full.model.layers = torch.nn.ModuleList([full.model.layers[i] for i in (0, 2, 3)])
    full.config.num_hidden_layers = 3
    plain = torch.where(ids >= 400, 0, ids)
    expect = full(input_ids=plain, attention_mask=mask, use_cache=False).logits
    got = skip.text_only_logits(plain, mask)[..., :400]
    real = mask.bool()
    torch.testing.assert_close(non_special(skip, got)[real], expect[real], rtol=0, atol=1e-5)
    _, _, media, mm = batch(skip)
    assert skip.generate(ids, mask, media, mm, max_new_tokens=4) == \
        skip.generate(ids, mask, media, mm, max_new_tokens=4, use_cache=False)


def test_input_errors_are_one_line(lm_dirs, tiny_text_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="not a causal language model") as e:
        CosmoModel(small_cfg(tiny_text_model_dir))
    assert "\n" not in str(e.value) and "BertModel" in str(e.value)
    with pytest.raises(ConfigError, match="unimodal_depth=4 must be smaller than the number of LM layers") as e:
        CosmoModel(small_cfg(lm_dirs["gpt2"], unimodal_depth=4))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no config.json"):
        CosmoModel(small_cfg(tmp_path / "missing"))
    from vidlang.config import from_dict

    with pytest.raises(ConfigError, match="unimodal_depth 3 must be < the 3 kept LM layers"):
        from_dict(CosmoConfig, {"lm_layers": 3, "unimodal_depth": 3})


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_greedy_with_closed_gates_is_the_stock_lms_greedy(lm_dirs, family):
    """Our generation loop (cache, positions, left padding) against transformers' own `generate`."""
    model = make_model(lm_dirs[family])
    model.eval()
    tok = model.tokenizer
    tok.padding_side = "left"
    enc = tok(["cut the onion into", "fry"], return_tensors="pt", padding=True)
    media = torch.zeros(2, 1, 2, F)
    ours = model.generate(enc["input_ids"], enc["attention_mask"], media, torch.ones(2, 1, 2, dtype=torch.bool),
                          max_new_tokens=8)
    theirs = model.lm.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=model.pad_token_id)
    for i, row in enumerate(theirs[:, enc["input_ids"].shape[1]:].tolist()):
        stop = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
        assert ours[i][:stop] == row[:stop] and stop >= 2


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_output_logits_are_the_lm_head_plus_special_rows(lm_dirs, family):
    model = make_model(lm_dirs[family])
    hidden = torch.randn(2, 40, model.lm.config.hidden_size)  # 80 rows: the extended-weight path
    reference = model.lm.get_output_embeddings()(hidden)
    reference = torch.cat([reference, reference.new_zeros(2, 40, model.vocab_size - reference.shape[-1])], -1)
    reference[..., model.special_ids] = hidden @ model.special_head.T
    many = model.output_logits(hidden)
    few = torch.cat([model.output_logits(hidden[:, i : i + 1]) for i in range(40)], dim=1)  # column path
    torch.testing.assert_close(many, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(few, reference, rtol=1e-5, atol=1e-5)


def test_clip_level_captioning_and_scoring(lm_dirs):
    from vidlang.models.cosmo.generate import caption_clips, score_texts

    model = make_model(lm_dirs["gpt2"], gates=0.5)
    model.eval()
    g = torch.Generator().manual_seed(3)
    clips = [torch.randn(4, F, generator=g), torch.randn(2, F, generator=g)]
    caps = caption_clips(model, clips, max_new_tokens=5)
    prompt = torch.tensor([model.prefix_ids + [model.visual_token_id]])
    zero_shot = model.generate(prompt, torch.ones_like(prompt), clips[0][None, None],
                               torch.ones(1, 1, 4, dtype=torch.bool), max_new_tokens=5)
    assert caps[0] == model.tokenizer.decode(zero_shot[0], skip_special_tokens=True).strip()
    two_shot = caption_clips(model, clips, max_new_tokens=5, examples=[(clips[1], "fry the onions")] * 2)
    assert len(two_shot) == 2 and all(isinstance(c, str) for c in two_shot)
    texts = ["cut the onion", "serve the soup hot"]
    scores = score_texts(model, clips, texts)
    for clip, text, score in zip(clips, texts, scores):  # against log_likelihood on a hand-built document
        ids = model.tokenizer("<visual>" + text + "<|endofchunk|>", add_special_tokens=False,
                              return_tensors="pt")["input_ids"]
        target = torch.ones_like(ids)
        target[0, 0] = 0
        ll = model.log_likelihood(ids, torch.ones_like(ids), clip[None, None],
                                  torch.ones(1, 1, clip.shape[0], dtype=torch.bool), target)
        torch.testing.assert_close(score, ll["sum"][0] / ll["tokens"][0])
    assert (score_texts(model, clips, texts, text_only=True) - scores).abs().max() > 1e-4


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_beam_search_with_closed_gates_is_the_stock_lms(lm_dirs, family):
    """Beam search against transformers' (same heuristic stop, length penalty); the stop token is one the
    model emits often, so hypotheses finish at different lengths. (Not OPT: there our special-token logits
    replace two columns of its vocabulary, which changes the log-softmax normalisation beams compare.)"""
    from collections import Counter

    model = make_model(lm_dirs[family])
    model.eval()
    tok = model.tokenizer
    tok.padding_side = "left"
    enc = tok(["cut the onion into", "fry", "a person is", "add salt and"], return_tensors="pt", padding=True)
    media, mm = torch.zeros(4, 1, 2, F), torch.ones(4, 1, 2, dtype=torch.bool)
    greedy = model.generate(enc["input_ids"], enc["attention_mask"], media, mm, max_new_tokens=10, eos_token_id=-1)
    stops = [t for t, _ in Counter(t for g in greedy for t in g).most_common(2)]
    finished_early = 0
    for eos in stops:
        for beams, penalty in ((2, 1.0), (3, 1.0), (4, 0.5), (3, 2.0)):
            ours = model.generate(enc["input_ids"], enc["attention_mask"], media, mm, max_new_tokens=10,
                                  num_beams=beams, eos_token_id=eos, length_penalty=penalty)
            theirs = model.lm.generate(**enc, max_new_tokens=10, do_sample=False, num_beams=beams,
                                       pad_token_id=model.pad_token_id, eos_token_id=eos, length_penalty=penalty)
            theirs = [row[: row.index(eos)] if eos in row else row
                      for row in theirs[:, enc["input_ids"].shape[1]:].tolist()]
            assert ours == theirs
            finished_early += sum(len(s) < 10 for s in ours)
    assert finished_early > 0
