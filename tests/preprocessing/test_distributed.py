"""Executors beyond one process on real engines: a local Ray cluster (2 workers; a worker killed by SIGKILL
mid-task) and submitit's local executor (an array of --shard jobs) give the single-process store, byte for byte."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from preprocessing.backbones.thumbnail import ThumbnailBackbone
from preprocessing.runner import TIMING_FIELDS, run_corpus
from tests.preprocessing.test_decoders import make_video
from vidlang.cli import main as vidlang_main
from vidlang.io import read_jsonl

ray = pytest.importorskip("ray", reason="Ray is in the 'distributed' extra that `make test` installs")
pytest.importorskip("submitit", reason="submitit is in the 'distributed' extra that `make test` installs")

OPTS = {"frames": 2, "grid": 4}
GOOD = ("d1", "d2", "d3", "d4", "d5")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dist_videos")
    for i, vid in enumerate(GOOD):
        make_video(d / f"{vid}.mp4", num_frames=20 + 7 * i, fps=10, size=(32, 32))
    (d / "broken.mp4").write_text("not a video")
    return d


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    s = run_corpus(corpus, out, backbone_opts=OPTS, fps=2.0, progress=False)
    assert (s.done, s.failed) == (5, 1)
    return out


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster with 2 CPUs for the module (starting one takes seconds); the runner joins it."""
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


def store_files(out: Path) -> dict[str, bytes]:
    """Every array and narration file of a store, by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for sub in ("shards", "text")
            for p in sorted((out / sub).rglob("*")) if p.is_file()}


def manifest_set(out: Path) -> set[str]:
    import json

    return {json.dumps({k: v for k, v in r.items() if k not in TIMING_FIELDS}, sort_keys=True)
            for r in read_jsonl(out / "manifest.jsonl")}


def assert_same_store(a: Path, b: Path) -> None:
    fa, fb = store_files(a), store_files(b)
    assert sorted(fa) == sorted(fb)
    assert all(fa[k] == fb[k] for k in fa), [k for k in fa if fa[k] != fb[k]]  # byte for byte
    assert manifest_set(a) == manifest_set(b)
    assert {r["video_id"] for r in read_jsonl(a / "failures.jsonl")} == \
        {r["video_id"] for r in read_jsonl(b / "failures.jsonl")} == {"broken"}


def test_cli_executor_ray_with_its_own_local_cluster(corpus, single, tmp_path, capsys):
    """`--executor ray` without --address starts and stops a private local Ray (the zero-setup Ray path)."""
    assert not ray.is_initialized()  # first in this module: the shared cluster below starts after it
    out = tmp_path / "cli"
    rc = vidlang_main(["preprocess", "--videos", str(corpus), "--out", str(out), "--fps", "2", "--opt", "frames=2",
                       "--opt", "grid=4", "--executor", "ray", "--workers", "2", "--no-progress"])
    assert rc == 0 and "5 done, 0 skipped, 1 failed" in capsys.readouterr().out
    assert not ray.is_initialized()
    assert_same_store(out, single)


def test_ray_with_two_workers_equals_the_single_process_store(corpus, single, tmp_path, local_ray):
    out = tmp_path / "ray"
    s = run_corpus(corpus, out, backbone_opts=OPTS, fps=2.0, executor="ray", workers=2, progress=False)
    assert (s.done, s.failed, s.executor) == (5, 1, "ray")
    assert_same_store(out, single)
    s = run_corpus(corpus, out, backbone_opts=OPTS, fps=2.0, executor="ray", workers=2, progress=False)
    assert (s.done, s.skipped) == (0, 5)  # resume works across executors' runs


class KillOnceBackbone(ThumbnailBackbone):
    """The thumbnail features, but the first call anywhere SIGKILLs its own process (a worker lost mid-task)."""

    def __init__(self, marker: str):
        super().__init__(frames=2, grid=4)
        self.marker = marker

    def embed(self, frames):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().embed(frames)
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_ray_worker_killed_mid_task_still_processes_every_good_video_once(corpus, single, tmp_path, local_ray):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers need not import the tests
    try:
        from ray import cloudpickle as ray_cloudpickle

        ray_cloudpickle.register_pickle_by_value(sys.modules[__name__])
    except (ImportError, AttributeError):
        pass
    out, marker = tmp_path / "killed", tmp_path / "killed-once"
    bb = KillOnceBackbone(str(marker))
    s = run_corpus(corpus, out, backbone=bb, fps=2.0, executor="ray", workers=2, progress=False)
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert (s.done, s.failed) == (5, 1)
    ids = [r["video_id"] for r in read_jsonl(out / "manifest.jsonl")]
    assert sorted(ids) == sorted(GOOD)  # each good video exactly once
    fa, fb = store_files(out), store_files(single)
    assert fa == fb


def test_slurm_array_through_submitits_local_executor_unites_to_the_single_store(corpus, single, tmp_path, capsys):
    out = tmp_path / "slurm"
    rc = vidlang_main(["preprocess", "--videos", str(corpus), "--out", str(out), "--fps", "2", "--opt", "frames=2",
                       "--opt", "grid=4", "--executor", "slurm", "--slurm", "cluster=local", "--slurm", "jobs=3",
                       "--slurm", "time=10", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "5 done, 0 skipped, 1 failed" in capsys.readouterr().out
    assert_same_store(out, single)
    assert {p.name for p in out.glob(".vidlang-*.lock")} == \
        {f".vidlang-shard-{i}-of-3.lock" for i in range(3)} | {".vidlang-slurm-driver.lock"}


def test_slurm_with_one_job_is_not_locked_out_by_its_own_driver(corpus, single, tmp_path):
    out = tmp_path / "slurm1"
    s = run_corpus(corpus, out, backbone_opts=OPTS, fps=2.0, executor="slurm", progress=False,
                   slurm={"cluster": "local", "jobs": 1, "time": 10})
    assert (s.done, s.failed, s.failures_of_jobs) == (5, 1, [])
    assert_same_store(out, single)


def test_slurm_settings_are_checked(corpus, tmp_path, capsys):
    argv = ["preprocess", "--videos", str(corpus), "--out", str(tmp_path / "o"), "--executor", "slurm",
            "--no-progress"]
    assert vidlang_main(argv + ["--slurm", "nodes=3"]) == 2
    assert "unknown key(s) nodes" in capsys.readouterr().err
    assert vidlang_main(argv + ["--shard", "0/2"]) == 2
    assert "makes its own shards" in capsys.readouterr().err
