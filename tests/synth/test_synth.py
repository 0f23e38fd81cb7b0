"""The synthetic noisy long-video world: determinism, public formats, real MP4s, noise dials, ground truth."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from vidlang.synth import text as T
from vidlang.synth.generate import (
    SynthConfig,
    _mc_candidates,
    annotate,
    build_world,
    generate_corpus,
    main,
    plan_video,
)
from vidlang.synth.render import render_frames

TINY = dict(videos=6, seed=3, size=32, fps=2, min_duration=20, max_duration=40, step_min=2, step_max=4,
            msrvtt_clips=4, val_frac=0.34)


def _decode(path: Path) -> tuple[np.ndarray, tuple, int]:
    """(frames (n, H, W, 3) uint8, (codec, pix_fmt, fps, width, height), number of audio streams)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n_audio = len(c.streams.audio)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        return frames, (v.codec_context.name, v.codec_context.pix_fmt, v.average_rate, v.width, v.height), n_audio


def _text_files(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix != ".mp4":
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    summary = generate_corpus(out, SynthConfig(**TINY), workers=1)
    assert summary["rendered"] == 6 and summary["skipped"] == 0
    return out


@pytest.fixture(scope="module")
def gt(corpus) -> dict:
    return json.loads((corpus / "ground_truth.json").read_text())


# --- determinism --------------------------------------------------------------------------------------------------


def test_same_seed_identical_whatever_the_worker_count(corpus, tmp_path):
    other = tmp_path / "b"
    generate_corpus(other, SynthConfig(**TINY), workers=2)
    a, b = _text_files(corpus), _text_files(other)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert a[k] == b[k], k
    mp4s = sorted(p.relative_to(corpus) for p in corpus.rglob("*.mp4"))
    assert mp4s == sorted(p.relative_to(other) for p in other.rglob("*.mp4"))
    for rel in mp4s:
        np.testing.assert_array_equal(_decode(corpus / rel)[0], _decode(other / rel)[0])


def test_different_seed_differs():
    a = annotate(SynthConfig(**{**TINY, "seed": 3}))
    b = annotate(SynthConfig(**{**TINY, "seed": 4}))
    assert [p["steps"] for p in a[1]] != [p["steps"] for p in b[1]]
    assert a[2] != b[2]
    assert not np.array_equal(render_frames(a[1][0]["spec"]), render_frames(b[1][0]["spec"]))


def test_video_depends_only_on_seed_and_index():
    world = build_world(SynthConfig(**TINY))
    small = plan_video(SynthConfig(**TINY), world, 2)
    big = plan_video(SynthConfig(**{**TINY, "videos": 50}), world, 2)
    assert small == big
    # Narration dials never change the pixels: --clean renders the same videos.
    clean = plan_video(SynthConfig(**TINY).clean(), world, 2)
    assert clean["spec"] == small["spec"]


def test_rerun_skips_up_to_date_and_rerenders_stale(corpus, tmp_path):
    before = _text_files(corpus)
    s = generate_corpus(corpus, SynthConfig(**TINY), workers=1)
    assert s["rendered"] == 0 and s["skipped"] == 6
    assert _text_files(corpus) == before
    # A killed run leaves a temp file and (with another tool) maybe a truncated video: both are repaired.
    frames_before = _decode(corpus / "videos" / "syn00000.mp4")[0]
    (corpus / "videos" / "syn00000.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom truncated")
    (corpus / "videos" / ".syn00001.mp4.abc123.tmp").write_bytes(b"partial")
    s = generate_corpus(corpus, SynthConfig(**TINY), workers=1)
    assert s["rendered"] == 1 and not list(corpus.rglob("*.tmp"))
    np.testing.assert_array_equal(_decode(corpus / "videos" / "syn00000.mp4")[0], frames_before)
    assert _text_files(corpus) == before
    # A different world in the same folder must not reuse stale videos.
    other = tmp_path / "c"
    generate_corpus(other, SynthConfig(**{**TINY, "videos": 2}), workers=1)
    s = generate_corpus(other, SynthConfig(**{**TINY, "videos": 2, "noise_std": 0.0}), workers=1)
    assert s["rendered"] == 2


# --- real video files ---------------------------------------------------------------------------------------------


def test_mp4s_decode_to_configured_size_fps_and_duration(corpus, gt):
    for vid, v in gt["videos"].items():
        frames, (codec, pix_fmt, rate, w, h), n_audio = _decode(corpus / "videos" / f"{vid}.mp4")
        assert (codec, pix_fmt, float(rate), w, h, n_audio) == ("h264", "yuv420p", 2.0, 32, 32, 0)
        assert frames.shape == (int(v["duration"]) * 2, 32, 32, 3)
        assert 20 <= v["duration"] <= 40
    for c in gt["msrvtt"]:
        frames, _, _ = _decode(corpus / "msrvtt" / "videos" / f"{c['video_id']}.mp4")
        assert frames.shape[0] == int(c["end"] - c["start"]) * 2


def test_decoded_frames_are_the_rendered_frames(corpus):
    cfg = SynthConfig(**TINY)
    _, plans, *_ = annotate(cfg)
    rendered = render_frames(plans[1]["spec"]).astype(np.float64)
    decoded = _decode(corpus / "videos" / "syn00001.mp4")[0].astype(np.float64)
    assert np.abs(rendered - decoded).mean() < 6.0  # lossy H.264 + chroma subsampling, nothing else
    # A sub-range render equals the same rows of the full one (clips are cut from it).
    part = render_frames(plans[1]["spec"], 10, 14).astype(np.float64)
    np.testing.assert_array_equal(part, rendered[10:14])


def test_steps_are_visible_and_background_is_still():
    """A step changes the centre stage and shows the acting object's colour there; background does not."""
    cfg = SynthConfig(**{**TINY, "size": 64, "fps": 4, "noise_std": 0.0})
    world, plans, *_ = annotate(cfg)
    checked = 0
    for p in plans:
        frames = render_frames(p["spec"]).astype(np.float64)
        fps = cfg.fps
        centre = frames[:, 22:42, 22:42]
        motion = np.abs(np.diff(centre, axis=0)).mean(axis=(1, 2, 3))
        bg_rgb = np.asarray(p["spec"]["bg"], np.float64)
        for seg in p["spec"]["segments"]:
            a, b = seg["start"] * fps, seg["end"] * fps
            if seg["kind"] == "step":
                obj = p["spec"]["objects"][seg["object"]]
                if seg["action"] != "rotate":  # rotation of a square/cross moves few pixels; checked by colour
                    assert motion[a:b - 1].mean() > 1.0
                # The centre shows the object's colour: some pixel there is far from the background.
                dist = np.abs(centre[a:b] - np.asarray(obj["rgb"], np.float64)).sum(-1)
                assert dist.min() < 30
                checked += 1
            elif seg["mode"] in ("idle", "jitter"):
                assert motion[a:b - 1].max() < 0.5
                np.testing.assert_allclose(centre[a:b].mean(axis=(0, 1, 2)), bg_rgb, atol=3)
    assert checked >= 10


# --- public formats -----------------------------------------------------------------------------------------------


def test_howto100m_captions_format(corpus, gt):
    caps = json.loads((corpus / "annotations" / "howto100m_captions.json").read_text())
    assert set(caps) == set(gt["videos"])
    for vid, c in caps.items():
        assert set(c) == {"start", "end", "text"}
        assert len(c["start"]) == len(c["end"]) == len(c["text"]) >= 1
        assert all(isinstance(t, str) and t for t in c["text"])
        assert all(0 <= s <= e <= gt["videos"][vid]["duration"] for s, e in zip(c["start"], c["end"]))


def test_youcookii_and_coin_formats(corpus, gt):
    yc = json.loads((corpus / "annotations" / "youcookii_annotations_trainval.json").read_text())["database"]
    coin = json.loads((corpus / "annotations" / "COIN.json").read_text())["database"]
    assert set(yc) == set(coin) == set(gt["videos"])
    for vid, v in gt["videos"].items():
        y, c = yc[vid], coin[vid]
        assert y["subset"] == {"train": "training", "val": "validation"}[v["split"]]
        assert c["subset"] == {"train": "training", "val": "testing"}[v["split"]]
        assert y["recipe_type"] == v["task_id"] and isinstance(y["recipe_type"], str)
        assert c["recipe_type"] == int(v["task_id"])
        assert c["class"] == gt["tasks"][v["task_id"]]["name"].replace(" ", "")
        assert y["duration"] == c["duration"] == v["duration"]
        assert [a["id"] for a in y["annotations"]] == list(range(len(v["steps"])))
        for a, ca, s in zip(y["annotations"], c["annotation"], v["steps"]):
            assert a["segment"] == ca["segment"] == [s["start"], s["end"]]
            assert a["sentence"] == ca["label"] == gt["steps"][str(s["step_id"])]
            assert ca["id"] == str(s["step_id"])
        assert (c["start"], c["end"]) == (v["steps"][0]["start"], v["steps"][-1]["end"])


def test_crosstask_release_format(corpus, gt):
    root = corpus / "annotations" / "crosstask_release"
    blocks = root.joinpath("tasks_primary.txt").read_text().split("\n\n")
    assert blocks[-1] == ""
    tasks = {}
    for b in blocks[:-1]:
        tid, name, url, n, names = b.split("\n")
        tasks[tid] = names.split(",")
        assert int(n) == len(tasks[tid]) and name == gt["tasks"][tid]["name"] and url
        assert tasks[tid] == [gt["steps"][str(i)] for i in gt["tasks"][tid]["steps"]]
    for fname, split in (("videos.csv", "train"), ("videos_val.csv", "val")):
        rows = list(csv.reader(io.StringIO(root.joinpath(fname).read_text())))
        assert sorted(r[1] for r in rows) == sorted(k for k, v in gt["videos"].items() if v["split"] == split)
        for tid, vid, url in rows:
            assert gt["videos"][vid]["task_id"] == tid
            ann = list(csv.reader(io.StringIO(root.joinpath("annotations", f"{tid}_{vid}.csv").read_text())))
            steps = gt["videos"][vid]["steps"]
            assert len(ann) == len(steps)
            for (k, s, e), st in zip(ann, steps):
                assert 1 <= int(k) <= len(tasks[tid])
                assert tasks[tid][int(k) - 1] == gt["steps"][str(st["step_id"])]
                assert (float(s), float(e)) == (st["start"], st["end"])


def test_msrvtt_formats_and_hard_distractors(corpus, gt):
    ann = corpus / "annotations"
    js = list(csv.DictReader(io.StringIO((ann / "MSRVTT_JSFUSION_test.csv").read_text())))
    mc = list(csv.DictReader(io.StringIO((ann / "MSR_MC_test.csv").read_text()), delimiter="\t"))
    assert len(js) == len(mc) == len(gt["msrvtt"]) == 4
    assert list(js[0]) == ["key", "vid_key", "video_id", "sentence"]
    assert {"key", "vid_key", "video_id", "a1", "a2", "a3", "a4", "a5", "answer"} <= set(mc[0])
    val = {k for k, v in gt["videos"].items() if v["split"] == "val"}
    for r, q, c in zip(js, mc, gt["msrvtt"]):
        assert r["video_id"] == q["video_id"] == c["video_id"] and r["vid_key"] == "msr" + c["video_id"][5:]
        assert c["source"] in val
        assert r["sentence"] == gt["steps"][str(c["step_id"])]
        cands = [q[f"a{i}"] for i in range(1, 6)]
        assert len(set(cands)) == 5 and cands[int(q["answer"])] == r["sentence"]


def test_mc_distractors_are_hard_for_every_step():
    world = build_world(SynthConfig())
    rng = np.random.default_rng(0)
    for step in world.steps.values():
        true, *wrong = _mc_candidates(step, rng)
        assert true == step.sentence and len(set(wrong)) == 4 and true not in wrong
        obj = f"the {step.colour} {step.shape}"
        assert sum(obj in w for w in wrong) >= 2  # same object, other action
        assert sum(obj not in w for w in wrong) >= 2  # same action, other object
        assert any(step.colour in w and step.shape not in w for w in wrong)
        assert any(step.shape in w and step.colour not in w for w in wrong)


def test_interlink_tsv_and_splits(corpus, gt):
    lines = (corpus / "annotations" / "howto_interlink7m.tsv").read_text().splitlines()
    assert lines[0] == "video\tclips"
    splits = json.loads((corpus / "splits.json").read_text())
    assert sorted(splits["train"] + splits["val"]) == sorted(gt["videos"]) and not set(splits["train"]) & set(
        splits["val"])
    assert len(splits["val"]) == 2  # round(6 * 0.34)
    assert len(lines) - 1 == len(splits["train"])
    for ln in lines[1:]:
        path, clips = ln.split("\t")
        vid = Path(path).stem
        assert vid in splits["train"]
        clips = json.loads(clips)
        assert [c["clip_id"] for c in clips] == [str(i) for i in range(len(gt["videos"][vid]["steps"]))]
        for c, st in zip(clips, gt["videos"][vid]["steps"]):
            m = re.fullmatch(r"(\d+):(\d\d):(\d\d) - (\d+):(\d\d):(\d\d)", c["clip"])
            h0, m0, s0, h1, m1, s1 = map(int, m.groups())
            assert (h0 * 3600 + m0 * 60 + s0, h1 * 3600 + m1 * 60 + s1) == (st["start"], st["end"])
            assert gt["steps"][str(st["step_id"])] in c["caption"]


# --- ground truth -------------------------------------------------------------------------------------------------


def test_ground_truth_is_consistent(gt):
    assert gt["version"] == 1 and gt["fps"] == 2 and gt["size"] == 32 and gt["config"]["seed"] == 3
    assert sorted(map(int, gt["steps"])) == list(range(1, len(gt["steps"]) + 1))
    for t in gt["tasks"].values():
        assert 4 <= len(t["steps"]) <= 6 and len(set(t["steps"])) == len(t["steps"])
    for v in gt["videos"].values():
        canon = gt["tasks"][v["task_id"]]["steps"]
        orders = [s["order"] for s in v["steps"]]
        assert orders == sorted(set(orders)) and len(orders) >= len(canon) - 1
        prev_end = 0.0
        for s in v["steps"]:
            assert canon[s["order"]] == s["step_id"]
            assert prev_end <= s["start"] < s["end"] <= v["duration"]
            prev_end = s["end"]
        prev_end = 0.0
        for ln in v["narration"]:
            assert prev_end - 1e-6 <= ln["start"] <= ln["end"] <= v["duration"]
            prev_end = ln["end"]
            assert ln["relevant"] == (ln["kind"] == "step") == (ln["step"] is not None)
            if ln["relevant"]:
                assert 0 <= ln["step"] < len(v["steps"])
            else:
                assert ln["kind"] in ("chatter", "filler")


def _dedup_rolling(cap: dict) -> list[str]:
    """MMPT's rule, simplified: drop a line that is a suffix of the previous; strip an overlap with its tail."""
    out: list[str] = []
    for t in cap["text"]:
        if out and out[-1].endswith(t):
            continue
        if out:
            prev = out[-1].split()
            words = t.split()
            for k in (3, 2, 1):
                if len(words) > k and prev[-k:] == words[:k]:
                    words = words[k:]
                    break
            t = " ".join(words)
        out.append(t)
    return out


def test_rolling_captions_only_in_captions_and_undo_to_the_clean_lines():
    cfg = SynthConfig(**{**TINY, "videos": 20, "rolling_rate": 0.6})
    _, _, narr, captions, noise = annotate(cfg)
    assert noise["rolling_line_frac"] > 0.3
    for (vid, cap), lines in zip(captions.items(), narr):
        clean = [ln["text"] for ln in lines]
        assert len(cap["text"]) >= len(clean)
        # Stripping a 1-3 word overlap can also hit a genuine repetition; allow that rare case.
        got = _dedup_rolling(cap)
        assert sum(a != b for a, b in zip(got, clean)) <= 1 and len(got) == len(clean)
    clean_cfg = SynthConfig(**{**TINY, "videos": 20}).clean()
    _, _, narr, captions, noise = annotate(clean_cfg)
    assert noise["rolling_line_frac"] == 0
    for cap, lines in zip(captions.values(), narr):
        assert cap["text"] == [ln["text"] for ln in lines]


# --- noise dials ----------------------------------------------------------------------------------------------------


def test_clean_narration_is_exact():
    cfg = SynthConfig(videos=60, seed=1).clean()
    world, plans, narr, _, noise = annotate(cfg)
    assert noise["irrelevant_frac"] == 0 and noise["unnarrated_frac"] == 0
    assert noise["offset_std"] < 0.01 and noise["relevant_line_midpoint_in_step_frac"] == 1.0
    for p, lines in zip(plans, narr):
        assert all(ln["relevant"] for ln in lines)
        by_step: dict[int, list] = {}
        for ln in lines:
            by_step.setdefault(ln["step"], []).append(ln)
        assert sorted(by_step) == list(range(len(p["steps"])))
        for k, lns in by_step.items():
            st = p["steps"][k]
            assert " ".join(ln["text"] for ln in lns) == world.steps[st["step_id"]].sentence
            mid = (lns[0]["start"] + lns[-1]["end"]) / 2
            assert abs(mid - (st["start"] + st["end"]) / 2) <= 0.011


def test_realised_noise_tracks_the_dials():
    default = annotate(SynthConfig(videos=300, seed=2))[4]
    assert abs(default["offset_std"] - 3.0) < 0.5
    assert 0.03 < default["offset_abs_gt5_frac"] < 0.15  # some narration lands more than 5 s away
    assert abs(default["irrelevant_frac"] - 0.3) < 0.04
    assert abs(default["unnarrated_frac"] - 0.15) < 0.04
    assert abs(default["filler_rate"] - 0.1) < 0.03
    assert 0.45 < default["background_frac"] < 0.7
    assert 2.0 < default["mean_line_s"] < 4.0 and 2.0 < default["words_per_second"] < 2.9
    heavy = annotate(SynthConfig(videos=300, seed=2, offset_std=6.0, irrelevant_frac=0.5, unnarrated_frac=0.3))[4]
    assert heavy["offset_std"] > default["offset_std"] + 2
    assert heavy["irrelevant_frac"] > default["irrelevant_frac"] + 0.15
    assert heavy["unnarrated_frac"] > default["unnarrated_frac"] + 0.1
    assert heavy["relevant_line_midpoint_in_step_frac"] < default["relevant_line_midpoint_in_step_frac"]


def _tail_mass(cfg: SynthConfig) -> float:
    _, plans, narr, _, _ = annotate(cfg)
    offs = []
    for p, lines in zip(plans, narr):
        for k, st in enumerate(p["steps"]):
            lns = [ln for ln in lines if ln["step"] == k]
            if lns:
                offs.append((lns[0]["start"] + lns[-1]["end"]) / 2 - (st["start"] + st["end"]) / 2)
    offs = np.asarray(offs)
    return float((np.abs(offs) > 2.5 * offs.std()).mean())


def test_offsets_are_heavy_tailed():
    """Student-t offsets put about twice a Gaussian's mass (1.2%) beyond 2.5 std."""
    base = dict(videos=400, seed=5, irrelevant_frac=0.0)
    heavy, gauss = _tail_mass(SynthConfig(**base)), _tail_mass(SynthConfig(**base, offset_tail_df=0.0))
    assert gauss < 0.016 and heavy > 1.6 * gauss


def test_chatter_space_is_large_and_paraphrases_vary():
    rng = np.random.default_rng(0)
    sents = {T.chatter_sentence(rng) for _ in range(5000)}
    assert len(sents) > 2000 and T.chatter_space_size() > 50_000
    canon = T.canonical_sentence("red", "square", "left")
    assert canon == "move the red square to the left"
    assert T.paraphrase("red", "square", "left", rng, 0.0) == canon
    para = {T.paraphrase("red", "square", "left", rng, 1.0) for _ in range(300)}
    assert canon not in para and len(para) > 50
    assert all("red" in s and "left" in s for s in para)
    words, n = T.add_fillers(canon.split(), rng, 0.0)
    assert words == canon.split() and n == 0


# --- CLI ---------------------------------------------------------------------------------------------------------


def test_cli_prints_summary_and_rejects_bad_values(tmp_path, capsys):
    from vidlang.cli import main as vidlang_main

    rc = main([str(tmp_path / "o"), "--videos", "2", "--seed", "1", "--size", "32", "--fps", "2",
               "--min-duration", "20", "--max-duration", "24", "--step-min", "2", "--step-max", "3",
               "--clean", "--workers", "1", "--no-progress", "--msrvtt-clips", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("synth: 2 videos") and "irrelevant lines 0.0%" in out
    gt = json.loads((tmp_path / "o" / "ground_truth.json").read_text())
    assert gt["config"]["offset_std"] == 0 and gt["config"]["irrelevant_frac"] == 0
    assert vidlang_main(["synth", str(tmp_path / "bad"), "--size", "33"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "size" in err and "33" in err
    yml = tmp_path / "synth.yaml"
    yml.write_text("videos: 1\nofset_std: 2\n")
    assert vidlang_main(["synth", str(tmp_path / "bad"), "--config", str(yml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(yml) in err and "ofset_std" in err and "offset_std" in err
    assert not (tmp_path / "bad").exists()
