"""Paragraph (long-video) retrieval: sequence-to-sequence scores between a paragraph and a video.

A paragraph is a video's sentences in order, (N, D); a video is a sequence of clip embeddings, (M, D):
its annotated segments (background removed) or fixed windows over the whole video (background kept).
Scores, all "higher = more similar", computed for every (paragraph, video) pair in chunks:

- caption average: cos(mean of sentences, mean of clips) after re-normalising the means.
- DTW: cost C = 1 - cos; D[i, j] = C[i, j] + min(D[i-1, j], D[i, j-1], D[i-1, j-1]), D[0, 0] = C[0, 0]; score
  = -D[N-1, M-1] (the whole of both sequences is aligned). Ragged pairs are padded, and the value is read at
  each pair's own (N_b - 1, M_b - 1): the recursion only looks at earlier cells, so padding never leaks in.
  (The reference code pads and then zeroes the last *real* row, which changes the score of every ragged pair;
  `tests/eval/test_paragraph.py` pins the correct behaviour.)
- OTAM (Cao et al., CVPR 2020, eq. 5): the video axis is padded with a zero-cost column at both ends; inside
  the real columns a path moves diagonally or right only (each clip is matched to one sentence, sentences in
  order), in the two padding columns it may also move down, so the path may skip a prefix and a suffix of the
  sentences. Cumulative distance Gamma(l, m) = C(l, m) + softmin(...) (a *distance*: the reference adds where it
  must subtract in its soft-min and so rewards long paths); score = -Gamma(N-1, M+1).
  `gamma=0` uses the hard min, `gamma>0` the smooth -gamma logsumexp(-x / gamma) (log-domain).
- OT: entropic OT between sentences and clips with vidlang's prompt bucket (vidlang.losses.ot); score = the
  transported similarity <P, S> of the plan restricted to real (non-bucket) pairs (see `ot_scores`).

Sequence lengths matter for DTW/OTAM: the raw path sum grows with the path length, as in the references; we do
not normalise, so that the numbers mean what the definitions say.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vidlang.eval.retrieval import RECALL_KS, rank_metrics

INF = float("inf")


def _softmin(stack: Tensor, gamma: float) -> Tensor:
    """Min over the last axis; smooth (log-domain) when gamma > 0. Shapes: (..., k) -> (...)."""
    if gamma <= 0:
        return stack.min(dim=-1).values
    return -gamma * torch.logsumexp(-stack / gamma, dim=-1)


def pad_sequences(seqs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """List of (L_i, D) -> (B, L_max, D) zero-padded, lengths (B,)."""
    lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
    if (lengths == 0).any():
        raise ValueError("empty sequence")
    out = seqs[0].new_zeros(len(seqs), int(lengths.max()), seqs[0].shape[1])
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lengths


def _row_scan(c: Tensor, a: Tensor, left: Tensor, gamma: float) -> Tensor:
    """Solve x[j] = c[j] + softmin(a[j], x[j-1]) along a row, with x[-1] = left, in O(1) vector steps.

    Unrolled, x[j] = P[j] + softmin(left, a[k] - P[k-1] for k <= j) with P the prefix sums of c (P[-1] = 0):
    a cumulative min (hard) or a cumulative log-sum-exp (soft, exact since exp(-x/gamma) obeys a linear
    recursion). Shapes: c, a (B, M); left (B,) -> (B, M).
    """
    P = c.cumsum(dim=1)
    shifted = a - torch.cat([P.new_zeros(P.shape[0], 1), P[:, :-1]], dim=1)  # a[k] - P[k-1]
    terms = torch.cat([left[:, None], shifted], dim=1)  # (B, M + 1)
    if gamma <= 0:
        best = terms.cummin(dim=1).values[:, 1:]
    else:
        best = -gamma * torch.logcumsumexp(-terms / gamma, dim=1)[:, 1:]
    return P + best


def dtw_distance(cost: Tensor, n_len: Tensor, m_len: Tensor, gamma: float = 0.0) -> Tensor:
    """Batched DTW distance of ragged pairs (float64 inside).

    Shapes: cost (B, N, M) (padding cells arbitrary), n_len (B,), m_len (B,) -> (B,) distances.
    Row by row: D[i, j] = C[i, j] + softmin(min(D[i-1, j], D[i-1, j-1]), D[i, j-1]) solved with `_row_scan`.
    """
    cost = cost.double()
    B, N, M = cost.shape
    D = cost.new_full((B, N + 1, M + 1), INF)
    D[:, 0, 0] = 0.0
    left = cost.new_full((B,), INF)  # D[i, 0] = inf for i >= 1
    for i in range(1, N + 1):
        a = _softmin(torch.stack([D[:, i - 1, 1:], D[:, i - 1, :-1]], dim=-1), gamma)  # (B, M)
        D[:, i, 1:] = _row_scan(cost[:, i - 1], a, left, gamma)
    return D[torch.arange(B), n_len, m_len]


def otam_distance(cost: Tensor, n_len: Tensor, m_len: Tensor, gamma: float = 0.0) -> Tensor:
    """Batched OTAM cumulative distance (see module docstring), rows = sentences, columns = clips (float64).

    Shapes: cost (B, N, M), n_len (B,), m_len (B,) -> (B,).
    """
    cost = cost.double()
    B, N, M = cost.shape
    # G[:, l, m]: Gamma at sentence l - 1 and padded column m (m = 0 is the leading zero-cost column, 1..M the
    # real clips). Row 0 is the virtual row above the first sentence (unreachable, +inf).
    G = cost.new_full((B, N + 1, M + 1), INF)
    # leading padding column: zero cost, reached from the start (first sentence) or from above (skipping)
    G[:, 1:, 0] = 0.0
    for l in range(1, N + 1):
        # inside the real columns: from the diagonal G[l-1, m-1] or the left G[l, m-1] (left boundary G[l, 0] = 0)
        G[:, l, 1:] = _row_scan(cost[:, l - 1], G[:, l - 1, :-1], G[:, l, 0], gamma)
    # trailing padding column at each pair's own M_b + 1: moves from the left, the diagonal, or down.
    last = G[torch.arange(B), :, m_len]  # (B, N + 1): Gamma(l, M_b) for rows l
    end = cost.new_full((B,), INF)
    ends = []
    for l in range(1, N + 1):
        end = _softmin(torch.stack([last[:, l - 1], last[:, l], end], dim=-1), gamma)
        ends.append(end)
    return torch.stack(ends, dim=1)[torch.arange(B), n_len - 1]


def caption_average_scores(texts: Sequence[Tensor], videos: Sequence[Tensor]) -> Tensor:
    """Shapes: P paragraphs (N_i, D), V videos (M_j, D) -> (P, V) cosine of the re-normalised means."""
    t = torch.stack([x.float().mean(0) for x in texts])
    v = torch.stack([x.float().mean(0) for x in videos])
    t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return t @ v.T


def _pair_chunks(texts: Sequence[Tensor], videos: Sequence[Tensor], chunk_pairs: int):
    """Yield (paragraph slice, S (p*V, N, M) cosine, n_len (p*V,), m_len (p*V,)) over chunks of paragraphs.

    Similarities are computed paragraph-chunk x all videos with one einsum, so no (pairs, length, D) copy of
    the features is ever made (D = 512 would cost gigabytes on YouCookII).
    """
    T, tl = pad_sequences([x.float() for x in texts])
    Vd, vl = pad_sequences([x.float() for x in videos])
    V = Vd.shape[0]
    step = max(1, chunk_pairs // V)
    for s in range(0, T.shape[0], step):
        p = T[s : s + step]
        S = torch.einsum("pnd,vmd->pvnm", p, Vd).reshape(-1, T.shape[1], Vd.shape[1])
        yield slice(s, s + p.shape[0]), S, tl[s : s + step].repeat_interleave(V), vl.repeat(p.shape[0])


def _pairwise(texts: Sequence[Tensor], videos: Sequence[Tensor], fn, chunk_pairs: int) -> Tensor:
    """Apply a batched sequence distance (on cost = 1 - cos) to all (paragraph, video) pairs; returns -distance."""
    out = torch.empty(len(texts), len(videos))
    for sl, S, n, m in _pair_chunks(texts, videos, chunk_pairs):
        out[sl] = -fn(1.0 - S, n, m).view(-1, len(videos)).float()
    return out


def dtw_scores(texts: Sequence[Tensor], videos: Sequence[Tensor], gamma: float = 0.0,
               chunk_pairs: int = 8192) -> Tensor:
    """Shapes: P paragraphs (N_i, D), V videos (M_j, D), L2-normalised -> (P, V) = -DTW distance."""
    return _pairwise(texts, videos, lambda c, n, m: dtw_distance(c, n, m, gamma), chunk_pairs)


def otam_scores(texts: Sequence[Tensor], videos: Sequence[Tensor], gamma: float = 0.0,
                chunk_pairs: int = 8192) -> Tensor:
    """Shapes: P paragraphs (N_i, D), V videos (M_j, D), L2-normalised -> (P, V) = -OTAM distance."""
    return _pairwise(texts, videos, lambda c, n, m: otam_distance(c, n, m, gamma), chunk_pairs)


def ot_scores(texts: Sequence[Tensor], videos: Sequence[Tensor], bucket_value: float | None = None,
              bucket_quantile: float = 0.5, epsilon: float = 0.05, n_iters: int = 50,
              chunk_pairs: int = 4096) -> Tensor:
    """Entropic OT with Norton's alignable prompt bucket between each paragraph and each video.

    Shapes: P paragraphs (N_i, D), V videos (M_j, D), L2-normalised -> (P, V).
    Per pair, S = sentences x clips cosine (N, M); `vidlang.losses.ot.sinkhorn_with_bucket(S, p)` gives a plan in
    count units (each real sentence carries mass 1). The score is the mean over sentences of what each sentence
    transports: sum_j P_ij S_ij + P_i,bucket * p, i.e. a soft "best alignment, or p if nothing fits". Clips may
    go unmatched (to the bucket row), so background clips cost nothing. `bucket_value` p defaults to the
    `bucket_quantile` quantile of all sentence-clip similarities of the evaluation set: one constant for every
    pair, so scores stay comparable across videos. `epsilon` is on the cosine scale (Norton uses 0.1 on
    temperature-free similarities with its release defaults; 0.05 keeps plans sharp for cosines in [-1, 1]).
    """
    from vidlang.losses.ot import sinkhorn_with_bucket

    if bucket_value is None:
        flat_t = torch.cat([x.float() for x in texts])
        flat_v = torch.cat([x.float() for x in videos])
        sims = (flat_t @ flat_v.T).flatten()
        if sims.numel() > 1_000_000:  # quantile needs a bounded sample; a fixed stride keeps it deterministic
            sims = sims[:: sims.numel() // 1_000_000 + 1]
        bucket_value = float(sims.quantile(bucket_quantile))
    out = torch.empty(len(texts), len(videos))
    for sl, S, n, m in _pair_chunks(texts, videos, chunk_pairs):
        rmask = torch.arange(S.shape[1])[None, :] < n[:, None]
        cmask = torch.arange(S.shape[2])[None, :] < m[:, None]
        res = sinkhorn_with_bucket(S, bucket_value, epsilon=epsilon, n_iters=n_iters, row_mask=rmask,
                                   col_mask=cmask, warn=False)
        real = (res.plan * S.to(res.plan.dtype) * rmask[:, :, None] * cmask[:, None, :]).sum(dim=(1, 2))
        to_bucket = (res.full[:, : S.shape[1], -1] * rmask).sum(dim=1)
        out[sl] = ((real + to_bucket * bucket_value) / n).float().view(-1, len(videos))
    return out


SCORERS = {"caption_avg": caption_average_scores, "dtw": dtw_scores, "otam": otam_scores, "ot": ot_scores}


def paragraph_retrieval(texts: Sequence[Tensor], videos: Sequence[Tensor], methods: Sequence[str] = ("caption_avg", "dtw", "otam"),
                        ks: tuple[int, ...] = RECALL_KS, **kwargs) -> dict[str, dict[str, float]]:
    """Paragraph i's true video is video i. Returns {method: rank metrics (paragraph -> video)}.

    `kwargs` maps a method name to its keyword arguments, e.g. `otam={"gamma": 0.1}, ot={"epsilon": 0.05}`.
    """
    if len(texts) != len(videos):
        raise ValueError(f"{len(texts)} paragraphs for {len(videos)} videos")
    out = {}
    for name in methods:
        if name not in SCORERS:
            raise ValueError(f"unknown paragraph score {name!r}; choose from {sorted(SCORERS)}")
        sim = SCORERS[name](texts, videos, **kwargs.get(name, {}))
        out[name] = rank_metrics(sim, torch.arange(len(texts)), ks=ks)
    return out
