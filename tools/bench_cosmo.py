"""Benchmarks for the COSMO model (vidlang.models.cosmo), as ratios measured within one run.

    .venv/bin/python tools/bench_cosmo.py                       # all parts on SmolLM2 (`make lm`), first 8 layers
    .venv/bin/python tools/bench_cosmo.py --parts i,ii --layers 0 --threads 2   # all 30 layers

(i)   Training step (forward + backward of the COSMO loss) with COSMO-style cross-attention (the upper half of
      the layers, width / compress 4) vs Flamingo-style (before every layer, compress 1), same LM, same tokens
      and clips; the release's own setting (interval 2, compress 2) is printed too. Target: >= 1.5x faster.
(ii)  COSMO step vs a text-only step: the same frozen LM on the same tokens, LM loss only, back-propagated
      through every layer to the input embeddings (what training anything below the LM's top costs). Printed
      for the release's frozen special-token rows (no gradient below the first cross-attention) and with them
      trained (gradient through every layer, like the text-only step). Target: <= 1.4x.
(iii) Peak memory of one training step vs clips per document (1 to 16, 16 tokens per clip): each size in a fresh
      child process, growth of the peak resident set (VmHWM) over the resident set before the step; for the
      packed immediate-media attention (default) and the masked attention over all media (the release's
      formulation). Target: linear in the number of clips.
(iv)  Greedy generation of 64 new tokens (no early stop), batch 1, with the KV cache (prompt read once, media
      keys/values computed once) vs without (every step re-runs the sequence and the clips), for a 0-shot
      prompt (one clip) and a 4-shot prompt (four captioned clips, then the query clip). Target: >= 5x.
Times are medians over --repeats with the variants alternating; compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vidlang.losses.lm import CosmoLossConfig, cosmo_loss, next_token_loss  # noqa: E402
from vidlang.models.cosmo import CosmoConfig, CosmoModel  # noqa: E402


def lm_layers(args) -> int:
    """Decoder layers the benchmarked LM keeps."""
    from transformers import AutoConfig

    from vidlang.models.cosmo.causal_lm import resolve_lm_path

    total = AutoConfig.from_pretrained(str(resolve_lm_path(args.lm)), local_files_only=True).num_hidden_layers
    return min(args.layers, total) if args.layers else total


def build(args, half: bool = True, **over) -> CosmoModel:
    """A CosmoModel on the benchmarked LM; `half`: the lower half of the layers is unimodal (COSMO)."""
    torch.manual_seed(0)
    cfg = dict(lm_path=args.lm, lm_layers=args.layers, feature_dim=args.feature_dim,
               resampler_depth=args.resampler_depth, resampler_latents=args.latents)
    if half:
        cfg["unimodal_depth"] = lm_layers(args) // 2
    model = CosmoModel(CosmoConfig(**{**cfg, **over}))
    model.train()
    return model


def documents(model: CosmoModel, docs: int, clips: int, tokens: int, seconds: int, feature_dim: int, seed: int = 0):
    """Random text tokens laid out as `docs` documents of `clips` chunks, `tokens` tokens each."""
    g = torch.Generator().manual_seed(seed)
    per = tokens // clips
    ids = torch.randint(10, model.lm_vocab - 10, (docs, per * clips), generator=g)
    for c in range(clips):
        ids[:, c * per] = model.visual_token_id
        ids[:, c * per + per - 1] = model.eoc_token_id
    mask = torch.ones_like(ids)
    media = torch.randn(docs, clips, seconds, feature_dim, generator=g)
    return ids, mask, media, torch.ones(docs, clips, seconds, dtype=torch.bool)


def cosmo_step(model, batch) -> None:
    ids, mask, media, mm = batch
    loss = cosmo_loss(model(ids, mask, media, mm), CosmoLossConfig())["total"]
    loss.backward()
    model.zero_grad(set_to_none=True)


def text_only_step(model, batch) -> None:
    ids, mask, _, _ = batch
    emb = model.embed_tokens(ids).detach().requires_grad_(True)
    hidden = model.lm.base_model(inputs_embeds=emb, attention_mask=mask).last_hidden_state
    next_token_loss(model.output_logits(hidden), model.lm_targets(ids, mask)).backward()


def timed(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per function; the functions alternate within each repeat, after one warm-up each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def open_gates(model: CosmoModel, value: float = 0.5) -> None:
    for block in model.xattn.values():
        torch.nn.init.constant_(block.attn_gate, value)
        torch.nn.init.constant_(block.ff_gate, value)


def parts_i_ii(args) -> dict:
    models = {
        "cosmo": build(args, cross_attn_interval=1, compress_ratio=4),
        "flamingo": build(args, half=False, unimodal_depth=0, cross_attn_interval=1, compress_ratio=1),
        "release": build(args, cross_attn_interval=2, compress_ratio=2),
        "cosmo_special": build(args, cross_attn_interval=1, compress_ratio=4, train_special_tokens=True),
    }
    for m in models.values():
        open_gates(m)
    batch = documents(models["cosmo"], args.docs, args.clips, args.tokens, args.seconds, args.feature_dim)
    fns = {k: (lambda m=m: cosmo_step(m, batch)) for k, m in models.items()}
    fns["text_only"] = lambda: text_only_step(models["cosmo"], batch)
    t = timed(fns, args.repeats)
    layers = models["cosmo"].lm.config.num_hidden_layers
    print(f"(i)/(ii) training step, {layers} LM layers, {args.docs} documents x {args.tokens} tokens, "
          f"{args.clips} clips x {args.seconds} s, resampler {args.resampler_depth} layers x {args.latents}+1 "
          f"latents, {torch.get_num_threads()} threads, median of {args.repeats}")
    for k, m in models.items():
        print(f"    {k:14s} xattn before layers {m.xattn_layers}, compress {m.cfg.compress_ratio}: "
              f"{t[k] * 1e3:8.1f} ms")
    print(f"    {'text_only':14s} LM loss, gradient through every layer:      {t['text_only'] * 1e3:8.1f} ms")
    r1 = t["flamingo"] / t["cosmo"]
    r2, r2s = t["cosmo"] / t["text_only"], t["cosmo_special"] / t["text_only"]
    print(f"    (i)  flamingo / cosmo = {r1:.2f} (target >= 1.5); flamingo / release setting = "
          f"{t['flamingo'] / t['release']:.2f}")
    print(f"    (ii) cosmo / text-only = {r2:.2f} with frozen special-token rows (release), {r2s:.2f} with them "
          f"trained (target <= 1.4)")
    return {"times_s": t, "flamingo_over_cosmo": r1, "cosmo_over_text_only": r2,
            "cosmo_trained_special_over_text_only": r2s, "layers": layers}


def _vm(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _child_memory(args, clips: int, immediate: bool) -> dict:
    """Runs in a fresh process: peak RSS growth of one training step with `clips` clips per document."""
    model = build(args, cross_attn_interval=1, compress_ratio=4, only_attend_immediate_media=immediate)
    open_gates(model)
    cosmo_step(model, documents(model, 2, 1, 4, 2, args.feature_dim))  # kernels, allocator
    batch = documents(model, args.docs, clips, 16 * clips, args.seconds, args.feature_dim)
    before = _vm("VmRSS")
    t0 = time.perf_counter()
    cosmo_step(model, batch)
    return {"clips": clips, "immediate": immediate, "growth_bytes": _vm("VmHWM") - before,
            "seconds": time.perf_counter() - t0}


def part_iii(args) -> dict:
    sizes = [int(x) for x in args.mem_clips.split(",")]
    runs = []
    for immediate in (True, False):
        for k in sizes:
            cmd = [sys.executable, os.path.abspath(__file__), *args.argv, "--_child", json.dumps([k, immediate])]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"(iii) peak memory growth of one training step, {args.docs} documents, 16 tokens per clip")
    res = {}
    for immediate in (True, False):
        rows = [r for r in runs if r["immediate"] == immediate]
        name = "packed (immediate media)" if immediate else "masked (all media)"
        mib = [r["growth_bytes"] / 2**20 for r in rows]
        per_clip = [(b - mib[0]) / (r["clips"] - rows[0]["clips"]) for r, b in zip(rows[1:], mib[1:])]
        print(f"    {name:26s} " + "  ".join(f"{r['clips']:>2d} clips {b:7.1f} MiB" for r, b in zip(rows, mib)))
        print(f"    {'':26s} MiB per extra clip from 1 clip: " + ", ".join(f"{x:.1f}" for x in per_clip))
        res["packed" if immediate else "masked"] = rows
    return res


def part_iv(args) -> dict:
    model = build(args, cross_attn_interval=1, compress_ratio=4)
    open_gates(model)
    model.eval()
    res = {}
    for shots in (0, 4):
        clips = shots + 1
        ids, mask, media, mm = documents(model, 1, clips, 18 * clips, args.seconds, args.feature_dim, seed=1)
        ids = torch.cat([ids[:, : 18 * shots], torch.tensor([[model.visual_token_id]])], dim=1)
        mask = torch.ones_like(ids)

        def gen(use_cache: bool):
            out = model.generate(ids, mask, media, mm, max_new_tokens=args.new_tokens, use_cache=use_cache,
                                 eos_token_id=-1)
            assert len(out[0]) == args.new_tokens
            return out

        assert gen(True) == gen(False)  # same tokens either way
        t = timed({"cache": lambda: gen(True), "no_cache": lambda: gen(False)}, max(1, args.repeats // 2))
        ratio = t["no_cache"] / t["cache"]
        print(f"(iv) {shots}-shot prompt ({ids.shape[1]} tokens, {clips} clip(s)), {args.new_tokens} new tokens: "
              f"{args.new_tokens / t['cache']:.1f} tokens/s with the cache, {args.new_tokens / t['no_cache']:.1f} "
              f"without: {ratio:.2f}x (target >= 5)")
        res[f"{shots}_shot"] = {"times_s": t, "ratio": ratio, "prompt_tokens": int(ids.shape[1])}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="i,ii,iii,iv", help="comma list of i, ii, iii, iv (i and ii run together)")
    ap.add_argument("--lm", default="", help="causal LM folder (default: `make lm`'s SmolLM2-135M-Instruct)")
    ap.add_argument("--layers", type=int, default=8, help="keep the LM's first N layers (0 = all)")
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64, help="tokens per document in (i)/(ii)")
    ap.add_argument("--clips", type=int, default=4, help="clips per document in (i)/(ii)")
    ap.add_argument("--seconds", type=int, default=8, help="seconds (feature tokens) per clip")
    ap.add_argument("--feature-dim", type=int, default=326, help="per-second feature width (thumbnail: 326)")
    ap.add_argument("--latents", type=int, default=64, help="resampler media latents per clip (release: 64)")
    ap.add_argument("--resampler-depth", type=int, default=6, help="resampler layers (release: 6)")
    ap.add_argument("--mem-clips", default="1,2,4,8,16")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._child:
        clips, immediate = json.loads(args._child)
        print(json.dumps(_child_memory(args, clips, immediate)))
        return 0
    parts = set(args.parts.split(","))
    res = {}
    if parts & {"i", "ii"}:
        res["i_ii"] = parts_i_ii(args)
    if "iii" in parts:
        res["iii"] = part_iii(args)
    if "iv" in parts:
        res["iv"] = part_iv(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
