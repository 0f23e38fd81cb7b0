"""COSMO losses: next-token targets and loss against naive loops; the combined objective on a real batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidlang.config import from_dict
from vidlang.errors import ConfigError
from vidlang.losses.contrastive import infonce_loss
from tests.models.tiny_lms import one_thread  # noqa: F401  (autouse fixture)
from vidlang.losses.lm import IGNORE, CosmoLossConfig, cosmo_loss, next_token_loss, next_token_targets

VIS = 9


def test_targets_by_hand():
    ids = torch.tensor([[VIS, 4, 5, 6, VIS, 7, 0, 0],   # right padding
                        [0, 0, VIS, 3, 8, 2, VIS, 1]])  # left padding
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1, 1]])
    tgt = next_token_targets(ids, mask, never_predict=(VIS,))
    assert tgt.tolist() == [[4, 5, 6, IGNORE, 7, IGNORE, IGNORE, IGNORE],
                            [IGNORE, IGNORE, 3, 8, 2, IGNORE, 1, IGNORE]]


def naive_loss(logits, targets):
    terms = [-torch.log_softmax(logits[b, t], -1)[targets[b, t]] for b in range(targets.shape[0])
             for t in range(targets.shape[1]) if targets[b, t] != IGNORE]
    return torch.stack(terms)


def test_loss_equals_naive_mean_and_ignores_masked_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g, requires_grad=True)
    targets = torch.randint(0, 11, (3, 7), generator=g)
    targets[0, :3] = IGNORE
    targets[2, -1] = IGNORE
    loss = next_token_loss(logits, targets)
    terms = naive_loss(logits, targets)
    torch.testing.assert_close(loss, terms.mean())
    torch.testing.assert_close(next_token_loss(logits, targets, denominator=4.0), terms.sum() / 4.0)
    (grad,) = torch.autograd.grad(loss, logits)
    assert float(grad[targets == IGNORE].abs().max()) == 0.0 and float(grad[targets != IGNORE].abs().min()) > 0
    # bf16 logits are computed in float32; nothing counted gives a differentiable 0
    torch.testing.assert_close(next_token_loss(logits.bfloat16(), targets), terms.mean(), atol=0.05, rtol=0)
    none = next_token_loss(logits, torch.full_like(targets, IGNORE))
    assert float(none.detach()) == 0.0
    none.backward()


def test_denominator_makes_process_shards_sum_to_the_global_mean():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 5, generator=g)
    targets = torch.randint(0, 5, (4, 6), generator=g)
    targets[0, 1:] = IGNORE  # rank 0 has far fewer counted tokens than rank 1
    world = 2
    count = int((targets != IGNORE).sum())
    shards = [next_token_loss(logits[r * 2 : (r + 1) * 2], targets[r * 2 : (r + 1) * 2], denominator=count / world)
              for r in range(world)]
    # DDP averages the per-process gradients, i.e. differentiates the mean of the per-process losses
    torch.testing.assert_close(torch.stack(shards).mean(), next_token_loss(logits, targets))
    plain_means = torch.stack([next_token_loss(logits[r * 2 : (r + 1) * 2], targets[r * 2 : (r + 1) * 2])
                               for r in range(world)]).mean()
    assert abs(float(plain_means - next_token_loss(logits, targets))) > 1e-3  # why the denominator is needed


def test_cosmo_loss_combines_both_terms():
    g = torch.Generator().manual_seed(2)
    out = {"logits": torch.randn(2, 5, 7, generator=g), "lm_targets": torch.randint(0, 7, (2, 5), generator=g),
           "pooled_text": torch.randn(4, 3, generator=g), "pooled_video": torch.randn(4, 3, generator=g),
           "logit_scale": torch.tensor(1.2)}
    cfg = CosmoLossConfig(lm_weight=0.5, contrastive_weight=2.0)
    got = cosmo_loss(out, cfg)
    con = infonce_loss(out["pooled_video"], out["pooled_text"], out["logit_scale"])
    lm = next_token_loss(out["logits"], out["lm_targets"])
    torch.testing.assert_close(got["total"], 0.5 * lm + 2.0 * con["total"])
    torch.testing.assert_close(got["v2t"], con["v2t"])
    only_lm = cosmo_loss(out, CosmoLossConfig(contrastive_weight=0.0))
    torch.testing.assert_close(only_lm["total"], lm)
    assert float(only_lm["contrastive"]) == 0.0
    with pytest.raises(ConfigError, match="not both 0"):
        from_dict(CosmoLossConfig, {"lm_weight": 0, "contrastive_weight": 0})


@pytest.mark.parametrize("unit", ["document", "clip"])
def test_objective_on_a_collated_batch_trains(tmp_path, unit):
    """Dataset -> collate -> model -> loss -> a few optimizer steps lower the loss on a fixed batch."""
    from tests.models.tiny_lms import build_lm
    from vidlang.data.interleaved import InterleavedCollate, InterleavedDataset
    from vidlang.data.longvideo import DataConfig
    from vidlang.datasets import CaptionLine
    from vidlang.models.cosmo import CosmoConfig, CosmoModel

    rng = np.random.default_rng(0)
    feats = {f"v{i}": rng.normal(size=(30, 4)).astype(np.float32) for i in range(4)}
    words = ["cut the onion", "fry the onions", "add salt", "serve the soup", "move the red square"]
    caps = {v: [CaptionLine(3.0 * j, 3.0 * j + 2, words[(i + j) % 5]) for j in range(5)]
            for i, v in enumerate(feats)}
    cfg = DataConfig(clips_per_video=2, batch_videos=4, min_clip_len=1)
    ds = InterleavedDataset(feats, caps, sorted(feats), cfg, seed=1)
    torch.manual_seed(0)
    model = CosmoModel(CosmoConfig(lm_path=str(build_lm("llama", tmp_path / "lm")), unimodal_depth=2,
                                   feature_dim=4, resampler_depth=1, resampler_latents=4, contrastive_dim=8,
                                   contrastive_unit=unit))
    batch = model.make_collate(24)(*ds.batch_samples(ds.epoch_order(0), 0, 0))
    assert isinstance(model.make_collate(24), InterleavedCollate)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(8):
        out = cosmo_loss(model(**batch.model_inputs()), CosmoLossConfig())
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        losses.append(float(out["total"].detach()))
    assert losses[-1] < losses[0] - 0.1
    assert float(model.xattn["2"].attn_gate.detach().abs()) > 0  # the gates opened
