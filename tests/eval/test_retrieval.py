import torch

from vidlang.eval.retrieval import (bidirectional_metrics, chance_recall, rank_metrics, ranks_of_truth)


def naive_ranks(sim, gt):
    out = []
    for q in range(sim.shape[0]):
        t = sim[q, gt[q]]
        out.append(1 + sum(1 for j in range(sim.shape[1]) if j != gt[q] and sim[q, j] >= t))
    return torch.tensor(out)


def test_hand_case_percent_and_ranks():
    sim = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.4, 0.6], [0.3, 0.2, 0.1]])
    gt = torch.tensor([0, 1, 2])
    # ranks: q0 -> 1, q1 -> 3, q2 -> 3
    torch.testing.assert_close(ranks_of_truth(sim, gt), torch.tensor([1, 3, 3]))
    m = rank_metrics(sim, gt)
    assert abs(m["R@1"] - 100 / 3) < 1e-9 and m["R@5"] == 100.0 and m["MedR"] == 3.0
    assert abs(m["MeanR"] - 7 / 3) < 1e-9


def test_ties_are_pessimistic():
    sim = torch.zeros(4, 10)
    m = rank_metrics(sim, torch.arange(4))
    assert m["R@1"] == 0.0 and m["MedR"] == 10.0  # constant scores rank the truth last
    sim = torch.tensor([[1.0, 1.0, 0.0]])
    assert ranks_of_truth(sim, torch.tensor([0])).item() == 2
    assert ranks_of_truth(sim, torch.tensor([1])).item() == 2


def test_chunked_matches_naive():
    g = torch.Generator().manual_seed(0)
    sim = torch.randint(0, 5, (37, 23), generator=g).float()  # many ties
    gt = torch.randint(0, 23, (37,), generator=g)
    expect = naive_ranks(sim, gt)
    for chunk in (1, 5, 37, 1000):
        torch.testing.assert_close(ranks_of_truth(sim, gt, chunk=chunk), expect)


def test_bidirectional_multi_caption():
    v = torch.eye(3)
    t = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.9, 0.1, 0], [0, 0.2, 0.8]])
    t = t / t.norm(dim=1, keepdim=True)
    res = bidirectional_metrics(t, v, torch.tensor([0, 1, 0, 2]))
    assert res["t2v"]["R@1"] == 100.0
    assert res["v2t"]["R@1"] == 100.0 and res["v2t"]["MeanR"] == 1.0
    # video 1's only caption loses to nothing; swap so video 2 has a wrong best caption
    res = bidirectional_metrics(t, v, torch.tensor([0, 1, 0, 0]))
    assert res["t2v"]["R@1"] == 75.0


def test_chance_matches_random_embeddings():
    torch.manual_seed(0)
    sim = torch.randn(4000, 50)
    m = rank_metrics(sim, torch.randint(0, 50, (4000,)))
    c = chance_recall(50)
    assert abs(m["R@5"] - c["R@5"]) < 1.5 and abs(m["MedR"] - c["MedR"]) <= 3
