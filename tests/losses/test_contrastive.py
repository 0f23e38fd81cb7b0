"""InfoNCE and soft-target cross-entropy against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vidlang.losses.contrastive import infonce_loss, soft_cross_entropy


def test_infonce_equals_hand_computation():
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    t = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    log_scale = math.log(2.0)
    cos = [[sum(a * b for a, b in zip(vi, tj)) for tj in t.tolist()] for vi in v.tolist()]  # unit vectors
    v2t = -sum(2 * cos[i][i] - math.log(sum(math.exp(2 * c) for c in cos[i])) for i in range(3)) / 3
    t2v = -sum(2 * cos[i][i] - math.log(sum(math.exp(2 * cos[k][i]) for k in range(3))) for i in range(3)) / 3
    out = infonce_loss(v * 3.0, t * 0.5, torch.tensor(log_scale))  # norms must not matter (cosine)
    assert_close(out["v2t"], torch.tensor(v2t))
    assert_close(out["t2v"], torch.tensor(t2v))
    assert_close(out["total"], torch.tensor((v2t + t2v) / 2))


def test_infonce_gather_uses_global_negatives():
    g = torch.Generator().manual_seed(0)
    v, t = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    scale = torch.tensor(1.5)
    full = infonce_loss(v, t, scale)
    # process 1 of 2 holds rows 3..5; the hook returns all rows in rank order
    gvn, gtn = F.normalize(v, dim=-1), F.normalize(t, dim=-1)

    def gather(x):  # stands in for a differentiable all_gather: the other rank's rows come first
        other = gvn[:3] if torch.equal(x, gvn[3:]) else gtn[:3]
        return torch.cat([other, x])

    local = infonce_loss(v[3:], t[3:], scale, gather=gather, rank_offset=3)
    logits = scale.exp() * gvn @ gtn.T
    labels = torch.arange(6)
    expect_v2t = F.cross_entropy(logits[3:], labels[3:])
    expect_t2v = F.cross_entropy(logits.T[3:], labels[3:])
    assert_close(local["v2t"], expect_v2t)
    assert_close(local["t2v"], expect_t2v)
    assert not torch.allclose(local["total"], full["total"])  # negatives really differ from a local-only loss


def test_infonce_gradient_and_nan_check():
    v = torch.randn(4, 3, requires_grad=True)
    s = torch.tensor(2.0, requires_grad=True)
    infonce_loss(v, torch.randn(4, 3), s)["total"].backward()
    assert v.grad.abs().sum() > 0 and s.grad is not None and s.grad != 0
    bad = torch.randn(4, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="pooled_text"):
        infonce_loss(torch.randn(4, 3), bad, 1.0)


def test_soft_ce_with_one_hot_equals_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 7, generator=g) * 10
    labels = torch.tensor([0, 6, 3, 3, 1])
    assert_close(soft_cross_entropy(logits, F.one_hot(labels, 7).float()), F.cross_entropy(logits, labels))
    soft = torch.softmax(torch.randn(5, 7, generator=g), dim=1)
    expect = -(soft * torch.log_softmax(logits, 1)).sum(1)
    assert_close(soft_cross_entropy(logits, soft, reduction="none"), expect)
    with pytest.raises(ValueError, match="equal shapes"):
        soft_cross_entropy(logits, soft[:, :3])
