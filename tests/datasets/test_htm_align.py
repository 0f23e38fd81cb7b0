import importlib.util
import json
from pathlib import Path

import pytest

from tests.datasets._util import expect_format_error, write_json
from vidlang.datasets import CaptionLine, HtmAlignSentence, match_asr_times, read_htm_align
from vidlang.datasets.htm_align import read_asr_captions

# the layout of TAN's release (htm_align/readme.md): [alignability, start, end, sentence]
VALID = {"-3CEg4y7mQM": [[0, 2.0, 6.5, "hi guys welcome back"],
                         [1, 10.739, 17.535, "add extra virgin olive oil and garlic"]],
         "vidB": []}


def test_reads_entries_in_order(tmp_path):
    out = read_htm_align(write_json(tmp_path / "htm_align.json", VALID))
    assert out["-3CEg4y7mQM"] == [HtmAlignSentence(False, 2.0, 6.5, "hi guys welcome back"),
                                  HtmAlignSentence(True, 10.739, 17.535, "add extra virgin olive oil and garlic")]
    assert out["vidB"] == []
    assert list(read_htm_align(tmp_path / "htm_align.json", ["vidB"])) == ["vidB"]


@pytest.mark.parametrize("row, entry, fragment", [
    ([2, 1.0, 2.0, "x"], "v[0]", "alignable must be 0 or 1"),
    (["1", 1.0, 2.0, "x"], "v[0]", "alignable must be 0 or 1"),
    ([1, 1.0, 2.0], "v[0]", "got 3 fields"),
    ([1, 3.0, 2.0, "x"], "v[0]", "starts after it ends"),
    ([1, "a", 2.0, "x"], "v[0]", "start must be a number"),
    ([1, 1.0, 2.0, 5], "v[0]", "sentence must be a string"),
    ({"start": 1}, "v[0]", "must be a JSON list"),
])
def test_malformed_entries_name_the_entry(tmp_path, row, entry, fragment):
    path = write_json(tmp_path / "h.json", {"v": [row]})
    expect_format_error(read_htm_align, path, entry, fragment)


def test_malformed_top_level_and_missing_video(tmp_path):
    expect_format_error(read_htm_align, write_json(tmp_path / "a.json", [1, 2]), None, "JSON object")
    expect_format_error(read_htm_align, write_json(tmp_path / "b.json", {"v": {"x": 1}}), "v", "JSON list")
    path = write_json(tmp_path / "c.json", VALID)
    expect_format_error(lambda p: read_htm_align(p, ["nope"]), path, "nope", "not found")


def test_match_asr_times_in_order_ignoring_case_and_spaces():
    sents = [HtmAlignSentence(True, 0, 1, "Add  the oil"), HtmAlignSentence(False, 5, 6, "not in captions"),
             HtmAlignSentence(True, 0, 1, "stir"), HtmAlignSentence(True, 0, 1, "stir")]
    caps = [CaptionLine(1.0, 2.0, "add the oil"), CaptionLine(3.0, 4.0, "stir"), CaptionLine(7.0, 8.0, "stir ")]
    assert match_asr_times(sents, caps) == [(1.0, 2.0), None, (3.0, 4.0), (7.0, 8.0)]
    assert match_asr_times(sents[:1], []) == [None]


def test_read_asr_captions_only_named_videos(tmp_path):
    path = write_json(tmp_path / "cap.json", {"a": {"start": [1], "end": [2], "text": ["x"]},
                                              "b": {"start": "bad"}})
    assert read_asr_captions(path, ["a", "zz"]) == {"a": [CaptionLine(1.0, 2.0, "x")]}  # "b" never validated
    expect_format_error(lambda p: read_asr_captions(p, ["b"]), path, "b", "JSON list")


def test_synth_converter_round_trip(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "synth_to_htm_align", Path(__file__).resolve().parents[2] / "tools" / "synth_to_htm_align.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    gt = {"videos": {
        "v0": {"split": "val", "steps": [{"start": 4.0, "end": 9.0}], "narration": [
            {"start": 10.0, "end": 12.0, "text": "cut it", "relevant": True, "step": 0},
            {"start": 12.0, "end": 13.0, "text": "subscribe", "relevant": False, "step": None}]},
        "v1": {"split": "train", "steps": [], "narration": [
            {"start": 1.0, "end": 2.0, "text": "hi", "relevant": False, "step": None}]}}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert tool.main([str(tmp_path / "gt.json"), str(tmp_path / "out")]) == 0
    htm = read_htm_align(tmp_path / "out" / "htm_align.json")
    assert htm == {"v0": [HtmAlignSentence(True, 4.0, 9.0, "cut it"), HtmAlignSentence(False, 12.0, 13.0, "subscribe")]}
    caps = read_asr_captions(tmp_path / "out" / "asr_captions.json", ["v0"])
    assert match_asr_times(htm["v0"], caps["v0"]) == [(10.0, 12.0), (12.0, 13.0)]
