"""Independent, deliberately naive re-implementation of the released Norton loss arithmetic (for parity tests).

Written from the paper/release description without using vidlang.losses: explicit Python loops, the release's
marginals 1/(m+n) followed by multiplication with m+n, the masked exp-sum (padded entries are 0 after masking and
contribute exp(0) = 1, then their count is subtracted), whole-batch min-max normalisation, a fixed temperature
0.07, raw dot products in the clip loss, and N = videos x clips in video-major order.
Slow on purpose: use tiny inputs. Float64 is recommended.
"""

from __future__ import annotations

import math

import torch


def ref_log_sinkhorn(z: torch.Tensor, log_mu: torch.Tensor, log_nu: torch.Tensor, iters: int) -> torch.Tensor:
    """Plain log-domain Sinkhorn on a single (m, n) score matrix; returns log plan (unscaled)."""
    m, n = z.shape
    u = torch.zeros(m, dtype=z.dtype)
    v = torch.zeros(n, dtype=z.dtype)
    for _ in range(iters):
        for i in range(m):
            u[i] = log_mu[i] - torch.logsumexp(z[i, :] + v, dim=0)
        for j in range(n):
            v[j] = log_nu[j] - torch.logsumexp(z[:, j] + u, dim=0)
    out = torch.empty_like(z)
    for i in range(m):
        for j in range(n):
            out[i, j] = z[i, j] + u[i] + v[j]
    return out


def ref_rectify_plan(logits: torch.Tensor, iters: int) -> torch.Tensor:
    m, n = logits.shape
    norm = -math.log(m + n)
    log_mu = torch.full((m,), norm, dtype=logits.dtype)
    log_nu = torch.full((n,), norm, dtype=logits.dtype)
    return (ref_log_sinkhorn(logits, log_mu, log_nu, iters) - norm).exp()


def ref_bucket_plan(scores: torch.Tensor, p: float, iters: int) -> torch.Tensor:
    """Scores already divided by epsilon, p too. Returns the real (m, n) block of exp(log plan) * (m + n)."""
    m, n = scores.shape
    z = torch.empty(m + 1, n + 1, dtype=scores.dtype)
    z[:m, :n] = scores
    z[m, :] = p
    z[:, n] = p
    norm = -math.log(m + n)
    log_mu = torch.tensor([norm] * m + [math.log(n) + norm], dtype=scores.dtype)
    log_nu = torch.tensor([norm] * n + [math.log(m) + norm], dtype=scores.dtype)
    logz = ref_log_sinkhorn(z, log_mu, log_nu, iters) - norm
    return logz[:m, :n].exp()


def _minmax(x):
    return (x - x.min()) / (x.max() - x.min())


def ref_norton_faithful(pooled_video, pooled_text, video_tokens, text_tokens, video_mask, text_mask, *,
                        L=8, beta=0.3, iters=50, eps_paragraph=0.1, alpha=1.0, fusion_weight=0.5,
                        bucket_ratio=0.3, weight=0.1, temperature=0.07):
    """Returns dict(total, clip, paragraph) following the release; shapes as vidlang's norton_loss."""
    N = pooled_video.shape[0]
    dt = pooled_video.dtype
    # ---- clip-caption loss with faulty-negative rectification (raw dot products, epsilon 1) ----
    lv = torch.zeros(N, N, dtype=dt)
    for i in range(N):
        for j in range(N):
            lv[i, j] = (pooled_video[i] * pooled_text[j]).sum()
    lt = lv.T.clone()
    Q = ref_rectify_plan(lv.detach(), iters)
    loss_video = 0.0
    loss_text = 0.0
    for i in range(N):
        logp_v = lv[i] - torch.logsumexp(lv[i], 0)
        logp_t = lt[i] - torch.logsumexp(lt[i], 0)
        for j in range(N):
            tv = beta * Q[i, j] + (1 - beta) * (1.0 if i == j else 0.0)
            tt = beta * Q[j, i] + (1 - beta) * (1.0 if i == j else 0.0)
            loss_video = loss_video - tv * logp_v[j]
            loss_text = loss_text - tt * logp_t[j]
    clip = loss_video / N + loss_text / N

    # ---- video-paragraph loss ----
    pv = pooled_video / pooled_video.norm(dim=-1, keepdim=True)
    pt = pooled_text / pooled_text.norm(dim=-1, keepdim=True)
    clip_logit = _minmax(pt @ pv.T)  # rows: captions a, columns: clips b
    vt = video_tokens / video_tokens.norm(dim=-1, keepdim=True)
    tt_ = text_tokens / text_tokens.norm(dim=-1, keepdim=True)
    vm = video_mask.to(dt)
    tm = text_mask.to(dt)
    Fv, T = vt.shape[1], tt_.shape[1]
    t2v = torch.zeros(N, N, dtype=dt)
    v2t = torch.zeros(N, N, dtype=dt)
    for a in range(N):
        for b in range(N):
            r = torch.zeros(T, Fv, dtype=dt)  # masked frame-word similarity, zeros on padding
            for t in range(T):
                for f in range(Fv):
                    r[t, f] = (tt_[a, t] * vt[b, f]).sum() * tm[a, t] * vm[b, f]
            n_pad_f = float((vm[b] == 0).sum())
            n_pad_t = float((tm[a] == 0).sum())
            acc = 0.0
            for t in range(T):  # every word, padded ones included (release)
                acc = acc + torch.log((r[t] / alpha).exp().sum() - n_pad_f) * alpha
            t2v[a, b] = acc / tm[a].sum()
            acc = 0.0
            for f in range(Fv):  # every frame, padded ones included (release)
                acc = acc + torch.log((r[:, f] / alpha).exp().sum() - n_pad_t) * alpha
            v2t[a, b] = acc / vm[b].sum()
    fine = (_minmax(v2t) + _minmax(t2v)) / 2
    sim = (fusion_weight * clip_logit + fine) / (fusion_weight + 1)

    P = N // L
    k = int(bucket_ratio * N)
    p = sorted(float(sim[i, i].detach()) for i in range(N))[k - 1]
    logits = torch.zeros(P, P, dtype=dt)
    scale = 1.0 / temperature
    for qi in range(P):  # caption paragraph
        for rj in range(P):  # clip paragraph
            block = sim[qi * L:(qi + 1) * L, rj * L:(rj + 1) * L]
            plan = ref_bucket_plan(block.detach() / eps_paragraph, p / eps_paragraph, iters)
            plan = plan * (L / plan.sum())
            logits[qi, rj] = scale * (plan * block).sum()
    loss_t = 0.0
    loss_v = 0.0
    for i in range(P):
        loss_t = loss_t - (logits[i, i] - torch.logsumexp(logits[i], 0))
        loss_v = loss_v - (logits[i, i] - torch.logsumexp(logits[:, i], 0))
    paragraph = loss_t / P + loss_v / P
    return {"total": clip + weight * paragraph, "clip": clip, "paragraph": paragraph}


def naive_fine_grained(video_tokens, text_tokens, video_mask, text_mask, alpha=1.0):
    """Default-mode similarity, naive loops: log-mean-exp over real tokens, averaged over real tokens.

    Returns (Nv, Nt) with entry [i, j] = (v2t + t2v) / 2 for video i and text j.
    """
    nv, nt = video_tokens.shape[0], text_tokens.shape[0]
    out = torch.zeros(nv, nt, dtype=video_tokens.dtype)
    for i in range(nv):
        fr = [video_tokens[i, f] / video_tokens[i, f].norm() for f in range(video_tokens.shape[1]) if video_mask[i, f]]
        for j in range(nt):
            wd = [text_tokens[j, t] / text_tokens[j, t].norm() for t in range(text_tokens.shape[1]) if text_mask[j, t]]
            s = torch.stack([torch.stack([(x * y).sum() for y in wd]) for x in fr])  # (frames, words)
            v2t = torch.stack([alpha * (torch.logsumexp(s[f] / alpha, 0) - math.log(len(wd)))
                               for f in range(len(fr))]).mean()
            t2v = torch.stack([alpha * (torch.logsumexp(s[:, t] / alpha, 0) - math.log(len(fr)))
                               for t in range(len(wd))]).mean()
            out[i, j] = (v2t + t2v) / 2
    return out
