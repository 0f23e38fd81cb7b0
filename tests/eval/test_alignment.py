import itertools

import numpy as np
import pytest
import torch

from vidlang.eval.alignment import (align_lines, alignment_recall, drop_threshold, roc_auc,
                                    timestamp_alignment, zscore_over_seconds)


def naive_auc(s, y):
    pos = [a for a, b in zip(s, y) if b]
    neg = [a for a, b in zip(s, y) if not b]
    tot = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return 100 * tot / (len(pos) * len(neg))


def test_auc_hand_cases():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(75.0)
    assert roc_auc([1, 1, 1], [1, 0, 0]) == pytest.approx(50.0)
    assert roc_auc([0.5, 0.5, 0.9, 0.1], [1, 0, 1, 0]) == pytest.approx(87.5)
    assert roc_auc([3, 2, 1], [0, 1, 1]) == 0.0
    with pytest.raises(ValueError):
        roc_auc([1, 2], [1, 1])


def test_auc_matches_pairwise_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 6, 60).astype(float)
    y = rng.random(60) < 0.4
    assert roc_auc(s, y) == pytest.approx(naive_auc(s, y))


def _video(T=60, step=(20, 24)):
    sim = torch.full((1, T), 0.1) + 0.02 * torch.randn(1, T, generator=torch.Generator().manual_seed(0))
    sim[0, step[0] : step[1]] = 0.9
    return sim


def test_aligner_pulls_a_displaced_line_back():
    sim = _video()
    start, end = 30.0, 33.0  # narrated 10 s late: its midpoint misses the true step [20, 24]
    raw = timestamp_alignment([start], [end])
    assert alignment_recall(raw, [(20, 24)]) == (0, 1)
    al = align_lines(sim, [start], [end], fps=1.0, prior_scale=3.0)
    assert alignment_recall(al.time, [(20, 24)]) == (1, 1)
    # with no content weight the aligner is the raw timestamp (to the second)
    al0 = align_lines(sim, [start], [end], content_weight=0.0)
    assert abs(al0.time[0] - raw[0]) <= 0.5


def test_aligner_keeps_timestamp_when_content_is_flat():
    sim = 0.02 * torch.randn(1, 60, generator=torch.Generator().manual_seed(1))
    al = align_lines(sim, [30.0], [33.0], prior_scale=3.0)
    assert abs(al.time[0] - 31.5) < 8  # noise cannot pull it far against the prior
    assert al.alignability[0] < align_lines(_video(), [30.0], [33.0]).alignability[0]


def test_aligner_fps_and_far_lines():
    # at 2 features/s the predicted time is (index + 0.5) / 2
    sim = _video(T=120, step=(40, 48))
    al = align_lines(sim, [28.0], [30.0], fps=2.0)
    assert 20.0 <= al.time[0] <= 24.0
    # a line 40 s away is not pulled across the video by a peak (the prior dominates)
    far = align_lines(_video(), [55.0], [58.0])
    assert far.time[0] > 40


def test_zscore_and_drop_threshold():
    z = zscore_over_seconds(torch.tensor([[1.0, 2.0, 3.0]]))
    torch.testing.assert_close(z.mean(1), torch.zeros(1), atol=1e-6, rtol=0)
    a = np.array([0.0, 1.0, 2.0, 3.0])
    assert (a >= drop_threshold(a, 0.5)).sum() == 2
    assert drop_threshold(a, 0.0) == -np.inf


def test_ot_aligner_pulls_back_and_flags_unalignable():
    from vidlang.eval.alignment import align_lines_ot

    sim = torch.cat([_video(), 0.02 * torch.randn(1, 60, generator=torch.Generator().manual_seed(3))])
    al = align_lines_ot(sim, [30.0, 45.0], [33.0, 47.0], bucket_value=-1.0)
    assert 20 <= al.time[0] <= 24  # the clear line is pulled back to its step
    assert al.alignability[0] > al.alignability[1]  # the flat line keeps less mass out of the bucket
