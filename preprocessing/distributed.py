"""Preprocessing beyond one machine on existing engines: Ray tasks, or a Slurm array of shards via submitit.

Both write the same store as the local executor (preprocessing/runner.py): every video's array and narration are
written by the worker that extracted it, with the atomic per-file writes of vidlang.io, into the shared OUT.

**Ray** (``--executor ray [--address auto]``). Each video is one Ray task (``num_cpus=1``; torch runs one thread
per task). When a worker process or a whole node dies, Ray reruns its tasks elsewhere, up to ``RAY_MAX_RETRIES``
times; a video that still cannot finish (a file that crashes the decoder every time) becomes a failures line, like
any other data problem, and the next run retries it. Workers only write per-video files; the driver, which holds
the shard lock, appends the manifest line when a task's result arrives, so a task that ran twice still gives one
line. If the driver itself dies, rerunning the same command resumes: finished videos are in the manifest, and a
half-written array never exists under its final name. Without ``--address`` the driver starts a private local Ray
with ``--workers`` CPUs and stops it at the end; ``--address auto`` joins a running cluster (``ray start``), whose
nodes must all see OUT and the videos at the same paths and have vidlang installed.

**Slurm** (``--executor slurm --slurm jobs=N``). submitit submits a job array of N ``--shard i/N`` runs of the
local runner (each takes its shard's lock and appends its own manifest lines) and waits for them. A job that dies
(node failure, preemption, time limit) is resubmitted up to ``retries`` times (default 1); it resumes where it
stopped. The driver holds ``OUT/.vidlang-slurm-driver.lock`` meanwhile, so a second Slurm driver into OUT is
refused (runs with other shard counts into one OUT are not locked against each other: they would do work twice,
correctly). ``--slurm cluster=local`` runs the same jobs as local processes (submitit's LocalExecutor; used by the
tests). submitit keeps its job files (pickled by this run, read back by its own jobs) under ``OUT/.submitit``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from preprocessing.runner import (Plan, Summary, _build_backbone, extract_video, progress_bar, record_result,
                                  run_corpus)
from vidlang.errors import ConfigError, VidlangError

RAY_MAX_RETRIES = 3  # Ray's own default for tasks; each retry starts the video from scratch
SLURM_KEYS = {
    "jobs": "number of array jobs = shards (default 1)",
    "partition": "Slurm partition",
    "time": "time limit per job in minutes (default 240)",
    "cpus": "CPUs per job (default --workers)",
    "mem_gb": "memory per job in GB",
    "gpus": "GPUs per job",
    "array_parallelism": "how many array jobs may run at once",
    "retries": "resubmissions of a job that did not finish (default 1)",
    "folder": "submitit's job folder (default OUT/.submitit)",
    "cluster": "slurm (default) or local (local processes, for tests and laptops)",
}


# -- Ray --------------------------------------------------------------------------------------------------------
_RAY_BACKBONES: dict[str, Any] = {}  # one built backbone per Ray worker process, keyed by its spec


def _ray_extract(job, vid: str, path: str, captions, spec: tuple, key: str) -> dict:
    """Body of a Ray task: build (once per worker process) the backbone, extract one video."""
    bb = _RAY_BACKBONES.get(key)
    if bb is None:
        import torch

        torch.set_num_threads(1)  # parallelism is over tasks, as for the local worker processes
        _RAY_BACKBONES.clear()
        bb = _RAY_BACKBONES[key] = _build_backbone(*spec)
    return extract_video(job, vid, path, bb, captions)


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"--executor ray needs Ray ({e}); install it with pip install 'vidlang[distributed]'") \
            from None
    return ray


def run_ray(plan: Plan, todo: list[tuple[str, str]], summary: Summary, workers: int = 1, address: str | None = None,
            progress: bool = True, max_retries: int = RAY_MAX_RETRIES) -> None:
    """Extract ``todo`` as Ray tasks; append each result's manifest/failure line here, as results arrive."""
    import logging

    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        try:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False)
            else:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - Ray raises many types here; all mean "no cluster"
            raise ConfigError(f"--executor ray: cannot start or join Ray"
                              f"{'' if address is None else f' at {address}'}: {e}") from None
        started = True
    try:
        if isinstance(plan.spec[0], str):
            spec, key = plan.spec, repr(plan.spec)
        else:  # a built backbone object: ship it once through the object store
            ref = ray.put(plan.spec)
            spec, key = ref, ref.hex()
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_ray_extract)
        caption_get = (plan.caption_map or {}).get
        cpus = max(1, int(ray.cluster_resources().get("CPU", workers)))
        bar, tick = progress_bar(len(todo), progress)
        pending: dict[Any, tuple[str, str]] = {}
        it = iter(todo)
        try:
            while True:
                while len(pending) < 2 * cpus:  # bounded in flight: a million videos are not a million tasks
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    vid, path = nxt
                    pending[task.remote(plan.job, vid, path, caption_get(vid), spec, key)] = nxt
                if not pending:
                    break
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    vid, path = pending.pop(ref)
                    res = _ray_result(ray, ref, vid, path, max_retries)
                    record_result(plan.out, res)
                    summary.add(res)
                    tick(res)
        finally:
            bar.close()
            for ref in pending:  # the driver is stopping (error, Ctrl-C): do not leave tasks running
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()


def _ray_result(ray, ref, vid: str, path: str, max_retries: int) -> dict:
    from ray.exceptions import RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, VidlangError):  # OutputError: the store cannot be written; stop like the local run
            raise cause from None
        raise
    except ray.exceptions.RayError as e:  # the worker (or its node) died on every attempt
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"ok": False, "failure": {"video_id": vid, "path": path,
                                         "reason": f"worker lost {max_retries + 1} times ({type(e).__name__}: "
                                                   f"{reason})"}}


# -- Slurm via submitit ------------------------------------------------------------------------------------------
def _shard_job(kwargs: dict, shard: tuple[int, int]) -> dict:
    """One array job: the local runner on one shard. Returns the summary's counts (a small picklable dict)."""
    s = run_corpus(**kwargs, shard=shard, executor="local", progress=False)
    return {"listed": s.listed, "done": s.done, "skipped": s.skipped, "failed": s.failed,
            "video_seconds": s.video_seconds, "failures": s.failures, "text_rewritten": s.text_rewritten,
            "below_fps": s.below_fps}


def _slurm_settings(settings: dict, workers: int, out: Path) -> dict:
    unknown = sorted(set(settings) - set(SLURM_KEYS))
    if unknown:
        raise ConfigError(f"--slurm: unknown key(s) {', '.join(unknown)}; known: "
                          + "; ".join(f"{k} ({v})" for k, v in SLURM_KEYS.items()))
    s = dict(settings)
    for key in ("jobs", "time", "cpus", "mem_gb", "gpus", "array_parallelism", "retries"):
        if key in s and (not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 0):
            raise ConfigError(f"--slurm {key}={s[key]!r}: expected a non-negative integer")
    if s.get("jobs", 1) < 1:
        raise ConfigError("--slurm jobs must be >= 1")
    if s.get("cluster", "slurm") not in ("slurm", "local"):
        raise ConfigError(f"--slurm cluster={s['cluster']!r}: choose slurm or local")
    s.setdefault("jobs", 1)
    s.setdefault("retries", 1)
    s.setdefault("time", 240)
    s.setdefault("cpus", workers)
    s.setdefault("folder", str(out / ".submitit"))
    s.setdefault("cluster", "slurm")
    return s


def run_slurm(plan: Plan, kwargs: dict, settings: dict, progress: bool = True) -> Summary:
    """Submit ``jobs`` shard jobs, wait, resubmit the ones that died (``retries``), and add up their summaries."""
    s = _slurm_settings(settings, kwargs.get("workers", 1), plan.out)
    try:
        import submitit
    except ImportError as e:
        raise ConfigError(f"--executor slurm needs submitit ({e}); install it with pip install "
                          f"'vidlang[distributed]'") from None
    try:
        ex = submitit.AutoExecutor(folder=s["folder"], cluster=s["cluster"])
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"--executor slurm: {e}") from None
    params: dict[str, Any] = {"timeout_min": s["time"], "cpus_per_task": s["cpus"], "name": "vidlang-preprocess"}
    if "mem_gb" in s:
        params["mem_gb"] = s["mem_gb"]
    if "gpus" in s:
        params["gpus_per_node"] = s["gpus"]
    if "partition" in s:
        params["slurm_partition"] = str(s["partition"])
    if "array_parallelism" in s:
        params["slurm_array_parallelism"] = s["array_parallelism"]
    ex.update_parameters(**params)

    n = s["jobs"]
    summary = Summary(out_dir=str(plan.out), shard=(0, 1), executor="slurm")
    shards = [(i, n) for i in range(n)]
    jobs = dict(zip(shards, ex.map_array(_shard_job, [kwargs] * n, shards)))
    tries = dict.fromkeys(shards, 0)
    results: dict[tuple[int, int], dict] = {}
    errors: dict[tuple[int, int], str] = {}
    import sys

    from tqdm import tqdm

    bar = tqdm(total=n, unit="job", disable=not progress, file=sys.stderr, desc="preprocess (slurm)")
    try:
        while jobs:
            for shard, job in list(jobs.items()):
                if not job.done():
                    continue
                del jobs[shard]
                try:
                    results[shard] = job.result()
                    bar.update(1)
                except Exception as e:  # noqa: BLE001 - submitit re-raises the job's error, or reports its death
                    reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                    if tries[shard] < s["retries"]:
                        tries[shard] += 1
                        jobs[shard] = ex.submit(_shard_job, kwargs, shard)
                    else:
                        errors[shard] = reason
                        bar.update(1)
            if jobs:
                time.sleep(1.0)
    finally:
        bar.close()
    for shard in shards:
        r = results.get(shard)
        if r is None:
            summary.failures_of_jobs.append(f"shard {shard[0]}/{shard[1]} (job folder {s['folder']}): "
                                            f"{errors.get(shard, 'did not finish')}")
            continue
        summary.listed += r["listed"]
        summary.done += r["done"]
        summary.skipped += r["skipped"]
        summary.failed += r["failed"]
        summary.video_seconds += r["video_seconds"]
        summary.failures.extend(r["failures"])
        summary.text_rewritten += r["text_rewritten"]
        summary.below_fps += r["below_fps"]
    return summary

