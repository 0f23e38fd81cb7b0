"""Norton's noise-robust OT losses (Lin et al., "Multi-granularity Correspondence Learning from Long-term Noisy
Videos", ICLR 2024), as pure functions.

Terms (``norton_loss`` returns them by name):
* clip:      clip-caption contrast with faulty-negative rectification. Targets ``(1-beta) I + beta Q`` where Q is
             the entropic OT plan (epsilon_rectify, uniform count marginals) over the batch's clip-caption logits;
             soft-target cross-entropy video->text plus text->video. Q is a target: computed without gradient.
* paragraph: video-paragraph contrast. Each group of L consecutive clips of one video and their L captions form a
             paragraph. Clip-caption similarity = fusion of the pooled cosine and the fine-grained frame-word
             log-sum-exp similarity; for each (caption paragraph, clip paragraph) pair an L x L OT plan with the
             alignable prompt bucket (value p = bucket_quantile of the matched-pair similarities, epsilon_paragraph)
             realigns asynchronous pairs and discards unalignable ones (mass sent to the bucket). Paragraph logit =
             exp(logit_scale) * sum(plan * sim) with the plan's real mass renormalised to L; symmetric CE over
             paragraphs. The plan has no gradient; the similarity does.
* total = clip + lambda_paragraph * paragraph. Both terms sum their two directions, as the release does, so
  lambda_paragraph keeps the paper's meaning.

Grouping: rows are video-major, N = B videos x K clips (``clips_per_video`` K, default K = L); paragraphs are the
N / L runs of L consecutive rows (K must be a multiple of L, so a paragraph never spans two videos).

Temperature: ``logit_scale`` is the log inverse temperature (CLIP convention, see contrastive.py), a learnable
scalar owned by the model. Default mode clamps it functionally to [0, log 100] (gradient flows inside the range).

faithful=True reproduces the released code's arithmetic (for parity tests); the default fixes its defects:

| aspect                         | faithful (release)                                   | default                                   |
|--------------------------------|------------------------------------------------------|-------------------------------------------|
| pooled / fine-grained sims     | min-max normalised over the whole batch (each of     | raw cosine / log-mean-exp (per pair, no   |
|                                | pooled, v2t, t2v separately): depends on unrelated   | batch dependence)                         |
|                                | batch members                                        |                                           |
| frame-word soft maximum        | alpha*log sum exp over real tokens; padded words     | alpha*(logsumexp - log n_real) over real  |
|                                | (frames) each add alpha*log(#real frames (words)) to | tokens only, averaged over real tokens:   |
|                                | the average (depends on padding length); release     | invariant to padding; bounded by          |
|                                | computes exp->sum->log (overflow), here logsumexp    | [mean, max] so not biased by length       |
| paragraph temperature          | fixed 1/0.07 (nn.Parameter on a non-Module never     | exp(logit_scale) from the model,          |
|                                | trains); logit_scale argument ignored                | clamped to [1, 100]                       |
| clip-loss logits               | raw dot products of unnormalised pooled embeddings,  | exp(logit_scale) * cosine                 |
|                                | no temperature                                       |                                           |
| rectification plan Q           | OT on those raw logits, rows sum to 1 only up to the | OT on the scaled logits, rows normalised  |
|                                | Sinkhorn error; t2v targets use Q.T                  | exactly to 1 (Q and Q.T separately)       |
| bucket value p                 | kthvalue(diag, int(q*N)) (errors if q*N < 1)         | torch.quantile(diag, q) (interpolated)    |
| NaN check                      | `assert inf not in Q or nan not in Q` cannot fail    | ValueError on non-finite inputs (both     |
|                                |                                                      | modes) and on a non-finite plan           |
| plan mass renormalisation      | divides by the mass (0/0 possible)                   | mass clamped away from 0                  |
| grouping                       | video-major, paragraphs = consecutive L rows         | same (documented, validated)              |

einops axis legend: n pairs (= b*k), i video rows of a chunk, j text rows of a chunk, f frames (video tokens),
t words (text tokens), d features, p paragraphs, l clips (captions) in a paragraph, q caption paragraphs,
r clip paragraphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidlang.losses.contrastive import check_finite, soft_cross_entropy
from vidlang.losses.ot import normalize_rows, sinkhorn_scores, sinkhorn_with_bucket

__all__ = ["NortonConfig", "fine_grained_similarity", "fine_grained_directions", "norton_loss"]

_MAX_LOG_SCALE = math.log(100.0)  # release clamps logit_scale to [0, 4.6052]: temperature in [0.01, 1]


@dataclass
class NortonConfig:
    """Norton loss settings. Defaults: the paper (ICLR 2024, Sec. 4 / App.) and the released configs."""

    lambda_paragraph: float = 0.1  # weight of the video-paragraph loss (release: sequence_contrast_weight)
    clips_per_paragraph: int = 8  # L, consecutive clips per paragraph (release: sequence_contrast.threshold)
    bucket_quantile: float = 0.3  # p = this quantile of matched-pair similarities (release: prompt_ratio)
    epsilon_paragraph: float = 0.1  # entropic smoothness of the paragraph OT (release: sequence_contrast.scale)
    epsilon_rectify: float = 1.0  # entropic smoothness of the faulty-negative OT (release: implicit 1)
    n_iters: int = 50  # Sinkhorn iterations, both OTs (release: sinkhorn_iterations)
    beta: float = 0.3  # weight of the OT plan in the rectified clip targets (release: loss.beta)
    alpha: float = 1.0  # log-sum-exp temperature of the frame-word soft maximum (release: alpha_lse)
    fusion_weight: float = 0.5  # sim = (w * pooled + fine) / (w + 1) (release: fusion_weight)
    temperature_init: float = 0.07  # initial paragraph temperature; faithful mode keeps it fixed (release)
    faithful: bool = False  # True: reproduce the release's arithmetic (table in the module docstring)
    chunk_size: int = 64  # video/text rows per block of the fine-grained similarity (memory O(chunk^2*F*T))

    def validate(self) -> None:
        checks = [
            ("lambda_paragraph", self.lambda_paragraph >= 0, ">= 0"),
            ("clips_per_paragraph", self.clips_per_paragraph >= 1, ">= 1"),
            ("bucket_quantile", 0.0 <= self.bucket_quantile <= 1.0, "in [0, 1]"),
            ("epsilon_paragraph", self.epsilon_paragraph > 0, "> 0"),
            ("epsilon_rectify", self.epsilon_rectify > 0, "> 0"),
            ("n_iters", self.n_iters >= 1, ">= 1"),
            ("beta", 0.0 <= self.beta <= 1.0, "in [0, 1]"),
            ("alpha", self.alpha > 0, "> 0"),
            ("fusion_weight", self.fusion_weight >= 0, ">= 0"),
            ("temperature_init", 0 < self.temperature_init, "> 0"),
            ("chunk_size", self.chunk_size >= 1, ">= 1"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ValueError(f"NortonConfig.{key}={getattr(self, key)!r} must be {want}")


def _check_mask(name: str, mask: Tensor, shape: tuple[int, int]) -> Tensor:
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(mask.shape)}")
    mask = mask.bool()
    if not bool(mask.any(dim=1).all()):
        bad = int((~mask.any(dim=1)).nonzero()[0])
        raise ValueError(f"{name}: row {bad} has no real token (all padding)")
    return mask


def fine_grained_directions(
    video_tokens: Tensor,
    text_tokens: Tensor,
    video_mask: Tensor,
    text_mask: Tensor,
    alpha: float = 1.0,
    chunk_size: int = 64,
    faithful: bool = False,
) -> tuple[Tensor, Tensor]:
    """Directional frame-word soft-maximum similarities of L2-normalised tokens, computed in blocks.

    v2t[i, j]: for each real frame of video i, soft maximum over the real words of text j, averaged over frames.
    t2v[i, j]: for each real word of text j, soft maximum over the real frames of video i, averaged over words.
    Default soft maximum: ``alpha * (logsumexp(s / alpha) - log n_real)`` (log-mean-exp; padding-invariant).
    faithful: ``alpha * logsumexp(s / alpha)`` and every padded frame (word) adds ``alpha * log(n_real words
    (frames))`` to the average, exactly like the release's masked exp-sum.

    Shapes:
        video_tokens (Nv, F, D), text_tokens (Nt, T, D), video_mask (Nv, F), text_mask (Nt, T) (True/1 = real)
        returns v2t (Nv, Nt), t2v (Nv, Nt)   [rows: videos, columns: texts]
    Peak extra memory: ~2-3 blocks of chunk_size^2 * F * T floats (plus the outputs), never Nv*Nt*F*T, in the
    forward pass (autograd keeps each block's intermediates for backward, so training memory still grows with
    Nv*Nt*F*T).
    """
    nv, nf, d = video_tokens.shape
    nt, nw, d2 = text_tokens.shape
    if d != d2:
        raise ValueError(f"video_tokens dim {d} != text_tokens dim {d2}")
    if video_tokens.dtype in (torch.float16, torch.bfloat16):  # sums of exponentials need float32
        video_tokens, text_tokens = video_tokens.float(), text_tokens.float()
    vmask = _check_mask("video_mask", video_mask, (nv, nf))
    tmask = _check_mask("text_mask", text_mask, (nt, nw))
    # Zero padded tokens so garbage (even NaN) padding cannot leak into sums or gradients.
    v = F.normalize(video_tokens, dim=-1) * vmask.unsqueeze(-1).to(video_tokens.dtype)
    t = F.normalize(text_tokens, dim=-1) * tmask.unsqueeze(-1).to(text_tokens.dtype)
    n_f = vmask.sum(1).to(v.dtype)  # (Nv,)
    n_t = tmask.sum(1).to(t.dtype)  # (Nt,)
    neg_inf = torch.tensor(float("-inf"), dtype=v.dtype, device=v.device)
    # Fast path: the tokens are unit vectors, so every cosine s <= 1 and logsumexp(s/alpha) =
    # 1/alpha + log(sum exp((s-1)/alpha)) with every exponent <= 0: the logsumexp trick with a max known in
    # advance (no overflow), which saves the max/subtract/inf-handling passes of torch.logsumexp.
    # The smallest term is exp(-2/alpha); for alpha < 0.025 it could underflow float32, so fall back.
    static_max = 2.0 / alpha <= 80.0
    vmf, tmf = vmask.to(v.dtype), tmask.to(t.dtype)
    v2t_rows, t2v_rows = [], []
    for i0 in range(0, nv, chunk_size):
        vi, vmi = v[i0:i0 + chunk_size], vmask[i0:i0 + chunk_size]
        nfi = n_f[i0:i0 + chunk_size]
        v2t_blocks, t2v_blocks = [], []
        for j0 in range(0, nt, chunk_size):
            tj, tmj = t[j0:j0 + chunk_size], tmask[j0:j0 + chunk_size]
            ntj = n_t[j0:j0 + chunk_size]
            ci, cj = vi.shape[0], tj.shape[0]
            # one plain matmul, laid out (i f) x (j t): no permuted copies
            s = (rearrange(vi, "i f d -> (i f) d") @ rearrange(tj, "j t d -> d (j t)")).view(ci, nf, cj, nw)
            if static_max:
                # in place: no extra block allocated (the matmul's backward does not need its output)
                e = s.sub_(1.0).div_(alpha).exp_()
                del s
                # zero the padded pairs (out of place: exp_'s backward needs e itself)
                e = e * (vmf[i0:i0 + ci, :, None, None] * tmf[None, None, j0:j0 + cj, :])
                tiny = torch.finfo(e.dtype).tiny  # padded rows sum to 0; real rows are >= exp(-2/alpha)
                # video -> text: soft max over real words (t) for each frame; text -> video: over real frames.
                lse_t = rearrange(torch.log(e.sum(3).clamp_min(tiny)), "i f j -> i j f") + 1.0 / alpha
                lse_f = torch.log(e.sum(1).clamp_min(tiny)) + 1.0 / alpha  # (i, j, t)
                del e
            else:
                s = s / alpha
                lse_t = rearrange(torch.logsumexp(torch.where(tmj[None, None, :, :], s, neg_inf), dim=3),
                                  "i f j -> i j f")
                lse_f = torch.logsumexp(torch.where(vmi[:, :, None, None], s, neg_inf), dim=1)  # (i, j, t)
                del s
            if faithful:
                pad_f = (nf - nfi)[:, None]  # padded frames of video i, each adds log(n_t[j])
                pad_t = (nw - ntj)[None, :]
                v2t = (torch.where(vmi[:, None, :], lse_t, 0.0).sum(2) + pad_f * torch.log(ntj)[None, :])
                t2v = (torch.where(tmj[None, :, :], lse_f, 0.0).sum(2) + pad_t * torch.log(nfi)[:, None])
            else:
                v2t = torch.where(vmi[:, None, :], lse_t - torch.log(ntj)[None, :, None], 0.0).sum(2)
                t2v = torch.where(tmj[None, :, :], lse_f - torch.log(nfi)[:, None, None], 0.0).sum(2)
            v2t_blocks.append(alpha * v2t / nfi[:, None])
            t2v_blocks.append(alpha * t2v / ntj[None, :])
        v2t_rows.append(torch.cat(v2t_blocks, dim=1))
        t2v_rows.append(torch.cat(t2v_blocks, dim=1))
    return torch.cat(v2t_rows, dim=0), torch.cat(t2v_rows, dim=0)


def fine_grained_similarity(
    video_tokens: Tensor,
    text_tokens: Tensor,
    video_mask: Tensor,
    text_mask: Tensor,
    alpha: float = 1.0,
    chunk_size: int = 64,
) -> Tensor:
    """Symmetric frame-word similarity (default mode): (v2t + t2v) / 2 of ``fine_grained_directions``.

    Shapes: video_tokens (Nv, F, D), text_tokens (Nt, T, D), video_mask (Nv, F), text_mask (Nt, T)
        -> (Nv, Nt), entry [i, j] = similarity(video i, text j), in [-1, 1].
    """
    v2t, t2v = fine_grained_directions(video_tokens, text_tokens, video_mask, text_mask, alpha, chunk_size)
    return (v2t + t2v) / 2


def _minmax(x: Tensor) -> Tensor:
    return (x - x.min()) / (x.max() - x.min())


def _clip_term(pooled_video: Tensor, pooled_text: Tensor, scale: Tensor, cfg: NortonConfig) -> tuple[Tensor, dict]:
    """Rectified clip-caption contrast. Shapes: pooled (N, D), scale () -> loss (), diagnostics."""
    n = pooled_video.shape[0]
    if cfg.faithful:
        logits = pooled_video @ pooled_text.T  # raw dot products, no temperature (release)
    else:
        logits = scale * F.normalize(pooled_video, dim=-1) @ F.normalize(pooled_text, dim=-1).T
    ones = torch.ones(n, dtype=torch.float32, device=logits.device)
    # Count marginals (each row/column carries mass 1) == release's 1/(2N) marginals times 2N.
    q, info = sinkhorn_scores(logits.detach(), ones, ones, epsilon=cfg.epsilon_rectify, n_iters=cfg.n_iters,
                              tol=None)
    if not bool(torch.isfinite(q).all()):
        raise ValueError("clip rectification: the OT plan is not finite (check the embeddings' scale)")
    q = q.to(logits.dtype)
    if cfg.faithful:
        q_v2t, q_t2v = q, q.T
    else:
        q_v2t, q_t2v = normalize_rows(q), normalize_rows(q.T)
    eye = torch.eye(n, dtype=logits.dtype, device=logits.device)
    loss_v = soft_cross_entropy(logits, (1 - cfg.beta) * eye + cfg.beta * q_v2t)
    loss_t = soft_cross_entropy(logits.T, (1 - cfg.beta) * eye + cfg.beta * q_t2v)
    diag = {"clip_v2t": loss_v.detach(), "clip_t2v": loss_t.detach(),
            "rectify_offdiag_mass": (q_v2t.sum() - q_v2t.diagonal().sum()).detach() / n,
            "rectify_marginal_err": torch.tensor(info.err)}
    return loss_v + loss_t, diag


def _paragraph_term(sim_tv: Tensor, scale: Tensor, cfg: NortonConfig) -> tuple[Tensor, dict]:
    """Video-paragraph contrast over fused similarities. Shapes: sim_tv (N, N) [captions x clips] -> loss ()."""
    n = sim_tv.shape[0]
    L = cfg.clips_per_paragraph
    n_par = n // L
    diag = sim_tv.detach().diagonal()
    if cfg.faithful:
        k = int(cfg.bucket_quantile * n)
        if k < 1:
            raise ValueError(f"faithful bucket: int(bucket_quantile * N) = int({cfg.bucket_quantile} * {n}) = 0; "
                             "kthvalue needs k >= 1")
        p = torch.kthvalue(diag, k).values
    else:
        # quantile needs float32/64; keep float64 exact, lift half precision to float32
        qdtype = torch.float64 if diag.dtype == torch.float64 else torch.float32
        p = torch.quantile(diag.to(qdtype), cfg.bucket_quantile)
    blocks = rearrange(sim_tv, "(q l) (r m) -> (q r) l m", l=L, m=L)  # caption paragraph q x clip paragraph r
    res = sinkhorn_with_bucket(blocks.detach(), p, epsilon=cfg.epsilon_paragraph, n_iters=cfg.n_iters, tol=None)
    plan = res.plan
    if not bool(torch.isfinite(plan).all()):
        raise ValueError("paragraph OT: the plan is not finite")
    mass = plan.sum(dim=(1, 2), keepdim=True)
    if not cfg.faithful:
        mass = mass.clamp_min(1e-12)
    align = (plan * (L / mass)).to(sim_tv.dtype)  # target weights: no gradient
    logits = scale * rearrange((align * blocks).sum(dim=(1, 2)), "(q r) -> q r", q=n_par)
    labels = torch.arange(n_par, device=sim_tv.device)
    loss_t = F.cross_entropy(logits, labels)
    loss_v = F.cross_entropy(logits.T, labels)
    matched = torch.arange(n_par, device=sim_tv.device) * (n_par + 1)  # (q == r) blocks
    diag_out = {"paragraph_t2v": loss_t.detach(), "paragraph_v2t": loss_v.detach(), "bucket_value": p.detach(),
                "bucket_fraction": (1 - mass.flatten()[matched] / L).mean().detach(),
                "paragraph_marginal_err": torch.tensor(res.info.err)}
    return loss_t + loss_v, diag_out


def norton_loss(
    pooled_video: Tensor,
    pooled_text: Tensor,
    video_tokens: Tensor,
    text_tokens: Tensor,
    video_mask: Tensor,
    text_mask: Tensor,
    cfg: NortonConfig | None = None,
    logit_scale: Tensor | float | None = None,
    clips_per_video: int | None = None,
) -> dict[str, Tensor]:
    """Norton objective for a batch of N = B x K clip-caption pairs in video-major order.

    Shapes:
        pooled_video (N, D), pooled_text (N, D), video_tokens (N, F, Dt), text_tokens (N, T, Dt),
        video_mask (N, F), text_mask (N, T) (bool or 0/1; True = real token), logit_scale () or None
        returns dict of () tensors: total, clip, paragraph (with gradient) and detached diagnostics
        clip_v2t, clip_t2v, paragraph_t2v, paragraph_v2t, bucket_value, bucket_fraction (mean share of a matched
        paragraph's mass sent to the bucket), rectify_offdiag_mass, rectify_marginal_err,
        paragraph_marginal_err, logit_scale (the exp'd scale used).
    clips_per_video: K (default: clips_per_paragraph); N % K == 0 and K % L == 0 are required.
    logit_scale: log inverse temperature from the model; None -> fixed log(1/temperature_init) (not learnable).
    Ignored in faithful mode (the release's temperature is fixed at 0.07).
    bf16/fp16 inputs are computed in float32 (the returned terms are float32).
    """
    cfg = cfg or NortonConfig()
    cfg.validate()
    if pooled_video.dim() != 2 or pooled_video.shape != pooled_text.shape:
        raise ValueError(f"pooled_video {tuple(pooled_video.shape)} and pooled_text {tuple(pooled_text.shape)} "
                         "must both be (N, D)")
    n = pooled_video.shape[0]
    if video_tokens.dim() != 3 or text_tokens.dim() != 3 or video_tokens.shape[0] != n or text_tokens.shape[0] != n:
        raise ValueError(f"video_tokens {tuple(video_tokens.shape)} / text_tokens {tuple(text_tokens.shape)} must "
                         f"be (N={n}, F, D) / (N={n}, T, D)")
    L = cfg.clips_per_paragraph
    k = L if clips_per_video is None else int(clips_per_video)
    if k < L:
        raise ValueError(f"clips_per_paragraph L={L} > clips_per_video K={k}: a paragraph cannot span videos")
    if k % L:
        raise ValueError(f"clips_per_video K={k} is not divisible by clips_per_paragraph L={L}")
    if n % k:
        raise ValueError(f"batch size N={n} is not divisible by clips_per_video K={k} (rows must be video-major)")
    for name, x in (("pooled_video", pooled_video), ("pooled_text", pooled_text),
                    ("video_tokens", video_tokens), ("text_tokens", text_tokens)):
        check_finite(name, x)
    if pooled_video.dtype in (torch.float16, torch.bfloat16):
        # Half precision cannot resolve log-sum-exps and CE over ~100-wide logits: compute the loss in float32
        # (gradients flow back through the casts).
        pooled_video, pooled_text = pooled_video.float(), pooled_text.float()
        video_tokens, text_tokens = video_tokens.float(), text_tokens.float()

    if cfg.faithful or logit_scale is None:
        log_scale = torch.tensor(math.log(1 / cfg.temperature_init), dtype=pooled_video.dtype,
                                 device=pooled_video.device)
    else:
        log_scale = torch.as_tensor(logit_scale, device=pooled_video.device)
        check_finite("logit_scale", log_scale)
    scale = log_scale.clamp(0.0, _MAX_LOG_SCALE).exp().to(pooled_video.dtype)

    clip, clip_diag = _clip_term(pooled_video, pooled_text, scale, cfg)

    v2t, t2v = fine_grained_directions(video_tokens, text_tokens, video_mask, text_mask, cfg.alpha,
                                       cfg.chunk_size, faithful=cfg.faithful)  # (N videos, N texts)
    pooled_sim = F.normalize(pooled_video, dim=-1) @ F.normalize(pooled_text, dim=-1).T
    if cfg.faithful:
        pooled_sim, v2t, t2v = _minmax(pooled_sim), _minmax(v2t), _minmax(t2v)
    fused_vt = (cfg.fusion_weight * pooled_sim + (v2t + t2v) / 2) / (cfg.fusion_weight + 1)
    paragraph, par_diag = _paragraph_term(fused_vt.T, scale, cfg)  # release orientation: captions x clips

    out = {"total": clip + cfg.lambda_paragraph * paragraph, "clip": clip, "paragraph": paragraph}
    out.update(clip_diag)
    out.update(par_diag)
    out["logit_scale"] = scale.detach()
    return out
