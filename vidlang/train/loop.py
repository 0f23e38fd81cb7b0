"""The one training loop (accelerate). Objectives come from `OBJECTIVES`; the loop never branches on their name.

    accelerate launch --multi_gpu --num_processes N -m vidlang.cli train --config configs/norton/<name>.yaml

Per optimizer step: `grad_accum` micro-batches (accelerator.accumulate), each this process's B/W videos x K clips
of a global batch of B videos; backward; grad clipping at sync; AdamW step; scheduler step (the scheduler is not
`prepare`d: it counts optimizer steps, whatever the number of processes). A non-finite loss stops the run with a
TrainingError naming the step; the last checkpoint written before it is intact.

Outputs in OUT:
    train_log.jsonl   one line per log step: step, epoch, lr, time, losses (mean over the logged micro-batches and
                      processes), and held-out metrics on evaluation steps ("eval/R@5", ...)
    tb/               TensorBoard scalars (same values)
    last/, best/      checkpoints (vidlang.train.checkpoint); best/ by train.select_metric on held-out TRAINING videos
    state/            accelerator.save_state (model, optimizer, scheduler, RNG of every process) + progress.json
                      (step, epoch, batch index inside the epoch, the epoch's video order, best metric, patience)
    summary.json      the final summary

Resume is exact mid-epoch: batches are a pure function of (seed, epoch, batch index) (vidlang.data.longvideo), the
epoch's order is stored, and RNG/optimizer/scheduler come back from the state; states are only written at
optimizer-step boundaries. A run resumes automatically when OUT/state exists (resume=None), or on demand
(resume=True, error if there is no state); resume=False starts over.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from vidlang.data.longvideo import LongVideoDataset, hard_negative_order, split_train_heldout
from vidlang.errors import ConfigError, VidlangError
from vidlang.io import append_jsonl, atomic_write_json
from vidlang.train.checkpoint import load_weights, recover_dir, save_checkpoint, swap_into_place
from vidlang.train.config import SELECT_METRICS, TrainConfig
from vidlang.train.dist import Gatherer
from vidlang.train.objectives import OBJECTIVES
from vidlang.train.optim import build_optimizer, build_scheduler
from vidlang.train.validate import heldout_retrieval, is_better

LOG = "train_log.jsonl"
STATE = "state"
PROGRESS = "progress.json"


class TrainingError(VidlangError):
    """Training cannot go on (non-finite loss, empty dataset)."""


class Corpus:
    """What the loop trains on: features[vid] -> (T, Din), captions[vid] -> lines, training ids, fps, dim."""

    def __init__(self, features: Mapping, captions: Mapping, train_ids: Sequence[str], fps: float, dim: int):
        self.features, self.captions = features, captions
        self.train_ids, self.fps, self.dim = list(train_ids), float(fps), int(dim)


def corpus_from_store(cfg: TrainConfig) -> Corpus:
    """Open `data.features` (a FeatureStore) and the training ids of `data.splits` (all store ids if empty)."""
    from vidlang.data.store import FeatureStore

    if not cfg.data.features:
        raise ConfigError("data.features: no feature store given (set data.features=PATH)")
    store = FeatureStore(cfg.data.features)
    ids = store.ids()
    if cfg.data.splits:
        path = Path(cfg.data.splits)
        if not path.exists():
            raise ConfigError(f"data.splits: {path} not found")
        try:
            splits = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"data.splits: {path} is not valid JSON ({e})") from None
        if not isinstance(splits, dict) or not isinstance(splits.get("train"), list):
            raise ConfigError(f"data.splits: {path} has no 'train' list")
        present = set(ids)
        ids = [v for v in splits["train"] if v in present]
    captions = {}
    if cfg.data.captions:
        from vidlang.datasets.narration import clean_captions
        from vidlang.datasets import read_howto100m_captions

        if not Path(cfg.data.captions).exists():
            raise ConfigError(f"data.captions: {cfg.data.captions} not found")
        source = read_howto100m_captions(cfg.data.captions)
        lookup = lambda vid: clean_captions(source.get(vid, []))  # noqa: E731
    else:
        lookup = store.text
    for vid in ids:
        lines = lookup(vid)
        if lines:
            captions[vid] = lines
    if not captions:
        where = cfg.data.captions or f"{cfg.data.features} (text/)"
        raise ConfigError(f"data: {where} has no narration for the training videos")
    if store.fps is None or store.dim is None:
        raise ConfigError(f"data.features: {cfg.data.features} does not record its fps/feature dim (run.json)")
    return Corpus(store, captions, [v for v in ids if v in captions], store.fps, store.dim)


class _Progress:
    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0
        self.batch = 0
        self.order: list[str] | None = None
        self.best: float | None = None
        self.best_step = -1
        self.evals_since_best = 0
        self.stopped_early = False

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict) -> "_Progress":
        p = cls()
        p.__dict__.update(d)
        return p


def _video_embeddings(model, ds: LongVideoDataset, device, max_len: int) -> torch.Tensor:
    """Mean pooled embedding of each training video over consecutive max_len windows (for hard negatives)."""
    was = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for vid in ds.video_ids:
            feats = np.asarray(ds.features[vid], dtype=np.float32)
            segs = [feats[s : s + max_len] for s in range(0, feats.shape[0], max_len)]
            longest = max(len(s) for s in segs)
            x = np.zeros((len(segs), longest, feats.shape[1]), np.float32)
            m = np.zeros((len(segs), longest), bool)
            for i, s in enumerate(segs):
                x[i, : len(s)], m[i, : len(s)] = s, True
            pooled, _ = model.encode_video(torch.from_numpy(x).to(device), torch.from_numpy(m).to(device))
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).mean(0).cpu())
    model.train(was)
    return torch.stack(out)


def train(cfg: TrainConfig, out_dir: str | Path, corpus: Corpus | None = None, init_from: str | Path | None = None,
          resume: bool | None = None, stop_after: int | None = None,
          callbacks: Sequence[Callable[[int, dict, torch.nn.Module], None]] = ()) -> dict:
    """Train `cfg` into `out_dir`; returns the summary dict.

    corpus: in-memory data (tests); default opens the feature store of `cfg.data`. stop_after: end this run after
    that many optimizer steps in total (the state is saved, a later run resumes). callbacks(step, record, model)
    run on every process after each optimizer step (model: the unwrapped DualEncoder).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cfg = copy.deepcopy(cfg)  # input_dim is filled in below; the caller's config stays as given
    out = Path(out_dir)
    corpus = corpus or corpus_from_store(cfg)
    if cfg.video.input_dim == 0:
        cfg.video.input_dim = corpus.dim
    elif cfg.video.input_dim != corpus.dim:
        raise ConfigError(f"video.input_dim={cfg.video.input_dim} but the features have dimension {corpus.dim}")
    clip_steps = int(cfg.data.max_clip_len * corpus.fps)
    if clip_steps > cfg.video.max_len:
        raise ConfigError(f"data.max_clip_len={cfg.data.max_clip_len} s at {corpus.fps} features/s is {clip_steps} "
                          f"steps > video.max_len={cfg.video.max_len}")
    objective = OBJECTIVES[cfg.loss.objective]
    select_mode = SELECT_METRICS[cfg.train.select_metric]

    # cpu=True without CUDA: only then does accelerate recognise a torchrun/accelerate multi-process CPU launch
    # (MULTI_CPU, gloo) instead of silently running each process as its own single-process job.
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=not torch.cuda.is_available(),
                              gradient_accumulation_steps=cfg.train.grad_accum)
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    if cfg.data.batch_videos % world:
        raise ConfigError(f"data.batch_videos={cfg.data.batch_videos} is not divisible by the {world} processes")
    set_seed(cfg.train.seed)
    from vidlang.models.dual import DualEncoder

    model = DualEncoder(cfg)
    tokenize = model.text.tokenize
    train_ids, held_ids = split_train_heldout(corpus.train_ids, cfg.data.heldout_frac, cfg.data.heldout_seed)
    ds = LongVideoDataset(corpus.features, corpus.captions, train_ids, cfg.data, model.text.count_tokens,
                          fps=corpus.fps, seed=cfg.train.seed)
    held = LongVideoDataset(corpus.features, corpus.captions, held_ids, cfg.data, model.text.count_tokens,
                            fps=corpus.fps, seed=cfg.train.seed) if held_ids else None
    n_batches = ds.batches_per_epoch()
    if n_batches == 0:
        raise TrainingError(f"only {len(ds)} usable training videos for data.batch_videos={cfg.data.batch_videos}")
    held_clips = held.fixed_clips(cfg.train.eval_seed) if held is not None and len(held) else []

    state_dir = out / STATE
    found_state = recover_dir(state_dir)
    if resume is True and found_state is None:
        raise TrainingError(f"{state_dir}: no training state to resume from")
    resuming = found_state is not None and resume is not False
    if init_from and not resuming:
        load_weights(model, init_from)

    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.train.steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    raw = accelerator.unwrap_model(model)
    device = accelerator.device

    prog = _Progress()
    if resuming:
        accelerator.load_state(str(found_state))
        prog = _Progress.from_json(json.loads((found_state / PROGRESS).read_text()))
    elif main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in (LOG, "tb", "summary.json"):  # a fresh run does not append to an old run's logs
            p = out / stale
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    accelerator.wait_for_everyone()

    writer = None
    if main and cfg.train.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    meta_base = {"objective": cfg.loss.objective, "fps": corpus.fps, "clip_len": clip_steps,
                 "train_videos": len(ds), "heldout_videos": len(held_clips), "world_size": world}

    def save_state() -> None:
        tmp = out / f".{STATE}.tmp"
        if main and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main:
            atomic_write_json(tmp / PROGRESS, prog.to_json())
            swap_into_place(tmp, state_dir)
        accelerator.wait_for_everyone()

    def save_ckpt(name: str, metrics: dict) -> None:
        if main:
            save_checkpoint(out / name, raw, cfg, {**meta_base, "step": prog.step, "epoch": prog.epoch,
                                                   "metrics": metrics})

    def evaluate() -> dict:
        if not held_clips:
            return {}
        return heldout_retrieval(raw, held_clips, device, batch_videos=max(1, cfg.data.batch_videos))

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.train.steps, initial=prog.step, disable=not (main and cfg.train.progress),
               desc=f"train {cfg.loss.objective}", dynamic_ncols=True)
    gather = Gatherer()
    sums: dict[str, float] = {}
    n_micro = 0
    t0 = time.time()
    last_metrics: dict = {}
    end = min(cfg.train.steps, stop_after) if stop_after is not None else cfg.train.steps
    model.train()
    if cfg.data.max_lines == 1:
        # One line per clip: the spans are exactly the narration lines, so a frozen text tower can encode all of
        # them once up front (sorted by length) instead of a few per step (see TextEncoder.warm_cache). Done after
        # --init-from / resume have loaded the weights the cache must reflect.
        raw.text.warm_cache([l.text.strip() for d in (ds, held) if d is not None for ls in d.lines.values() for l in ls])
    while prog.step < end and not prog.stopped_early:
        if prog.order is None:
            if cfg.data.hard_negatives:
                emb = _video_embeddings(raw, ds, device, cfg.video.max_len)
                rng = np.random.default_rng([cfg.train.seed, prog.epoch, 2])
                idx = hard_negative_order(emb, cfg.data.batch_videos, rng)
                prog.order = [ds.video_ids[i] for i in idx]
            else:
                prog.order = ds.epoch_order(prog.epoch)
            prog.batch = 0
        while prog.batch < n_batches and prog.step < end:
            batch = ds.batch(prog.order, prog.epoch, prog.batch, tokenize, rank, world).to(device)
            with accelerator.accumulate(model):
                try:
                    losses = objective(model, batch, gather, cfg)
                    bad = None if bool(torch.isfinite(losses["total"]).all()) else "total is not finite"
                except ValueError as e:  # the losses' own finiteness checks on their inputs
                    if "finite" not in str(e):
                        raise
                    losses, bad = None, str(e)
                if world > 1:
                    flag = torch.tensor([0.0 if bad is None else 1.0], device=device)
                    bad = bad or ("non-finite loss on another process" if accelerator.reduce(flag, "sum") > 0
                                  else None)
                if bad is not None:
                    have = recover_dir(out / "last")
                    intact = f"the last checkpoint {have} is intact" if have else "no checkpoint was written yet"
                    bar.close()
                    raise TrainingError(f"non-finite loss at step {prog.step + 1} (epoch {prog.epoch}, batch "
                                        f"{prog.batch}, videos {batch.video_ids[:4]}): {bad}; {intact}")
                accelerator.backward(losses["total"])
                if accelerator.sync_gradients and cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            prog.batch += 1
            n_micro += 1
            for k, v in losses.items():
                if torch.is_tensor(v) and v.numel() == 1:
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            prog.step += 1
            bar.update(1)
            record: dict = {}
            if prog.step % cfg.train.log_every == 0 or prog.step == end:
                keys = sorted(sums)
                vals = torch.tensor([sums[k] / n_micro for k in keys], dtype=torch.float64, device=device)
                if world > 1:
                    vals = accelerator.reduce(vals, "mean")
                record = {"step": prog.step, "epoch": prog.epoch, "lr": scheduler.get_last_lr()[0],
                          "time": round(time.time() - t0, 3), **{k: float(v) for k, v in zip(keys, vals)}}
                sums, n_micro = {}, 0
                bar.set_postfix(loss=f"{record.get('total', float('nan')):.4f}")
            do_eval = cfg.train.eval_every and prog.step % cfg.train.eval_every == 0
            do_save = cfg.train.save_every and prog.step % cfg.train.save_every == 0
            if do_eval or prog.step == cfg.train.steps:
                last_metrics = evaluate()
                if last_metrics:
                    record = record or {"step": prog.step, "epoch": prog.epoch}
                    record.update({f"eval/{k}": v for k, v in last_metrics.items()})
                    value = last_metrics[cfg.train.select_metric]
                    if is_better(value, prog.best, select_mode):
                        prog.best, prog.best_step, prog.evals_since_best = value, prog.step, 0
                        save_ckpt("best", last_metrics)
                    else:
                        prog.evals_since_best += 1
                        if cfg.train.patience and prog.evals_since_best >= cfg.train.patience:
                            prog.stopped_early = True
                do_save = True
            if record and main:
                append_jsonl(out / LOG, record)
                if writer is not None:
                    for k, v in record.items():
                        if k not in ("step", "epoch") and isinstance(v, float) and math.isfinite(v):
                            writer.add_scalar(k, v, prog.step)
            if prog.batch >= n_batches:  # epoch finished: the next step starts a new order
                prog.epoch, prog.order, prog.batch = prog.epoch + 1, None, 0
            if do_save or prog.step == end or prog.stopped_early:
                save_ckpt("last", last_metrics)
                save_state()
            for cb in callbacks:
                cb(prog.step, record, raw)
            if prog.stopped_early or prog.order is None:
                break
        if prog.order is not None and prog.batch >= n_batches:
            prog.epoch, prog.order, prog.batch = prog.epoch + 1, None, 0
    bar.close()
    if writer is not None:
        writer.close()
    summary = {"out": str(out), "objective": cfg.loss.objective, "steps": prog.step, "epochs": prog.epoch,
               "finished": prog.step >= cfg.train.steps or prog.stopped_early, "stopped_early": prog.stopped_early,
               "select_metric": cfg.train.select_metric, "best": prog.best, "best_step": prog.best_step,
               "last_metrics": last_metrics, "time_s": round(time.time() - t0, 2), "world_size": world,
               "train_videos": len(ds), "heldout_videos": len(held_clips), "skipped_videos": len(ds.skipped)}
    if main:
        atomic_write_json(out / "summary.json", summary)
    accelerator.wait_for_everyone()
    return summary
