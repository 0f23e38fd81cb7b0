"""Captioning metrics against pycocoevalcap's scorers (test-only reference; pure Python, no Java)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from vidlang.eval.captioning import bleu, cider_d, tokenize

pytest.importorskip("pycocoevalcap")
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402

WORDS = "the a red blue square circle moves left right grows shrinks spins in place cut onion pan fry".split()


def random_corpus(seed: int, n_items: int = 40):
    rng = np.random.default_rng(seed)
    sent = lambda lo, hi: " ".join(rng.choice(WORDS, int(rng.integers(lo, hi))))  # noqa: E731
    refs = [[sent(3, 12) for _ in range(int(rng.integers(1, 6)))] for _ in range(n_items)]
    hyps = []
    for r in refs:  # a mix of near copies, partial overlaps and unrelated captions, some very short
        kind = rng.integers(4)
        words = r[0].split()
        if kind == 0:
            hyps.append(" ".join(words[: max(1, len(words) - 2)]))
        elif kind == 1:
            hyps.append(" ".join(words + list(rng.choice(WORDS, 3))))
        elif kind == 2:
            hyps.append(sent(1, 3))
        else:
            hyps.append(sent(4, 14))
    return hyps, refs


def coco(scorer, hyps, refs):
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its counts
        return scorer.compute_score(gts, res)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_matches_pycocoevalcap(seed):
    hyps, refs = random_corpus(seed)
    ref_scores, _ = coco(Bleu(4), hyps, refs)
    ours = bleu(hyps, refs)
    np.testing.assert_allclose([ours[f"BLEU-{k}"] for k in range(1, 5)], ref_scores, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cider_d_matches_pycocoevalcap(seed):
    hyps, refs = random_corpus(seed)
    ref_mean, ref_items = coco(Cider(), hyps, refs)
    ours = cider_d(hyps, refs)
    np.testing.assert_allclose(ours["per_item"], ref_items, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours["CIDEr-D"], ref_mean, rtol=1e-10)


def test_edge_cases_by_hand():
    refs = [["a red square moves left"], ["the blue circle grows"]]
    perfect = bleu(["a red square moves left", "the blue circle grows"], refs)
    assert all(abs(v - 1.0) < 1e-9 for v in perfect.values())
    # no 4-gram in common: BLEU-4 ~ 0 (COCO's smoothing), BLEU-1 still counts unigrams
    partial = bleu(["red square", "circle"], refs)
    assert partial["BLEU-4"] < 1e-3 < partial["BLEU-1"]
    # brevity penalty: a correct prefix is penalised against the closest reference length
    assert bleu(["a red square"], [["a red square moves left"]])["BLEU-1"] == pytest.approx(np.exp(1 - 5 / 3))
    # CIDEr-D: a copy of the reference beats a paraphrase, which beats an unrelated caption (IDF needs items
    # with different references: an n-gram in every item's references weighs 0)
    c = cider_d(["a red square moves left", "the blue circle gets bigger", "fry the onion"], refs + [["cut it"]])
    assert c["per_item"][0] > c["per_item"][1] > c["per_item"][2] == 0
    with pytest.raises(ValueError, match="at least one reference"):
        cider_d(["x"], [[]])
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        bleu(["x", "y"], [["x"]])


def test_tokenize():
    assert tokenize("Cut the onion, then fry it!") == "cut the onion then fry it"
    assert tokenize("  Don't stop... (now)") == "don't stop now"
