"""COSMO through the one trainer: training steps, checkpoints without the frozen LM, exact resume after a real
SIGKILL, a changed LM refused, --init-from a dual-encoder checkpoint's video tower, one-line config errors.

Tiny random Llama (tests/models/tiny_lms.py) on one torch thread; the corpus is tests/train/conftest.make_corpus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from tests.models.tiny_lms import build_lm, one_thread  # noqa: F401  (autouse fixture)
from tests.train.conftest import make_corpus, tiny_config, with_overrides
from vidlang.config import from_dict
from vidlang.errors import ConfigError, VidlangError
from vidlang.io import read_jsonl

REPO = Path(__file__).resolve().parents[2]
KW = {"train__steps": 6, "train__eval_every": 3, "train__save_every": 2}


def cosmo_config(lm_dir, **over):
    from vidlang.train.config import TrainConfig

    d = {
        "model": {"arch": "cosmo", "lm_path": str(lm_dir), "unimodal_depth": 2, "cross_attn_interval": 1,
                  "xattn_heads": 2, "xattn_dim_head": 8, "visual_dim": 12, "resampler_depth": 1,
                  "resampler_latents": 4, "resampler_heads": 2, "resampler_dim_head": 8, "contrastive_dim": 8,
                  "max_tokens": 40},
        "data": {"clips_per_video": 3, "batch_videos": 4, "min_clip_len": 1, "max_clip_len": 6, "heldout_frac": 0.2},
        "loss": {"objective": "cosmo"},
        "optim": {"lr": 3e-3, "warmup_steps": 0, "schedule": "constant"},
        "train": {"steps": 4, "log_every": 1, "eval_every": 0, "select_metric": "lm_loss", "progress": False,
                  "tensorboard": False},
    }
    return from_dict(TrainConfig, with_overrides(d, over))


def totals(out: Path) -> dict[int, float]:
    return {r["step"]: r["total"] for r in read_jsonl(out / "train_log.jsonl") if "total" in r}


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return build_lm("llama", tmp_path_factory.mktemp("cosmo_lm") / "llama")


@pytest.fixture(scope="module")
def straight_run(lm_dir, tmp_path_factory):
    from vidlang.train.trainer import train

    out = tmp_path_factory.mktemp("cosmo_straight")
    summary = train(cosmo_config(lm_dir, **KW), out, data=make_corpus())
    ref = totals(out)
    assert sorted(ref) == [1, 2, 3, 4, 5, 6] and len({round(v, 6) for v in ref.values()}) == 6
    return out, summary, ref


def test_cosmo_trains_and_checkpoints_without_its_frozen_lm(straight_run, lm_dir):
    from safetensors.torch import load_file

    from vidlang.models.checkpoint import load_model
    from vidlang.models.cosmo import CosmoModel

    out, summary, ref = straight_run
    assert summary["arch"] == "cosmo" and summary["objective"] == "cosmo" and summary["best_step"] in (3, 6)
    log = [r for r in read_jsonl(out / "train_log.jsonl") if "eval/lm_loss" in r]
    assert [r["step"] for r in log] == [3, 6] and all(0 <= r["eval/R@1"] <= 100 for r in log)
    assert ref[6] < ref[1]
    for weights in (out / "best/model.safetensors", out / "state/model.safetensors"):
        keys = set(load_file(str(weights)))
        assert keys and not any(k.startswith("lm.") for k in keys) and any(k.startswith("xattn.") for k in keys)
    frozen = json.loads((out / "best/meta.json").read_text())["frozen_weights"]["lm"]
    assert frozen["path"] == str(Path(lm_dir).resolve()) and len(frozen["sha256"]) == 64
    assert json.loads((out / "state/frozen.json").read_text()) == {"lm": frozen}
    model, cfg = load_model(out / "last")
    assert isinstance(model, CosmoModel) and cfg.model.feature_dim == 16 and not model.training
    state = load_file(str(out / "state/model.safetensors"))  # last/ and the state hold the same step's weights
    for k, v in model.saved_state().items():
        assert_close(v, state[k], rtol=0, atol=0)


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import torch
torch.set_num_threads(1)
from tests.train.conftest import make_corpus
from tests.train.test_cosmo_train import KW, cosmo_config
from vidlang.train.trainer import train
def kill(step, record, model):
    if step == 5:  # the state of step 4 is on disk; die without any cleanup
        os.kill(os.getpid(), signal.SIGKILL)
train(cosmo_config({lm!r}, **KW), {out!r}, data=make_corpus(), callbacks=[kill])
"""


def test_exact_resume_after_sigkill(lm_dir, tmp_path, straight_run):
    from vidlang.train.trainer import train

    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    script = KILL_SCRIPT.format(repo=str(REPO), lm=str(lm_dir), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert json.loads((out / "state/trainer.json").read_text())["progress"]["step"] == 4
    summary = train(cosmo_config(lm_dir, **KW), out, data=make_corpus())  # resumes automatically
    assert summary["steps"] == 6 and summary["finished"]
    logged = [r for r in read_jsonl(out / "train_log.jsonl") if "total" in r]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5, 6]  # one line per step: the log was cut back to 4
    for r in logged:
        assert abs(r["total"] - straight_run[2][r["step"]]) <= 1e-6, (r["step"], r["total"])


def test_resume_refuses_another_lm_at_the_same_path(tmp_path):
    from vidlang.train.trainer import train

    lm = build_lm("llama", tmp_path / "lm")
    train(cosmo_config(lm, **KW), tmp_path / "run", data=make_corpus(), stop_after=2)
    build_lm("llama", lm, seed=1)  # other weights, same folder and config
    with pytest.raises(VidlangError, match=r"lm at .* is not the one these weights were trained with") as e:
        train(cosmo_config(lm, **KW), tmp_path / "run", data=make_corpus())
    assert "\n" not in str(e.value)


def test_init_from_a_dual_encoder_checkpoint_loads_its_video_tower(lm_dir, tiny_text_model_dir, tmp_path):
    from vidlang.models.base import model_class
    from vidlang.models.checkpoint import read_weights
    from vidlang.train.trainer import train

    corpus = make_corpus()
    train(tiny_config(tiny_text_model_dir, "infonce", train__steps=1), tmp_path / "dual", data=corpus)
    tower = {"width": 32, "layers": 1, "heads": 2, "max_len": 8}
    cfg = cosmo_config(lm_dir, model__video_tower=tower, model__freeze_video_tower=True)
    model_class("cosmo").resolve_config(cfg, corpus.dim, corpus.fps)
    model = model_class("cosmo").build(cfg)
    model.init_from_checkpoint(tmp_path / "dual/best")
    dual = read_weights(tmp_path / "dual/best/model.safetensors")
    own = model.video_tower.state_dict()
    assert set(own) == {k[len("video."):] for k in dual if k.startswith("video.")}
    for k, v in own.items():
        assert_close(v, dual["video." + k], rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.video_tower.parameters())
    # the same run through the trainer: a frozen tower stays exactly the checkpoint's
    holder = {}
    train(cfg, tmp_path / "cosmo", data=corpus, init_from=tmp_path / "dual/best",
          callbacks=[lambda s, r, m: holder.update(model=m)])
    for k, v in holder["model"].video_tower.state_dict().items():
        assert_close(v, dual["video." + k], rtol=0, atol=0)
    wide = cosmo_config(lm_dir, model__video_tower={**tower, "width": 16})
    model_class("cosmo").resolve_config(wide, corpus.dim, corpus.fps)
    with pytest.raises(VidlangError, match=r"video\.\* into model\.video_tower\): weights do not match") as e:
        model_class("cosmo").build(wide).init_from_checkpoint(tmp_path / "dual/best")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="only start COSMO's visual side through model.video_tower"):
        model_class("cosmo").build(cosmo_config(lm_dir, model__feature_dim=16)).init_from_checkpoint(
            tmp_path / "dual/best")


def test_config_errors_are_one_line(lm_dir, tiny_text_model_dir, tmp_path, capsys):
    from vidlang.cli import main

    y = tmp_path / "c.yaml"
    y.write_text("model: {arch: cosmo}\nloss: {objective: cosmo}\ntrain: {select_metric: lm_loss}\n")
    store = tmp_path / "missing_store"
    cases = [
        ([f"model.lm_path={tiny_text_model_dir}"], "is not a causal language model"),
        ([f"model.lm_path={lm_dir}", "model.unimodal_depth=4"], "unimodal_depth=4 must be smaller than the number"),
        (["model.lm_layers=2", "model.unimodal_depth=2"], "unimodal_depth 2 must be < the 2 kept LM layers"),
        (["loss.objective=norton"], "needs model outputs"),
        (["train.select_metric=R@50"], "is not a held-out metric of model.arch='cosmo'"),
    ]
    corpus = make_corpus()
    from tests.data.test_interleaved import _store

    _store(store, {v: corpus.features[v][:, :3] for v in list(corpus.features)[:4]},
           {v: [{"start": l.start, "end": l.end, "text": l.text} for l in corpus.captions[v]]
            for v in list(corpus.features)[:4]})
    for overrides, message in cases:
        rc = main(["train", "--config", str(y), f"data.features={store}", *overrides, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and message in err and "\n" not in err and "Traceback" not in err, (overrides, err)


def test_cosmo_configs_load_and_open_with_their_launch_command():
    import yaml

    from vidlang.config import load_config
    from vidlang.train.config import TrainConfig

    for name in ("demo_cpu.yaml", "howto_interlink_1b.yaml"):
        path = REPO / "configs/cosmo" / name
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and f"train --config configs/cosmo/{name}" in first
        cfg = load_config(TrainConfig, path)
        assert cfg.model.arch == "cosmo" and cfg.loss.objective == "cosmo" and cfg.train.select_metric == "lm_loss"
    big = load_config(TrainConfig, REPO / "configs/cosmo/howto_interlink_1b.yaml")
    assert big.train.mixed_precision == "bf16" and big.data.batch_videos % 8 == 0
    acc = yaml.safe_load((REPO / "configs/cosmo/accelerate_fsdp.yaml").read_text())
    assert acc["distributed_type"] == "FSDP" and acc["mixed_precision"] == "bf16" and acc["num_processes"] == 8
    assert acc["fsdp_config"]["fsdp_use_orig_params"] is True  # frozen LM weights beside trainable ones
    assert "accelerate_fsdp.yaml" in (REPO / "configs/cosmo/howto_interlink_1b.yaml").read_text().splitlines()[0]
