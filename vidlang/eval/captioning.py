"""Captioning metrics: BLEU-1..4 and CIDEr-D as in the COCO caption evaluation code (pycocoevalcap).

Both take pre-tokenised text: one string per caption, tokens separated by spaces (`tokenize` lowercases and
splits off punctuation, a dependency-free stand-in for the PTB tokenizer that the COCO code runs through Java).

- `bleu`: corpus BLEU (Papineni et al. 2002) with the COCO code's choices: n-gram matches clipped by the maximum
  count in any reference, brevity penalty against the *closest* reference length of each caption (ties: the
  shorter), counts summed over the corpus, and its smoothing (+1e-15 to matches, +1e-9 to guesses), so a
  corpus without any 4-gram match scores ~0 rather than failing.
- `cider_d`: CIDEr-D (Vedantam et al. 2015) as the COCO code computes "CIDEr": TF-IDF n-gram vectors (n = 1..4,
  document frequency over the references of the evaluated corpus, idf = log(#items) - log(df)), hypothesis
  counts clipped by the reference's, a Gaussian penalty exp(-d^2 / (2 sigma^2)) on the length difference d
  (sigma 6; the COCO code measures length in bigrams, kept here for parity), averaged over references and
  n-gram orders, times 10.
Tested against pycocoevalcap's `Bleu` and `Cider` scorers (tests/eval/test_captioning.py).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

# The COCO evaluation drops these tokens after PTB tokenisation (pycocoevalcap/tokenizer/ptbtokenizer.py).
_PUNCTUATION = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";", "(", ")", "[", "]", "{", "}",
                '"'}
_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]+")


def tokenize(text: str) -> str:
    """Lowercase, split words from punctuation, drop punctuation tokens -> space-separated tokens."""
    return " ".join(t for t in _TOKEN.findall(text.lower()) if t not in _PUNCTUATION)


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(len(r) == 0 for r in references):
        raise ValueError("every hypothesis needs at least one reference")


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> dict[str, float]:
    """Corpus BLEU-1..n (fractions in [0, 1]).

    Shapes: hypotheses: N captions; references: N lists of >= 1 captions (all pre-tokenised strings)
    -> {"BLEU-1": ..., ..., "BLEU-n": ...}.
    """
    _check(hypotheses, references)
    correct, guess = [0] * n, [0] * n
    test_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        words = hyp.split()
        counts = _ngrams(words, n)
        ref_words = [r.split() for r in refs]
        max_ref: Counter = Counter()
        for rw in ref_words:
            max_ref |= _ngrams(rw, n)  # element-wise maximum of counts
        for gram, c in counts.items():
            correct[len(gram) - 1] += min(c, max_ref[gram])
        for k in range(n):
            guess[k] += max(0, len(words) - k)
        test_len += len(words)
        ref_len += min((abs(len(rw) - len(words)), len(rw)) for rw in ref_words)[1]
    out, prod = {}, 1.0
    ratio = (test_len + 1e-15) / (ref_len + 1e-9)
    penalty = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    for k in range(n):
        prod *= (correct[k] + 1e-15) / (guess[k] + 1e-9)
        out[f"BLEU-{k + 1}"] = prod ** (1.0 / (k + 1)) * penalty
    return out


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4,
            sigma: float = 6.0) -> dict[str, object]:
    """CIDEr-D over a corpus.

    Shapes: hypotheses: N captions; references: N lists of >= 1 captions (pre-tokenised strings)
    -> {"CIDEr-D": mean score (float), "per_item": np.ndarray (N,)}. Scores are on the COCO scale (x10).
    """
    _check(hypotheses, references)
    ref_counts = [[_ngrams(r.split(), n) for r in refs] for refs in references]
    df: Counter = Counter()
    for item in ref_counts:
        df.update(set().union(*item))
    log_items = math.log(float(len(references)))

    def vector(counts: Counter):
        vec = [dict() for _ in range(n)]
        norm = [0.0] * n
        for gram, tf in counts.items():
            w = tf * (log_items - math.log(max(1.0, df[gram])))
            vec[len(gram) - 1][gram] = w
            norm[len(gram) - 1] += w * w
        bigrams = sum(tf for gram, tf in counts.items() if len(gram) == 2)
        return vec, [math.sqrt(x) for x in norm], bigrams

    scores = np.zeros(len(hypotheses))
    for i, (hyp, refs) in enumerate(zip(hypotheses, ref_counts)):
        hv, hn, hl = vector(_ngrams(hyp.split(), n))
        total = np.zeros(n)
        for ref in refs:
            rv, rn, rl = vector(ref)
            penalty = math.exp(-((hl - rl) ** 2) / (2 * sigma**2))
            for k in range(n):
                dot = sum(min(w, rv[k].get(g, 0.0)) * rv[k].get(g, 0.0) for g, w in hv[k].items())
                if hn[k] and rn[k]:
                    dot /= hn[k] * rn[k]
                total[k] += dot * penalty
        scores[i] = total.mean() / len(refs) * 10.0
    return {"CIDEr-D": float(scores.mean()), "per_item": scores}
