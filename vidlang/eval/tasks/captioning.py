"""Clip captioning (capability `generate`): YouCookII step sentences and MSR-VTT sentences; CIDEr-D and BLEU-4.

Rows (`metrics`): "0-shot greedy", "0-shot beam<N>" and "<k>-shot greedy" for each k > 0 of `captioning.shots`:
k in-context (clip, caption) examples, drawn once (seeded, from k different videos) and shown before every query.
YouCookII draws them from its training subset; MSR-VTT (no training split in the JSFusion file) from the evaluated
clips, whose example videos are then left out of every row's scoring.
Baselines: "nearest training caption": the caption of the closest training clip by cosine similarity of the
mean-pooled store features (no model; YouCookII: its training subset; MSR-VTT: the other evaluated clips,
leave-one-out); "text-only LM <k>-shot": the same prompts read by the LM alone (gates at 0), which writes one
caption for every clip; "other clips <k>-shot": the evaluated model itself given another query's clip (the list
rotated by half its length), which measures how much of its score comes from the video rather than from what it
learned about the captions' text (its cross-attention blocks also adapt the frozen LM to the text).
Scores: vidlang.eval.captioning (pycocoevalcap's CIDEr-D and BLEU-4 definitions) on lowercased, punctuation-free
tokens, times 100 as captioning papers print them; IDF statistics come from the scored clips' references.
Clips are cropped like the retrieval tasks (first `max_clip_seconds` of a segment), then centre-cropped to the
model's training clip length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vidlang.errors import VidlangError
from vidlang.eval.captioning import bleu, cider_d, tokenize
from vidlang.eval.capabilities import need_file, store_fps
from vidlang.eval.registry import register_task

EXAMPLES_SHOWN = 5  # (reference, generated) pairs kept in the results for reading


def caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Shapes: N captions, N reference lists -> {"CIDEr-D", "BLEU-4"} times 100."""
    hyps = [tokenize(h) for h in hypotheses]
    refs = [[tokenize(r) for r in rs] for rs in references]
    return {"CIDEr-D": 100.0 * float(cider_d(hyps, refs)["CIDEr-D"]), "BLEU-4": 100.0 * bleu(hyps, refs)["BLEU-4"]}


def nearest_captions(queries: Sequence[np.ndarray], bank: Sequence[np.ndarray], captions: Sequence[str],
                     exclude: Sequence[int] | None = None) -> list[str]:
    """The caption of each query's most similar bank clip (cosine of mean features; ties: the first).

    Shapes: Q clips (S_i, F), B bank clips (S_j, F), B captions -> Q captions; `exclude[q]`: a bank index query q
    may not pick (leave-one-out), or -1.
    """
    def pooled(clips):
        m = np.stack([np.asarray(c, dtype=np.float64).mean(0) for c in clips])
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    sim = pooled(queries) @ pooled(bank).T
    if exclude is not None:
        for q, b in enumerate(exclude):
            if b >= 0:
                sim[q, b] = -np.inf
    return [captions[int(i)] for i in sim.argmax(1)]


def draw_examples(n: int, groups: Sequence[str], k: int, seed: int) -> list[int]:
    """k indices of distinct groups (videos), seeded; fewer when there are fewer groups."""
    rng = np.random.default_rng([seed, 11])
    picked, seen = [], set()
    for i in rng.permutation(n):
        if groups[i] not in seen:
            picked.append(int(i))
            seen.add(groups[i])
        if len(picked) == k:
            break
    return picked


def rotated(items: list) -> list:
    """The list rotated by half its length: every item replaced by another (for two or more items)."""
    return items[len(items) // 2 :] + items[: len(items) // 2]


def run_captioning(generator, clips: list[np.ndarray], references: list[list[str]], examples: list[tuple],
                   bank: tuple[list[np.ndarray], list[str], list[int] | None], cfg) -> dict:
    """Every row on the same clips. examples: (clip, caption) pairs (at least max(shots) of them); bank: (clips,
    captions, leave-one-out index per query or None) of the nearest-caption baseline."""
    metrics, baselines, shown = {}, {}, {}
    for k in cfg.shots:
        shots = examples[:k]
        label = f"{k}-shot"
        if len(shots) < k:
            raise VidlangError(f"captioning.shots: {k} in-context examples asked, only {len(examples)} available")
        hyps = generator.caption(clips, 1, cfg.max_new_tokens, shots)
        metrics[f"{label} greedy"] = caption_scores(hyps, references)
        shown[f"{label} greedy"] = hyps[:EXAMPLES_SHOWN]
        if k == 0 and cfg.num_beams > 1:
            beam = generator.caption(clips, cfg.num_beams, cfg.max_new_tokens, shots)
            metrics[f"0-shot beam{cfg.num_beams}"] = caption_scores(beam, references)
            shown[f"0-shot beam{cfg.num_beams}"] = beam[:EXAMPLES_SHOWN]
        # the LM alone writes the same caption for every clip: generate it once
        lm_only = generator.caption(clips[:1], 1, cfg.max_new_tokens, shots, text_only=True)[0]
        baselines[f"text-only LM {label}"] = caption_scores([lm_only] * len(clips), references)
        shown[f"text-only LM {label}"] = [lm_only]
        other = generator.caption(rotated(clips), 1, cfg.max_new_tokens, shots)
        baselines[f"other clips {label}"] = caption_scores(other, references)
    near = nearest_captions(clips, bank[0], bank[1], bank[2])
    baselines["nearest training caption"] = caption_scores(near, references)
    shown["nearest training caption"] = near[:EXAMPLES_SHOWN]
    shown["references"] = [r[0] for r in references[:EXAMPLES_SHOWN]]
    return {"metrics": metrics, "baselines": baselines, "examples": shown}


def _segment_clips(generator, store, videos, fps: float, max_clip_seconds: float | None):
    """(video id, clip features, sentence) per segment of `videos` present in the store, in time order."""
    out = []
    for v in videos:
        if v.video_id not in store:
            continue
        feats = store[v.video_id]
        dur = feats.shape[0] / fps
        for seg in sorted(v.segments, key=lambda s: (s.start, s.end)):
            s = min(seg.start, max(dur - 1.0 / fps, 0.0))
            e = min(seg.end, dur) if max_clip_seconds is None else min(seg.end, dur, s + max_clip_seconds)
            out.append((v.video_id, generator.crop(feats, s, max(e, s + 1.0 / fps), fps), seg.sentence))
    return out


def run_caption_youcookii(generator, store, annotations: str, cfg) -> dict:
    from vidlang.datasets import read_youcookii

    videos = sorted(read_youcookii(need_file(annotations, "YouCookII annotations")), key=lambda v: v.video_id)
    fps = store_fps(store)
    evals = _segment_clips(generator, store, [v for v in videos if v.subset == cfg.subset], fps, cfg.max_clip_seconds)
    train = _segment_clips(generator, store, [v for v in videos if v.subset == "training"], fps, cfg.max_clip_seconds)
    if not evals:
        raise VidlangError(f"{annotations}: no {cfg.subset} video of YouCookII is in the feature store {store.root}")
    if not train:
        raise VidlangError(f"{annotations}: no training video of YouCookII is in the feature store {store.root} "
                           "(the in-context examples and the nearest-caption baseline come from them)")
    total = len(evals)
    evals = evals[: cfg.max_clips] if cfg.max_clips else evals
    picks = draw_examples(len(train), [t[0] for t in train], max(cfg.shots), cfg.example_seed)
    res = run_captioning(generator, [c for _, c, _ in evals], [[s] for _, _, s in evals],
                         [(train[i][1], train[i][2]) for i in picks],
                         ([c for _, c, _ in train], [s for _, _, s in train], None), cfg)
    subset = f"first {len(evals)} of {total}" if len(evals) < total else f"all {total}"
    counts = {"clips": len(evals), "videos": len({v for v, _, _ in evals}), "training_clips": len(train)}
    return {**res, "counts": counts,
            "protocol": f"YouCookII {cfg.subset} segments ({subset}, sorted video ids), first "
                        f"{cfg.max_clip_seconds} s; in-context examples and nearest caption from the training "
                        "subset; x100"}


def run_caption_msrvtt(generator, store, csv_path: str, cfg) -> dict:
    from vidlang.datasets import read_msrvtt_jsfusion

    refs: dict[str, list[str]] = {}
    for p in read_msrvtt_jsfusion(need_file(csv_path, "MSR-VTT JSFusion CSV")):
        if p.video_id in store:
            refs.setdefault(p.video_id, []).append(p.sentence)
    if len(refs) < 2:
        raise VidlangError(f"{csv_path}: fewer than 2 of its videos are in the feature store {store.root}")
    fps = store_fps(store)
    vids = sorted(refs)
    clips = [generator.crop(store[v], 0.0, store[v].shape[0] / fps, fps) for v in vids]
    picks = draw_examples(len(vids), vids, max(cfg.shots), cfg.example_seed)
    scored = [i for i in range(len(vids)) if i not in set(picks)]
    total = len(scored)
    scored = scored[: cfg.max_clips] if cfg.max_clips else scored
    res = run_captioning(generator, [clips[i] for i in scored], [refs[vids[i]] for i in scored],
                         [(clips[i], refs[vids[i]][0]) for i in picks],
                         (clips, [refs[v][0] for v in vids], scored), cfg)
    subset = f"first {len(scored)} of {total}" if len(scored) < total else f"all {total}"
    return {**res, "counts": {"clips": len(scored), "example_clips": len(picks)},
            "protocol": f"MSR-VTT JSFusion clips ({subset} after leaving out the {len(picks)} example videos), "
                        "whole clip; nearest caption = another evaluated clip's (leave-one-out); x100"}


@register_task("caption-youcookii", data=("youcookii", "features"), capability="generate")
def caption_youcookii(generator, cfg, stores) -> dict:
    return run_caption_youcookii(generator, stores.get(cfg.data.features), cfg.data.youcookii, cfg.captioning)


@register_task("caption-msrvtt", data=("msrvtt_jsfusion", "msrvtt_features"), capability="generate")
def caption_msrvtt(generator, cfg, stores) -> dict:
    return run_caption_msrvtt(generator, stores.get(cfg.data.msrvtt_features or cfg.data.features),
                              cfg.data.msrvtt_jsfusion, cfg.captioning)
