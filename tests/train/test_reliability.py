"""Training reliability: no unpickling on resume, no silent config mix, locked run folders, damaged files and
Ctrl-C as one line, each reproduced the way a user would meet it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import make_corpus, tiny_config
from tests.train.test_train import REPO, totals, write_store
from vidlang.config import dump_yaml
from vidlang.errors import FormatError, LockedError, VidlangError


class _Hostile:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _run(text_dir, out, **over):
    from vidlang.train.trainer import train

    kw = {"train__steps": 4, "train__save_every": 2, **over}
    return train(tiny_config(text_dir, "norton", **kw), out, data=make_corpus())


def test_a_hostile_pickle_in_the_state_is_never_loaded(tiny_text_model_dir, tmp_path):
    out = tmp_path / "run"
    from vidlang.train.trainer import train

    train(tiny_config(tiny_text_model_dir, "norton", train__steps=4, train__save_every=2), out, data=make_corpus(),
          stop_after=2)
    state = out / "state"
    assert not [p.name for p in state.iterdir() if p.suffix in (".pkl", ".bin", ".pt", ".pth")]
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin",
                 "pytorch_model.bin"):  # what accelerate's load_state would read with weights_only=False
        (state / name).write_bytes(pickle.dumps(_Hostile(marker)))
    s = train(tiny_config(tiny_text_model_dir, "norton", train__steps=4, train__save_every=2), out,
              data=make_corpus())
    assert s["steps"] == 4 and not marker.exists()


def test_resume_refuses_a_changed_config_and_names_the_keys(tiny_text_model_dir, tmp_path):
    from vidlang.train.trainer import TrainingError, train

    out = tmp_path / "run"
    _run(tiny_text_model_dir, out)
    with pytest.raises(TrainingError, match=r"another config: optim\.lr: 0\.001 -> 0\.5; train\.steps: 4 -> 6; "
                                            r"rerun with its config, use --restart"):
        _run(tiny_text_model_dir, out, optim__lr=0.5, train__steps=6)
    with pytest.raises(TrainingError, match=r"model\.video\.width: 32 -> 64"):
        _run(tiny_text_model_dir, out, model__video__width=64, model__video__heads=2)
    with pytest.raises(TrainingError, match=r"train\.steps: 4 -> 6 \(--extend allows a larger train\.steps\)"):
        _run(tiny_text_model_dir, out, train__steps=6)
    # --extend: only the step count grew; the run continues from step 4
    cfg = tiny_config(tiny_text_model_dir, "norton", train__steps=6, train__save_every=2)
    s = train(cfg, out, data=make_corpus(), extend=True)
    assert s["steps"] == 6 and sorted(totals(out)) == [1, 2, 3, 4, 5, 6]
    # keys that cannot change the trajectory may differ
    s = _run(tiny_text_model_dir, out, train__steps=6, train__log_every=3, data__workers=1)
    assert s["steps"] == 6
    # --restart starts over and removes the old run's checkpoints
    s = train(tiny_config(tiny_text_model_dir, "norton", optim__lr=0.5, train__steps=2), out, data=make_corpus(),
              resume=False)
    assert s["steps"] == 2 and sorted(totals(out)) == [1, 2]
    assert json.loads((out / "last/meta.json").read_text())["step"] == 2


def _hold(folder, ready, release):
    from vidlang.io import RunLock

    with RunLock(folder, "vidlang train (another run)"):
        ready.set()
        release.wait(60)


def test_two_trainings_into_one_folder(tiny_text_model_dir, tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(tmp_path / "run", ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(LockedError, match=rf"in use by vidlang train \(another run\) \(pid {holder.pid} on "):
            _run(tiny_text_model_dir, tmp_path / "run")
        assert not (tmp_path / "run" / "state").exists()
    finally:
        release.set()
        holder.join(60)
    assert _run(tiny_text_model_dir, tmp_path / "run")["steps"] == 4  # free again


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_weights_are_one_line(tiny_text_model_dir, tmp_path, damage):
    from vidlang.models.checkpoint import load_model
    from vidlang.train.trainer import train

    out = tmp_path / "run"
    _run(tiny_text_model_dir, out)
    for path in (out / "last/model.safetensors", out / "state/model.safetensors"):
        data = path.read_bytes()
        path.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage])
    with pytest.raises(FormatError, match=r"last/model\.safetensors: corrupt weights"):
        load_model(out / "last")  # what eval and align load
    with pytest.raises(FormatError, match=r"state/model\.safetensors: corrupt weights"):
        _run(tiny_text_model_dir, out)  # resume
    with pytest.raises(FormatError, match=r"last/model\.safetensors: corrupt weights"):
        train(tiny_config(tiny_text_model_dir, "norton", train__steps=1), tmp_path / "other", data=make_corpus(),
              init_from=out / "last")


def test_damaged_meta_and_progress_are_one_line(tiny_text_model_dir, tmp_path, capsys):
    from vidlang.cli import main

    out = tmp_path / "run"
    _run(tiny_text_model_dir, out)
    (out / "last/meta.json").write_text("{not json")
    capsys.readouterr()
    assert main(["eval", "alignment", "--checkpoint", str(out / "last"), "--features", str(tmp_path),
                 "--annotations", str(tmp_path / "gt.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last/meta.json" in err[0] and "corrupt checkpoint meta" in err[0]
    (out / "state/trainer.json").write_text('{"progress": ')
    with pytest.raises(VidlangError, match=r"state/trainer\.json.*corrupt training progress"):
        _run(tiny_text_model_dir, out)


SIGINT_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import vidlang.train.trainer as T
after = T.Trainer.after_step
def interrupt_at_5(self, final=False):  # a real Ctrl-C, delivered while step 5 is being logged and saved
    after(self, final)
    if self.prog.step == 5:
        os.kill(os.getpid(), signal.SIGINT)
T.Trainer.after_step = interrupt_at_5
from vidlang.cli import main
sys.exit(main({argv!r}))
"""


def test_ctrl_c_saves_the_last_step_exits_130_and_the_rerun_resumes(tiny_text_model_dir, corpus, tmp_path):
    from vidlang.cli import main
    from vidlang.train.trainer import train

    write_store(tmp_path / "store", corpus)
    kw = dict(train__steps=8, train__save_every=3, train__eval_every=4)
    y = tmp_path / "t.yaml"
    y.write_text(dump_yaml(tiny_config(tiny_text_model_dir, "norton", **kw)))
    argv = ["train", "--config", str(y), "--out", str(tmp_path / "run"), f"data.features={tmp_path / 'store'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", SIGINT_SCRIPT.format(repo=str(REPO), argv=argv)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted: state saved at step 5" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "run/state/trainer.json").read_text())["progress"]["step"] == 5
    assert main(argv) == 0  # the rerun resumes (overrides may come after --out)
    ref = tmp_path / "ref"
    cfg = tiny_config(tiny_text_model_dir, "norton", **kw)
    cfg.data.features = str(tmp_path / "store")
    from vidlang.data.train_data import open_train_data

    train(cfg, ref, data=open_train_data(cfg.data))
    got, want = totals(tmp_path / "run"), totals(ref)
    assert sorted(got) == list(range(1, 9))
    for step in want:
        assert abs(got[step] - want[step]) <= 1e-6, (step, got[step], want[step])


def test_a_run_resumed_at_its_end_writes_the_same_summary(tiny_text_model_dir, tmp_path):
    """A kill after the final state was saved but before summary.json was written: the rerun has no step left to
    run, and its summary must still report the last held-out evaluation (found by fault injection)."""
    out = tmp_path / "run"
    first = _run(tiny_text_model_dir, out, train__eval_every=2)
    assert first["last_metrics"]
    (out / "summary.json").unlink()
    again = _run(tiny_text_model_dir, out, train__eval_every=2)
    strip = lambda s: {k: v for k, v in s.items() if k != "time_s"}  # noqa: E731
    assert strip(again) == strip(first)
    assert strip(json.loads((out / "summary.json").read_text())) == strip(first)
