"""Batched entropic optimal transport in the log domain (Sinkhorn), with the "alignable prompt bucket".

Two entry points, one solver:

* ``sinkhorn_log(cost, ...)``  — POT's convention: ``plan = diag(e^u) exp(-cost/eps) diag(e^v)``; it minimises
  ``<plan, cost> - eps * H(plan)``.
* ``sinkhorn_scores(scores, ...)`` — the same with a *similarity* (``cost = -scores``): ``exp(+scores/eps)``.
  Norton's code works with similarities; use this one for it.

Marginal convention: the plan's rows sum to ``a`` and its columns to ``b`` (up to ``info.err``). When ``a``/``b``
are omitted they are uniform over the real (unmasked) entries and sum to 1, exactly as POT's
``ot.bregman.sinkhorn_log`` / ``ot.batch.solve_batch`` (plans sum to 1). Norton's code instead rescales so that
every row sums to 1: use ``normalize_rows(plan)`` for that. ``sinkhorn_with_bucket`` uses "count units" (each
real row/column carries mass 1, see its docstring).

Numerics: the iterations are log-domain updates with ``torch.logsumexp`` (stable for ``epsilon`` down to 1e-3 and
below: no ``exp`` of an unnormalised kernel is ever summed), except for well-conditioned batches: when every
problem's log-kernel spans at most ``EXP_DOMAIN_MAX_RANGE`` nats, the same iterates are computed multiplicatively
on ``exp(log_kernel - max)`` (two batched mat-vecs per iteration instead of two logsumexps; several times faster
on the thousands of tiny bucket problems of a Norton batch), with a fall-back to the log domain should a scaling
leave float32's normal range. Inputs in bf16/fp16 are solved in float32 and the plan
is returned in float32 (float64 inputs stay float64). The solver runs under ``torch.no_grad()`` by default because
Norton uses plans as *targets*; pass ``grad=True`` to differentiate through the unrolled iterations.

Ragged batches: ``row_mask``/``col_mask`` (bool, True = real) mark padding; padded rows/columns get exactly zero
mass and the real block equals the solution of the unpadded problem.

Shapes legend: ``B`` problems, ``m`` rows, ``n`` columns. Every function accepts an unbatched ``(m, n)`` problem
too and then returns unbatched results.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from vidlang.errors import NonFiniteError

__all__ = [
    "SinkhornConvergenceWarning",
    "SinkhornInfo",
    "BucketResult",
    "sinkhorn_log",
    "sinkhorn_scores",
    "sinkhorn_with_bucket",
    "normalize_rows",
]


class SinkhornConvergenceWarning(UserWarning):
    """Sinkhorn stopped at ``n_iters`` with a marginal error above ``tol``."""


@dataclass
class SinkhornInfo:
    """Convergence diagnostics of one (batched) Sinkhorn call.

    n_iters: iterations actually run (early stop when every problem's error < tol).
    err: max over problems of the L1 row-marginal error ``sum_i |plan.sum(-1)_i - a_i|`` after the last iteration
        (columns are exact after the final column update, so rows carry the whole error).
    err_per_problem: (B,) the same per problem.
    converged: err < tol (False when tol is None/0: no target was set).
    log_u, log_v: (B, m), (B, n) dual log-scalings; -inf on padded entries.
    """

    n_iters: int
    err: float
    err_per_problem: Tensor
    converged: bool
    log_u: Tensor
    log_v: Tensor


def _work_dtype(x: Tensor) -> torch.dtype:
    # Half precision cannot hold log-scalings of size |C|/eps with useful resolution: solve in float32.
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _prepare_mask(mask: Tensor | None, batch: int, size: int, device, name: str) -> Tensor:
    if mask is None:
        return torch.ones(batch, size, dtype=torch.bool, device=device)
    mask = mask.to(device=device, dtype=torch.bool)
    if mask.dim() == 1:
        mask = mask.expand(batch, size)
    if mask.shape != (batch, size):
        raise ValueError(f"{name}: expected shape {(batch, size)}, got {tuple(mask.shape)}")
    if not bool(mask.any(dim=1).all()):
        raise ValueError(f"{name}: every problem needs at least one real (True) entry")
    return mask


def _prepare_marginal(w: Tensor | None, mask: Tensor, dtype, name: str) -> Tensor:
    """Return log-marginal (B, size) with -inf on padding."""
    if w is None:
        count = mask.sum(dim=1, keepdim=True).to(dtype)
        w = mask.to(dtype) / count
    else:
        w = torch.as_tensor(w, device=mask.device).to(dtype)
        if w.dim() == 1:
            w = w.expand_as(mask)
        if w.shape != mask.shape:
            raise ValueError(f"{name}: expected shape {tuple(mask.shape)}, got {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError(f"{name}: marginal weights must be finite and >= 0")
        w = torch.where(mask, w, torch.zeros((), dtype=dtype, device=w.device))
    return torch.log(w)  # log(0) = -inf: zero-mass entries stay exactly zero


# Exp-domain fast path: when a problem's real log-kernel spans at most this many nats, K = exp(log_k - max) lies
# in [e^-40, 1] (no float32 underflow, and the scalings stay within about e^+-40 of the marginals), so the plain
# multiplicative Sinkhorn (two batched mat-vecs per iteration) gives the log-domain iterates up to rounding at a
# fraction of the per-op cost. Norton's problems qualify (paragraph plans: |scores| <= 1 at epsilon 0.1 span <= 20;
# rectification: logit_scale * cosine at epsilon 1 spans <= 28 at the initial temperature); small epsilon or large
# logit scales fall back to the log domain, which is also used if a scaling ever leaves float32's normal range.
EXP_DOMAIN_MAX_RANGE = 40.0


def _row_error(plan_rows: Tensor, a: Tensor) -> Tensor:
    return (plan_rows - a).abs().sum(dim=1)


def _solve(log_k: Tensor, log_a: Tensor, log_b: Tensor, n_iters: int, tol: float | None, check_every: int,
           pair: Tensor | None = None):
    """Core loop on a batched log-kernel (B, m, n); padded entries of log_k must be finite (0).

    pair: (B, m, n) bool, True on real cells; given, the exp-domain fast path is tried when every problem is well
    conditioned (see EXP_DOMAIN_MAX_RANGE). Returns log-domain scalings (u, v), iterations run, per-problem error.
    """
    if pair is not None:
        lo = log_k.masked_fill(~pair, float("inf")).amin(dim=(1, 2))
        hi = log_k.masked_fill(~pair, float("-inf")).amax(dim=(1, 2))
        if float((hi - lo).max()) <= EXP_DOMAIN_MAX_RANGE:
            out = _solve_exp(log_k, log_a, log_b, hi, pair, n_iters, tol, check_every)
            if out is not None:
                return out
    return _solve_log(log_k, log_a, log_b, n_iters, tol, check_every)


def _solve_exp(log_k, log_a, log_b, shift, pair, n_iters, tol, check_every):
    """Multiplicative Sinkhorn on K = exp(log_k - shift) (shift: per-problem max over real cells). Same update
    order and start as _solve_log, so the iterates are the same up to rounding. None if a scaling under- or
    overflowed (the caller then runs the log domain)."""
    k = torch.where(pair, log_k - shift[:, None, None], torch.zeros((), dtype=log_k.dtype, device=log_k.device))
    k = k.exp_()  # padded cells hold 1: they always meet a zero scaling (their a_i or b_j is 0)
    a, b = log_a.exp(), log_b.exp()
    v = (b > 0).to(k.dtype)  # log-domain start v = 0 on real columns, -inf on padded ones
    tiny = torch.finfo(k.dtype).tiny
    it, err_pp = 0, None
    for it in range(1, n_iters + 1):
        kv = torch.matmul(k, v.unsqueeze(-1)).squeeze(-1)  # (B, m) = K v
        u = a / kv.clamp_min(tiny)
        v = b / torch.matmul(u.unsqueeze(-2), k).squeeze(-2).clamp_min(tiny)  # b / K^T u
        if tol and (it % check_every == 0 or it == n_iters):
            err_pp = _row_error(u * torch.matmul(k, v.unsqueeze(-1)).squeeze(-1), a)
            if float(err_pp.max()) < tol:
                break
    if err_pp is None or not tol:
        err_pp = _row_error(u * torch.matmul(k, v.unsqueeze(-1)).squeeze(-1), a)
    # Real rows/columns need normal, finite scalings; a zero or inf there means the fast path lost precision.
    bad_u = ((u < tiny) | ~torch.isfinite(u)) & (a > 0)
    bad_v = ((v < tiny) | ~torch.isfinite(v)) & (b > 0)
    if bool(bad_u.any() | bad_v.any()) or not bool(torch.isfinite(err_pp).all()):
        return None
    return torch.log(u) - shift[:, None], torch.log(v), it, err_pp  # plan = u e^-shift exp(log_k) v


def _solve_log(log_k: Tensor, log_a: Tensor, log_b: Tensor, n_iters: int, tol: float | None, check_every: int):
    """Log-domain loop (any conditioning)."""
    u = torch.zeros_like(log_a)
    # Start zero-mass (padded) columns at -inf, not 0: otherwise the first row update counts each padded column
    # with weight exp(0) and the iterates (not the limit) differ from the unpadded problem's.
    v = torch.where(torch.isinf(log_b), log_b, torch.zeros_like(log_b))
    a = log_a.exp()
    it = 0
    err_pp = None
    for it in range(1, n_iters + 1):
        # Same update order as POT (rows, then columns), so equal iteration counts give equal plans.
        u = log_a - torch.logsumexp(log_k + v[:, None, :], dim=2)
        v = log_b - torch.logsumexp(log_k + u[:, :, None], dim=1)
        if tol and (it % check_every == 0 or it == n_iters):
            err_pp = _row_error(torch.exp(log_k + u[:, :, None] + v[:, None, :]).sum(dim=2), a)
            if float(err_pp.max()) < tol:
                break
    if err_pp is None or not tol:
        err_pp = _row_error(torch.exp(log_k + u[:, :, None] + v[:, None, :]).sum(dim=2), a)
    return u, v, it, err_pp


def sinkhorn_log(
    cost: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    *,
    epsilon: float = 0.1,
    n_iters: int = 1000,
    tol: float | None = 1e-6,
    check_every: int = 10,
    row_mask: Tensor | None = None,
    col_mask: Tensor | None = None,
    grad: bool = False,
    warn: bool = True,
) -> tuple[Tensor, SinkhornInfo]:
    """Entropic OT with a cost (POT convention): plan = diag(e^u) exp(-cost/epsilon) diag(e^v).

    Shapes:
        cost: (B, m, n) or (m, n)
        a: (B, m) or (m,) row marginal; None -> uniform over real rows, summing to 1
        b: (B, n) or (n,) column marginal; None -> uniform over real columns, summing to 1
        row_mask: (B, m) or (m,) bool, True = real row;  col_mask: (B, n) or (n,)
        returns plan: (B, m, n) or (m, n), float32 (float64 for float64 input); zero on padding.

    ``a`` and ``b`` must have equal totals per problem (balanced OT). ``tol`` is on the L1 row-marginal error,
    checked every ``check_every`` iterations (as POT does); ``tol=None`` or 0 runs exactly ``n_iters`` iterations.
    A ``SinkhornConvergenceWarning`` is issued when ``tol`` is set and not reached (``warn=False`` silences it).
    """
    if cost.dim() not in (2, 3):
        raise ValueError(f"cost: expected (m, n) or (B, m, n), got shape {tuple(cost.shape)}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if n_iters < 1:
        raise ValueError(f"n_iters must be >= 1, got {n_iters}")
    unbatched = cost.dim() == 2
    if unbatched:
        cost = cost.unsqueeze(0)
        a = None if a is None else torch.as_tensor(a).reshape(1, -1)
        b = None if b is None else torch.as_tensor(b).reshape(1, -1)
        row_mask = None if row_mask is None else row_mask.reshape(1, -1)
        col_mask = None if col_mask is None else col_mask.reshape(1, -1)
    bsz, m, n = cost.shape
    dtype = _work_dtype(cost)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        rmask = _prepare_mask(row_mask, bsz, m, cost.device, "row_mask")
        cmask = _prepare_mask(col_mask, bsz, n, cost.device, "col_mask")
        log_a = _prepare_marginal(a, rmask, dtype, "a")
        log_b = _prepare_marginal(b, cmask, dtype, "b")
        tot_a, tot_b = log_a.exp().sum(1), log_b.exp().sum(1)
        if not bool(torch.allclose(tot_a, tot_b, rtol=1e-4, atol=1e-7)):
            raise ValueError(f"a and b must have equal totals per problem (balanced OT); got {tot_a.tolist()} "
                             f"vs {tot_b.tolist()}")
        pair = rmask[:, :, None] & cmask[:, None, :]
        # Padded cells get log-kernel 0 (any finite value): their mass is killed by u or v = -inf, and a finite
        # value keeps garbage/inf padding in `cost` from turning into NaN.
        log_k = torch.where(pair, -cost.to(dtype) / epsilon, torch.zeros((), dtype=dtype, device=cost.device))
        if not bool(torch.isfinite(log_k).all()):
            raise NonFiniteError("cost: non-finite values on real (unmasked) entries")
        # The unrolled exp-domain loop has the same gradient in exact arithmetic, but differentiating through it
        # is not tested: grad=True keeps the log domain.
        u, v, it, err_pp = _solve(log_k, log_a, log_b, n_iters, tol, check_every, None if grad else pair)
        plan = torch.exp(log_k + u[:, :, None] + v[:, None, :])
    err = float(err_pp.detach().max())
    converged = bool(tol) and err < tol
    if tol and not converged and warn:
        warnings.warn(f"Sinkhorn did not converge in {n_iters} iterations: marginal error {err:.3g} > tol {tol:g} "
                      f"(epsilon={epsilon:g}); raise n_iters or epsilon", SinkhornConvergenceWarning, stacklevel=2)
    info = SinkhornInfo(n_iters=it, err=err, err_per_problem=err_pp.detach(), converged=converged,
                        log_u=u.detach(), log_v=v.detach())
    if unbatched:
        plan = plan[0]
        info.err_per_problem, info.log_u, info.log_v = err_pp.detach(), u.detach()[0], v.detach()[0]
    return plan, info


def sinkhorn_scores(scores: Tensor, a: Tensor | None = None, b: Tensor | None = None, **kwargs):
    """Entropic OT on a *similarity*: plan = diag(e^u) exp(scores/epsilon) diag(e^v) (maximises <plan, scores>).

    Shapes: as ``sinkhorn_log`` with ``scores`` in place of ``cost``. Same keyword arguments and conventions.
    """
    return sinkhorn_log(-scores, a, b, **kwargs)


@dataclass
class BucketResult:
    """Output of ``sinkhorn_with_bucket``.

    full: (B, m+1, n+1) plan including the bucket row (index m) and bucket column (index n), count units.
    plan: (B, m, n) the real block ``full[:, :m, :n]`` (zero on padding).
    info: SinkhornInfo of the underlying solve.
    """

    full: Tensor
    plan: Tensor
    info: SinkhornInfo


def sinkhorn_with_bucket(
    scores: Tensor,
    bucket_value: float | Tensor,
    *,
    epsilon: float = 0.1,
    n_iters: int = 50,
    tol: float | None = None,
    row_mask: Tensor | None = None,
    col_mask: Tensor | None = None,
    grad: bool = False,
    warn: bool = True,
) -> BucketResult:
    """OT on similarities with Norton's "alignable prompt bucket" (an extra row and column of constant score p).

    The scores matrix is extended to (m+1, n+1): the last column and last row (and their corner) hold
    ``bucket_value`` p. Marginals, in *count units*, with m, n the numbers of REAL rows/columns of each problem:
        every real row: 1; bucket row: n;      every real column: 1; bucket column: m.
    Both sides total m + n, so the bucket column can absorb every real row and the bucket row every real column
    (the pair stays balanced: mass not sent to the bucket is matched between real rows and columns). This equals
    Norton's released arithmetic (marginals 1/(m+n) and n/(m+n), plan multiplied by m+n afterwards). A real row
    whose best score is far below p sends its unit mass to the bucket column ("unalignable"). Bookkeeping: if X is
    the mass of the real block, real rows send m - X to the bucket column, real columns get n - X from the bucket
    row and the corner holds exactly X. With p far below every score X -> min(m, n) (for m == n every real row and
    column sums to 1 inside the real block); with p far above every score X -> 0.

    Shapes:
        scores: (B, m, n) or (m, n); bucket_value: scalar or (B,)
        row_mask: (B, m) bool (True = real);  col_mask: (B, n) bool
        returns BucketResult(full (B, m+1, n+1), plan (B, m, n)) in float32 (float64 for float64 input).
    Padded rows/columns get zero mass; the bucket sits at index m (resp. n), after the padding.
    Defaults (epsilon 0.1, 50 iterations, no early stop) follow the Norton release.
    """
    if scores.dim() not in (2, 3):
        raise ValueError(f"scores: expected (m, n) or (B, m, n), got shape {tuple(scores.shape)}")
    unbatched = scores.dim() == 2
    if unbatched:
        scores = scores.unsqueeze(0)
        row_mask = None if row_mask is None else row_mask.reshape(1, -1)
        col_mask = None if col_mask is None else col_mask.reshape(1, -1)
    bsz, m, n = scores.shape
    dtype = _work_dtype(scores)
    dev = scores.device
    rmask = _prepare_mask(row_mask, bsz, m, dev, "row_mask")
    cmask = _prepare_mask(col_mask, bsz, n, dev, "col_mask")
    # Python floats go straight to the working dtype (a float32 detour would perturb float64 problems).
    p = (bucket_value.to(device=dev, dtype=dtype) if isinstance(bucket_value, Tensor)
         else torch.tensor(float(bucket_value), dtype=dtype, device=dev)).reshape(-1)
    if p.numel() == 1:
        p = p.expand(bsz)
    if p.shape != (bsz,):
        raise ValueError(f"bucket_value: expected a scalar or shape ({bsz},), got {tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"bucket_value must be finite, got {p.tolist()}")
    s = scores.to(dtype)
    if not grad:
        s, p = s.detach(), p.detach()
    ext = torch.cat([torch.cat([s, p[:, None, None].expand(bsz, m, 1)], dim=2),
                     p[:, None, None].expand(bsz, 1, n + 1)], dim=1)  # (B, m+1, n+1)
    true_col = torch.ones(bsz, 1, dtype=torch.bool, device=dev)
    ext_rmask = torch.cat([rmask, true_col], dim=1)
    ext_cmask = torch.cat([cmask, true_col], dim=1)
    m_real = rmask.sum(1, keepdim=True).to(dtype)
    n_real = cmask.sum(1, keepdim=True).to(dtype)
    a = torch.cat([rmask.to(dtype), n_real], dim=1)
    b = torch.cat([cmask.to(dtype), m_real], dim=1)
    full, info = sinkhorn_log(-ext, a, b, epsilon=epsilon, n_iters=n_iters, tol=tol, row_mask=ext_rmask,
                              col_mask=ext_cmask, grad=grad, warn=warn)
    plan = full[:, :m, :n]
    if unbatched:
        full, plan = full[0], plan[0]
    return BucketResult(full=full, plan=plan, info=info)


def normalize_rows(plan: Tensor, row_mask: Tensor | None = None, eps: float = 1e-30) -> Tensor:
    """Rescale every real row of a plan to sum to 1 (the convention of Norton's code); padded rows stay 0.

    Shapes: plan (..., m, n); row_mask (..., m) bool or None; returns (..., m, n).
    """
    out = plan / plan.sum(dim=-1, keepdim=True).clamp_min(eps)
    if row_mask is not None:
        out = out * row_mask.to(out.dtype).unsqueeze(-1)
    return out
