"""Training: steps per objective, checkpoints, exact resume (incl. a real SIGKILL), NaN stop, configs, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from tests.train.conftest import make_corpus, tiny_config
from vidlang.config import load_config
from vidlang.errors import ConfigError, VidlangError
from vidlang.io import read_jsonl
from vidlang.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


def totals(out: Path) -> dict[int, float]:
    return {r["step"]: r["total"] for r in read_jsonl(out / "train_log.jsonl") if "total" in r}


@pytest.mark.parametrize("objective", ["infonce", "norton"])
def test_steps_decrease_loss_on_a_repeated_batch(tiny_text_model_dir, corpus, objective):
    from vidlang.models.dual import DualEncoder
    from vidlang.train.dist import Gatherer
    from vidlang.train.objectives import OBJECTIVES
    from vidlang.train.optim import build_optimizer

    cfg = tiny_config(tiny_text_model_dir, objective, model__video__dropout=0.0)
    cfg.model.video.input_dim = corpus.dim
    torch.manual_seed(0)
    model = DualEncoder.build(cfg)
    model.text.backbone.config.hidden_dropout_prob = 0.0
    model.eval()  # no dropout: the same batch must give a decreasing loss
    ds = model.dataset(corpus.features, corpus.captions, corpus.train_ids, cfg.data, corpus.fps, 0)
    batch = model.collate_fn()(*ds.batch_samples(ds.epoch_order(0), 0, 0))
    opt = build_optimizer(model, cfg.optim)
    seen = []
    for _ in range(3):
        losses = OBJECTIVES.get(objective)(model, batch, Gatherer(), cfg.loss)
        assert torch.isfinite(losses["total"])
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        seen.append(float(losses["total"].detach()))
    assert seen[2] < seen[1] < seen[0]
    if objective == "norton":
        assert {"clip", "paragraph"} <= set(losses)


def test_checkpoint_round_trip_and_strict_init(tiny_text_model_dir, corpus, tmp_path):
    from vidlang.models.checkpoint import load_embedder, load_model, load_weights
    from vidlang.train.trainer import train

    cfg = tiny_config(tiny_text_model_dir, "infonce", train__steps=2)
    s = train(cfg, tmp_path / "a", data=corpus)
    assert s["steps"] == 2 and (tmp_path / "a/last/model.safetensors").exists()
    meta = json.loads((tmp_path / "a/last/meta.json").read_text())
    assert meta["step"] == 2 and meta["clip_len"] == 6 and "R@5" in meta["metrics"]
    model, cfg2 = load_model(tmp_path / "a/last")
    assert cfg.model.video.input_dim == 0 and cfg2.model.video.input_dim == corpus.dim  # resolved config stored
    cfg.model.video.input_dim = corpus.dim
    assert cfg2 == cfg
    # Weights equal those in the resumable state written at the same step.
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "a/state/model.safetensors"))
    for k, v in model.state_dict().items():
        assert_close(v, state[k])
    emb = load_embedder(tmp_path / "a/last")
    assert emb.clip_len == 6 and emb.embed_texts(["add salt"]).shape == (1, 32)
    # --init-from: strict; a different architecture is one clear error.
    s2 = train(tiny_config(tiny_text_model_dir, "norton", train__steps=1), tmp_path / "b", data=corpus,
               init_from=tmp_path / "a/last")
    assert s2["steps"] == 1
    other, _ = load_model(tmp_path / "a/last")
    other.video_head = torch.nn.Linear(32, 16)
    with pytest.raises(VidlangError, match="do not match the model"):
        load_weights(other, tmp_path / "a/last")


RESUME_KW = dict(train__steps=6, train__save_every=3, train__eval_every=2)


@pytest.fixture(scope="module")
def straight_run(tiny_text_model_dir, corpus, tmp_path_factory):
    """6 uninterrupted norton steps (state saved at step 3 too, like the interrupted runs)."""
    from vidlang.train.trainer import train

    out = tmp_path_factory.mktemp("straight")
    train(tiny_config(tiny_text_model_dir, "norton", **RESUME_KW), out, data=corpus)
    ref = totals(out)
    assert sorted(ref) == [1, 2, 3, 4, 5, 6]
    assert len({round(v, 6) for v in ref.values()}) == 6  # the steps really differ (not a constant)
    return ref


def test_exact_resume_in_process(tiny_text_model_dir, corpus, tmp_path, straight_run):
    from vidlang.train.trainer import train

    s = train(tiny_config(tiny_text_model_dir, "norton", **RESUME_KW), tmp_path, data=corpus, stop_after=3)
    assert s["steps"] == 3 and not s["finished"]
    s = train(tiny_config(tiny_text_model_dir, "norton", **RESUME_KW), tmp_path, data=corpus)
    assert s["steps"] == 6 and s["finished"]
    got = totals(tmp_path)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    for step, ref in straight_run.items():
        assert abs(got[step] - ref) <= 1e-6, (step, got[step], ref)


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from tests.train.conftest import make_corpus, tiny_config
from tests.train.test_train import RESUME_KW
from vidlang.train.trainer import train
def kill(step, record, model):
    if step == 5:  # the state of step 4 (an evaluation step) is on disk; die without any cleanup
        os.kill(os.getpid(), signal.SIGKILL)
train(tiny_config({text!r}, "norton", **RESUME_KW), {out!r}, data=make_corpus(), callbacks=[kill])
"""


def test_exact_resume_after_sigkill(tiny_text_model_dir, corpus, tmp_path, straight_run):
    from vidlang.train.trainer import train

    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(repo=str(REPO), text=str(tiny_text_model_dir), out=str(out))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert json.loads((out / "state/trainer.json").read_text())["progress"]["step"] == 4
    assert max(totals(out)) == 5  # step 5 was logged, then the process was killed before saving
    train(tiny_config(tiny_text_model_dir, "norton", **RESUME_KW), out, data=corpus)  # resumes automatically
    logged = {}
    for r in read_jsonl(out / "train_log.jsonl"):  # the log was cut back to step 4 on resume: one line per step
        if "total" in r:
            logged.setdefault(r["step"], []).append(r["total"])
    assert sorted(logged) == [1, 2, 3, 4, 5, 6] and all(len(v) == 1 for v in logged.values())
    for step, values in logged.items():
        for v in values:
            assert abs(v - straight_run[step]) <= 1e-6, (step, v, straight_run[step])


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tiny_text_model_dir, tmp_path):
    from vidlang.errors import NonFiniteError
    from vidlang.models.checkpoint import load_model
    from vidlang.train.trainer import train

    data = make_corpus()
    cfg = tiny_config(tiny_text_model_dir, "infonce", train__steps=5)
    train(cfg, tmp_path / "r", data=data, stop_after=2)
    for vid in data.features:
        data.features[vid] = np.full_like(data.features[vid], np.nan)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 3 .*last checkpoint .* is intact"):
        train(tiny_config(tiny_text_model_dir, "infonce", train__steps=5), tmp_path / "r", data=data)
    assert json.loads((tmp_path / "r/last/meta.json").read_text())["step"] == 2
    model, _ = load_model(tmp_path / "r/last")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_config_errors(tmp_path, tiny_text_model_dir):
    y = tmp_path / "c.yaml"
    y.write_text("data:\n  clips_per_video: 4\nloss:\n  objective: norton\n  clips_per_paragraph: 2\n")
    cfg = load_config(TrainConfig, y)
    assert cfg.data.clips_per_video == 4 and cfg.loss.clips_per_paragraph == 2
    with pytest.raises(ConfigError, match=r"unknown config key optim\.lrr .*did you mean optim\.lr"):
        load_config(TrainConfig, y, ["optim.lrr=1e-4"])
    with pytest.raises(ConfigError, match=r"optim\.lr: expected a number"):
        load_config(TrainConfig, y, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match=r"clips_per_paragraph=8 is larger than data.clips_per_video=4"):
        load_config(TrainConfig, y, ["loss.clips_per_paragraph=8"])
    with pytest.raises(ConfigError, match=r"not divisible"):
        load_config(TrainConfig, y, ["loss.clips_per_paragraph=3"])
    with pytest.raises(ConfigError, match=r"loss\.objective: unknown objective .*'nce'.*registered: infonce, norton"):
        load_config(TrainConfig, y, ["loss.objective=nce"])
    with pytest.raises(ConfigError, match=r"max_clip_len=64 exceeds model\.video\.max_len"):
        load_config(TrainConfig, y, ["data.max_clip_len=64"])
    # a key of another objective is an error, not silently ignored; switching the objective drops the old keys
    with pytest.raises(ConfigError, match=r"unknown config key loss\.clips_per_paragraph"):
        load_config(TrainConfig, None, ["loss.objective=infonce", "loss.clips_per_paragraph=2"])
    assert load_config(TrainConfig, y, ["loss.objective=infonce"]).loss.objective == "infonce"


def test_norton_configs_load():
    names = sorted(p.name for p in (REPO / "configs/norton").glob("*.yaml"))
    assert {"howto100m.yaml", "demo_cpu.yaml", "pretrain_demo_cpu.yaml", "infonce_demo_cpu.yaml"} <= set(names)
    for name in names:
        path = REPO / "configs/norton" / name
        first = path.read_text().splitlines()[0]
        assert first.startswith("#") and "train --config configs/norton/" + name in first
        load_config(TrainConfig, path)


def write_store(root: Path, data) -> None:
    """A feature store in the documented layout (docs/interfaces.md)."""
    from vidlang.io import append_jsonl, atomic_save_npy, atomic_write_json

    atomic_write_json(root / "run.json", {"fps": data.fps, "feature_dim": data.dim})
    for vid, feats in data.features.items():
        atomic_save_npy(root / "shards/000" / f"{vid}.npy", feats)
        append_jsonl(root / "manifest.jsonl", {"video_id": vid, "location": f"shards/000/{vid}.npy",
                                               "num_features": int(feats.shape[0]), "feature_dim": data.dim,
                                               "fps": data.fps})
        atomic_write_json(root / "text" / f"{vid}.json", {"video_id": vid, "lines": [
            {"start": l.start, "end": l.end, "text": l.text} for l in data.captions[vid]]})


def test_cli_train_and_show_config(tiny_text_model_dir, corpus, tmp_path, capsys):
    from vidlang.cli import main

    write_store(tmp_path / "store", corpus)
    splits = tmp_path / "splits.json"
    ids = sorted(corpus.features)
    splits.write_text(json.dumps({"train": ids[:10], "val": ids[10:]}))
    y = tmp_path / "t.yaml"
    from vidlang.config import dump_yaml

    cfg = tiny_config(tiny_text_model_dir, "infonce", train__steps=2)
    y.write_text(dump_yaml(cfg))
    over = [f"data.features={tmp_path / 'store'}", f"data.splits={splits}"]
    assert main(["show-config", "--config", str(y), *over, "optim.lr=0.01"]) == 0
    shown = capsys.readouterr().out
    assert "lr: 0.01" in shown and str(tmp_path / "store") in shown
    assert main(["train", "--config", str(y), *over, "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    # Only splits "train" videos are used: 10 -> 8 train + 2 held out (heldout_frac 0.2); "val" never.
    assert summary["train_videos"] == 8 and summary["heldout_videos"] == 2
    assert "trained dual_encoder with infonce for 2 steps" in capsys.readouterr().out
    assert main(["train", "--config", str(y), "optim.nope=1", "--out", str(tmp_path / "x")]) == 2
    assert "unknown config key optim.nope" in capsys.readouterr().err


def test_grad_accum_and_hard_negative_epochs(tiny_text_model_dir, corpus, tmp_path):
    from vidlang.train.trainer import train

    cfg = tiny_config(tiny_text_model_dir, "infonce", train__steps=2, train__grad_accum=2, data__hard_negatives=True)
    s = train(cfg, tmp_path, data=corpus, stop_after=1)
    prog = json.loads((tmp_path / "state/trainer.json").read_text())["progress"]
    # One optimizer step = 2 micro-batches = the whole epoch (10 train videos -> 2 batches of 4).
    assert prog["step"] == 1 and prog["epoch"] == 0 and prog["batch"] == 2 and prog["order"] is not None
    s = train(cfg, tmp_path, data=corpus)
    assert s["steps"] == 2 and s["epochs"] == 2
    log = [r for r in read_jsonl(tmp_path / "train_log.jsonl") if "total" in r]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["total"]) for r in log)


def test_early_stopping_on_heldout_metric(tiny_text_model_dir, corpus, tmp_path):
    from vidlang.train.trainer import train

    # lr ~ 0: the held-out R@5 cannot improve after the first evaluation -> stop after `patience` evaluations.
    cfg = tiny_config(tiny_text_model_dir, "infonce", train__steps=6, train__eval_every=1, train__patience=2,
                      optim__lr=1e-12)
    s = train(cfg, tmp_path, data=corpus)
    assert s["stopped_early"] and s["steps"] == 3 and s["best_step"] == 1
    assert json.loads((tmp_path / "best/meta.json").read_text())["step"] == 1
    assert json.loads((tmp_path / "last/meta.json").read_text())["step"] == 3


def test_data_captions_replace_the_store_narration(tiny_text_model_dir, corpus, tmp_path):
    """data.captions (e.g. `vidlang align` output) replaces the store's text/; videos it lacks are not trained on."""
    from vidlang.errors import ConfigError
    from vidlang.data.train_data import open_train_data

    write_store(tmp_path / "store", corpus)
    ids = sorted(corpus.features)
    caps = {vid: {"start": [1.0, 5.0], "end": [3.0, 7.0], "text": ["Realigned line one", "realigned line two"]}
            for vid in ids[:4]}
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    cfg = tiny_config(tiny_text_model_dir, "infonce")
    cfg.data.features = str(tmp_path / "store")
    cfg.data.captions = str(tmp_path / "caps.json")
    got = open_train_data(cfg.data)
    assert got.train_ids == ids[:4]
    assert [l.text for l in got.captions[ids[0]]] == ["realigned line one", "realigned line two"]  # cleaned
    cfg.data.captions = str(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="data.captions: .*missing.json not found"):
        open_train_data(cfg.data)
