import math

import pytest
import torch

from vidlang.eval.paragraph import (caption_average_scores, dtw_distance, dtw_scores, otam_distance,
                                    paragraph_retrieval, pad_sequences)


def smin(vals, gamma):
    vals = [v for v in vals]
    if gamma <= 0:
        return min(vals)
    finite = [v for v in vals if v != math.inf]
    if not finite:
        return math.inf
    return -gamma * math.log(sum(math.exp(-v / gamma) for v in finite))


def naive_dtw(C, gamma=0.0):
    N, M = len(C), len(C[0])
    D = [[math.inf] * (M + 1) for _ in range(N + 1)]
    D[0][0] = 0.0
    for i in range(1, N + 1):
        for j in range(1, M + 1):
            D[i][j] = C[i - 1][j - 1] + smin([D[i - 1][j], D[i][j - 1], D[i - 1][j - 1]], gamma)
    return D[N][M]


def naive_otam(C, gamma=0.0):
    """Literal OTAM (Cao et al. 2020, eq. 5): pad the columns with zeros at both ends; inside, moves from the
    diagonal or the left; in the two padding columns also from above. Out-of-range = +inf, start corner = 0."""
    N, M = len(C), len(C[0])
    P = [[0.0] + list(row) + [0.0] for row in C]
    G = {}

    def g(l, m):
        if l == -1 and m == -1:
            return 0.0
        if l < 0 or m < 0:
            return math.inf
        return G[l, m]

    for l in range(N):
        for m in range(M + 2):
            prev = [g(l - 1, m - 1), g(l, m - 1)]
            if m == 0 or m == M + 1:
                prev.append(g(l - 1, m))
            G[l, m] = P[l][m] + smin(prev, gamma)
    return G[N - 1, M + 1]


def rand_cost(seed, shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, m, generator=g, dtype=torch.float64) for n, m in shapes]


@pytest.mark.parametrize("gamma", [0.0, 0.1])
def test_dtw_and_otam_match_naive_on_ragged_batch(gamma):
    shapes = [(3, 5), (1, 4), (4, 2), (2, 2), (4, 6), (1, 1)]
    costs = rand_cost(0, shapes)
    N, M = max(s[0] for s in shapes), max(s[1] for s in shapes)
    # padding filled with a large value: it must not leak into any pair's score
    batch = torch.full((len(shapes), N, M), 7.0, dtype=torch.float64)
    for b, c in enumerate(costs):
        batch[b, : c.shape[0], : c.shape[1]] = c
    n = torch.tensor([s[0] for s in shapes])
    m = torch.tensor([s[1] for s in shapes])
    dtw = dtw_distance(batch, n, m, gamma)
    otam = otam_distance(batch, n, m, gamma)
    for b, c in enumerate(costs):
        assert dtw[b].item() == pytest.approx(naive_dtw(c.tolist(), gamma), abs=1e-9)
        assert otam[b].item() == pytest.approx(naive_otam(c.tolist(), gamma), abs=1e-9)


def test_padding_regression_last_real_row_counts():
    # The reference's padding zeroed the last real row. Here a costly last row must keep its cost.
    c = torch.tensor([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]], dtype=torch.float64)  # third sentence matches nothing
    padded = torch.zeros(1, 4, 3, dtype=torch.float64)
    padded[0, :3, :2] = c
    d = dtw_distance(padded, torch.tensor([3]), torch.tensor([2]))
    assert d.item() == pytest.approx(5.0)  # 0 + 0 + 5, not 0


def test_otam_hand_case_skips_sentence_prefix_and_suffix():
    # sentences 0 and 2 match no clip; OTAM may skip them through the padding columns, DTW may not.
    c = [[9.0, 9.0], [0.0, 1.0], [9.0, 9.0]]
    assert naive_otam(c) == pytest.approx(1.0)  # sentence 1 takes both clips: 0 + 1
    out = otam_distance(torch.tensor([c]), torch.tensor([3]), torch.tensor([2]))
    assert out.item() == pytest.approx(1.0)
    assert naive_dtw(c) == pytest.approx(18.0)  # 9 + 0 + 9: DTW must visit every sentence


def test_paragraph_retrieval_identity_and_ragged():
    g = torch.Generator().manual_seed(0)
    texts, videos = [], []
    for n in (3, 5, 2, 4):
        x = torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=1)
        texts.append(x)
        noise = 0.05 * torch.randn(n, 16, generator=g)
        videos.append(torch.nn.functional.normalize(x + noise, dim=1))
    res = paragraph_retrieval(texts, videos)
    for name in ("caption_avg", "dtw", "otam"):
        assert res[name]["R@1"] == 100.0, name
    # scores of a pair do not depend on the other items in the chunk
    s_all = dtw_scores(texts, videos, chunk_pairs=3)
    s_one = dtw_scores(texts[1:2], videos[2:3])
    torch.testing.assert_close(s_all[1, 2], s_one[0, 0])
    assert caption_average_scores(texts, videos).shape == (4, 4)
    padded, lengths = pad_sequences(texts)
    assert padded.shape == (4, 5, 16) and lengths.tolist() == [3, 5, 2, 4]


def test_ot_scores_rank_true_video_first_and_handle_background():
    g = torch.Generator().manual_seed(1)
    texts, videos = [], []
    for n in (3, 4, 2):
        x = torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=1)
        texts.append(x)
        bg = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=1)  # unrelated background clips
        videos.append(torch.cat([bg[:2], x, bg[2:]]))
    res = paragraph_retrieval(texts, videos, methods=("ot", "otam"))
    assert res["ot"]["R@1"] == 100.0 and res["otam"]["R@1"] == 100.0
    from vidlang.eval.paragraph import ot_scores
    s = ot_scores(texts, videos, bucket_value=0.0)
    # each sentence has an exact match (cos 1) in its own video: the score approaches 1 as epsilon shrinks
    assert s[0, 0] > 0.8 and s[0, 0] > s[0, 1] + 0.3
