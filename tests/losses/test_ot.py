"""Batched log-domain Sinkhorn and the alignable prompt bucket: parity with POT and OT properties."""

from __future__ import annotations

import warnings

import ot
import pytest
import torch
from torch.testing import assert_close

from vidlang.losses.ot import (
    SinkhornConvergenceWarning,
    normalize_rows,
    sinkhorn_log,
    sinkhorn_scores,
    sinkhorn_with_bucket,
)


def _problems(seed: int, bsz: int = 5, m: int = 6, n: int = 4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(bsz, m, n, generator=g, dtype=dtype)
    a = torch.rand(bsz, m, generator=g, dtype=dtype) + 0.1
    b = torch.rand(bsz, n, generator=g, dtype=dtype) + 0.1
    return cost, a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)


@pytest.mark.parametrize("epsilon", [0.05, 0.3])
def test_matches_pot_sinkhorn_log_converged_nonuniform(epsilon):
    cost, a, b = _problems(0)
    plan, info = sinkhorn_log(cost, a, b, epsilon=epsilon, n_iters=5000, tol=1e-12)
    assert info.converged and info.n_iters < 5000
    for i in range(cost.shape[0]):
        ref = ot.bregman.sinkhorn_log(a[i], b[i], cost[i], epsilon, numItermax=5000, stopThr=1e-13)
        assert_close(plan[i], ref, atol=1e-9, rtol=1e-6)
        ref2 = ot.sinkhorn(a[i], b[i], cost[i], epsilon, method="sinkhorn_log", numItermax=5000, stopThr=1e-13)
        assert_close(plan[i], ref2, atol=1e-9, rtol=1e-6)


def test_matches_pot_batch_iteration_for_iteration():
    # ot.batch uses the same update order (rows then columns): a fixed iteration count must give the same plan
    # even far from convergence.
    cost, a, b = _problems(1, bsz=8, m=7, n=9)
    for iters in (1, 3, 17):
        plan, info = sinkhorn_log(cost, a, b, epsilon=0.02, n_iters=iters, tol=None)
        assert info.n_iters == iters
        ref = ot.batch.solve_batch(cost, 0.02, a, b, max_iter=iters, tol=0.0, method="log_sinkhorn", grad="detach")
        assert_close(plan, ref.plan, atol=1e-12, rtol=1e-9)
        assert_close(info.log_u, ref.potentials[0], atol=1e-9, rtol=1e-9)


def test_float32_input_matches_pot_to_1e5():
    cost, a, b = _problems(2, dtype=torch.float32)
    plan, _ = sinkhorn_log(cost, a, b, epsilon=0.1, n_iters=2000, tol=1e-6)
    assert plan.dtype == torch.float32
    for i in range(cost.shape[0]):
        ai, bi = a[i].double() / a[i].double().sum(), b[i].double() / b[i].double().sum()  # balanced in fp64
        ref = ot.bregman.sinkhorn_log(ai, bi, cost[i].double(), 0.1, numItermax=5000, stopThr=1e-10)
        assert_close(plan[i].double(), ref, atol=1e-5, rtol=0)


def test_marginals_hold_and_uniform_default_sums_to_one():
    cost, a, b = _problems(3, bsz=4, m=5, n=8)
    plan, info = sinkhorn_log(cost, a, b, epsilon=0.1, n_iters=3000, tol=1e-10)
    assert_close(plan.sum(2), a, atol=1e-9, rtol=0)
    assert_close(plan.sum(1), b, atol=1e-12, rtol=0)
    assert info.err < 1e-10
    plan_u, _ = sinkhorn_log(cost, epsilon=0.1, n_iters=3000, tol=1e-10)  # POT convention: sums to 1
    assert_close(plan_u.sum((1, 2)), torch.ones(4, dtype=torch.float64))
    assert_close(plan_u.sum(2), torch.full((4, 5), 1 / 5, dtype=torch.float64), atol=1e-9, rtol=0)


def test_scores_convention_is_negated_cost():
    cost, a, b = _problems(4)
    p1, _ = sinkhorn_log(cost, a, b, epsilon=0.2, n_iters=30, tol=None)
    p2, _ = sinkhorn_scores(-cost, a, b, epsilon=0.2, n_iters=30, tol=None)
    assert_close(p1, p2)


def test_tiny_epsilon_stays_finite():
    g = torch.Generator().manual_seed(5)
    scores = torch.rand(3, 16, 16, generator=g) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SinkhornConvergenceWarning)
        plan, info = sinkhorn_scores(scores, epsilon=1e-3, n_iters=300, tol=1e-6)
    assert torch.isfinite(plan).all() and (plan >= 0).all()
    assert_close(plan.sum(1), torch.full((3, 16), 1 / 16), atol=1e-6, rtol=0)  # last update: columns exact
    # the plan concentrates on a (near-)permutation: each row's mass mostly in one cell
    assert (plan.max(2).values * 16 > 0.5).float().mean() > 0.8


def test_bf16_input_solved_in_float32():
    g = torch.Generator().manual_seed(6)
    cost = torch.rand(2, 5, 5, generator=g).to(torch.bfloat16)
    plan, _ = sinkhorn_log(cost, epsilon=0.1, n_iters=500, tol=1e-7)
    assert plan.dtype == torch.float32
    ref, _ = sinkhorn_log(cost.float(), epsilon=0.1, n_iters=500, tol=1e-7)
    assert_close(plan, ref)
    assert_close(plan.sum(2), torch.full((2, 5), 0.2), atol=1e-6, rtol=0)


def test_non_convergence_warns_and_convergence_does_not():
    cost, a, b = _problems(7)
    with pytest.warns(SinkhornConvergenceWarning, match="did not converge"):
        _, info = sinkhorn_log(cost, a, b, epsilon=0.01, n_iters=3, tol=1e-9)
    assert not info.converged and info.n_iters == 3 and info.err > 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = sinkhorn_log(cost, a, b, epsilon=0.5, n_iters=1000, tol=1e-8)
    assert info.converged


def test_ragged_masked_equals_unpadded():
    g = torch.Generator().manual_seed(8)
    sizes = [(3, 5), (6, 2), (4, 4)]
    m, n = 6, 5
    cost = torch.full((3, m, n), float("inf"), dtype=torch.float64)  # garbage padding must not leak
    rmask = torch.zeros(3, m, dtype=torch.bool)
    cmask = torch.zeros(3, n, dtype=torch.bool)
    a = torch.zeros(3, m, dtype=torch.float64)
    b = torch.zeros(3, n, dtype=torch.float64)
    singles = []
    for i, (mi, ni) in enumerate(sizes):
        c = torch.rand(mi, ni, generator=g, dtype=torch.float64)
        ai = torch.rand(mi, generator=g, dtype=torch.float64) + 0.1
        bi = torch.rand(ni, generator=g, dtype=torch.float64) + 0.1
        ai, bi = ai / ai.sum(), bi / bi.sum()
        cost[i, :mi, :ni], a[i, :mi], b[i, :ni] = c, ai, bi
        rmask[i, :mi], cmask[i, :ni] = True, True
        singles.append(sinkhorn_log(c, ai, bi, epsilon=0.1, n_iters=40, tol=None)[0])
    # fixed, unconverged iteration count: the padded iterates themselves must equal the unpadded ones
    plan, _ = sinkhorn_log(cost, a, b, epsilon=0.1, n_iters=40, tol=None, row_mask=rmask, col_mask=cmask)
    for i, (mi, ni) in enumerate(sizes):
        assert_close(plan[i, :mi, :ni], singles[i], atol=1e-12, rtol=1e-10)
        assert plan[i, mi:].abs().sum() == 0 and plan[i, :, ni:].abs().sum() == 0
    # uniform default marginals are uniform over the REAL entries only
    plan_u, _ = sinkhorn_log(cost, epsilon=0.1, n_iters=2000, tol=1e-10, row_mask=rmask, col_mask=cmask)
    for i, (mi, ni) in enumerate(sizes):
        assert_close(plan_u[i].sum(1)[:mi], torch.full((mi,), 1 / mi, dtype=torch.float64), atol=1e-9, rtol=0)


def test_no_gradient_by_default_and_gradient_on_request():
    cost = torch.rand(2, 4, 4, requires_grad=True)
    plan, _ = sinkhorn_log(cost, n_iters=20, tol=None)
    assert not plan.requires_grad
    plan, _ = sinkhorn_log(cost, n_iters=20, tol=None, grad=True)
    (plan * torch.arange(16.0).reshape(4, 4)).sum().backward()
    assert cost.grad is not None and torch.isfinite(cost.grad).all() and cost.grad.abs().sum() > 0


def test_bad_inputs_raise():
    cost = torch.rand(2, 3, 3)
    with pytest.raises(ValueError, match="equal totals"):
        sinkhorn_log(cost, torch.ones(2, 3), torch.ones(2, 3) * 2)
    with pytest.raises(ValueError, match="row_mask"):
        sinkhorn_log(cost, row_mask=torch.tensor([[True, True, True], [False, False, False]]))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_log(cost, epsilon=0.0)


# ---------------------------------------------------------------- alignable prompt bucket


def test_bucket_marginals_in_count_units():
    g = torch.Generator().manual_seed(9)
    scores = torch.rand(4, 5, 3, generator=g, dtype=torch.float64)
    res = sinkhorn_with_bucket(scores, 0.5, epsilon=0.1, n_iters=3000, tol=1e-11)
    full = res.full
    assert full.shape == (4, 6, 4)
    assert_close(full.sum(2), torch.tensor([1, 1, 1, 1, 1, 3.0], dtype=torch.float64).expand(4, 6), atol=1e-9,
                 rtol=0)
    assert_close(full.sum(1), torch.tensor([1, 1, 1, 5.0], dtype=torch.float64).expand(4, 4), atol=1e-9, rtol=0)
    # bookkeeping: the corner holds exactly the real block's mass
    assert_close(full[:, 5, 3], res.plan.sum((1, 2)), atol=1e-9, rtol=0)
    assert_close(res.plan, full[:, :5, :3])


def test_bucket_equals_pot_on_extended_problem():
    # Independent construction of Norton's bucket problem, solved by POT with normalised marginals.
    g = torch.Generator().manual_seed(10)
    m, n, p, eps = 4, 6, 0.3, 0.1
    s = torch.rand(m, n, generator=g, dtype=torch.float64)
    ext = torch.full((m + 1, n + 1), p, dtype=torch.float64)
    ext[:m, :n] = s
    a = torch.tensor([1.0] * m + [n], dtype=torch.float64) / (m + n)
    b = torch.tensor([1.0] * n + [m], dtype=torch.float64) / (m + n)
    ref = ot.bregman.sinkhorn_log(a, b, -ext, eps, numItermax=10000, stopThr=1e-13) * (m + n)
    res = sinkhorn_with_bucket(s, p, epsilon=eps, n_iters=10000, tol=1e-12)
    assert_close(res.full, ref, atol=1e-8, rtol=1e-6)


def test_bucket_extremes():
    g = torch.Generator().manual_seed(11)
    scores = torch.rand(3, 6, 6, generator=g) * 2 - 1
    high = sinkhorn_with_bucket(scores, 5.0, epsilon=0.1, n_iters=200)
    assert high.plan.sum() < 1e-6  # everything goes to the bucket
    # (the degenerate corner converges sublinearly: each real row's unit mass is in the bucket column to 1e-2)
    assert_close(high.full[:, :6, 6], torch.ones(3, 6), atol=1e-2, rtol=0)
    low = sinkhorn_with_bucket(scores, -5.0, epsilon=0.1, n_iters=1000)
    assert_close(low.plan.sum(2), torch.ones(3, 6), atol=1e-2, rtol=0)  # nothing does
    assert_close(low.plan.sum(1), torch.ones(3, 6), atol=1e-2, rtol=0)
    assert low.full[:, :6, 6].sum() < 1e-2 * 18
    # in between: a row whose scores are all far below p is discarded, the others are kept
    mid_scores = torch.full((1, 4, 4), 0.9)
    mid_scores[0, 2] = -0.9
    mid = sinkhorn_with_bucket(mid_scores, 0.0, epsilon=0.05, n_iters=500)
    row_mass = mid.plan.sum(2)[0]
    assert row_mass[2] < 1e-6 and (row_mass[[0, 1, 3]] > 0.99).all()


def test_bucket_ragged_and_per_problem_values():
    g = torch.Generator().manual_seed(12)
    s = torch.rand(2, 5, 5, generator=g, dtype=torch.float64)
    rmask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    cmask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    p = torch.tensor([0.4, 0.6], dtype=torch.float64)
    res = sinkhorn_with_bucket(s, p, epsilon=0.1, n_iters=60, row_mask=rmask, col_mask=cmask)
    single0 = sinkhorn_with_bucket(s[0, :3, :4], 0.4, epsilon=0.1, n_iters=60)
    single1 = sinkhorn_with_bucket(s[1, :5, :2], 0.6, epsilon=0.1, n_iters=60)
    assert_close(res.plan[0, :3, :4], single0.plan, atol=1e-12, rtol=1e-10)
    assert_close(res.plan[1, :5, :2], single1.plan, atol=1e-12, rtol=1e-10)
    assert_close(res.full[0, 5, 5], single0.full[3, 4])  # bucket corner sits after the padding
    assert res.plan[0, 3:].sum() == 0 and res.plan[1, :, 2:].sum() == 0


def test_normalize_rows():
    plan = torch.tensor([[[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]]])
    out = normalize_rows(plan, row_mask=torch.tensor([[True, False, True]]))
    assert_close(out, torch.tensor([[[0.25, 0.75], [0.0, 0.0], [0.5, 0.5]]]))


def _ragged_scores(seed: int, bsz: int = 6, m: int = 7, n: int = 5, scale: float = 1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    scores = scale * (2 * torch.rand(bsz, m, n, generator=g, dtype=dtype) - 1)
    rmask = torch.rand(bsz, m, generator=g) > 0.3
    cmask = torch.rand(bsz, n, generator=g) > 0.3
    rmask[:, 0], cmask[:, -1] = True, True
    return scores, rmask, cmask


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_exp_domain_fast_path_equals_log_domain(monkeypatch, dtype, tol):
    """Well-conditioned problems take the multiplicative (exp-domain) path; its plans, duals and diagnostics equal
    the log-domain loop's, for ragged masks, non-uniform marginals, the bucket and early stopping alike."""
    import vidlang.losses.ot as ot_mod

    scores, rmask, cmask = _ragged_scores(20, dtype=dtype)
    g = torch.Generator().manual_seed(21)
    a = (torch.rand(6, 7, generator=g, dtype=dtype) + 0.1) * rmask
    b = (torch.rand(6, 5, generator=g, dtype=dtype) + 0.1) * cmask
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    calls = {"exp": 0, "log": 0}
    real_exp, real_log = ot_mod._solve_exp, ot_mod._solve_log

    def count(kind, fn):
        def wrapped(*args):
            calls[kind] += 1
            return fn(*args)
        return wrapped

    monkeypatch.setattr(ot_mod, "_solve_exp", count("exp", real_exp))
    monkeypatch.setattr(ot_mod, "_solve_log", count("log", real_log))
    runs = [
        lambda: sinkhorn_scores(scores, a, b, epsilon=0.1, n_iters=37, tol=None, row_mask=rmask, col_mask=cmask),
        lambda: sinkhorn_scores(scores, a, b, epsilon=0.25, n_iters=2000, tol=1e-6, row_mask=rmask, col_mask=cmask),
        lambda: sinkhorn_with_bucket(scores, 0.2, epsilon=0.1, n_iters=50, row_mask=rmask, col_mask=cmask),
    ]
    for run in runs:
        fast = run()
        assert calls == {"exp": 1, "log": 0}
        monkeypatch.setattr(ot_mod, "EXP_DOMAIN_MAX_RANGE", -1.0)  # forces the log domain
        slow = run()
        assert calls == {"exp": 1, "log": 1}
        monkeypatch.setattr(ot_mod, "EXP_DOMAIN_MAX_RANGE", 40.0)
        calls.update(exp=0, log=0)
        if isinstance(fast, tuple):
            (p_fast, i_fast), (p_slow, i_slow) = fast, slow
            # float32 rounding may move the early stop by one check (10 iterations) when the error sits at tol
            assert abs(i_fast.n_iters - i_slow.n_iters) <= (0 if dtype == torch.float64 else 10)
            if i_fast.n_iters == i_slow.n_iters:
                assert_close(i_fast.err_per_problem, i_slow.err_per_problem, atol=tol, rtol=1e-4)
            real = torch.isfinite(i_slow.log_u)
            assert (torch.isfinite(i_fast.log_u) == real).all()
            # duals are defined up to a constant per problem (u + c, v - c): compare the plans instead
        else:
            p_fast, p_slow = fast.full, slow.full
        assert_close(p_fast, p_slow, atol=tol, rtol=1e-5)
        assert p_fast.dtype == dtype


def test_ill_conditioned_problems_fall_back_to_the_log_domain(monkeypatch):
    """A log-kernel spanning more than EXP_DOMAIN_MAX_RANGE nats (small epsilon) never takes the fast path, and
    the result still matches POT."""
    import vidlang.losses.ot as ot_mod

    def boom(*args):
        raise AssertionError("exp-domain path taken for an ill-conditioned problem")

    monkeypatch.setattr(ot_mod, "_solve_exp", boom)
    cost, a, b = _problems(22, bsz=2)
    plan, _ = sinkhorn_log(cost, a, b, epsilon=0.01, n_iters=300, tol=None)  # range ~ 1/0.01 = 100 nats
    ref = ot.bregman.sinkhorn_log(a[1], b[1], cost[1], 0.01, numItermax=300, stopThr=0.0, warn=False)
    assert_close(plan[1], ref, atol=1e-10, rtol=1e-8)
