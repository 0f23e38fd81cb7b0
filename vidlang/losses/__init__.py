"""Losses: batched log-domain optimal transport (ot), Norton's OT losses (norton), InfoNCE (contrastive)."""

from vidlang.losses.contrastive import infonce_loss, soft_cross_entropy
from vidlang.losses.norton import NortonConfig, fine_grained_similarity, norton_loss
from vidlang.losses.ot import (
    BucketResult,
    SinkhornConvergenceWarning,
    SinkhornInfo,
    normalize_rows,
    sinkhorn_log,
    sinkhorn_scores,
    sinkhorn_with_bucket,
)

__all__ = [
    "BucketResult",
    "NortonConfig",
    "SinkhornConvergenceWarning",
    "SinkhornInfo",
    "fine_grained_similarity",
    "infonce_loss",
    "normalize_rows",
    "norton_loss",
    "sinkhorn_log",
    "sinkhorn_scores",
    "sinkhorn_with_bucket",
    "soft_cross_entropy",
]
