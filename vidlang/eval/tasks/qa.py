"""Video question answering with a language model: open-ended (`generate`) and multiple choice by likelihood
(`score`), on MSR-VTT-style clips.

- `videoqa-open-msrvtt`: MSRVTT-QA release format (vidlang.datasets.msrvtt_qa); the model reads
  ``<visual>Question: q Answer:`` after k in-context ``<visual>Question: q Answer: a<|endofchunk|>`` examples and
  writes a short answer (greedy); accuracy = exact match after normalisation (percent). The examples are k
  questions about k different videos, drawn once (seeded) from `qa.train_annotations` when given (their videos
  need features), otherwise from the evaluated file, whose example videos are then left out of the scoring.
  Baselines: the most frequent answer, overall and per question word (the question's first word), taken from
  `qa.train_annotations` when given, otherwise from the questions about the *other* videos of the evaluated file
  (leave one video out: answer priors that know the test distribution, an optimistic baseline); the text-only
  LM reading the same prompts (gates at 0); and the evaluated model given another question's clip ("other
  clips", the list rotated by half its length: what it answers without the right video).
- `videoqa-msrvtt-lm`: MSR-VTT multiple choice (MSR_MC_test.csv): each candidate sentence scored by its mean
  per-token log-likelihood given the clip; the argmax is the prediction, ties count as wrong (as
  `videoqa-msrvtt`, which scores the same questions with the contrastive embeddings). Baselines: chance, the
  text-only LM's likelihood (which candidate reads most fluently, whatever the clip) and the evaluated model
  given another question's clip ("other clips").
Clips are whole MSR-VTT videos centre-cropped to the model's training clip length.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from vidlang.errors import VidlangError
from vidlang.eval.capabilities import need_file, store_fps
from vidlang.eval.registry import register_task
from vidlang.eval.tasks.captioning import draw_examples, rotated


def _clip(evaluator, store, vid: str, fps: float) -> np.ndarray:
    return evaluator.crop(store[vid], 0.0, store[vid].shape[0] / fps, fps)


def prior_answers(questions, prior_pool, leave_video_out: bool) -> dict[str, list[str]]:
    """Most-frequent-answer guesses per question, overall and per question word (see the module docstring)."""
    from vidlang.datasets.msrvtt_qa import normalize_answer

    def word(q):
        return (q.question.split() or [""])[0].lower()

    total, by_word = Counter(), Counter()
    own, own_word = {}, {}
    for q in prior_pool:
        a = normalize_answer(q.answer)
        total[a] += 1
        by_word[(word(q), a)] += 1
        if leave_video_out:
            own.setdefault(q.video_id, Counter())[a] += 1
            own_word.setdefault(q.video_id, Counter())[(word(q), a)] += 1

    def best(counts: Counter, keep=lambda key: True, key_answer=lambda key: key) -> str:
        items = [(c, key_answer(k)) for k, c in counts.items() if c > 0 and keep(k)]
        return min(items, key=lambda x: (-x[0], x[1]))[1] if items else ""

    out = {"overall": [], "per question word": []}
    for q in questions:
        t, w = total, by_word
        if leave_video_out:
            t, w = total - own.get(q.video_id, Counter()), by_word - own_word.get(q.video_id, Counter())
        out["overall"].append(best(t))
        guess = best(w, keep=lambda k, qw=word(q): k[0] == qw, key_answer=lambda k: k[1])
        out["per question word"].append(guess or best(t))
    return out


def run_videoqa_open(generator, store, qa_path: str, cfg) -> dict:
    from vidlang.datasets.msrvtt_qa import exact_match_accuracy, read_msrvtt_qa

    qs = [q for q in read_msrvtt_qa(need_file(qa_path, "MSRVTT-QA file")) if q.video_id in store]
    if not qs:
        raise VidlangError(f"{qa_path}: none of its videos is in the feature store {store.root}")
    fps = store_fps(store)
    k = max(cfg.shots)
    if cfg.train_annotations:
        train = [q for q in read_msrvtt_qa(need_file(cfg.train_annotations, "MSRVTT-QA training file"))]
        with_clips = [q for q in train if q.video_id in store]
        picks = [with_clips[i] for i in draw_examples(len(with_clips), [q.video_id for q in with_clips], k,
                                                      cfg.example_seed)]
        scored, pool, source = qs, train, f"{cfg.train_annotations}"
    else:
        picks = [qs[i] for i in draw_examples(len(qs), [q.video_id for q in qs], k, cfg.example_seed)]
        left_out = {q.video_id for q in picks}
        scored = [q for q in qs if q.video_id not in left_out]
        pool, source = scored, "the other videos' questions in the evaluated file (leave one video out)"
    total = len(scored)
    scored = scored[: cfg.max_questions] if cfg.max_questions else scored
    if len(picks) < k:
        raise VidlangError(f"qa.shots: {k} in-context examples asked, only {len(picks)} available")
    clips = {v: _clip(generator, store, v, fps) for v in {q.video_id for q in scored + picks}}
    answers = [q.answer for q in scored]
    metrics, baselines, shown = {}, {}, {}
    own = [clips[q.video_id] for q in scored]
    for shots in cfg.shots:
        examples = [(clips[q.video_id], q.question, q.answer) for q in picks[:shots]]
        for table, row, query_clips, text_only in ((metrics, f"{shots}-shot", own, False),
                                                   (baselines, f"text-only LM {shots}-shot", own, True),
                                                   (baselines, f"other clips {shots}-shot", rotated(own), False)):
            pred = generator.answer(query_clips, [q.question for q in scored], cfg.max_new_tokens, examples,
                                    text_only=text_only)
            table[row] = {"accuracy": 100.0 * exact_match_accuracy(pred, answers)}
            shown[row] = pred[:8]
    for name, guesses in prior_answers(scored, pool, not cfg.train_annotations).items():
        baselines[f"most frequent answer ({name})"] = {"accuracy": 100.0 * exact_match_accuracy(guesses, answers)}
    shown["answers"] = answers[:8]
    subset = f"first {len(scored)} of {total}" if len(scored) < total else f"all {total}"
    return {"metrics": metrics, "baselines": baselines, "examples": shown,
            "counts": {"questions": len(scored), "videos": len({q.video_id for q in scored}),
                       "example_questions": len(picks)},
            "protocol": f"MSRVTT-QA open-ended, {subset} questions, greedy answers of <= {cfg.max_new_tokens} tokens, "
                        f"exact match after normalisation; answer prior and examples from {source}"}


def run_videoqa_mc_lm(scorer, store, csv_path: str) -> dict:
    from vidlang.datasets import read_msrvtt_mc

    qs = [q for q in read_msrvtt_mc(need_file(csv_path, "MSR-VTT MC CSV")) if q.video_id in store]
    if not qs:
        raise VidlangError(f"{csv_path}: none of its videos is in the feature store {store.root}")
    fps = store_fps(store)
    own = [_clip(scorer, store, q.video_id, fps) for q in qs]
    texts, owner = [], []
    for i, q in enumerate(qs):
        texts += list(q.candidates)
        owner += [i] * len(q.candidates)
    out = {}
    for name, query_clips, text_only in (("model", own, False), ("text-only LM", own, True),
                                         ("other clips", rotated(own), False)):
        clips = [query_clips[i] for i in owner]
        scores = scorer.score(clips, texts, text_only=text_only).tolist()
        correct = 0
        for i, q in enumerate(qs):
            s = [x for x, o in zip(scores, owner) if o == i]
            correct += all(s[q.answer] > x for j, x in enumerate(s) if j != q.answer)  # ties count wrong
        out[name] = 100.0 * correct / len(qs)
    chance = float(np.mean([100.0 / len(q.candidates) for q in qs]))
    return {"metrics": {"accuracy": out["model"]},
            "baselines": {"chance": {"accuracy": chance}, "text-only LM": {"accuracy": out["text-only LM"]},
                          "other clips": {"accuracy": out["other clips"]}},
            "counts": {"questions": len(qs)},
            "protocol": "MSR-VTT MC, argmax of mean per-token log-likelihood given the clip, ties count wrong"}


@register_task("videoqa-open-msrvtt", data=("msrvtt_qa", "msrvtt_features"), capability="generate")
def videoqa_open_msrvtt(generator, cfg, stores) -> dict:
    return run_videoqa_open(generator, stores.get(cfg.data.msrvtt_features or cfg.data.features),
                            cfg.data.msrvtt_qa, cfg.qa)


@register_task("videoqa-msrvtt-lm", data=("msrvtt_mc", "msrvtt_features"), capability="score")
def videoqa_msrvtt_lm(scorer, cfg, stores) -> dict:
    return run_videoqa_mc_lm(scorer, stores.get(cfg.data.msrvtt_features or cfg.data.features), cfg.data.msrvtt_mc)
