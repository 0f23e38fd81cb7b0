"""`vidlang demo --corpus DIR`: a corpus in the public layout that vidlang did not generate.

The corpus here is written by tools/independent_corpus/make_corpus.py, a generator that imports no vidlang code
and was written from the public formats' descriptions alone, so these tests check vidlang's readers,
preprocessing and every evaluation task against files another writer produced (not against vidlang's own synth).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vidlang import pipeline as P
from vidlang.data import FeatureStore
from vidlang.errors import VidlangError

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "tools" / "independent_corpus" / "make_corpus.py"


@pytest.fixture(scope="module")
def public_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("indep") / "corpus"
    subprocess.run([sys.executable, str(GENERATOR), str(root), "--videos", "12", "--clips", "8", "--seed", "5",
                    "--workers", "1"], check=True, capture_output=True)
    return root


def test_layout_errors_name_what_is_missing(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(VidlangError, match="not a corpus in the public layout.*howto100m_captions.json"):
        P.prepare_public_corpus(tmp_path / "out", tmp_path)


def test_splits_come_from_youcookii_subsets(tmp_path):
    ann = {"database": {
        vid: {"duration": 30.0, "subset": subset, "recipe_type": "1", "annotations": [
            {"segment": [1, 5], "id": 0, "sentence": "cut the bread"}]}
        for vid, subset in [("b", "training"), ("a", "training"), ("c", "validation"), ("d", "testing")]}}
    path = tmp_path / "yc2.json"
    path.write_text(json.dumps(ann))
    assert P.splits_from_youcookii(path) == {"train": ["a", "b"], "val": ["c"]}


def test_every_task_runs_on_an_independent_corpus(public_corpus, tmp_path):
    corpus = P.prepare_public_corpus(tmp_path / "run", public_corpus, workers=1)
    splits = json.loads(corpus.splits.read_text())
    assert splits["train"] and splits["val"] and not set(splits["train"]) & set(splits["val"])
    assert corpus.ground_truth is not None and corpus.ground_truth.name == "htm_align.json"
    # one store entry per video file: the generator's videos all decode
    n_videos = len(list((public_corpus / "videos").glob("*.mp4")))
    assert len(FeatureStore(corpus.features)) == n_videos

    res = P.eval_stage("random", tmp_path / "chance.json", corpus)
    assert set(res["tasks"]) == {"clip-youcookii", "clip-msrvtt", "videoqa-msrvtt", "paragraph-youcookii",
                                 "segmentation-coin", "crosstask", "alignment"}
    # the language-model tasks have their data (MSRVTT-QA included); random embeddings cannot generate or score
    assert set(res["skipped"]) == {"caption-youcookii", "caption-msrvtt", "videoqa-open-msrvtt", "videoqa-msrvtt-lm"}
    assert all(why.startswith("the model cannot") for why in res["skipped"].values())
    assert corpus.interlink is not None and corpus.interlink.name == "howto_interlink7m.tsv"
    al = res["tasks"]["alignment"]
    assert "htm_align" in al["protocol"]
    htm = json.loads(corpus.ground_truth.read_text())
    assert al["counts"]["videos"] == len(htm) and al["counts"]["videos_without_asr_match"] == 0


def test_demo_table_says_when_the_alignment_gate_fell_back_to_timestamps():
    from vidlang.demo import gate_note

    def run(hyper: dict) -> dict:
        return {"tasks": {"alignment": {"hyperparameters": hyper}}}

    on = run({"source": "defaults (no training ground truth used)"})
    off = run({"source": "defaults (no training ground truth used); content off: the model failed the label-free "
                         "check", "content_off": True})
    assert gate_note({"a": [on, on], "b": [on]}) == ""
    note = gate_note({"chance": [off], "+ Norton": [on, off], "pretrained": [on]})
    assert "chance, + Norton" in note and "pretrained" not in note
    assert gate_note({"old": [run({"source": "...; content off: the model failed the label-free check"})]})


def test_optional_parts_of_the_layout_become_null(tmp_path):
    root = tmp_path / "c"
    (root / "videos").mkdir(parents=True)
    (root / "annotations").mkdir()
    for name in ("howto100m_captions.json", "youcookii_annotations_trainval.json", "MSRVTT_JSFUSION_test.csv",
                 "COIN.json"):
        (root / "annotations" / name).write_text("{}")
    corpus = P.CorpusPaths(root, tmp_path / "f", tmp_path / "m", tmp_path / "splits.json", None)
    sets = dict(ov.split("=", 1) for ov in corpus.eval_overrides())
    assert sets["data.coin"].endswith("COIN.json") and sets["data.youcookii"].endswith(".json")
    # MSR-VTT CSV without its clips folder, absent files and no alignment truth: skipped, not a crash later
    assert sets["data.msrvtt_jsfusion"] == sets["data.msrvtt_mc"] == sets["data.crosstask"] == "null"
    assert sets["data.msrvtt_qa"] == "null" and corpus.interlink is None
    assert sets["data.ground_truth"] == "null" and "alignment.captions" not in sets


def test_a_malformed_annotation_stops_the_run_before_preprocessing(public_corpus, tmp_path):
    """A broken MSR-VTT CSV is refused before any video is decoded, not after preprocessing and training."""
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(public_corpus / "annotations", root / "annotations")
    (root / "videos").symlink_to(public_corpus / "videos")
    (root / "msrvtt").symlink_to(public_corpus / "msrvtt")
    csv = root / "annotations" / "MSRVTT_JSFUSION_test.csv"
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].replace(",video", ",clip", 1)  # video ids must be video<N>
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(VidlangError, match=r"MSRVTT_JSFUSION_test\.csv"):
        P.prepare_public_corpus(tmp_path / "run", root, workers=1)
    assert not (tmp_path / "run" / "features").exists()
