"""Dual encoder: tiny real BERT loaded by path, VideoCLIP-style video tower, policies, cache, Embedder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from vidlang.config import from_dict
from vidlang.errors import ConfigError
from vidlang.models.dual import DualEncoder, trainable_parameter_names
from vidlang.models.embed import Embedder
from vidlang.train.config import TrainConfig


def build(text_dir, text_policy="all", video_policy="all", head="linear", layers=2, text_layers=0):
    cfg = from_dict(TrainConfig, {
        "model": {"embed_dim": 24, "head": head,
                  "text": {"model_path": str(text_dir), "max_length": 16, "trainable": text_policy,
                           "trainable_layers": text_layers},
                  "video": {"input_dim": 12, "width": 32, "layers": layers, "heads": 2, "max_len": 10,
                            "trainable": video_policy}},
        "data": {"max_clip_len": 10},
    })
    torch.manual_seed(0)
    return DualEncoder.build(cfg)


def test_text_model_loads_from_local_path_and_pools(tiny_text_model_dir):
    model = build(tiny_text_model_dir).eval()
    ids, att = model.text.tokenize(["boil the water", "a much longer sentence about slicing onions finely"])
    assert ids.shape == att.shape and att[0].sum() < att[1].sum()
    pooled, tokens = model.encode_text(ids, att)
    assert pooled.shape == (2, 24) and tokens.shape == (2, ids.shape[1], 24)
    # Masked mean: the pooled text of the short sentence ignores its padding.
    alone_ids, alone_att = model.text.tokenize(["boil the water"])
    alone, _ = model.encode_text(alone_ids, alone_att)
    assert_close(pooled[0], alone[0], atol=1e-5, rtol=1e-5)


def test_missing_text_model_folder_is_a_config_error(tmp_path, tiny_text_model_dir):
    with pytest.raises(ConfigError, match="text.model_path"):
        build(tmp_path / "nope")


def test_video_pooling_is_padding_invariant(tiny_text_model_dir):
    model = build(tiny_text_model_dir).eval()
    g = torch.Generator().manual_seed(1)
    short = torch.randn(1, 3, 12, generator=g)
    long = torch.randn(1, 7, 12, generator=g)
    alone, tok_alone = model.encode_video(short, torch.ones(1, 3, dtype=torch.bool))
    feats = torch.zeros(2, 7, 12)
    feats[0, :3] = short[0]
    feats[0, 3:] = 99.0  # garbage in the padding must not matter
    feats[1] = long[0]
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, :3] = True
    mask[1] = True
    pooled, tokens = model.encode_video(feats, mask)
    assert pooled.shape == (2, 24) and tokens.shape == (2, 7, 24)
    assert_close(pooled[0], alone[0], atol=1e-5, rtol=1e-5)
    assert_close(tokens[0, :3], tok_alone[0], atol=1e-5, rtol=1e-5)
    # ...and the content does matter.
    assert (pooled[0] - pooled[1]).abs().max() > 1e-3


def test_trainable_policies(tiny_text_model_dir):
    full = build(tiny_text_model_dir, "all")
    names = trainable_parameter_names(full)
    text_all = {n for n, _ in full.named_parameters() if n.startswith("text.") and ".pooler." not in n}
    assert not any(".pooler." in n for n in names)  # unused by mean pooling: frozen
    assert text_all <= names and "log_logit_scale" in names

    ln = build(tiny_text_model_dir, "layernorm_only", "layernorm_only")
    names = trainable_parameter_names(ln)
    text_tr = {n for n in names if n.startswith("text.")}
    assert text_tr and all("LayerNorm" in n for n in text_tr)
    assert text_tr == {n for n in text_all if "LayerNorm" in n}
    video_tr = {n for n in names if n.startswith("video.")}
    video_ln = {f"video.{m}.{p}" for m, mod in ln.video.named_modules() if isinstance(mod, torch.nn.LayerNorm)
                for p, _ in mod.named_parameters()}
    assert video_tr == video_ln and "video.proj.2.weight" in video_ln
    assert "video.proj.0.weight" not in names and "video_head.weight" in names and "text_head.weight" in names

    frozen = build(tiny_text_model_dir, "frozen")
    names = trainable_parameter_names(frozen)
    assert not any(n.startswith("text.") for n in names)
    assert {"text_head.weight", "video_head.weight", "log_logit_scale"} <= names


def test_top_policy_trains_the_last_blocks_only(tiny_text_model_dir):
    everything = {n for n, _ in build(tiny_text_model_dir, "all").named_parameters() if n.startswith("text.")}
    top1 = {n for n in trainable_parameter_names(build(tiny_text_model_dir, "top", text_layers=1))
            if n.startswith("text.")}
    # the tiny BERT has 2 blocks and nothing but the (unused) pooler after them
    assert top1 == {n for n in everything if n.startswith("text.backbone.encoder.layer.1.")} and top1
    top2 = {n for n in trainable_parameter_names(build(tiny_text_model_dir, "top", text_layers=2))
            if n.startswith("text.")}
    assert top2 == {n for n in everything if ".encoder.layer." in n}
    with pytest.raises(ConfigError, match="trainable_layers=3: the text model has 2 blocks"):
        build(tiny_text_model_dir, "top", text_layers=3)
    with pytest.raises(ConfigError, match="trainable=top needs trainable_layers >= 1"):
        build(tiny_text_model_dir, "top")
    with pytest.raises(ConfigError, match="only used with trainable=top"):
        build(tiny_text_model_dir, "frozen", text_layers=2)


def test_top_policy_fixes_the_lower_part_and_never_caches(tiny_text_model_dir):
    model = build(tiny_text_model_dir, "top", text_layers=1).train()
    ids, att = model.text.tokenize(["add salt", "stir the sauce slowly"])
    runs = [model.text.backbone(input_ids=ids, attention_mask=att, output_hidden_states=True).hidden_states
            for _ in range(2)]
    # below the trained block the tower is deterministic in train mode; the trained block keeps its dropout
    assert_close(runs[0][1], runs[1][1])
    assert (runs[0][2] - runs[1][2]).abs().max() > 1e-4
    pooled, _ = model.encode_text(ids, att)
    pooled.pow(2).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if n.startswith("text.")}
    assert all(g is None for n, g in grads.items() if ".layer.0." in n or ".embeddings." in n)
    assert grads["text.backbone.encoder.layer.1.output.dense.weight"].abs().sum() > 0
    # the token-state cache is for a fixed tower only: a trained one must recompute every step
    assert model.text.warm_cache(["add salt"]) == 0
    assert model.text.cache_hits == model.text.cache_misses == 0 and not model.text._cache
    model.eval()
    assert_close(model.encode_text(ids, att)[0], model.encode_text(ids, att)[0])


def test_frozen_text_cache_matches_uncached(tiny_text_model_dir):
    model = build(tiny_text_model_dir, "frozen").train()  # train mode: the frozen tower must still be eval
    ids, att = model.text.tokenize(["add salt", "stir the sauce slowly", "add salt"])
    cached1, _ = model.encode_text(ids, att)
    cached2, _ = model.encode_text(ids, att)
    assert model.text.cache_hits >= 4 and model.text.cache_misses == 2  # "add salt" twice in batch 1
    model.text.cfg.cache_size = 0
    plain, _ = model.encode_text(ids, att)
    assert_close(cached1, plain, atol=1e-5, rtol=1e-5)
    assert_close(cached2, plain, atol=1e-5, rtol=1e-5)


def test_logit_scale_init_and_clamp(tiny_text_model_dir):
    model = build(tiny_text_model_dir)
    assert_close(model.logit_scale().exp(), torch.tensor(1 / 0.07), atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        model.log_logit_scale.fill_(10.0)
    assert_close(model.logit_scale().exp(), torch.tensor(100.0), atol=1e-3, rtol=1e-5)


def test_embedder_outputs(tiny_text_model_dir):
    model = build(tiny_text_model_dir, head="mlp")
    emb = Embedder(model, clip_len=4, batch_size=2)
    t = emb.embed_texts(["a", "b c", "d e f"])
    assert t.shape == (3, 24)
    assert_close(t.norm(dim=-1), torch.ones(3))
    feats = np.random.default_rng(0).normal(size=(25, 12)).astype(np.float32)
    w = emb.embed_windows(feats, [(0.0, 3.0), (2.5, 7.2), (0.0, 25.0)], fps=1.0)
    assert w.shape == (3, 24)
    assert_close(w.norm(dim=-1), torch.ones(3))
    # A window is encoded as its own clip: equal to encoding exactly those seconds alone.
    with torch.no_grad():
        alone, _ = model.encode_video(torch.from_numpy(feats[2:8])[None], torch.ones(1, 6, dtype=torch.bool))
    assert_close(w[1], torch.nn.functional.normalize(alone[0], dim=-1), atol=1e-5, rtol=1e-5)
    s = emb.embed_seconds(feats, fps=1.0)
    assert s.shape == (25, 24)
    assert_close(s.norm(dim=-1), torch.ones(25))
    tok, mask = emb.video_tokens(feats, [(0.0, 3.0), (5.0, 20.0)], fps=1.0)
    assert tok.shape[0] == 2 and mask.sum(1).tolist() == [3, 10]  # cropped to max_len steps
    ttok, tmask = emb.text_tokens(["add salt", "boil"])
    assert ttok.shape[:2] == tmask.shape


@pytest.fixture
def fresh_shared_caches():
    from vidlang.models import text

    text._SHARED_CACHES.clear()
    yield
    text._SHARED_CACHES.clear()


def test_warm_cache_precomputes_every_line_once(tiny_text_model_dir, fresh_shared_caches):
    model = build(tiny_text_model_dir, "frozen").train()
    lines = ["stir the sauce slowly", "add salt", "add salt", "now move the red square to the left please"]
    assert model.text.warm_cache(lines, batch_size=2) == 3  # distinct lines, computed once each
    ids, att = model.text.tokenize(["add salt", "now move the red square to the left please"])
    warm, _ = model.encode_text(ids, att)
    assert model.text.cache_misses == 0 and model.text.cache_hits == 2  # training batches only hit
    model.text.cfg.cache_size = 0
    plain, _ = model.encode_text(ids, att)
    assert_close(warm, plain, atol=1e-5, rtol=1e-5)  # length-sorted batching does not change the states
    assert build(tiny_text_model_dir, "all").text.warm_cache(lines) == 0  # only a frozen tower is cached


def test_frozen_towers_with_equal_weights_share_a_warm_cache(tiny_text_model_dir, fresh_shared_caches):
    a = build(tiny_text_model_dir, "frozen")
    b = build(tiny_text_model_dir, "frozen")
    assert a.text.warm_cache(["add salt", "stir"]) == 2
    assert b.text.warm_cache(["add salt", "stir"]) == 0  # same weights: already computed
    with torch.no_grad():
        b.text.backbone.embeddings.word_embeddings.weight.add_(1.0)
    assert b.text.warm_cache(["add salt", "stir"]) == 2  # other weights: its own cache, never stale states
