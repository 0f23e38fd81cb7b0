"""Norton losses: faithful parity with an independent naive re-implementation of the release, chunked == naive,
padding invariance, gradient flow (and none through plans), grouping and input validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.testing import assert_close

from tests.losses.norton_reference import naive_fine_grained, ref_norton_faithful
from vidlang.losses.contrastive import soft_cross_entropy
from vidlang.losses.norton import NortonConfig, fine_grained_directions, fine_grained_similarity, norton_loss
from vidlang.losses.ot import normalize_rows, sinkhorn_scores, sinkhorn_with_bucket


def _batch(seed: int, n: int = 8, f: int = 4, t: int = 5, d: int = 6, dtype=torch.float64, grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = dict(
        pooled_video=torch.randn(n, d, generator=g, dtype=dtype),
        pooled_text=torch.randn(n, d, generator=g, dtype=dtype),
        video_tokens=torch.randn(n, f, d, generator=g, dtype=dtype),
        text_tokens=torch.randn(n, t, d, generator=g, dtype=dtype),
    )
    vm = torch.rand(n, f, generator=g) > 0.35
    tm = torch.rand(n, t, generator=g) > 0.35
    vm[:, 0], tm[:, 0] = True, True
    if grad:
        for v in x.values():
            v.requires_grad_(True)
    x["video_mask"], x["text_mask"] = vm, tm
    return x


def test_config_defaults_are_the_papers_and_validate_rejects_impossible_values():
    cfg = NortonConfig()
    assert (cfg.lambda_paragraph, cfg.clips_per_paragraph, cfg.bucket_quantile, cfg.epsilon_paragraph,
            cfg.epsilon_rectify, cfg.n_iters, cfg.beta, cfg.alpha, cfg.fusion_weight, cfg.temperature_init,
            cfg.faithful) == (0.1, 8, 0.3, 0.1, 1.0, 50, 0.3, 1.0, 0.5, 0.07, False)
    cfg.validate()
    for key, bad in [("beta", 1.5), ("epsilon_paragraph", 0.0), ("clips_per_paragraph", 0), ("alpha", -1.0),
                     ("bucket_quantile", 1.2), ("n_iters", 0), ("chunk_size", 0), ("temperature_init", 0.0)]:
        with pytest.raises(ValueError, match=f"NortonConfig.{key}="):
            NortonConfig(**{key: bad}).validate()


@pytest.mark.parametrize("seed,n,L,K", [(0, 12, 4, 4), (1, 8, 4, 8)])
def test_faithful_equals_naive_reference(seed, n, L, K):
    x = _batch(seed, n=n, grad=True)
    cfg = NortonConfig(faithful=True, clips_per_paragraph=L, chunk_size=5)
    out = norton_loss(**x, cfg=cfg, logit_scale=torch.tensor(0.0), clips_per_video=K)  # ignored: fixed 0.07
    ref = ref_norton_faithful(x["pooled_video"], x["pooled_text"], x["video_tokens"], x["text_tokens"],
                              x["video_mask"], x["text_mask"], L=L)
    for key in ("total", "clip", "paragraph"):
        assert_close(out[key], ref[key], atol=1e-10, rtol=1e-10)
    assert_close(out["logit_scale"], torch.tensor(1 / 0.07, dtype=torch.float64))
    inputs = [x[k] for k in ("pooled_video", "pooled_text", "video_tokens", "text_tokens")]
    got = torch.autograd.grad(out["total"], inputs)
    want = torch.autograd.grad(ref["total"], inputs)
    for a, b in zip(got, want):
        assert_close(a, b, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_chunked_fine_grained_equals_naive(chunk):
    g = torch.Generator().manual_seed(2)
    vt, tt = torch.randn(7, 4, 5, generator=g, dtype=torch.float64), torch.randn(5, 6, 5, generator=g,
                                                                               dtype=torch.float64)
    vm, tm = torch.rand(7, 4, generator=g) > 0.4, torch.rand(5, 6, generator=g) > 0.4
    vm[:, -1], tm[:, 2] = True, True
    vt.requires_grad_(True)
    w = torch.randn(7, 5, generator=g, dtype=torch.float64)
    for alpha in (1.0, 0.1, 0.02):  # 0.02: the torch.logsumexp fallback path
        got = fine_grained_similarity(vt, tt, vm, tm, alpha=alpha, chunk_size=chunk)
        want = naive_fine_grained(vt, tt, vm, tm, alpha=alpha)
        assert got.shape == (7, 5)
        assert_close(got, want, atol=1e-12, rtol=1e-10)
        assert (got <= 1 + 1e-12).all() and (got >= -1 - 1e-12).all()  # log-mean-exp stays in [mean, max]
        (g_got,) = torch.autograd.grad((got * w).sum(), vt)
        (g_want,) = torch.autograd.grad((want * w).sum(), vt)
        assert_close(g_got, g_want, atol=1e-10, rtol=1e-8)


def test_default_is_invariant_to_padding_length_faithful_is_not():
    x = _batch(3, n=8)
    g = torch.Generator().manual_seed(30)
    padded = dict(x)
    # three extra padded frames and words holding garbage: must not matter in the default mode
    padded["video_tokens"] = torch.cat([x["video_tokens"], 1e3 * torch.randn(8, 3, 6, generator=g,
                                                                             dtype=torch.float64)], 1)
    padded["text_tokens"] = torch.cat([x["text_tokens"], torch.randn(8, 3, 6, generator=g, dtype=torch.float64)], 1)
    padded["video_mask"] = torch.cat([x["video_mask"], torch.zeros(8, 3, dtype=torch.bool)], 1)
    padded["text_mask"] = torch.cat([x["text_mask"], torch.zeros(8, 3, dtype=torch.bool)], 1)
    sim = fine_grained_similarity(x["video_tokens"], x["text_tokens"], x["video_mask"], x["text_mask"])
    sim_p = fine_grained_similarity(padded["video_tokens"], padded["text_tokens"], padded["video_mask"],
                                    padded["text_mask"])
    assert_close(sim, sim_p, atol=1e-12, rtol=0)
    cfg = NortonConfig(clips_per_paragraph=4)
    assert_close(norton_loss(**x, cfg=cfg)["total"], norton_loss(**padded, cfg=cfg)["total"], atol=1e-10, rtol=0)
    v2t, _ = fine_grained_directions(x["video_tokens"], x["text_tokens"], x["video_mask"], x["text_mask"],
                                     faithful=True)
    v2t_p, _ = fine_grained_directions(padded["video_tokens"], padded["text_tokens"], padded["video_mask"],
                                       padded["text_mask"], faithful=True)
    assert (v2t - v2t_p).abs().max() > 1e-3  # the release's padded-token terms (documented defect)


def test_default_similarity_does_not_depend_on_other_batch_members():
    x = _batch(4, n=8)
    full = fine_grained_similarity(x["video_tokens"], x["text_tokens"], x["video_mask"], x["text_mask"])
    sub = fine_grained_similarity(x["video_tokens"][2:5], x["text_tokens"][4:], x["video_mask"][2:5],
                                  x["text_mask"][4:])
    assert_close(sub, full[2:5, 4:])


def _manual_default(x, cfg, log_scale, K):
    """Vectorised re-statement of the default mode with the plans computed separately as constants."""
    scale = log_scale.clamp(0, math.log(100)).exp()
    n, L = x["pooled_video"].shape[0], cfg.clips_per_paragraph
    pv, pt = F.normalize(x["pooled_video"], dim=-1), F.normalize(x["pooled_text"], dim=-1)
    logits = scale * pv @ pt.T
    q, _ = sinkhorn_scores(logits.detach(), torch.ones(n), torch.ones(n), epsilon=cfg.epsilon_rectify,
                           n_iters=cfg.n_iters, tol=None)
    eye = torch.eye(n, dtype=logits.dtype)
    tv = (1 - cfg.beta) * eye + cfg.beta * normalize_rows(q).to(logits.dtype)
    tt = (1 - cfg.beta) * eye + cfg.beta * normalize_rows(q.T).to(logits.dtype)
    clip = soft_cross_entropy(logits, tv) + soft_cross_entropy(logits.T, tt)
    fine = fine_grained_similarity(x["video_tokens"], x["text_tokens"], x["video_mask"], x["text_mask"],
                                   alpha=cfg.alpha)
    sim = ((cfg.fusion_weight * (pv @ pt.T) + fine) / (cfg.fusion_weight + 1)).T  # captions x clips
    p = torch.quantile(sim.diagonal().detach(), cfg.bucket_quantile)
    blocks = rearrange(sim, "(q l) (r m) -> (q r) l m", l=L, m=L)
    plan = sinkhorn_with_bucket(blocks.detach(), p, epsilon=cfg.epsilon_paragraph, n_iters=cfg.n_iters).plan
    plan = (plan * L / plan.sum((1, 2), keepdim=True)).to(sim.dtype)
    par_logits = scale * (plan * blocks).sum((1, 2)).reshape(n // L, n // L)
    labels = torch.arange(n // L)
    paragraph = F.cross_entropy(par_logits, labels) + F.cross_entropy(par_logits.T, labels)
    return clip, paragraph


def test_gradients_flow_to_inputs_and_logit_scale_but_not_through_plans():
    x = _batch(5, n=16, grad=True)
    log_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    cfg = NortonConfig(clips_per_paragraph=4)
    out = norton_loss(**x, cfg=cfg, logit_scale=log_scale, clips_per_video=8)
    inputs = [x[k] for k in ("pooled_video", "pooled_text", "video_tokens", "text_tokens")] + [log_scale]
    grads = torch.autograd.grad(out["total"], inputs)
    for gi in grads:
        assert torch.isfinite(gi).all() and gi.abs().sum() > 0
    for key, val in out.items():
        if key not in ("total", "clip", "paragraph"):
            assert not val.requires_grad, key
    # Same numbers and gradients as a separate statement of the loss whose OT plans are explicit constants:
    # if gradient leaked through a plan, the gradients would differ.
    clip, paragraph = _manual_default(x, cfg, log_scale, 8)
    assert_close(out["clip"], clip)
    assert_close(out["paragraph"], paragraph)
    want = torch.autograd.grad(clip + cfg.lambda_paragraph * paragraph, inputs)
    for a, b in zip(grads, want):
        assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_permuting_whole_videos_leaves_the_loss_unchanged():
    x = _batch(6, n=12)
    cfg = NortonConfig(clips_per_paragraph=2)
    base = norton_loss(**x, cfg=cfg, clips_per_video=4)
    order = torch.tensor([2, 0, 1])  # video order; rows are video-major with K = 4
    rows = (order[:, None] * 4 + torch.arange(4)).flatten()
    perm = {k: v[rows] for k, v in x.items()}
    out = norton_loss(**perm, cfg=cfg, clips_per_video=4)
    for key in ("total", "clip", "paragraph", "bucket_value"):
        assert_close(out[key], base[key])


def test_bucket_diagnostics_follow_the_quantile():
    x = _batch(7, n=16)
    fracs = [float(norton_loss(**x, cfg=NortonConfig(clips_per_paragraph=4, bucket_quantile=q))["bucket_fraction"])
             for q in (0.0, 0.5, 1.0)]
    assert 0 <= fracs[0] < fracs[1] < fracs[2] <= 1


def test_bad_inputs_raise_clear_errors():
    x = _batch(8, n=8)
    cfg = NortonConfig(clips_per_paragraph=4)
    bad = dict(x)
    bad["video_tokens"] = x["video_tokens"].clone()
    bad["video_tokens"][3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="video_tokens: 1 non-finite"):
        norton_loss(**bad, cfg=cfg)
    with pytest.raises(ValueError, match="not divisible by clips_per_video K=3"):
        norton_loss(**x, cfg=NortonConfig(clips_per_paragraph=3), clips_per_video=3)
    with pytest.raises(ValueError, match="L=4 > clips_per_video K=2"):
        norton_loss(**x, cfg=cfg, clips_per_video=2)
    with pytest.raises(ValueError, match="K=6 is not divisible by clips_per_paragraph L=4"):
        norton_loss(**x, cfg=cfg, clips_per_video=6)
    empty = dict(x)
    empty["text_mask"] = x["text_mask"].clone()
    empty["text_mask"][5] = False
    with pytest.raises(ValueError, match="text_mask: row 5 has no real token"):
        norton_loss(**empty, cfg=cfg)
    with pytest.raises(ValueError, match="NortonConfig.beta"):
        norton_loss(**x, cfg=NortonConfig(beta=2.0))


def test_half_precision_inputs_are_computed_in_float32():
    x = _batch(9, n=8, dtype=torch.float32)
    half = {k: (v.bfloat16().requires_grad_(True) if v.is_floating_point() else v) for k, v in x.items()}
    cfg = NortonConfig(clips_per_paragraph=4)
    out = norton_loss(**half, cfg=cfg, logit_scale=torch.tensor(2.0))
    ref = norton_loss(**{k: (v.float() if v.is_floating_point() else v) for k, v in half.items()}, cfg=cfg,
                      logit_scale=torch.tensor(2.0))
    assert out["total"].dtype == torch.float32
    assert_close(out["total"], ref["total"].detach())
    out["total"].backward()
    assert half["video_tokens"].grad.dtype == torch.bfloat16 and half["video_tokens"].grad.abs().sum() > 0


@pytest.mark.parametrize("faithful", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 0.02])  # static-max path and the per-row-max path
def test_budgeted_blocks_equal_one_block_values_and_gradients(faithful, alpha):
    """Automatic blocking under a tiny entry budget (videos split, then texts split too: the backward recomputes
    every block) gives the one-block result (whose backward reuses the forward's exponentials)."""
    g = torch.Generator().manual_seed(11)
    vt = torch.randn(6, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    tt = torch.randn(7, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    vm, tm = torch.rand(6, 4, generator=g) > 0.4, torch.rand(7, 6, generator=g) > 0.4
    vm[:, 1], tm[:, 0] = True, True
    wv, wt = torch.randn(6, 7, generator=g, dtype=torch.float64), torch.randn(6, 7, generator=g, dtype=torch.float64)
    results = []
    for budget in (10**6, 300, 12):  # one block; several videos per block; one video x few texts per block
        v2t, t2v = fine_grained_directions(vt, tt, vm, tm, alpha=alpha, faithful=faithful, max_block_entries=budget)
        grads = torch.autograd.grad((v2t * wv).sum() + (t2v * wt).sum(), [vt, tt])
        results.append((v2t, t2v, *grads))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert_close(a, b, atol=1e-12, rtol=1e-10)
    if not faithful:
        want = naive_fine_grained(vt, tt, vm, tm, alpha=alpha)
        assert_close((results[0][0] + results[0][1]) / 2, want, atol=1e-12, rtol=1e-10)


def test_fine_grained_gradient_to_one_side_only_and_no_grad():
    x = _batch(12, n=6)
    vt = x["video_tokens"].clone().requires_grad_(True)
    v2t, t2v = fine_grained_directions(vt, x["text_tokens"], x["video_mask"], x["text_mask"])
    (gv,) = torch.autograd.grad((v2t + t2v).sum(), vt)
    assert torch.isfinite(gv).all() and gv.abs().sum() > 0
    assert (gv[~x["video_mask"]] == 0).all()  # padded frames get no gradient
    with torch.no_grad():
        v2t_ng, t2v_ng = fine_grained_directions(vt, x["text_tokens"], x["video_mask"], x["text_mask"])
    assert_close(v2t_ng, v2t.detach(), atol=0, rtol=0)
    assert_close(t2v_ng, t2v.detach(), atol=0, rtol=0)


def test_gathered_norton_equals_the_global_batch_loss():
    """Two simulated processes (threads exchanging tensors like all_gather): the mean of the two local losses
    equals the single-process loss on the whole batch, also when the processes pad their texts differently.
    (Gradients through a real differentiable all_gather: tests/train/test_multiprocess.py.)"""
    import threading

    x = _batch(13, n=16)
    cfg = NortonConfig(clips_per_paragraph=2)
    log_scale = torch.tensor(2.0, dtype=torch.float64)
    full = norton_loss(**x, cfg=cfg, logit_scale=log_scale, clips_per_video=4)
    halves = [{k: v[8 * r:8 * r + 8] for k, v in x.items()} for r in (0, 1)]
    # process 1 pads its captions to 2 more words than process 0 (garbage values, masked)
    halves[1]["text_tokens"] = torch.cat([halves[1]["text_tokens"], torch.randn(8, 2, 6, dtype=torch.float64)], 1)
    halves[1]["text_mask"] = F.pad(halves[1]["text_mask"], (0, 2))
    barrier, slots, outs, errors = threading.Barrier(2, timeout=60), [None, None], [None, None], []

    def gather_for(rank):
        def gather(t):
            slots[rank] = t
            barrier.wait()
            out = torch.cat([slots[0], slots[1]])
            barrier.wait()  # both have read the slots before the next exchange overwrites them
            return out
        return gather

    def run(rank):
        try:
            outs[rank] = norton_loss(**halves[rank], cfg=cfg, logit_scale=log_scale, clips_per_video=4,
                                     gather=gather_for(rank), rank_offset=8 * rank)
        except BaseException as e:  # surface errors from the thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for key in ("total", "clip", "paragraph", "clip_v2t", "clip_t2v", "paragraph_t2v", "paragraph_v2t"):
        assert_close((outs[0][key] + outs[1][key]) / 2, full[key], atol=1e-10, rtol=1e-10)
    assert_close(outs[0]["bucket_value"], full["bucket_value"], atol=1e-12, rtol=0)
    assert_close(outs[1]["bucket_value"], full["bucket_value"], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="faithful"):
        norton_loss(**x, cfg=NortonConfig(clips_per_paragraph=2, faithful=True), gather=lambda t: t)


@pytest.mark.parametrize("budget", [None, 150])  # all blocks kept for backward; tiny budget: recomputed
def test_length_grouped_blocks_skip_padding_and_equal_naive(budget):
    """Videos of very different lengths (trailing padding, one with holes, given in shuffled order) are sorted by
    extent and grouped, each group padded only to its own longest video: values and gradients still equal the
    naive per-pair computation, and the blocks hold fewer frames than padding every video to F would."""
    from vidlang.losses.norton import MAX_BLOCK_ENTRIES, _block_plan

    g = torch.Generator().manual_seed(40)
    nv, nf, nt, nw, d = 18, 9, 10, 6, 5
    lengths = torch.randperm(nv, generator=g) % nf + 1  # 1..9 frames, shuffled
    vm = torch.arange(nf)[None, :] < lengths[:, None]
    vm[3, :] = torch.tensor([True, False, True, False, False, True, False, False, False])  # holes
    tm = torch.rand(nt, nw, generator=g) > 0.4
    tm[:, 0] = True
    vt = torch.randn(nv, nf, d, generator=g, dtype=torch.float64, requires_grad=True)
    tt = torch.randn(nt, nw, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(nv, nt, generator=g, dtype=torch.float64)
    got = fine_grained_similarity(vt, tt, vm, tm, max_block_entries=budget or MAX_BLOCK_ENTRIES)
    want = naive_fine_grained(vt, tt, vm, tm)
    assert_close(got, want, atol=1e-12, rtol=1e-10)
    g_got = torch.autograd.grad((got * w).sum(), [vt, tt])
    g_want = torch.autograd.grad((want * w).sum(), [vt, tt])
    for a, b in zip(g_got, g_want):
        assert_close(a, b, atol=1e-10, rtol=1e-8)
    extents = sorted(int(vm[i].nonzero().max()) + 1 for i in range(nv))
    offsets = [0] + torch.cumsum(tm.sum(1), 0).tolist()
    vid, _ = _block_plan(extents, offsets, None, MAX_BLOCK_ENTRIES)
    bounds = [i0 for i0, _, _ in vid] + [vid[-1][1]]
    assert bounds == sorted(set(bounds)) and bounds[0] == 0 and bounds[-1] == nv  # contiguous, non-empty ranges
    kept_frames = sum((i1 - i0) * f for i0, i1, f in vid)
    assert all(f == extents[i1 - 1] for _, i1, f in vid)
    assert kept_frames < 0.75 * nv * nf  # the padding of short videos is skipped
