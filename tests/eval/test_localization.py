import itertools

import numpy as np
import pytest

from vidlang.eval.localization import crosstask_recall, ordered_step_dp, step_hits


def brute_force(scores):
    T, K = scores.shape
    best, arg = -np.inf, None
    for ts in itertools.combinations(range(T), K):  # strictly increasing = each step once, in order
        v = sum(scores[t, k] for k, t in enumerate(ts))
        if v > best + 1e-12:
            best, arg = v, ts
    return best, np.array(arg)


@pytest.mark.parametrize("seed", range(12))
def test_dp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    T, K = rng.integers(3, 9), rng.integers(1, 4)
    scores = rng.normal(size=(T, K))
    pred = ordered_step_dp(scores)
    assert len(pred) == K and np.all(np.diff(pred) > 0)  # each once, in canonical order, distinct seconds
    best, _ = brute_force(scores)
    assert abs(scores[pred, np.arange(K)].sum() - best) < 1e-9


def test_dp_respects_order_against_greedy():
    # step 1's best second is before step 0's best: the DP must keep the canonical order
    scores = np.array([[0.0, 5.0], [1.0, 0.0], [0.0, 0.0], [3.0, 0.0]])
    pred = ordered_step_dp(scores)
    assert pred.tolist() == [1, 2]  # greedy per-step argmax would give [3, 0]
    assert scores[pred, [0, 1]].sum() == 1.0


def test_dp_short_video_falls_back_to_non_decreasing():
    pred = ordered_step_dp(np.array([[1.0, 0.0, 2.0]]))
    assert pred.tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        ordered_step_dp(np.zeros((1, 3)), strict=True)


def test_hits_and_task_average():
    # intervals per step; step 2 absent; step 0 [2.4, 4.2] covers seconds 2..4
    intervals = [[(2.4, 4.2)], [(6.0, 7.0)], []]
    assert step_hits(np.array([4, 5, 9]), intervals) == (1, 2)
    assert step_hits(np.array([2, 6, 9]), intervals) == (2, 2)
    assert step_hits(np.array([5, 7, 9]), intervals) == (0, 2)  # exclusive ceil(end)
    res = crosstask_recall([("a", 1, 2), ("a", 2, 2), ("b", 0, 3)])
    assert res["per_task"] == {"a": 75.0, "b": 0.0} and res["recall"] == 37.5
