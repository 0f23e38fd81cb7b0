"""Two real CPU processes (torchrun, gloo): identical weights after training, and global-negative loss parity
(infonce and norton)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("mp_worker.py")


def test_two_processes_identical_weights_and_gathered_loss(tiny_text_model_dir, tmp_path):
    out = tmp_path / "mp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
           str(tiny_text_model_dir), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "mp_result.json").read_text())
    assert r["world_size"] == 2 and r["summary_world"] == 2  # really two processes
    assert r["max_weight_diff"] == 0.0 and r["n_params"] > 0
    assert r["local_rows"] * 2 == r["global_rows"]
    assert r["dist_loss"] == pytest.approx(r["single_loss"], abs=1e-5)
    assert r["grad_norm"] > 0 and r["max_grad_diff"] <= 1e-5 * max(1.0, r["grad_norm"])
    # norton with gathered negatives == norton on the global batch in one process (values and gradients)
    assert r["norton_dist_loss"] == pytest.approx(r["norton_single_loss"], abs=1e-5)
    assert r["norton_grad_norm"] > 0 and r["norton_max_grad_diff"] <= 1e-5 * max(1.0, r["norton_grad_norm"])
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log if "total" in x] == [1, 2, 3]  # rank 0 logs once per step
