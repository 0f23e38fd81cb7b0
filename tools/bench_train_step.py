"""Time one full training step (forward + backward + AdamW step) of `norton` vs `infonce` on the same model.

    .venv/bin/python tools/bench_train_step.py [--config configs/norton/demo_cpu.yaml] [--videos 16] [--clips 8]
    .venv/bin/python tools/bench_train_step.py --text-policies frozen frozen-nocache top:1 top:2 all

`--text-policies`: the cost of training the text tower. One model per policy (same seed), each timed with both
objectives, steps interleaved across policies in one process; ratios against the first policy. `frozen` keeps
its token-state cache (every step repeats the same texts, so after warm-up the text tower costs nothing: the
many-epoch regime); `frozen-nocache` recomputes the frozen tower each step (the one-pass regime, where a span
is seen once); `top:N` trains the last N text blocks (`model.text.trainable=top`); `all` the whole tower.

Same model (the demo config: frozen packaged MiniLM with its token-state cache, 2-layer d=128 video tower), same
batch of random per-second features (272-d, the synthetic corpus' feature size) and narration-like texts; one
warm-up step per objective, then the objectives alternate so machine load affects both alike. Target: the
norton/infonce ratio <= 1.3. Prints and returns a dict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = ("cut the onion boil water add salt stir sauce fry egg slice bread pour milk whisk peel potato grate "
         "cheese now we are going to take this and put it in the pan so today").split()


def random_clips(rng, batch_videos: int, clips: int, seconds: int, feature_dim: int):
    """-> (video (N, seconds, feature_dim), mask (N, seconds), texts): N = batch_videos * clips random clips of
    seconds // 2 .. seconds seconds, each with a random caption of 4-15 words."""
    import torch

    n = batch_videos * clips
    lengths = rng.integers(max(1, seconds // 2), seconds + 1, size=n)
    video = torch.randn(n, seconds, feature_dim)
    mask = torch.arange(seconds)[None, :] < torch.from_numpy(lengths)[:, None]
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 16)))) for _ in range(n)]
    return video, mask, texts


def make_batch(model, video, mask, texts: list[str], clips: int):
    """The training batch of these clips, tokenised by the model's text tower."""
    import torch

    from vidlang.data.collate import Batch

    n = len(texts)
    ids, att = model.text.tokenize(texts)
    return Batch(video=video, video_mask=mask, input_ids=ids, attention_mask=att, clips_per_video=clips,
                 video_ids=[f"v{i}" for i in range(n // clips)], clip_times=torch.zeros(n, 2),
                 text_times=torch.zeros(n, 2), texts=texts)


def timed_step(model, batch, opt, gather, loss_cfg, objective: str) -> float:
    """Seconds of one optimizer step (forward, backward, update) with the registered objective."""
    from vidlang.train.objectives import OBJECTIVES

    t = time.perf_counter()
    losses = OBJECTIVES.get(objective)(model, batch, gather, loss_cfg)
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    opt.step()
    return time.perf_counter() - t


def bench_step_ratio(batch_videos: int = 16, clips: int = 8, repeats: int = 10, seconds: int = 16,
                     feature_dim: int = 272, config: str | Path = REPO / "configs/norton/demo_cpu.yaml",
                     overrides: list[str] | None = None, seed: int = 0, threads: int | None = None) -> dict:
    """-> {"infonce_s", "norton_s" (median seconds per step), "ratio" (norton / infonce), sizes}.

    threads: torch.set_num_threads for the measurement (restored after); None keeps the current setting. On a
    loaded machine 1 thread gives steadier ratios (multi-threaded kernels stall when a core is taken away).
    """
    import numpy as np
    import torch

    if threads is not None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return bench_step_ratio(batch_videos, clips, repeats, seconds, feature_dim, config, overrides, seed)
        finally:
            torch.set_num_threads(before)

    from vidlang.config import load_config
    from vidlang.models.dual import DualEncoder
    from vidlang.train.config import TrainConfig
    from vidlang.train.dist import Gatherer
    from vidlang.train.optim import build_optimizer

    cfg = load_config(TrainConfig, config, [f"data.clips_per_video={clips}", f"data.batch_videos={batch_videos}",
                                            f"model.video.input_dim={feature_dim}", *(overrides or [])])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = DualEncoder.build(cfg).train()
    batch = make_batch(model, *random_clips(rng, batch_videos, clips, seconds, feature_dim), clips)
    opt = build_optimizer(model, cfg.optim)
    gather = Gatherer()

    def step(name: str) -> float:
        return timed_step(model, batch, opt, gather, cfg.loss, name)

    times: dict[str, list[float]] = {"infonce": [], "norton": []}
    for name in times:  # warm-up (allocations, the frozen text cache)
        step(name)
    for _ in range(repeats):
        for name in times:
            times[name].append(step(name))
    med = {k: float(np.median(v)) for k, v in times.items()}
    out = {"infonce_s": med["infonce"], "norton_s": med["norton"], "ratio": med["norton"] / med["infonce"],
           "batch_videos": batch_videos, "clips": clips, "seconds": seconds, "repeats": repeats,
           "threads": torch.get_num_threads()}
    return out


def bench_trainer_ratio(steps: int = 40, rounds: int = 3, videos: int = 64, seconds: int = 60, feature_dim: int = 272,
                        config: str | Path = REPO / "configs/norton/demo_cpu.yaml", seed: int = 0,
                        threads: int | None = None) -> dict:
    """The same ratio through the real trainer (vidlang.train.trainer.Trainer: DataLoader, sampling, tokenising,
    loss bookkeeping, finiteness check, logging), so what the trainer adds around the objective is counted.

    An in-memory corpus of `videos` random-feature videos narrated every 4 s; runs of `steps` optimizer steps
    (no evaluation or checkpoint inside the timed window), objectives alternating over `rounds` rounds; the time
    per step is the median over the steps after the first 5 of each run, then the median over rounds.
    -> {"infonce_s", "norton_s", "ratio", ...}
    """
    import tempfile

    import numpy as np
    import torch

    from vidlang.config import load_config
    from vidlang.data.train_data import TrainData
    from vidlang.datasets import CaptionLine
    from vidlang.train.config import TrainConfig
    from vidlang.train.trainer import train

    if threads is not None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    feats = {f"b{v:03d}": rng.normal(size=(seconds, feature_dim)).astype(np.float32) for v in range(videos)}
    caps = {vid: [CaptionLine(4.0 * i, 4.0 * i + 3.0, " ".join(rng.choice(WORDS, size=int(rng.integers(3, 8)))))
                  for i in range(seconds // 4)] for vid in feats}
    data = TrainData(feats, caps, sorted(feats), fps=1.0, dim=feature_dim)
    times: dict[str, list[float]] = {"infonce": [], "norton": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):
                for name in times:
                    stamps: list[float] = []
                    cfg = load_config(TrainConfig, config, [f"loss.objective={name}", f"train.steps={steps}",
                                                            "train.eval_every=0", "train.save_every=0",
                                                            "train.progress=false", "train.tensorboard=false",
                                                            "data.heldout_frac=0", f"train.seed={seed}"])
                    train(cfg, Path(tmp) / f"{name}{r}", data=data,
                          callbacks=[lambda step, rec, model: stamps.append(time.perf_counter())],
                          stop_after=steps - 1)  # the last step of a run evaluates and saves: keep it out
                    times[name].append(float(np.median(np.diff(stamps[4:]))))
    finally:
        if threads is not None:
            torch.set_num_threads(before)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"infonce_s": med["infonce"], "norton_s": med["norton"], "ratio": med["norton"] / med["infonce"],
            "per_round": {k: v for k, v in times.items()}, "steps": steps, "rounds": rounds,
            "threads": torch.get_num_threads() if threads is None else threads}


POLICIES = {"frozen": [], "frozen-nocache": ["model.text.cache_size=0"], "all": ["model.text.trainable=all"]}


def policy_overrides(policy: str) -> list[str]:
    """`frozen`, `frozen-nocache`, `all`, or `top:N` -> model.text overrides."""
    if policy.startswith("top:"):
        return ["model.text.trainable=top", f"model.text.trainable_layers={int(policy[4:])}"]
    if policy not in POLICIES:
        raise SystemExit(f"--text-policies: unknown policy {policy!r} (frozen, frozen-nocache, top:N, all)")
    return POLICIES[policy]


def bench_text_policies(policies: list[str], batch_videos: int = 16, clips: int = 8, repeats: int = 10,
                        seconds: int = 16, feature_dim: int = 272,
                        config: str | Path = REPO / "configs/norton/demo_cpu.yaml", seed: int = 0,
                        threads: int | None = None) -> dict:
    """-> {policy: {"infonce_s", "norton_s", "infonce_ratio", "norton_ratio"}} with ratios against policies[0]."""
    import numpy as np
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from vidlang.config import load_config
    from vidlang.models.dual import DualEncoder
    from vidlang.train.config import TrainConfig
    from vidlang.train.dist import Gatherer
    from vidlang.train.optim import build_optimizer

    video, mask, texts = random_clips(np.random.default_rng(seed), batch_videos, clips, seconds, feature_dim)
    setups = {}
    for policy in policies:
        cfg = load_config(TrainConfig, config, [f"data.clips_per_video={clips}", f"data.batch_videos={batch_videos}",
                                                f"model.video.input_dim={feature_dim}", *policy_overrides(policy)])
        torch.manual_seed(seed)
        model = DualEncoder.build(cfg).train()
        setups[policy] = (model, make_batch(model, video, mask, texts, clips), build_optimizer(model, cfg.optim), cfg)
    gather = Gatherer()

    def step(policy: str, name: str) -> float:
        model, batch, opt, cfg = setups[policy]
        return timed_step(model, batch, opt, gather, cfg.loss, name)

    objectives = ("infonce", "norton")
    times = {(p, o): [] for p in policies for o in objectives}
    for key in times:  # warm-up (allocations, the frozen text cache)
        step(*key)
    for _ in range(repeats):
        for key in times:
            times[key].append(step(*key))
    med = {k: float(np.median(v)) for k, v in times.items()}
    ref = policies[0]
    return {p: {"infonce_s": med[p, "infonce"], "norton_s": med[p, "norton"],
                "infonce_ratio": med[p, "infonce"] / med[ref, "infonce"],
                "norton_ratio": med[p, "norton"] / med[ref, "norton"],
                "norton_over_infonce": med[p, "norton"] / med[p, "infonce"]} for p in policies} | {
        "reference": ref, "batch_videos": batch_videos, "clips": clips, "repeats": repeats,
        "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs/norton/demo_cpu.yaml"))
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the measurement")
    ap.add_argument("--text-policies", nargs="+", default=None, metavar="POLICY",
                    help="compare text-tower policies instead (frozen, frozen-nocache, top:N, all); ratios vs the first")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = ap.parse_args(argv)
    if args.text_policies:
        res = bench_text_policies(args.text_policies, args.videos, args.clips, args.repeats, config=args.config,
                                  threads=args.threads)
        print(json.dumps(res, indent=1))
        print(f"step time against {res['reference']} (same process, interleaved):")
        for p in args.text_policies:
            r = res[p]
            print(f"  {p:>15}: infonce {r['infonce_s'] * 1000:6.0f} ms ({r['infonce_ratio']:.2f}x)  "
                  f"norton {r['norton_s'] * 1000:6.0f} ms ({r['norton_ratio']:.2f}x)  norton/infonce "
                  f"{r['norton_over_infonce']:.2f}")
        return 0
    res = bench_step_ratio(args.videos, args.clips, args.repeats, config=args.config, overrides=args.overrides,
                           threads=args.threads)
    print(json.dumps(res, indent=1))
    print(f"norton / infonce step time: {res['ratio']:.2f} (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
