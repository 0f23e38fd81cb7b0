"""Differentiable all_gather for global negatives.

`torch.distributed.all_gather` (and accelerate's `gather`) return tensors with no autograd history, so negatives
from other processes would carry no gradient back to the process that produced them. `all_gather_with_grad`
concatenates every rank's (n, D) tensor in rank order; its backward sums the incoming gradient over ranks
(all_reduce) and returns this rank's slice. Each rank's loss then back-propagates into every rank's features,
and DDP's gradient averaging turns the per-rank losses into the gradient of their mean, i.e. exactly the
single-process loss over the global batch when every rank averages over its local queries (tested with 2 real
processes in tests/train/test_multiprocess.py).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Shapes: (n, ...) on each of W ranks -> (W*n, ...) in rank order; identity when not distributed.

    Every rank must pass the same n (the loop splits the global batch evenly).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllGather.apply(x)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Gatherer:
    """The `gather` callable passed to objectives: differentiable all_gather plus this process's rank/world."""

    def __init__(self) -> None:
        self.rank, self.world = rank_and_world()

    def __call__(self, x: Tensor) -> Tensor:
        return all_gather_with_grad(x)
