"""The one training loop, on accelerate, for any registered model and objective (it never branches on either).

    accelerate launch --multi_gpu --num_processes N -m vidlang.cli train --config configs/norton/<name>.yaml

`Trainer(cfg, out).run()`: `setup` (data, model, optimizer, resume), then per optimizer step `step` (`grad_accum`
micro-batches through `accelerator.accumulate`, each this process's B/W videos of a global batch of B; backward;
gradient clipping at sync; AdamW step; scheduler step: the scheduler is not `prepare`d, it counts optimizer
steps whatever the number of processes), `evaluate_and_select` on held-out TRAINING videos, and `save_state`.
Batches come from a DataLoader (vidlang.data.loader) whose workers sample, tokenise and collate ahead of the step.
Losses are summed as tensors and synchronised only when a log line is written; the one per-micro-batch sync is
the finiteness check of the total, so that a non-finite loss (NonFiniteError, naming the step and videos) stops
the run before its update reaches the weights. The last checkpoint written before it stays intact.

Outputs in OUT:
    train_log.jsonl   one line per log step: step, epoch, lr, time, losses (mean over the logged micro-batches and
                      processes), and held-out metrics on evaluation steps ("eval/R@5", ...)
    tb/               TensorBoard scalars (same values)
    last/, best/      checkpoints (vidlang.models.checkpoint); best/ by train.select_metric on held-out TRAINING
                      videos (one of the model's selection metrics)
    state/            the resumable state (vidlang.train.state: safetensors + JSON, no pickles)
    summary.json      the final summary
    .vidlang.lock     held while a run writes OUT (vidlang.io.RunLock): a second run gets one line naming it

Resume is exact mid-epoch: batches are a pure function of (seed, epoch, batch index), the epoch's order is
stored, and the generators, optimizer and scheduler come back from the state; states are written only at
optimizer-step boundaries. A run resumes automatically when OUT/state exists (resume=None), or on demand
(resume=True, error if there is no state); resume=False starts over, deleting the old run's state, logs and
checkpoints. Resuming with a config that differs from the one the state was made with is refused, naming the
keys, except for keys that cannot change the trajectory (RESUME_FREE) and, with extend=True, train.steps.
Ctrl-C is held back while an optimizer update and its step's logging, evaluation and saving run; it then saves the
state of the last finished step and raises KeyboardInterrupt (the CLI exits 130); the rerun prints "resuming from
step N" and the log is cut back to that step.
"""

from __future__ import annotations

import copy
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import yaml

from vidlang.config import dump_yaml, to_dict
from vidlang.data.longvideo import hard_negative_order, split_train_heldout
from vidlang.errors import ConfigError, NonFiniteError, VidlangError
from vidlang.io import RunLock, append_jsonl, atomic_write_json, read_jsonl, recover_dir, swap_into_place, write_jsonl
from vidlang.models.base import model_class
from vidlang.models.checkpoint import save_checkpoint
from vidlang.train import state as st
from vidlang.train.config import TrainConfig
from vidlang.train.dist import Gatherer
from vidlang.train.objectives import OBJECTIVES
from vidlang.train.optim import build_optimizer, build_scheduler

LOG = "train_log.jsonl"
STATE = "state"
# Keys that may differ on resume: they change what is printed or how batches are built, never their content.
RESUME_FREE = ("train.progress", "train.tensorboard", "train.log_every", "data.workers")


class TrainingError(VidlangError):
    """Training cannot go on (empty dataset, a state that cannot be resumed)."""


class Progress:
    """Where training stands; stored in state/trainer.json. `order` is the current epoch's video order."""

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0
        self.batch = 0
        self.order: list[str] | None = None
        self.best: float | None = None
        self.best_step = -1
        self.evals_since_best = 0
        self.stopped_early = False
        self.last_metrics: dict = {}  # the latest held-out evaluation (a run resumed at its end reports it too)

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict) -> "Progress":
        p = cls()
        unknown = set(d) - set(p.__dict__)
        if unknown:
            raise ValueError(f"unknown progress fields {sorted(unknown)}")
        p.__dict__.update(d)
        return p


class _deferred_interrupt:
    """Hold back Ctrl-C (SIGINT) while the optimizer update and its step's bookkeeping run, and raise it after, so
    that an interrupt never finds weights, progress and checkpoints half-updated. Main thread only (elsewhere the
    signal cannot be caught, and it is a no-op)."""

    def __enter__(self):
        self.pending, self.old = False, None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame) -> None:
        self.pending = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.pending and exc_type is None:
            raise KeyboardInterrupt


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not math.isfinite(best):
        return True
    return value > best if mode == "max" else value < best


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: str | Path, data=None, init_from: str | Path | None = None,
                 resume: bool | None = None, extend: bool = False, stop_after: int | None = None,
                 callbacks: Sequence[Callable[[int, dict, torch.nn.Module], None]] = ()):
        """data: a vidlang.data.train_data.TrainData (tests); default opens `cfg.data`'s feature store.
        stop_after: end this run after that many optimizer steps in total (the state is saved, a later run
        resumes). callbacks(step, record, model) run on every process after each optimizer step (model: the
        unwrapped model)."""
        self.cfg = copy.deepcopy(cfg)  # data-dependent sizes are filled in; the caller's config stays as given
        self.out = Path(out_dir)
        self.data, self.init_from, self.resume, self.extend = data, init_from, resume, extend
        self.stop_after, self.callbacks = stop_after, list(callbacks)
        self.lock: RunLock | None = None
        self.writer = self.bar = None

    # -- setup ----------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg = self.cfg
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out}: exists and is not a directory")
        if self.data is None:
            from vidlang.data.train_data import open_train_data

            self.data = open_train_data(cfg.data)
        self.model_cls = model_class(cfg.model.arch)
        self.model_cls.resolve_config(cfg, self.data.dim, self.data.fps)
        self.objective = OBJECTIVES.get(cfg.loss.objective)
        self.select_mode = self.model_cls.selection_metrics()[cfg.train.select_metric]
        # cpu=True without CUDA: only then does accelerate recognise a torchrun/accelerate multi-process CPU launch
        # (MULTI_CPU, gloo) instead of silently running each process as its own single-process job.
        acc = self.accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision,
                                             cpu=not torch.cuda.is_available(),
                                             gradient_accumulation_steps=cfg.train.grad_accum)
        self.rank, self.world, self.main = acc.process_index, acc.num_processes, acc.is_main_process
        if cfg.data.batch_videos % self.world:
            raise ConfigError(f"data.batch_videos={cfg.data.batch_videos} is not divisible by the {self.world} "
                              "processes")
        if self.main:
            self.lock = RunLock(self.out, f"vidlang train ({cfg.model.arch}, {cfg.loss.objective})").acquire()
        acc.wait_for_everyone()
        set_seed(cfg.train.seed)
        self.model = self.model_cls.build(cfg)
        self._setup_datasets()
        resuming = self._resume_decision()
        if self.init_from and not resuming:
            self.model.init_from_checkpoint(Path(self.init_from))  # default: a strict load of the whole checkpoint
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.total_steps)
        self.model, self.optimizer = acc.prepare(self.model, self.optimizer)
        self.raw = acc.unwrap_model(self.model)
        self.device = acc.device
        self.prog = self._load_state() if resuming else self._fresh_start()
        acc.wait_for_everyone()
        self.raw.prepare_training([d for d in (self.ds, self.held) if d is not None])
        self._setup_outputs(resuming)

    def _setup_datasets(self) -> None:
        cfg, data = self.cfg, self.data
        train_ids, held_ids = split_train_heldout(data.train_ids, cfg.data.heldout_frac, cfg.data.heldout_seed)
        self.ds = self.model.dataset(data.features, data.captions, train_ids, cfg.data, data.fps, cfg.train.seed)
        self.held = self.model.dataset(data.features, data.captions, held_ids, cfg.data, data.fps,
                                       cfg.train.seed) if held_ids else None
        self.n_batches = self.ds.batches_per_epoch()
        if self.n_batches == 0:
            raise TrainingError(f"only {len(self.ds)} usable training videos for data.batch_videos="
                                f"{cfg.data.batch_videos}")
        self.held_clips = self.held.fixed_clips(cfg.train.eval_seed) if self.held is not None and len(self.held) else []
        self.collate = self.model.collate_fn()
        # data.max_epochs bounds the run (and its schedule) below train.steps
        per_epoch = max(1, self.n_batches // cfg.train.grad_accum)
        self.total_steps = cfg.train.steps if not cfg.data.max_epochs else \
            min(cfg.train.steps, cfg.data.max_epochs * per_epoch)
        self.end = self.total_steps if self.stop_after is None else min(self.total_steps, self.stop_after)

    def _resume_decision(self) -> bool:
        """True to resume from OUT/state; refuses a state made with another config (see the module docstring)."""
        found = recover_dir(self.out / STATE)
        if self.resume is True and found is None:
            raise TrainingError(f"{self.out / STATE}: no training state to resume from")
        if found is None or self.resume is False:
            return False
        old_text = st.read_state_config(found)
        old = yaml.safe_load(old_text) if old_text else None
        if not isinstance(old, dict):
            raise TrainingError(f"{found}: incomplete training state (no config.yaml); use --restart to start over")
        new = to_dict(self.cfg)
        diffs = [d for d in st.diff_configs(old, new) if d.split(":")[0] not in RESUME_FREE]
        steps_only = [d for d in diffs if d.startswith("train.steps:")]
        if self.extend and steps_only:
            diffs.remove(steps_only[0])
            done = st.read_trainer_json(found).get("step", 0)
            if self.cfg.train.steps <= done:
                raise TrainingError(f"--extend: train.steps={self.cfg.train.steps} but the run is already at step "
                                    f"{done}")
        if diffs:
            hint = " (--extend allows a larger train.steps)" if diffs == steps_only else ""
            raise TrainingError(f"{self.out} holds a run made with another config: {'; '.join(diffs)}{hint}; "
                                "rerun with its config, use --restart to start over, or choose another --out")
        self._state_dir = found
        return True

    def _load_state(self) -> Progress:
        trainer = st.load_train_state(self._state_dir, self.raw, self.optimizer, self.rank)
        try:
            prog = Progress.from_json(trainer["progress"])
            self.scheduler.load_state_dict(trainer["scheduler"])
        except (KeyError, TypeError, ValueError) as e:
            raise VidlangError(f"{self._state_dir / st.TRAINER}: corrupt training progress ({e})") from None
        if trainer.get("scaler") and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(trainer["scaler"])
        if self.main:
            print(f"resuming from step {prog.step} (epoch {prog.epoch}) in {self.out}", file=sys.stderr, flush=True)
            log = self.out / LOG
            if log.exists():  # steps after the saved state are redone: keep one line per step
                write_jsonl(log, [r for r in read_jsonl(log) if r.get("step", 0) <= prog.step])
        return prog

    def _fresh_start(self) -> Progress:
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in (LOG, "tb", "summary.json", STATE, f".{STATE}.old", "best", "last"):
                p = self.out / stale  # a fresh run does not mix with an old run's logs, state or checkpoints
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        return Progress()

    def _setup_outputs(self, resuming: bool) -> None:
        from tqdm.auto import tqdm

        cfg = self.cfg
        if self.main and cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run logged after its last saved state
            self.writer = SummaryWriter(str(self.out / "tb"), purge_step=self.prog.step + 1 if resuming else None)
        self.bar = tqdm(total=self.total_steps, initial=self.prog.step, disable=not (self.main and cfg.train.progress),
                        desc=f"train {cfg.loss.objective}", dynamic_ncols=True)
        self.gather = Gatherer()
        self.sums: dict[str, torch.Tensor] = {}
        self.n_micro = 0
        self.t0 = time.time()
        self.meta_base = {"objective": cfg.loss.objective, "fps": self.data.fps,
                          "clip_len": int(cfg.data.max_clip_len * self.data.fps), "train_videos": len(self.ds),
                          "heldout_videos": len(self.held_clips), "world_size": self.world}
        self.config_yaml = dump_yaml(cfg)
        self.boundary = self._snapshot()

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> dict:
        try:
            self.setup()
            self.model.train()
            try:
                self._loop()
            except KeyboardInterrupt:
                self._interrupted()
                raise
            return self._finish()
        finally:
            for closing in (self.bar, self.writer):
                if closing is not None:
                    closing.close()
            if self.lock is not None:
                self.lock.release()

    def _loop(self) -> None:
        from vidlang.data.loader import EpochBatches, epoch_loader

        cfg, prog = self.cfg, self.prog
        while prog.step < self.end and not prog.stopped_early:
            if cfg.data.max_epochs and prog.epoch >= cfg.data.max_epochs:
                break
            if prog.order is None:
                prog.order, prog.batch = self._epoch_order(), 0
            batches = EpochBatches(self.ds, prog.order, prog.epoch, prog.batch, self.n_batches, self.collate,
                                   self.rank, self.world)
            for batch in epoch_loader(batches, cfg.data.workers):
                if self.step(batch.to(self.device)) and (prog.step >= self.end or prog.stopped_early):
                    break
            if prog.batch >= self.n_batches:  # epoch finished: the next step starts a new order
                prog.epoch, prog.order, prog.batch = prog.epoch + 1, None, 0
        if self.prog.step < self.end and not self.prog.stopped_early:  # stopped by data.max_epochs
            with _deferred_interrupt():
                self.after_step(final=True)

    def _epoch_order(self) -> list[str]:
        if not self.cfg.data.hard_negatives:
            return self.ds.epoch_order(self.prog.epoch)
        import numpy as np

        emb = self.raw.hard_negative_embeddings(self.ds, self.device)
        rng = np.random.default_rng([self.cfg.train.seed, self.prog.epoch, 2])
        return [self.ds.video_ids[i] for i in hard_negative_order(emb, self.cfg.data.batch_videos, rng)]

    def step(self, batch) -> bool:
        """One micro-batch: forward, finiteness check, backward; when gradients sync, the optimizer update and the
        step's bookkeeping (`after_step`), with Ctrl-C deferred until both are done. True when a step completed."""
        acc = self.accelerator
        with acc.accumulate(self.model):
            try:
                losses = self.objective(self.model, batch, self.gather, self.cfg.loss)
                bad = None if bool(torch.isfinite(losses["total"]).all()) else "total is not finite"
            except NonFiniteError as e:  # the losses' own checks on their inputs and plans
                losses, bad = None, str(e)
            if self.world > 1:
                flag = torch.tensor([0.0 if bad is None else 1.0], device=self.device)
                bad = bad or ("non-finite loss on another process" if acc.reduce(flag, "sum") > 0 else None)
            if bad is not None:
                have = recover_dir(self.out / "last")
                intact = f"the last checkpoint {have} is intact" if have else "no checkpoint was written yet"
                raise NonFiniteError(f"non-finite loss at step {self.prog.step + 1} (epoch {self.prog.epoch}, batch "
                                     f"{self.prog.batch}, videos {batch.video_ids[:4]}): {bad}; {intact}")
            acc.backward(losses["total"])
        self.prog.batch += 1
        self.n_micro += 1
        for k, v in losses.items():
            if torch.is_tensor(v) and v.numel() == 1:
                self.sums[k] = self.sums[k] + v.detach() if k in self.sums else v.detach().clone()
        if not acc.sync_gradients:
            return False
        with _deferred_interrupt():
            if self.cfg.optim.grad_clip > 0:
                acc.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.prog.step += 1
            self.bar.update(1)
            self.after_step()
        return True

    def after_step(self, final: bool = False) -> None:
        """Log, evaluate-and-select and save after an optimizer step (`final`: the run ends here)."""
        cfg, prog = self.cfg, self.prog
        last = final or prog.step == self.end
        record = self._log_record() if (prog.step % cfg.train.log_every == 0 or last) and self.n_micro else {}
        do_eval = (cfg.train.eval_every and prog.step % cfg.train.eval_every == 0) or prog.step == self.total_steps \
            or final
        do_save = cfg.train.save_every and prog.step % cfg.train.save_every == 0
        if do_eval:
            metrics = self.evaluate_and_select()
            if metrics:
                record = record or {"step": prog.step, "epoch": prog.epoch}
                record.update({f"eval/{k}": v for k, v in metrics.items()})
            do_save = True
        if record and self.main:
            append_jsonl(self.out / LOG, record)
            if self.writer is not None:
                for k, v in record.items():
                    if k not in ("step", "epoch") and isinstance(v, float) and math.isfinite(v):
                        self.writer.add_scalar(k, v, prog.step)
        if do_save or last or prog.stopped_early:
            self.save_checkpoint("last", self.prog.last_metrics)
            self.save_state()
        for cb in self.callbacks:
            cb(prog.step, record, self.raw)
        self.boundary = self._snapshot()

    def _log_record(self) -> dict:
        keys = sorted(self.sums)
        vals = torch.stack([self.sums[k].to(torch.float64) for k in keys]) / self.n_micro
        if self.world > 1:
            vals = self.accelerator.reduce(vals, "mean")
        record = {"step": self.prog.step, "epoch": self.prog.epoch, "lr": self.scheduler.get_last_lr()[0],
                  "time": round(time.time() - self.t0, 3), **dict(zip(keys, vals.tolist()))}
        self.sums, self.n_micro = {}, 0
        self.bar.set_postfix(loss=f"{record.get('total', float('nan')):.4f}")
        return record

    def evaluate_and_select(self) -> dict:
        """Held-out metrics; a new best (train.select_metric) is saved as best/; patience counts the others."""
        if not self.held_clips:
            return {}
        prog, cfg = self.prog, self.cfg
        metrics = self.raw.heldout_metrics(self.held_clips, self.device, max(1, cfg.data.batch_videos))
        prog.last_metrics = metrics
        value = metrics[cfg.train.select_metric]
        if is_better(value, prog.best, self.select_mode):
            prog.best, prog.best_step, prog.evals_since_best = value, prog.step, 0
            self.save_checkpoint("best", metrics)
        else:
            prog.evals_since_best += 1
            if cfg.train.patience and prog.evals_since_best >= cfg.train.patience:
                prog.stopped_early = True
        return metrics

    # -- saving ---------------------------------------------------------------------------------------------
    def save_checkpoint(self, name: str, metrics: dict) -> None:
        if self.main:
            save_checkpoint(self.out / name, self.raw, self.cfg,
                            {**self.meta_base, "step": self.prog.step, "epoch": self.prog.epoch, "metrics": metrics})

    def _snapshot(self) -> tuple[dict, tuple]:
        """Progress and generator states at a step boundary (what a state saved on Ctrl-C must hold)."""
        return copy.deepcopy(self.prog.to_json()), st.rng_state()

    def _trainer_json(self, progress: dict) -> dict:
        scaler = self.accelerator.scaler
        return {"progress": progress, "scheduler": self.scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None}

    def save_state(self, boundary: tuple[dict, tuple] | None = None) -> None:
        """Write OUT/state (all processes take part); `boundary` overrides progress and generators."""
        acc, tmp = self.accelerator, self.out / f".{STATE}.tmp"
        if self.main and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        progress = boundary[0] if boundary else self.prog.to_json()
        st.save_train_state(tmp, self.raw, self.optimizer, self._trainer_json(progress), self.config_yaml,
                            self.rank, self.main, rng=boundary[1] if boundary else None)
        acc.wait_for_everyone()
        if self.main:
            swap_into_place(tmp, self.out / STATE)
        acc.wait_for_everyone()

    def _interrupted(self) -> None:
        """Ctrl-C arrives only between optimizer steps (`_deferred_interrupt`): the weights and optimizer are
        those of the last finished step, whose progress and generators `boundary` holds."""
        self.save_state(self.boundary)
        print(f"\ninterrupted: state saved at step {self.boundary[0]['step']} in {self.out / STATE}; rerun the same "
              "command to resume", file=sys.stderr)

    def _finish(self) -> dict:
        prog, cfg = self.prog, self.cfg
        # an epoch whose last batch ran counts as done whether or not the rollover happened before the state was
        # saved (a run resumed at its very end has not rolled over)
        epochs = prog.epoch + (1 if prog.order is not None and prog.batch >= self.n_batches else 0)
        summary = {"out": str(self.out), "arch": cfg.model.arch, "objective": cfg.loss.objective, "steps": prog.step,
                   "epochs": epochs, "finished": prog.step >= self.total_steps or prog.stopped_early or
                   bool(cfg.data.max_epochs and epochs >= cfg.data.max_epochs),
                   "stopped_early": prog.stopped_early, "select_metric": cfg.train.select_metric,
                   "best": prog.best, "best_step": prog.best_step, "last_metrics": prog.last_metrics,
                   "time_s": round(time.time() - self.t0, 2), "world_size": self.world, "train_videos": len(self.ds),
                   "heldout_videos": len(self.held_clips), "skipped_videos": len(self.ds.skipped)}
        if self.main:
            atomic_write_json(self.out / "summary.json", summary)
        self.accelerator.wait_for_everyone()
        return summary


def train(cfg: TrainConfig, out_dir: str | Path, data=None, init_from: str | Path | None = None,
          resume: bool | None = None, extend: bool = False, stop_after: int | None = None,
          callbacks: Sequence[Callable[[int, dict, torch.nn.Module], None]] = ()) -> dict:
    """Train `cfg` into `out_dir` (see Trainer); returns the summary dict."""
    return Trainer(cfg, out_dir, data=data, init_from=init_from, resume=resume, extend=extend,
                   stop_after=stop_after, callbacks=callbacks).run()
