"""Ranking metrics for retrieval: R@K, median and mean rank, chunked over queries.

Conventions (chosen to match the papers' tables, e.g. VideoCLIP's YouCookII 22.7/50.4/63.1):
- Recall@K is reported in **percent** (0-100), median/mean rank are 1-based.
- Ties are counted **pessimistically**: a query's rank is 1 + the number of *other* gallery items whose score is
  >= the true item's score. A constant similarity therefore ranks the truth last, not first (the reference code's
  `argsort` breaks ties by index order, which can make a degenerate model look good).
- Scores are computed chunk by chunk over queries so a (Q, G) similarity never needs a (Q, G) boolean mask
  in memory at once beyond one chunk; `clip_retrieval_metrics` also builds the similarity in chunks.

Clip retrieval in the reference protocols (MMPT/VideoCLIP) is text->video with one video per query. We also
report video->text; where several queries share a gallery item (e.g. several captions of one video), the
video->text rank of a video is its *best* caption's rank (the usual "any correct caption" convention).
"""

from __future__ import annotations

import torch
from torch import Tensor

RECALL_KS = (1, 5, 10)


def ranks_of_truth(sim: Tensor, gt: Tensor, chunk: int = 1024) -> Tensor:
    """1-based pessimistic rank of each query's true gallery item.

    Shapes: sim (Q, G) float, gt (Q,) long in [0, G) -> (Q,) long in [1, G].
    rank[q] = 1 + #{j != gt[q] : sim[q, j] >= sim[q, gt[q]]}. NaN scores are an error (they would rank silently).
    """
    if sim.dim() != 2 or gt.dim() != 1 or sim.shape[0] != gt.shape[0]:
        raise ValueError(f"sim must be (Q, G) and gt (Q,), got {tuple(sim.shape)} and {tuple(gt.shape)}")
    if gt.numel() and (int(gt.min()) < 0 or int(gt.max()) >= sim.shape[1]):
        raise ValueError(f"gt indices must lie in [0, {sim.shape[1]}), got [{int(gt.min())}, {int(gt.max())}]")
    if torch.isnan(sim).any():
        raise ValueError("similarity matrix contains NaN")
    gt = gt.to(sim.device).long()
    out = []
    for s in range(0, sim.shape[0], chunk):
        block = sim[s : s + chunk]  # (q, G)
        g = gt[s : s + chunk]
        true = block.gather(1, g[:, None])  # (q, 1)
        # >= counts the true item itself once: that "1" is the rank's +1.
        out.append((block >= true).sum(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


CURVE_KS = (1, 2, 3, 5, 10, 20, 50, 100)


def recall_curve(ranks: Tensor, gallery_size: int, ks: tuple[int, ...] = CURVE_KS) -> dict[str, float]:
    """R@K (percent) for the K of `ks` that are <= gallery_size (for recall-vs-K plots). Keys are str(K)."""
    r = ranks.double()
    return {str(k): float((r <= k).double().mean() * 100.0) for k in ks if k <= gallery_size}


def metrics_from_ranks(ranks: Tensor, ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """R@K (percent), MedR, MeanR from 1-based ranks. Shapes: ranks (Q,) -> dict of floats.

    MedR is `torch.median` of the ranks as floats with the upper/lower average for even Q (numpy's median),
    matching the references' `np.median`.
    """
    r = ranks.double()
    if r.numel() == 0:
        raise ValueError("no queries to score")
    out = {f"R@{k}": float((r <= k).double().mean() * 100.0) for k in ks}
    out["MedR"] = float(r.quantile(0.5))
    out["MeanR"] = float(r.mean())
    return out


def rank_metrics(sim: Tensor, gt: Tensor, chunk: int = 1024, ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """Retrieval metrics of queries against a gallery.

    Shapes: sim (Q, G) (row = query), gt (Q,) long -> {"R@1","R@5","R@10" (percent), "MedR","MeanR"} floats.
    Pessimistic ties (see module docstring).
    """
    return metrics_from_ranks(ranks_of_truth(sim, gt, chunk), ks)


def best_ranks_multi(sim: Tensor, positives: list[list[int]], chunk: int = 1024) -> Tensor:
    """Rank of the best-ranked positive for queries with several correct gallery items (video->text).

    Shapes: sim (Q, G), positives: Q lists of gallery indices -> (Q,) long.
    The rank of positive p is 1 + #{j != p : sim >= sim[p]} (other positives count as competitors, as in the
    standard protocol); the query's rank is the minimum over its positives.
    """
    if len(positives) != sim.shape[0]:
        raise ValueError(f"{len(positives)} positive lists for {sim.shape[0]} queries")
    out = torch.empty(sim.shape[0], dtype=torch.long)
    for s in range(0, sim.shape[0], chunk):
        block = sim[s : s + chunk]
        for i in range(block.shape[0]):
            pos = positives[s + i]
            if not pos:
                raise ValueError(f"query {s + i} has no positive gallery item")
            true = block[i, pos]  # (P,)
            out[s + i] = int((block[i][None, :] >= true[:, None]).sum(dim=1).min())
    return out


def similarity_chunked(queries: Tensor, gallery: Tensor, chunk: int = 4096) -> Tensor:
    """Dot-product similarity built in query chunks. Shapes: (Q, D), (G, D) -> (Q, G) float32."""
    return torch.cat([queries[s : s + chunk].float() @ gallery.float().T for s in range(0, queries.shape[0], chunk)])


def bidirectional_metrics(text_emb: Tensor, video_emb: Tensor, text_to_video: Tensor,
                          chunk: int = 1024) -> dict[str, dict[str, float]]:
    """text->video and video->text metrics for texts that each belong to one gallery video.

    Shapes: text_emb (N, D), video_emb (V, D) (L2-normalised), text_to_video (N,) long in [0, V)
    -> {"t2v": metrics, "v2t": metrics}, each with a "curve" {K: R@K} for recall-vs-K plots.
    Videos without any text are skipped as v2t queries.
    """
    sim = similarity_chunked(text_emb, video_emb, chunk)  # (N, V)
    t2v_ranks = ranks_of_truth(sim, text_to_video, chunk)
    t2v = metrics_from_ranks(t2v_ranks)
    t2v["curve"] = recall_curve(t2v_ranks, video_emb.shape[0])
    positives: list[list[int]] = [[] for _ in range(video_emb.shape[0])]
    for i, v in enumerate(text_to_video.tolist()):
        positives[v].append(i)
    keep = [v for v, p in enumerate(positives) if p]
    v2t_ranks = best_ranks_multi(sim.T[keep], [positives[v] for v in keep], chunk)
    v2t = metrics_from_ranks(v2t_ranks)
    v2t["curve"] = recall_curve(v2t_ranks, text_emb.shape[0])
    return {"t2v": t2v, "v2t": v2t}


def chance_recall(gallery_size: int, ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """Analytic chance level for a single correct item among `gallery_size`: R@K = K/G (percent), MedR (G+1)/2."""
    out = {f"R@{k}": 100.0 * min(k, gallery_size) / gallery_size for k in ks}
    out["MedR"] = (gallery_size + 1) / 2.0
    out["MeanR"] = (gallery_size + 1) / 2.0
    return out


__all__ = ["rank_metrics", "ranks_of_truth", "metrics_from_ranks", "best_ranks_multi", "similarity_chunked",
           "bidirectional_metrics", "chance_recall", "recall_curve", "RECALL_KS"]
