"""Generation (greedy and beam search) and log-likelihood scoring for `CosmoModel`.

With the KV cache, the prompt is read once; each new token runs the LM on that token only, and the media keys
and values of every cross-attention block are computed once per generation (they depend on the clips, not on the
text). Without the cache every step re-runs the whole sequence and the media side (the reference the cached path
is tested against, and the baseline of tools/bench_cosmo.py).

Prompts may be padded on either side; they are re-packed to the left internally (positions follow the attention
mask). `<visual>` is never generated. Results are token-id lists without the prompt and without the stop token.
`media=None` generates with the LM alone (no cross-attention: the text-only baseline, equal to gates at 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vidlang.models.cosmo.model import MediaContext


def left_pad(input_ids: Tensor, attention_mask: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Move every row's real tokens to the right end. Shapes: (B, T) -> (B, T)."""
    mask = attention_mask.bool()
    if not bool(mask[:, -1].all()) or not bool((mask.long().cummax(1).values == mask.long()).all()):
        lengths = mask.sum(1)
        t = input_ids.shape[1]
        ids = torch.full_like(input_ids, pad_id)
        new_mask = torch.zeros_like(attention_mask)
        for i in range(input_ids.shape[0]):
            n = int(lengths[i])
            if n:
                ids[i, t - n:] = input_ids[i][mask[i]]
                new_mask[i, t - n:] = 1
        return ids, new_mask
    return input_ids, attention_mask


class _Stepper:
    """Next-token logits for a growing batch of sequences, with or without the KV cache."""

    def __init__(self, model, ids: Tensor, mask: Tensor, media: Tensor, media_mask: Tensor, use_cache: bool):
        self.model, self.use_cache = model, use_cache
        self.ids, self.mask = ids, mask
        self.media, self.media_mask = media, media_mask
        self.cache = None
        self.ctx: MediaContext | None = None

    def _context(self) -> MediaContext:
        if self.media is None:
            return MediaContext(media=None)
        _, tokens = self.model.encode_media(self.media, self.media_mask)
        return MediaContext(media=tokens)

    def _full(self) -> Tensor:
        hidden, _ = self.model.run_lm(self.ids, self.mask, self._context())
        return self.model.output_logits(hidden[:, -1])

    def first(self) -> Tensor:
        """Shapes: -> (N, V) logits of the token after the prompt."""
        if not self.use_cache:
            return self._full()
        self.ctx = self._context()
        hidden, self.cache = self.model.run_lm(self.ids, self.mask, self.ctx, use_cache=True)
        return self.model.output_logits(hidden[:, -1])

    def step(self, tokens: Tensor, order: Tensor | None = None) -> Tensor:
        """Append `tokens` (N,) to the sequences (re-ordered by `order` first, for beams) -> (N, V)."""
        if order is not None:
            self.ids, self.mask = self.ids[order], self.mask[order]
            if self.use_cache:
                self.cache.reorder_cache(order)
                self.ctx.count = self.ctx.count[order]
        self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        if not self.use_cache:
            return self._full()
        hidden, self.cache = self.model.run_lm(tokens[:, None], self.mask, self.ctx, cache=self.cache,
                                               use_cache=True)
        return self.model.output_logits(hidden[:, -1])


@torch.no_grad()
def generate(model, input_ids: Tensor, attention_mask: Tensor, media: Tensor | None, media_mask: Tensor | None,
             max_new_tokens: int = 20, num_beams: int = 1, length_penalty: float = 1.0, use_cache: bool = True,
             eos_token_id: int | None = None) -> list[list[int]]:
    """Continue each prompt. Shapes: input_ids / attention_mask (B, T); media (B, M, S, F); media_mask (B, M, S);
    media None: the LM alone (text-only baseline).

    Stops a sequence at `eos_token_id` (default <|endofchunk|>, the end of a caption) or after `max_new_tokens`.
    Beam search keeps `num_beams` hypotheses and returns the one with the best sum of log-probabilities divided
    by (generated length ** length_penalty) (the convention of transformers' beam search).
    """
    eos = model.eoc_token_id if eos_token_id is None else int(eos_token_id)
    ids, mask = left_pad(input_ids, attention_mask, model.pad_token_id)
    if num_beams > 1:
        return _beam_search(model, ids, mask, media, media_mask, max_new_tokens, num_beams, length_penalty,
                            use_cache, eos)
    stepper = _Stepper(model, ids, mask, media, media_mask, use_cache)
    logits = stepper.first()
    b = ids.shape[0]
    out: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    for step in range(max_new_tokens):
        logits[:, model.visual_token_id] = float("-inf")
        nxt = logits.argmax(-1)
        for i in range(b):
            if not done[i]:
                if int(nxt[i]) == eos:
                    done[i] = True
                else:
                    out[i].append(int(nxt[i]))
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        nxt = torch.where(done.to(nxt.device), torch.full_like(nxt, model.pad_token_id), nxt)
        logits = stepper.step(nxt)
    return out


def _beam_search(model, ids, mask, media, media_mask, max_new_tokens, num_beams, length_penalty, use_cache,
                 eos) -> list[list[int]]:
    b, nb = ids.shape[0], num_beams
    rep = lambda x: None if x is None else x.repeat_interleave(nb, dim=0)  # noqa: E731
    stepper = _Stepper(model, rep(ids), rep(mask), rep(media), rep(media_mask), use_cache)
    logits = stepper.first()
    scores = torch.full((b * nb,), float("-inf"), device=logits.device)
    scores[::nb] = 0.0  # the beams of a prompt start identical: expand the first only
    seqs: list[list[int]] = [[] for _ in range(b * nb)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]  # (normalised score, tokens)
    done = [False] * b
    for step in range(max_new_tokens):
        logp = torch.log_softmax(logits.float(), dim=-1)
        logp[:, model.visual_token_id] = float("-inf")
        v = logp.shape[-1]
        top_scores, top_idx = (scores[:, None] + logp).view(b, nb * v).topk(2 * nb, dim=1)
        top_scores, top_idx = top_scores.tolist(), top_idx.tolist()
        rows: list[tuple[int, int, float, list[int]]] = []  # (source row, token, score, tokens)
        for i in range(b):
            live = []
            for rank, (s, flat) in enumerate(zip(top_scores[i], top_idx[i])):
                if done[i] or len(live) == nb:
                    break
                beam, tok = divmod(flat, v)
                row = i * nb + beam
                if tok == eos:  # a finished hypothesis, if it ranks among the best num_beams candidates
                    if rank < nb:
                        finished[i].append((s / (step + 1) ** length_penalty, seqs[row]))
                else:
                    live.append((row, tok, s, seqs[row] + [tok]))
            live += [(i * nb, model.pad_token_id, float("-inf"), [])] * (nb - len(live))
            rows += live
            if not done[i] and len(finished[i]) >= nb:
                finished[i] = sorted(finished[i], key=lambda x: -x[0])[:nb]
                done[i] = live[0][2] / (step + 1) ** length_penalty < finished[i][-1][0]
        seqs = [r[3] for r in rows]
        scores = torch.tensor([r[2] for r in rows], device=logits.device)
        if all(done) or step == max_new_tokens - 1:
            break
        order = torch.tensor([r[0] for r in rows], device=logits.device)
        logits = stepper.step(torch.tensor([r[1] for r in rows], device=logits.device), order)
    out = []
    for i in range(b):
        hyps = list(finished[i])
        if not done[i]:  # out of steps: the live beams compete too
            hyps += [(float(scores[r]) / max(1, len(seqs[r])) ** length_penalty, seqs[r])
                     for r in range(i * nb, (i + 1) * nb) if float(scores[r]) > float("-inf")]
        out.append(max(hyps, key=lambda x: x[0])[1] if hyps else [])
    return out


@torch.no_grad()
def log_likelihood(model, input_ids: Tensor, attention_mask: Tensor, media: Tensor | None,
                   media_mask: Tensor | None, target_mask: Tensor) -> dict[str, Tensor]:
    """Log-probability of the tokens marked by `target_mask`, each given everything before it.

    Shapes: input_ids / attention_mask / target_mask (B, T); media (B, M, S, F) and media_mask (B, M, S), or
    None for the text-only LM (no cross-attention: the gates-at-0 baseline).
    Returns {"sum": (B,) summed log-probabilities, "tokens": (B,) number of scored tokens}; a multiple-choice
    score is either (sum) or the per-token mean (sum / tokens).
    """
    if media is None:
        hidden, _ = model.run_lm(input_ids, attention_mask, None)
    else:
        _, tokens = model.encode_media(media, media_mask)
        hidden, _ = model.run_lm(input_ids, attention_mask, MediaContext(media=tokens))
    logp = torch.log_softmax(model.output_logits(hidden[:, :-1]).float(), dim=-1)
    tok_lp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1): log p(token t+1 | <= t)
    sel = target_mask[:, 1:].bool() & attention_mask[:, 1:].bool()
    return {"sum": (tok_lp * sel).sum(-1), "tokens": sel.sum(-1)}


# -- clip-level helpers (captioning and multiple-choice scoring on per-second features) ---------------------------


def _features(x) -> Tensor:
    """A clip's (S, F) features as a float32 tensor (a copy: store arrays are read-only memory maps)."""
    return x.float() if isinstance(x, Tensor) else torch.tensor(np.asarray(x), dtype=torch.float32)


def _pack(model, docs: list[list[int]], clips: list[list[Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Right-pad token lists and clip feature lists into (input_ids, attention_mask, media, media_mask)."""
    b, t = len(docs), max(len(d) for d in docs)
    ids = torch.full((b, t), model.pad_token_id, dtype=torch.long)
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, d in enumerate(docs):
        ids[i, : len(d)], mask[i, : len(d)] = torch.tensor(d), 1
    m = max(len(c) for c in clips)
    s = max(x.shape[0] for c in clips for x in c)
    f = clips[0][0].shape[-1]
    media = torch.zeros(b, m, s, f)
    media_mask = torch.zeros(b, m, s, dtype=torch.bool)
    for i, c in enumerate(clips):
        for j, x in enumerate(c):
            media[i, j, : x.shape[0]] = x
            media_mask[i, j, : x.shape[0]] = True
    return ids, mask, media, media_mask


@torch.no_grad()
def complete(model, docs: list[list[int]], clips: list[list], max_new_tokens: int = 20, num_beams: int = 1,
             text_only: bool = False, batch_size: int = 16) -> list[str]:
    """Generate the continuation of each token prompt, whose m-th <visual> stands for its m-th clip.

    Shapes: N prompts (token-id lists) and N clip lists (features (S, F) each) -> N decoded strings. `text_only`:
    the LM alone reads the same prompts (no cross-attention).
    """
    out: list[str] = []
    for k in range(0, len(docs), batch_size):
        ids, mask, media, mm = _pack(model, docs[k : k + batch_size],
                                     [[_features(c) for c in cl] for cl in clips[k : k + batch_size]])
        if text_only:
            media = mm = None
        for seq in generate(model, ids, mask, media, mm, max_new_tokens=max_new_tokens, num_beams=num_beams):
            out.append(model.tokenizer.decode(seq, skip_special_tokens=True).strip())
    return out


@torch.no_grad()
def caption_clips(model, clips: list, max_new_tokens: int = 20, num_beams: int = 1, examples: list[tuple] = (),
                  max_tokens: int = 256, batch_size: int = 16, text_only: bool = False) -> list[str]:
    """Generate a caption for each clip (features (S, F)), optionally after in-context examples.

    `examples`: (features (S, F), caption) pairs shown before every query clip as
    ``<visual>caption<|endofchunk|>`` chunks (k-shot); the prompt then ends with the query's `<visual>`.
    """
    prompt, _ = model.make_collate(max_tokens).document_ids([c for _, c in examples], open_end=True)
    shots = [f for f, _ in examples]
    return complete(model, [prompt] * len(clips), [shots + [c] for c in clips], max_new_tokens, num_beams,
                    text_only, batch_size)


@torch.no_grad()
def score_texts(model, clips: list, texts: list[str], text_only: bool = False, per_token: bool = True,
                max_tokens: int = 128, batch_size: int = 32) -> Tensor:
    """Log-likelihood of each text given its clip: log p(text <|endofchunk|> | <visual>, clip).

    Shapes: N clips (features (S, F)) and N texts -> (N,) scores (mean per scored token with `per_token`, else
    the sum). `text_only` scores with the LM alone (no cross-attention: the gates-at-0 baseline). For
    multiple-choice QA, pass the question's clip once per candidate and take the argmax over its candidates.
    """
    if len(clips) != len(texts):
        raise ValueError(f"{len(clips)} clips but {len(texts)} texts")
    collate = model.make_collate(max_tokens)
    scores = []
    for k in range(0, len(texts), batch_size):
        docs, targets = [], []
        for text in texts[k : k + batch_size]:
            ids, spans = collate.document_ids([text])
            docs.append(ids)
            targets.append((spans[0][0], spans[0][1] + 1))  # the text and its <|endofchunk|>
        ids, mask, media, mm = _pack(model, docs, [[_features(c)] for c in clips[k : k + batch_size]])
        target = torch.zeros_like(mask)
        for i, (s, e) in enumerate(targets):
            target[i, s:e] = 1
        ll = log_likelihood(model, ids, mask, None if text_only else media, None if text_only else mm, target)
        scores.append(ll["sum"] / ll["tokens"].clamp_min(1) if per_token else ll["sum"])
    return torch.cat(scores)
