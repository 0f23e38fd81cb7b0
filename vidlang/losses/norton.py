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
t words (text tokens), w real words packed text-major (padding dropped), d features, p paragraphs, l clips
(captions) in a paragraph, q caption paragraphs, r clip paragraphs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidlang.errors import NonFiniteError
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
    # Blocks of the fine-grained similarity: None = automatic (length groups of videos, blocks of
    # <= MAX_BLOCK_ENTRIES frame-word entries); an int = that many videos x texts per block (memory O(chunk^2*F*T)).
    chunk_size: int | None = None

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
            ("chunk_size", self.chunk_size is None or self.chunk_size >= 1, ">= 1 or None"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ValueError(f"NortonConfig.{key}={getattr(self, key)!r} must be {want}")


# Frame-word similarity block budget: a block holds (words of its texts) x (frames of its videos) float entries.
# 16M entries = 64 MiB of float32: the demo batch (128 pairs) fits whole (its 8 length-group blocks are all kept
# for backward), N=1024 runs in a few dozen blocks.
MAX_BLOCK_ENTRIES = 1 << 24
# Static-max fast path (see _FrameWordSoftMax) when every softmax denominator is >= exp(-2/alpha) >= exp(-40):
# it cannot underflow and its reciprocal (backward) stays finite. Smaller alpha uses per-row maxima.
_STATIC_MIN_ALPHA = 0.05
_PAD_EXPONENT = -80.0


def _check_mask(name: str, mask: Tensor, shape: tuple[int, int]) -> Tensor:
    if tuple(mask.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(mask.shape)}")
    mask = mask.bool()
    if not bool(mask.any(dim=1).all()):
        bad = int((~mask.any(dim=1)).nonzero()[0])
        raise ValueError(f"{name}: row {bad} has no real token (all padding)")
    return mask


# Videos are sorted by frame extent and cut into up to this many equal-count groups, each padded only to its own
# longest video: padded frames cost as much as real ones in the block matmul and exp (a batch of clips of 3-16 s
# padded to 16 is ~40% padding; 8 groups leave a few percent) at the price of a few more, smaller matmuls.
_LENGTH_GROUPS = 8


def _block_plan(extents: list[int], word_offsets: list[int], chunk_size: int | None,
                max_entries: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """Blocks of the frame-word similarity over videos sorted by ascending ``extents`` (last real frame + 1).

    Returns video ranges (i0, i1, frames) -- each range holds the frames [0, frames) of its videos, i.e. its own
    longest extent -- and text ranges (j0, j1). A block of ci videos of f frames and texts holding w real words has
    w * ci * f entries. chunk_size: ci = cj = chunk_size; None: up to _LENGTH_GROUPS length groups of videos, each
    split further so that a block against every text fits ``max_entries``; texts are split only when one
    (longest) video against every text would not fit.
    """
    nv, n_texts, total_words = len(extents), len(word_offsets) - 1, word_offsets[-1]
    if chunk_size is not None:
        vid = [(i, min(i + chunk_size, nv)) for i in range(0, nv, chunk_size)]
        txt = [(j, min(j + chunk_size, n_texts)) for j in range(0, n_texts, chunk_size)]
        return [(i0, i1, extents[i1 - 1]) for i0, i1 in vid], txt
    groups = min(_LENGTH_GROUPS, nv)
    bounds = [round(k * nv / groups) for k in range(groups + 1)]
    vid = []
    for g0, g1 in zip(bounds, bounds[1:]):
        ci = max(1, max_entries // max(1, total_words * extents[g1 - 1]))
        vid += [(i, min(i + ci, g1), extents[min(i + ci, g1) - 1]) for i in range(g0, g1, ci)]
    frames = extents[-1]
    if total_words * frames <= max_entries:
        return vid, [(0, n_texts)]
    txt, j0 = [], 0  # texts grouped greedily under the budget (against the longest video)
    for j in range(n_texts):
        if j > j0 and (word_offsets[j + 1] - word_offsets[j0]) * frames > max_entries:
            txt.append((j0, j))
            j0 = j
    txt.append((j0, n_texts))
    return vid, txt


class _FrameWordSoftMax(torch.autograd.Function):
    """Both directional frame-word soft maxima of all (video, text) pairs, block by block, from ONE similarity
    block per (video range, text range): a single matmul of the block's frames with the block's real words.

    Videos arrive sorted by frame extent (see fine_grained_directions); a video range keeps only the frames
    [0, f) of its own longest video. Layout of a block (rows: the real words of the block's texts, packed
    text-major; columns: (i f), the kept frames of the block's videos, padded ones included): ``s = words @
    frames^T``. The texts' padding never enters the matmul (words are packed); padded frames (zero vectors) get
    their own exponent through the addmm's bias, so exp() makes them negligible (see _fw_block) without a separate
    masking pass. Reductions: over frames (t2v) = a contiguous (w, i, f) -> (w, i) sum; over the words of each
    text (v2t) = index_add_ of rows.

    Backward needs the softmax weights (e / row sums). When all blocks together fit the entry budget (e.g. the
    demo batch) the forward's exponentials are kept (no recompute); otherwise each block is recomputed in
    backward (one matmul + exp), so training memory is O(block) too, not O(Nv*Nt*F*T) like plain autograd over
    the blocks. dL/ds = e_t * A[text(w), (i f)] + e_f * B[w, i] with A = g_v2t * wf / S_t and B = g_t2v * wt / S_f
    (wf, wt: the 1/n averaging weights, 0 on padding; the same in faithful and default modes, which differ only
    by constants). Then grad_words = dL/ds @ frames and grad_frames = dL/ds^T @ words.
    """

    @staticmethod
    def forward(ctx, v: Tensor, words: Tensor, vmask: Tensor, word_text: Tensor, word_offsets: list[int],
                n_t: Tensor, alpha: float, faithful: bool, n_words_padded: int, extents: list[int],
                chunk_size: int | None, max_entries: int):
        nv, nf, d = v.shape
        nt = n_t.shape[0]
        vmf = vmask.to(v.dtype)
        n_f = vmf.sum(1)
        wf = vmf / n_f[:, None]  # (Nv, F) frame weights of the v2t average
        w_word = 1.0 / n_t[word_text]  # (Rt,) word weights of the t2v average
        static = alpha >= _STATIC_MIN_ALPHA
        vid, txt = _block_plan(extents, word_offsets, chunk_size, max_entries)
        v2t = v.new_empty(nv, nt)
        t2v = v.new_empty(nv, nt)
        entries = sum((word_offsets[j1] - word_offsets[j0]) * (i1 - i0) * fi for i0, i1, fi in vid for j0, j1 in txt)
        keep = entries <= max_entries and any(ctx.needs_input_grad[:2])
        saved = []
        for i0, i1, fi in vid:
            for j0, j1 in txt:
                blk = _fw_block(v, words, vmask, word_text, word_offsets, alpha, static, i0, i1, fi, j0, j1)
                e_t, e_f, s_t, s_f, m_t, m_f = blk
                # lse over the real words of each text (per frame) and over the real frames (per word)
                lse_t = (torch.log(s_t.clamp_min(torch.finfo(v.dtype).tiny)) + m_t).view(j1 - j0, i1 - i0, fi)
                lse_f = torch.log(s_f) + m_f  # (w, i)
                w0, w1 = word_offsets[j0], word_offsets[j1]
                wt_loc = word_text[w0:w1] - j0
                ntj, nfi = n_t[j0:j1], n_f[i0:i1]
                if faithful:  # release: sum over real tokens, each padded token adds log(n_real of the other side)
                    vt = ((lse_t * vmf[i0:i1, :fi]).sum(2) + (nf - nfi)[None, :] * torch.log(ntj)[:, None]) / nfi
                    tv = (lse_f.new_zeros(j1 - j0, i1 - i0).index_add_(0, wt_loc, lse_f)
                          + (n_words_padded - ntj)[:, None] * torch.log(nfi)[None, :]) / ntj[:, None]
                else:  # log-mean-exp averaged over real tokens (weights sum to 1, so the -log n moves out)
                    vt = (lse_t * wf[i0:i1, :fi]).sum(2) - torch.log(ntj)[:, None]
                    tv = (lse_f.new_zeros(j1 - j0, i1 - i0).index_add_(0, wt_loc, lse_f * w_word[w0:w1, None])
                          - torch.log(nfi)[None, :])
                v2t[i0:i1, j0:j1] = alpha * vt.T
                t2v[i0:i1, j0:j1] = alpha * tv.T
                if keep:
                    saved.append((e_t, e_f, s_t, s_f))
        ctx.cfg = (word_offsets, alpha, static, vid, txt, saved if keep else None)
        ctx.save_for_backward(v, words, vmask, word_text, wf, w_word)
        return v2t, t2v

    @staticmethod
    def backward(ctx, g_v2t: Tensor, g_t2v: Tensor):
        v, words, vmask, word_text, wf, w_word = ctx.saved_tensors
        word_offsets, alpha, static, vid, txt, saved = ctx.cfg
        need_v, need_w = ctx.needs_input_grad[:2]
        grad_v = torch.zeros_like(v) if need_v else None
        grad_w = torch.zeros_like(words) if need_w else None
        tiny = torch.finfo(v.dtype).tiny
        blocks = [(i0, i1, fi, j0, j1) for i0, i1, fi in vid for j0, j1 in txt]
        for k, (i0, i1, fi, j0, j1) in enumerate(blocks):
            if saved is not None:
                e_t, e_f, s_t, s_f = saved[k]
            else:
                e_t, e_f, s_t, s_f, _, _ = _fw_block(v, words, vmask, word_text, word_offsets, alpha, static,
                                                     i0, i1, fi, j0, j1)
            w0, w1 = word_offsets[j0], word_offsets[j1]
            wt_loc = word_text[w0:w1] - j0
            ci, nw = i1 - i0, w1 - w0
            # A: (texts, (i f)); padded frames have wf = 0 (and s_t = 0 there: clamp keeps 0 / s finite)
            a = (g_v2t[i0:i1, j0:j1].T[:, :, None] * wf[None, i0:i1, :fi]).reshape(j1 - j0, ci * fi)
            a = a / s_t.clamp_min(tiny)
            b = g_t2v[i0:i1, j0:j1].T[wt_loc] * w_word[w0:w1, None] / s_f  # (w, i)
            grad_s = a.index_select(0, wt_loc)  # (w, (i f))
            if static:  # e_t is e_f: dL/ds = e * (A + B)
                grad_s.view(nw, ci, fi).add_(b[:, :, None])
                grad_s.mul_(e_t)
            else:
                grad_s.mul_(e_t).view(nw, ci, fi).addcmul_(e_f.view(nw, ci, fi), b[:, :, None])
            if need_w:
                grad_w[w0:w1].addmm_(grad_s, v[i0:i1, :fi].reshape(ci * fi, -1))
            if need_v:
                grad_v[i0:i1, :fi] += torch.mm(grad_s.T, words[w0:w1]).view(ci, fi, -1)
        return grad_v, grad_w, None, None, None, None, None, None, None, None, None, None


def _fw_block(v, words, vmask, word_text, word_offsets, alpha, static, i0, i1, fi, j0, j1):
    """Exponentials and their sums for one block (videos i0:i1, their frames [0, fi), texts j0:j1). Returns e_t,
    e_f (w, (i f)) (the same tensor on the static path), s_t (texts, (i f)) = sums over each text's words, s_f
    (w, i) = sums over each video's frames, and the shifts m_t, m_f (lse = log s + m)."""
    d = v.shape[2]
    ci = i1 - i0
    w0, w1 = word_offsets[j0], word_offsets[j1]
    wt_loc = word_text[w0:w1] - j0
    vb = v[i0:i1, :fi].reshape(ci * fi, d)
    real = vmask[i0:i1, :fi].reshape(1, ci * fi)
    if static:
        # Unit vectors: s <= 1, so lse(s/alpha) = 1/alpha + log sum exp((s-1)/alpha) with every exponent in
        # [-2/alpha, 0]: the log-sum-exp shift is known in advance (no max passes); it rides in the addmm's bias.
        # Padded frames (zero vectors, s = 0) get exponent -80 instead: exp = 1.8e-35, a normal float32 that adds
        # < F * 1e-20 relative to any real sum (>= exp(-40)), i.e. nothing, and never a denormal (exp() of
        # arguments below -87 produces denormals / zeros through a slow path, several times slower).
        bias = torch.full_like(real, -1.0 / alpha, dtype=v.dtype).masked_fill_(~real, _PAD_EXPONENT)
        e = torch.addmm(bias, words[w0:w1], vb.T, alpha=1.0 / alpha).exp_()
        s_f = e.view(w1 - w0, ci, fi).sum(2)
        s_t = e.new_zeros(j1 - j0, ci * fi).index_add_(0, wt_loc, e)
        return e, e, s_t, s_f, 1.0 / alpha, 1.0 / alpha
    # Small alpha: exponents span more than float32 can hold, so shift by the maxima of each direction.
    s = torch.mm(words[w0:w1], vb.T).div_(alpha)  # (w, (i f)) = cosine / alpha; 0 on padded frames
    s_real = s.view(w1 - w0, ci, fi).masked_fill(~real.view(1, ci, fi), float("-inf"))
    m_f = s_real.amax(2)  # over real frames (every video has one): finite
    e_f = (s_real - m_f[:, :, None]).exp_().view(w1 - w0, ci * fi)  # exactly 0 on padded frames
    m_t = s.new_full((j1 - j0, ci * fi), float("-inf")).scatter_reduce_(
        0, wt_loc[:, None].expand(-1, ci * fi), s, "amax")
    e_t = (s - m_t.index_select(0, wt_loc)).exp_()  # padded-frame columns: finite, weight 0 downstream
    s_f = e_f.view(w1 - w0, ci, fi).sum(2)
    s_t = e_t.new_zeros(j1 - j0, ci * fi).index_add_(0, wt_loc, e_t)
    return e_t, e_f, s_t, s_f, m_t, m_f


def fine_grained_directions(
    video_tokens: Tensor,
    text_tokens: Tensor,
    video_mask: Tensor,
    text_mask: Tensor,
    alpha: float = 1.0,
    chunk_size: int | None = None,
    faithful: bool = False,
    max_block_entries: int = MAX_BLOCK_ENTRIES,
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
    Blocks: a block pairs a range of videos with a range of texts and holds (real words of its texts) x (frames
    of its videos) entries (padded words are dropped before the matmul; videos are sorted by extent so a range
    keeps only the frames of its own longest video). chunk_size None (default): up to 8 length groups of videos,
    split further to keep each block under ``max_block_entries``; an int: chunk_size videos x chunk_size texts per
    block. Peak extra memory, forward and backward (training) alike: ~2 blocks plus the outputs, or at most
    ``max_block_entries`` when the blocks together fit it (their exponentials are then kept from the forward
    instead of recomputed); never Nv*Nt*F*T (a custom autograd Function recomputes blocks in backward).
    """
    nv, nf, d = video_tokens.shape
    nt, nw, d2 = text_tokens.shape
    if d != d2:
        raise ValueError(f"video_tokens dim {d} != text_tokens dim {d2}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    if video_tokens.dtype in (torch.float16, torch.bfloat16):  # sums of exponentials need float32
        video_tokens, text_tokens = video_tokens.float(), text_tokens.float()
    vmask = _check_mask("video_mask", video_mask, (nv, nf))
    tmask = _check_mask("text_mask", text_mask, (nt, nw))
    # Zero padded frames before normalising (a zero vector normalises to 0 with a finite gradient), so garbage,
    # even NaN, padding cannot leak into sums or gradients. Padded words are not used at all (packed out).
    v = F.normalize(video_tokens.masked_fill(~vmask[:, :, None], 0.0), dim=-1)
    flat = tmask.reshape(-1).nonzero().squeeze(1)  # real words, text-major (j t) order
    words = F.normalize(rearrange(text_tokens, "j t d -> (j t) d")[flat], dim=-1)  # (Rt, D)
    word_text = torch.div(flat, nw, rounding_mode="floor")  # (Rt,) text of each real word
    n_t_int = tmask.sum(1)
    word_offsets = [0] + torch.cumsum(n_t_int, 0).tolist()  # words of text j: rows offsets[j]:offsets[j+1]
    # Sort videos by extent (last real frame + 1) so that blocks of similar videos skip their common padding.
    extent = (vmask * torch.arange(1, nf + 1, device=vmask.device)).amax(1)
    order = torch.argsort(extent, stable=True)
    sorted_already = bool((order == torch.arange(nv, device=order.device)).all())
    if not sorted_already:
        v, vmask = v[order], vmask[order]
    v2t, t2v = _FrameWordSoftMax.apply(v, words, vmask, word_text, word_offsets, n_t_int.to(v.dtype), float(alpha),
                                       bool(faithful), nw, extent[order].tolist(), chunk_size,
                                       int(max_block_entries))
    if not sorted_already:
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(nv, device=order.device)
        v2t, t2v = v2t[inverse], t2v[inverse]
    return v2t, t2v


def fine_grained_similarity(
    video_tokens: Tensor,
    text_tokens: Tensor,
    video_mask: Tensor,
    text_mask: Tensor,
    alpha: float = 1.0,
    chunk_size: int | None = None,
    max_block_entries: int = MAX_BLOCK_ENTRIES,
) -> Tensor:
    """Symmetric frame-word similarity (default mode): (v2t + t2v) / 2 of ``fine_grained_directions``.

    Shapes: video_tokens (Nv, F, D), text_tokens (Nt, T, D), video_mask (Nv, F), text_mask (Nt, T)
        -> (Nv, Nt), entry [i, j] = similarity(video i, text j), in [-1, 1].
    """
    v2t, t2v = fine_grained_directions(video_tokens, text_tokens, video_mask, text_mask, alpha, chunk_size,
                                       max_block_entries=max_block_entries)
    return (v2t + t2v) / 2


def _minmax(x: Tensor) -> Tensor:
    return (x - x.min()) / (x.max() - x.min())


def _identity(x: Tensor) -> Tensor:
    return x


def _gather_tokens(gather: Callable[[Tensor], Tensor], tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """All-gather (n, S, D) tokens and their (n, S) mask; ranks may pad to different S, so pad to the largest.
    Shapes: -> (W*n, S_max, D), (W*n, S_max) bool."""
    s = torch.tensor([[tokens.shape[1]]], dtype=tokens.dtype, device=tokens.device)
    s_max = int(gather(s).max())
    pad = s_max - tokens.shape[1]
    if pad:
        tokens = F.pad(tokens, (0, 0, 0, pad))
        mask = F.pad(mask.to(torch.bool), (0, pad))
    return gather(tokens), gather(mask.to(tokens.dtype)) > 0.5


def _clip_term(pv: Tensor, pt: Tensor, all_pv: Tensor, all_pt: Tensor, off: int, scale: Tensor,
               cfg: NortonConfig) -> tuple[Tensor, dict]:
    """Rectified clip-caption contrast of this process's rows against the (gathered) batch.

    Q is solved on the global (N, N) logits, identical on every process; the CE averages over local rows, so the
    mean over processes is the single-process loss on the global batch (one process: n == N, off == 0).
    Shapes: pv, pt (n, D) local; all_pv, all_pt (N, D) gathered; off: first local row in the gathered order
    -> loss (), diagnostics.
    """
    n, big_n = pv.shape[0], all_pv.shape[0]
    single = n == big_n
    if cfg.faithful:  # raw dot products, no temperature (release; one process only)
        logits_v = pv @ pt.T
        logits_t, full = logits_v.T, logits_v.detach()
    else:
        pvn, all_ptn = F.normalize(pv, dim=-1), F.normalize(all_pt, dim=-1)
        logits_v = scale * pvn @ all_ptn.T  # (n, N): local videos vs every text
        if single:
            logits_t, full = logits_v.T, logits_v.detach()
        else:
            all_pvn = F.normalize(all_pv, dim=-1)
            logits_t = scale * F.normalize(pt, dim=-1) @ all_pvn.T  # (n, N): local texts vs every video
            with torch.no_grad():
                full = scale * all_pvn @ all_ptn.T
    ones = torch.ones(big_n, dtype=torch.float32, device=pv.device)
    # Count marginals (each row/column carries mass 1) == release's 1/(2N) marginals times 2N.
    q, info = sinkhorn_scores(full, ones, ones, epsilon=cfg.epsilon_rectify, n_iters=cfg.n_iters, tol=None)
    if not bool(torch.isfinite(q).all()):
        raise NonFiniteError("clip rectification: the OT plan is not finite (check the embeddings' scale)")
    q = q.to(logits_v.dtype)
    if cfg.faithful:
        q_v2t, q_t2v = q, q.T
    else:
        q_v2t, q_t2v = normalize_rows(q)[off:off + n], normalize_rows(q.T)[off:off + n]
    eye = F.one_hot(torch.arange(n, device=pv.device) + off, big_n).to(logits_v.dtype)  # local rows of I
    loss_v = soft_cross_entropy(logits_v, (1 - cfg.beta) * eye + cfg.beta * q_v2t)
    loss_t = soft_cross_entropy(logits_t, (1 - cfg.beta) * eye + cfg.beta * q_t2v)
    diag = {"clip_v2t": loss_v.detach(), "clip_t2v": loss_t.detach(),
            "rectify_offdiag_mass": (q_v2t.sum() - q_v2t[:, off:off + n].diagonal().sum()).detach() / n,
            "rectify_marginal_err": torch.tensor(info.err)}
    return loss_v + loss_t, diag


def _fused_similarity(vt: Tensor, tt: Tensor, vm: Tensor, tm: Tensor, pv: Tensor, pt: Tensor,
                      cfg: NortonConfig) -> Tensor:
    """Clip-caption similarity fusing the pooled cosine with the frame-word soft maximum.

    Shapes: tokens/masks/pooled of Nv videos and Nt texts -> (Nt, Nv) [captions x clips, the release's
    orientation]. Faithful mode min-max normalises each of the three terms over the whole (local) batch.
    """
    v2t, t2v = fine_grained_directions(vt, tt, vm, tm, cfg.alpha, cfg.chunk_size, faithful=cfg.faithful)
    pooled = F.normalize(pv, dim=-1) @ F.normalize(pt, dim=-1).T  # (Nv, Nt)
    if cfg.faithful:
        pooled, v2t, t2v = _minmax(pooled), _minmax(v2t), _minmax(t2v)
    return ((cfg.fusion_weight * pooled + (v2t + t2v) / 2) / (cfg.fusion_weight + 1)).T


def _paragraph_logits(sim_tv: Tensor, p: Tensor, scale: Tensor, cfg: NortonConfig) -> tuple[Tensor, Tensor, float]:
    """Paragraph logits of every (caption paragraph, clip paragraph) block of a captions x clips similarity.

    Each L x L block gets an OT plan with the prompt bucket (value p); the plan's real mass is renormalised to L
    (clamped away from 0 except in faithful mode, where the release divides by it as is).
    Shapes: sim_tv (Q*L, R*L) -> logits (Q, R), mass (Q, R) of each plan's real block, marginal error.
    """
    L = cfg.clips_per_paragraph
    blocks = rearrange(sim_tv, "(q l) (r m) -> (q r) l m", l=L, m=L)
    res = sinkhorn_with_bucket(blocks.detach(), p, epsilon=cfg.epsilon_paragraph, n_iters=cfg.n_iters, tol=None)
    if not bool(torch.isfinite(res.plan).all()):
        raise NonFiniteError("paragraph OT: the plan is not finite")
    mass = res.plan.sum(dim=(1, 2), keepdim=True)
    if not cfg.faithful:
        mass = mass.clamp_min(1e-12)
    align = (res.plan * (L / mass)).to(sim_tv.dtype)  # target weights: no gradient
    q = sim_tv.shape[0] // L
    logits = scale * rearrange((align * blocks).sum(dim=(1, 2)), "(q r) -> q r", q=q)
    return logits, rearrange(mass.flatten(), "(q r) -> q r", q=q), res.info.err


def _bucket_value(diag: Tensor, cfg: NortonConfig) -> Tensor:
    """The prompt bucket's value p from the matched-pair similarities `diag` (N,)."""
    if cfg.faithful:
        k = int(cfg.bucket_quantile * diag.shape[0])
        if k < 1:
            raise ValueError(f"faithful bucket: int(bucket_quantile * N) = int({cfg.bucket_quantile} * "
                             f"{diag.shape[0]}) = 0; kthvalue needs k >= 1")
        return torch.kthvalue(diag, k).values
    # quantile needs float32/64; keep float64 exact, lift half precision to float32
    qdtype = torch.float64 if diag.dtype == torch.float64 else torch.float32
    return torch.quantile(diag.to(qdtype), cfg.bucket_quantile)


def _paragraph_term(rows_tv: Tensor, cols_tv: Tensor | None, off: int, gather: Callable[[Tensor], Tensor],
                    scale: Tensor, cfg: NortonConfig) -> tuple[Tensor, dict]:
    """Paragraph contrast of this process's caption paragraphs (rows) and clip paragraphs (columns) against the
    (gathered) batch. The bucket value is the quantile of the GLOBAL matched-pair similarities.
    Shapes: rows_tv (n, N) local captions x all clips; cols_tv (N, n) all captions x local clips, None when one
    process holds the whole batch (then it is rows_tv); off: first local row in the gathered order (a multiple
    of L)."""
    n = rows_tv.shape[0]
    L = cfg.clips_per_paragraph
    p = _bucket_value(gather(rows_tv.detach()[:, off:off + n].diagonal()[:, None])[:, 0], cfg)
    logits_rows, mass_rows, err = _paragraph_logits(rows_tv, p, scale, cfg)  # (n/L, N/L)
    logits_cols = logits_rows
    if cols_tv is not None:
        logits_cols, _, err_c = _paragraph_logits(cols_tv, p, scale, cfg)  # (N/L, n/L)
        err = max(err, err_c)
    labels = torch.arange(n // L, device=rows_tv.device) + off // L
    loss_t = F.cross_entropy(logits_rows, labels)
    loss_v = F.cross_entropy(logits_cols.T, labels)
    matched = mass_rows[:, off // L:(off + n) // L].diagonal()
    diag_out = {"paragraph_t2v": loss_t.detach(), "paragraph_v2t": loss_v.detach(), "bucket_value": p.detach(),
                "bucket_fraction": (1 - matched / L).mean().detach(),
                "paragraph_marginal_err": torch.tensor(err)}
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
    gather: Callable[[Tensor], Tensor] | None = None,
    rank_offset: int = 0,
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
    gather: multi-process training (contract of contrastive.infonce_loss): a callable that all-gathers along
    dim 0 with gradient, local rows at ``rank_offset`` (every process passes the same N). Then the clip term's
    negatives and rectification plan and the paragraph contrast (negatives, bucket quantile) use the global
    batch: each process computes the rows of its own clips/captions (and paragraphs) against every process's,
    so the mean over processes equals the single-process loss on the global batch (and DDP's gradient averaging
    gives its gradient). Default mode only (faithful min-max normalisation is whole-batch and local, as in the
    release). Fine-grained cost per process: 2 x local x global pairs.
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

    if gather is not None and cfg.faithful:
        raise ValueError("norton_loss: gather (global batch) is not supported with faithful=True")
    if rank_offset % L:
        raise ValueError(f"rank_offset={rank_offset} is not a multiple of clips_per_paragraph L={L}")
    gather = gather or _identity
    pv, pt, vt, tt, vm, tm = pooled_video, pooled_text, video_tokens, text_tokens, video_mask, text_mask
    all_pv, all_pt = gather(pv), gather(pt)
    clip, clip_diag = _clip_term(pv, pt, all_pv, all_pt, rank_offset, scale, cfg)
    if all_pv.shape[0] == n:  # one process: every caption x every clip, once
        rows_tv, cols_tv = _fused_similarity(vt, tt, vm, tm, pv, pt, cfg), None
    else:  # this process's captions x every clip, and every caption x this process's clips
        all_vt, all_vm = _gather_tokens(gather, vt, vm)
        all_tt, all_tm = _gather_tokens(gather, tt, tm)
        rows_tv = _fused_similarity(all_vt, tt, all_vm, tm, all_pv, pt, cfg)  # (n, N)
        cols_tv = _fused_similarity(vt, all_tt, vm, all_tm, pv, all_pt, cfg)  # (N, n)
    paragraph, par_diag = _paragraph_term(rows_tv, cols_tv, rank_offset, gather, scale, cfg)
    out = {"total": clip + cfg.lambda_paragraph * paragraph, "clip": clip, "paragraph": paragraph}
    out.update(clip_diag)
    out.update(par_diag)
    out["logit_scale"] = scale.detach()
    return out
