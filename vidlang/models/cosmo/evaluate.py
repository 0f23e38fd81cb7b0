"""What COSMO gives the evaluation tasks, by capability (vidlang.eval.capabilities).

- `CosmoEmbedder` (`embed`): the contrastive heads. A text is embedded as a one-clip document
  ``<visual>text<|endofchunk|>`` (pooled unimodal states, as in training); a window as a one-clip document's visual
  latent. Windows longer than the training clip (`clip_len` steps) are centre-cropped to it, as the training
  sampler crops its clips; `embed_seconds` averages, per second, the embeddings of the sliding training-length
  windows (50% overlap) that contain it.
- `CosmoScorer` (`score`): log-likelihood of texts given a clip (multiple-choice QA by likelihood), or given no
  clip (the text-only LM: gates at 0).
- `CosmoGenerator` (`generate`): captions (greedy or beam search; 0- or k-shot with in-context examples) and
  short answers to questions about a clip, with the text-only LM as the baseline.

Every method runs in eval mode without gradients; clips are per-second feature arrays (S, F).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidlang.models.cosmo import generate as G

QUESTION = "Question: {question} Answer:"


class _CosmoEvaluator:
    def __init__(self, model, clip_len: int | None = None, device: str | torch.device = "cpu", batch_size: int = 16):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.clip_len = int(clip_len) if clip_len else None  # feature steps of the longest training clip
        self.batch_size = int(batch_size)
        self.collate = model.make_collate(max(model.cfg.max_tokens, 256))

    def crop(self, features: np.ndarray, start: float, end: float, fps: float) -> np.ndarray:
        """Feature steps [floor(s*fps), ceil(e*fps)) (at least one), centre-cropped to the training clip length."""
        n = features.shape[0]
        s = min(max(int(math.floor(start * fps)), 0), n - 1)
        e = min(max(int(math.ceil(end * fps)), s + 1), n)
        if self.clip_len and e - s > self.clip_len:
            s += (e - s - self.clip_len) // 2
            e = s + self.clip_len
        return np.asarray(features[s:e], dtype=np.float32)


class CosmoEmbedder(_CosmoEvaluator):
    """The `embed` capability (vidlang.eval.capabilities.Embeds) through the contrastive heads."""

    def __init__(self, model, clip_len: int | None = None, device: str | torch.device = "cpu", batch_size: int = 32):
        super().__init__(model, clip_len, device, batch_size)

    @property
    def dim(self) -> int:
        return int(self.model.cfg.contrastive_dim)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> Tensor:
        """Shapes: N strings -> (N, C) L2-normalised."""
        out = []
        texts = list(texts)
        for k in range(0, len(texts), self.batch_size):
            docs = [self.collate.document_ids([t])[0] for t in texts[k : k + self.batch_size]]
            ids, mask, _, _ = G._pack(self.model, docs, [[torch.zeros(1, 1)]] * len(docs))
            out.append(self.model.embed_text(ids.to(self.device), mask.to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    @torch.no_grad()
    def embed_clips(self, clips: Sequence[np.ndarray]) -> Tensor:
        """Shapes: N clips (S_i, F) -> (N, C) L2-normalised (each clip a one-clip document)."""
        out = []
        for k in range(0, len(clips), self.batch_size):
            chunk = [[G._features(c)] for c in clips[k : k + self.batch_size]]
            _, _, media, mm = G._pack(self.model, [[0]] * len(chunk), chunk)
            out.append(self.model.embed_media(media.to(self.device), mm.to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def embed_windows(self, features: np.ndarray, windows: Sequence[tuple[float, float]], fps: float) -> Tensor:
        """Shapes: features (T, F), W windows (start, end) seconds -> (W, C) L2-normalised."""
        return self.embed_clips([self.crop(features, s, e, fps) for s, e in windows])

    def embed_seconds(self, features: np.ndarray, fps: float | None = None) -> Tensor:
        """Shapes: (T, F) -> (T, C) L2-normalised: the mean embedding of the training-length windows holding t."""
        n = int(features.shape[0])
        if n == 0:
            return torch.zeros(0, self.dim)
        length = min(self.clip_len or 8, n)
        stride = max(1, length // 2)
        starts = list(range(0, n - length + 1, stride))
        if starts[-1] + length < n:
            starts.append(n - length)
        emb = self.embed_clips([np.asarray(features[s : s + length], dtype=np.float32) for s in starts])
        acc, cnt = torch.zeros(n, emb.shape[1]), torch.zeros(n, 1)
        for i, s in enumerate(starts):
            acc[s : s + length] += emb[i]
            cnt[s : s + length] += 1
        return F.normalize(acc / cnt, dim=-1)


class CosmoScorer(_CosmoEvaluator):
    """The `score` capability: log p(text <|endofchunk|> | <visual>, clip), per text token."""

    def score(self, clips: Sequence[np.ndarray], texts: Sequence[str], text_only: bool = False) -> Tensor:
        """Shapes: N clips (S, F) and N texts -> (N,) mean log-probability per scored token."""
        return G.score_texts(self.model, [G._features(c) for c in clips], list(texts), text_only=text_only,
                             max_tokens=self.collate.max_tokens, batch_size=self.batch_size * 2).cpu()


class CosmoGenerator(_CosmoEvaluator):
    """The `generate` capability: captions and short answers from clips."""

    def caption(self, clips: Sequence[np.ndarray], num_beams: int = 1, max_new_tokens: int = 20,
                examples: Sequence[tuple[np.ndarray, str]] = (), text_only: bool = False) -> list[str]:
        """One caption per clip (S, F), after the in-context `examples` (clip, caption) when given."""
        return G.caption_clips(self.model, [G._features(c) for c in clips], max_new_tokens, num_beams,
                               [(G._features(f), c) for f, c in examples], self.collate.max_tokens,
                               self.batch_size, text_only)

    def question_prompt(self, question: str, examples: Sequence[tuple[str, str]] = ()) -> list[int]:
        """Token ids: [prefix] (<visual>Question: q Answer: a<|endofchunk|>)* <visual>Question: q Answer:"""
        c = self.collate
        enc = lambda t: self.model.tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
        ids = list(c.prefix)
        for q, a in examples:
            ids += [c.visual_id, *enc(QUESTION.format(question=q) + " " + a), c.eoc_id]
        return ids + [c.visual_id, *enc(QUESTION.format(question=question))]

    def answer(self, clips: Sequence[np.ndarray], questions: Sequence[str], max_new_tokens: int = 4,
               examples: Sequence[tuple[np.ndarray, str, str]] = (), text_only: bool = False) -> list[str]:
        """A short answer per (clip, question), after the in-context `examples` (clip, question, answer); the
        first line of the generated text."""
        shots = [G._features(f) for f, _, _ in examples]
        qa = [(q, a) for _, q, a in examples]
        docs = [self.question_prompt(q, qa) for q in questions]
        clips = [shots + [G._features(c)] for c in clips]
        out = G.complete(self.model, docs, clips, max_new_tokens, 1, text_only, self.batch_size)
        return [o.strip().splitlines()[0] if o.strip() else "" for o in out]
