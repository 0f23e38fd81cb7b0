"""COSMO's trainable blocks: perceiver resampler, gated cross-attention, attention pooling of text states.

Written from the descriptions in the COSMO paper and the public showlab/cosmo and mlfoundations/open_flamingo
repositories (`PerceiverResampler`, `MaskedCrossAttention`, `GatedCrossAttentionBlock`, the contrastive text
pooling of `CosMo.forward`). Where this code differs from them, the docstring says so.

Axis names in shapes: B documents, M media (clips) per document, S seconds of one clip (its feature tokens),
L latents, T text tokens, G pooling groups, h heads, e head width, D widths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def feed_forward(dim: int, mult: int, compress: int = 1) -> nn.Sequential:
    """Pre-norm MLP, bias-free as in the release: LayerNorm -> Linear(dim, dim*mult/compress) -> GELU -> Linear."""
    inner = max(1, dim * mult // compress)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(),
                         nn.Linear(inner, dim, bias=False))


class LatentAttention(nn.Module):
    """Latents attend to [inputs ; latents] (the perceiver's attention; keys include the latents themselves).

    Differs from the release: padded inputs are masked out of the keys (the release's clips are fixed-size
    frame sets; vidlang clips have any number of seconds).
    """

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.norm_inputs = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor, latents: Tensor, x_mask: Tensor | None = None) -> Tensor:
        """Shapes: x (N, S, D), latents (N, L, D), x_mask (N, S) bool (True = real) -> (N, L, D)."""
        n, s, _ = x.shape
        lat = latents.shape[1]
        latents = self.norm_latents(latents)
        kv_in = torch.cat([self.norm_inputs(x), latents], dim=1)
        q = self.to_q(latents).view(n, lat, self.heads, self.dim_head).transpose(1, 2)  # (N, h, L, e)
        k, v = self.to_kv(kv_in).view(n, s + lat, 2, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        mask = None
        if x_mask is not None:
            keep = torch.cat([x_mask.bool(), x_mask.new_ones(n, lat, dtype=torch.bool)], dim=1)  # (N, S+L)
            mask = keep[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (N, h, L, e)
        return self.to_out(out.transpose(1, 2).reshape(n, lat, -1))


class PerceiverResampler(nn.Module):
    """Per clip: S feature tokens -> 1 contrastive latent + L media latents (release: 64 + 1, depth 6).

    The frames of a clip are one token set (no time or frame embeddings, as in the release's configs).
    Output index 0 is the contrastive latent, 1..L the media tokens the LM cross-attends to.
    """

    def __init__(self, dim: int, depth: int, num_latents: int, heads: int, dim_head: int, ff_mult: int,
                 init_std: float = 1.0):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents + 1, dim) * init_std)  # release: torch.randn
        self.layers = nn.ModuleList(
            nn.ModuleList([LatentAttention(dim, heads, dim_head), feed_forward(dim, ff_mult)]) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Shapes: x (N, S, D), mask (N, S) bool -> (N, 1 + L, D)."""
        lat = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            lat = attn(x, lat, mask) + lat
            lat = ff(lat) + lat
        return self.norm(lat)


class AttentionPool(nn.Module):
    """One learnable query pools token states over a group of tokens (COSMO's contrastive text side).

    Block as in the release: latent attention over [tokens ; query] + residual, feed-forward + residual, then a
    bias-free LayerNorm. Differs from the release: only the tokens of the group are keys (the release pools over
    padding too, so its text embedding depends on how much padding the batch needed).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int, init_std: float = 1.0):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.query = nn.Parameter(torch.randn(1, dim) * init_std)  # release: torch.randn
        self.norm_inputs = nn.LayerNorm(dim)
        self.norm_query = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.ff = feed_forward(dim, ff_mult)
        self.norm = nn.LayerNorm(dim, bias=False)

    def forward(self, x: Tensor, groups: Tensor) -> Tensor:
        """Shapes: x (B, T, D), groups (B, G, T) bool (tokens of each group) -> (B, G, D).

        Every group's query is the same learned vector, so the query-key scores are computed once per token and
        each group takes a masked softmax over its own tokens plus the query itself.
        """
        b, t, d = x.shape
        h, e = self.heads, self.dim_head
        qn = self.norm_query(self.query)  # (1, D)
        q = self.to_q(qn).view(h, e) * e ** -0.5
        k, v = self.to_kv(self.norm_inputs(x)).view(b, t, 2, h, e).unbind(2)  # (B, T, h, e) each
        kq, vq = self.to_kv(qn).view(2, h, e).unbind(0)  # the query as its own key/value
        s_tok = torch.einsum("he,bthe->bht", q, k)  # (B, h, T)
        s_self = (q * kq).sum(-1)  # (h,)
        s = s_tok.unsqueeze(1).masked_fill(~groups.bool().unsqueeze(2), float("-inf"))  # (B, G, h, T)
        s = torch.cat([s, s_self.view(1, 1, h, 1).expand(b, s.shape[1], h, 1)], dim=-1)
        p = s.softmax(-1)
        pooled = torch.einsum("bght,bthe->bghe", p[..., :t], v) + p[..., t:] * vq  # (B, G, h, e)
        lat = self.query + self.to_out(pooled.reshape(b, -1, h * e))
        lat = self.ff(lat) + lat
        return self.norm(lat)


class GatedCrossAttention(nn.Module):
    """Tanh-gated cross-attention from text tokens to media latents, then a tanh-gated feed-forward.

    ``x + tanh(a) * attn(x, media) ; x + tanh(f) * ff(x)`` with a = f = 0 at init, so the block is the identity
    until it trains (Flamingo). Inner width heads * dim_head / compress, feed-forward width dim * mult / compress
    (COSMO's `cross_attention_compress_ratio`). Differs from the release: the attention scale is
    1/sqrt(actual head width) (the release keeps 1/sqrt(dim_head) after compressing the head width).

    Media visibility (``text_time``: for each token, the number of <visual> tokens up to and including it):
    with ``immediate`` a token sees only media ``text_time`` (its most recent <visual>), otherwise every media
    1..text_time; tokens with text_time 0 (before the first <visual>) see none and get no attention output.
    The feed-forward branch applies to every token, as in the release.
    """

    def __init__(self, dim: int, dim_visual: int, heads: int, dim_head: int, ff_mult: int, compress: int,
                 immediate: bool = True):
        super().__init__()
        self.heads, self.head_width = heads, dim_head // compress
        inner = heads * self.head_width
        self.immediate = immediate
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = feed_forward(dim, ff_mult, compress)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def media_kv(self, media: Tensor) -> tuple[Tensor, Tensor]:
        """Shapes: media (B, M, L, Dv) -> keys, values (B, M, h, L, e). Computed once per document (and once
        per generation: they do not depend on the text)."""
        b, m, n, _ = media.shape
        k, v = self.to_kv(media).view(b, m, n, 2, self.heads, self.head_width).permute(3, 0, 1, 4, 2, 5)
        return k, v

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], text_time: Tensor, valid: Tensor | None = None) -> Tensor:
        """Shapes: x (B, T, D), kv from media_kv, text_time (B, T) long, valid (B, T) bool -> (B, T, D).

        ``valid`` False (padding) skips a token's attention (its output is unused anyway).
        """
        b, t, _ = x.shape
        q = self.to_q(self.norm(x)).view(b, t, self.heads, self.head_width)
        sees = text_time > 0 if valid is None else (text_time > 0) & valid.bool()
        if self.immediate:
            out = attend_immediate(q, kv[0], kv[1], text_time, sees)
        else:
            out = attend_all(q, kv[0], kv[1], text_time, sees, immediate=False)
        x = x + self.attn_gate.tanh() * self.to_out(out.reshape(b, t, -1))
        return x + self.ff_gate.tanh() * self.ff(x)


def attend_immediate(q: Tensor, k: Tensor, v: Tensor, text_time: Tensor, sees: Tensor) -> Tensor:
    """Each token attends to the latents of its own media only, grouped into per-media query blocks.

    Shapes: q (B, T, h, e); k, v (B, M, h, L, e); text_time (B, T) long (1-based media index, 0 = none);
    sees (B, T) bool -> (B, T, h, e), zero where ``sees`` is False.
    The tokens that share a media are contiguous (text_time never decreases along a row), so they are packed into
    one block of queries per used media: the cost is (tokens x L) instead of (tokens x M x L) for a masked
    attention over all media, and memory grows linearly with the number of clips per document.
    """
    b, t, h, e = q.shape
    m, n = k.shape[1], k.shape[3]
    out = q.new_zeros(b, t, h, e)
    bi, ti = sees.nonzero(as_tuple=True)  # row-major: blocks come out contiguous and in order
    if bi.numel() == 0:
        return out
    slot = bi * m + (text_time[bi, ti] - 1)
    count = slot.numel()
    first = torch.ones(count, dtype=torch.bool, device=q.device)
    first[1:] = slot[1:] != slot[:-1]
    idx = torch.arange(count, device=q.device)
    pos = idx - torch.cummax(torch.where(first, idx, torch.zeros_like(idx)), 0).values
    block = torch.cumsum(first.long(), 0) - 1
    n_blocks, width = int(block[-1]) + 1, int(pos.max()) + 1
    qb = q.new_zeros(n_blocks, width, h, e)
    qb[block, pos] = q[bi, ti]
    used = slot[first]
    kb = k.reshape(b * m, h, n, e)[used]
    vb = v.reshape(b * m, h, n, e)[used]
    ob = F.scaled_dot_product_attention(qb.transpose(1, 2), kb, vb).transpose(1, 2)  # (blocks, width, h, e)
    out[bi, ti] = ob[block, pos]
    return out


def attend_all(q: Tensor, k: Tensor, v: Tensor, text_time: Tensor, sees: Tensor, immediate: bool = False) -> Tensor:
    """Masked attention over every media's latents (the release's formulation).

    Shapes as `attend_immediate`. ``immediate`` True: a token's allowed media is exactly text_time (the naive
    reference for `attend_immediate`); False: media 1..text_time. Tokens with no allowed media get zeros.
    """
    b, t, h, e = q.shape
    m, n = k.shape[1], k.shape[3]
    kf = k.permute(0, 2, 1, 3, 4).reshape(b, h, m * n, e)
    vf = v.permute(0, 2, 1, 3, 4).reshape(b, h, m * n, e)
    s = torch.einsum("bthe,bhje->bhtj", q, kf) * e ** -0.5  # (B, h, T, M*L)
    media_time = torch.arange(1, m + 1, device=q.device).repeat_interleave(n)  # (M*L,)
    tt = text_time[:, :, None]
    allowed = (tt == media_time) if immediate else (tt >= media_time)
    allowed = allowed & sees[:, :, None]  # (B, T, M*L)
    any_allowed = allowed.any(-1)[:, None, :, None]  # (B, 1, T, 1)
    # Rows with no allowed key get finite scores and a zero weight afterwards (a softmax over -inf only is NaN,
    # and NaN * 0 would still reach the gradient).
    s = s.masked_fill(~allowed[:, None], float("-inf")).masked_fill(~any_allowed, 0.0)
    p = s.softmax(-1) * any_allowed
    return torch.einsum("bhtj,bhje->bthe", p, vf)
