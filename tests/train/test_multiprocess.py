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


def test_two_process_cosmo_run_equals_the_single_process_run(tmp_path):
    """COSMO on 2 real processes (gathered negatives, the LM loss over the global token count) trains the same
    weights, and logs the same losses, as one process on the same global batches."""
    import torch
    from safetensors.torch import load_file

    from tests.models.tiny_lms import build_lm
    from tests.train.conftest import make_corpus
    from tests.train.test_cosmo_train import cosmo_config
    from vidlang.train.trainer import train

    lm = build_lm("llama", tmp_path / "lm")
    out = tmp_path / "mp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER.with_name("mp_cosmo_worker.py")), str(lm), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "mp_result.json").read_text())
    assert r["world_size"] == 2 and r["summary_world"] == 2
    assert r["local_tokens"] < r["global_tokens"]
    assert r["dist"] == pytest.approx(r["single"], abs=1e-5)  # total, lm, contrastive
    assert r["grad_norm"] > 0 and r["max_grad_diff"] <= 1e-5 * max(1.0, r["grad_norm"])

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cosmo_config(lm, train__steps=3), tmp_path / "one", data=make_corpus())
    finally:
        torch.set_num_threads(n)
    logs = [[json.loads(l) for l in (d / "train_log.jsonl").read_text().splitlines()] for d in (out, tmp_path / "one")]
    assert [x["step"] for x in logs[0]] == [x["step"] for x in logs[1]] == [1, 2, 3]
    for a, b in zip(*logs):
        for key in ("total", "lm", "contrastive"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["step"], key)
    two, one = load_file(str(out / "mp_weights.safetensors")), load_file(str(tmp_path / "one/last/model.safetensors"))
    assert set(two) == set(one)
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-5)
