import copy

import pytest

from tests.datasets._util import expect_format_error, write_json
from vidlang.datasets import CaptionLine, read_howto100m_captions
from vidlang.datasets.howto100m import CaptionLine as CaptionLineFromModule

VALID = {
    "vidA": {"start": [0.0, 3.2], "end": [3.5, 7.1], "text": ["so today we're", "going to make"]},
    "vidB": {"start": [1], "end": [1], "text": [""], "extra": "ignored"},
}


def test_reads_lines_in_order(tmp_path):
    out = read_howto100m_captions(write_json(tmp_path / "raw_caption.json", VALID))
    assert CaptionLine is CaptionLineFromModule
    assert out == {"vidA": [CaptionLine(0.0, 3.5, "so today we're"), CaptionLine(3.2, 7.1, "going to make")],
                   "vidB": [CaptionLine(1.0, 1.0, "")]}
    assert isinstance(out["vidB"][0].start, float)
    with pytest.raises(AttributeError):
        out["vidA"][0].start = 1.0  # frozen


def test_video_ids_filter(tmp_path):
    path = write_json(tmp_path / "c.json", VALID)
    assert list(read_howto100m_captions(path, ["vidB"])) == ["vidB"]
    expect_format_error(lambda p: read_howto100m_captions(p, ["nope"]), path, "nope", "not found")


def _mutate(fn):
    data = copy.deepcopy(VALID)
    fn(data)
    return data


@pytest.mark.parametrize("mutation, entry, fragment", [
    (lambda d: d["vidA"].pop("end"), "vidA", "missing key 'end'"),
    (lambda d: d["vidA"]["text"].append("x"), "vidA", "different lengths"),
    (lambda d: d["vidA"]["start"].__setitem__(1, "3.2"), "vidA", "start[1] must be a number"),
    (lambda d: d["vidA"]["start"].__setitem__(1, True), "vidA", "start[1] must be a number"),
    (lambda d: d["vidA"]["text"].__setitem__(0, 5), "vidA", "text[0] must be a string"),
    (lambda d: d["vidA"]["start"].__setitem__(1, 9.0), "vidA", "starts after it ends"),
    (lambda d: d["vidA"]["start"].__setitem__(0, -1.0), "vidA", "negative"),
    (lambda d: d["vidA"]["end"].__setitem__(0, float("nan")), "vidA", "end[0] is nan"),
    (lambda d: d.__setitem__("vidC", [1, 2]), "vidC", "must be a JSON object"),
])
def test_malformed(tmp_path, mutation, entry, fragment):
    path = write_json(tmp_path / "raw_caption.json", _mutate(mutation))
    expect_format_error(read_howto100m_captions, path, entry, fragment)


def test_duplicate_video_and_bad_json_and_missing(tmp_path):
    dup = tmp_path / "dup.json"
    dup.write_text('{"v1": {"start": [], "end": [], "text": []}, "v1": {"start": [], "end": [], "text": []}}')
    expect_format_error(read_howto100m_captions, dup, "v1", "duplicate key 'v1'")
    bad = tmp_path / "bad.json"
    bad.write_text('{"v1": {"start": [0.0,], }')
    expect_format_error(read_howto100m_captions, bad, "line 1", "not valid JSON")
    csv_file = tmp_path / "oops.json"
    csv_file.write_text("start,end,text\n0,1,hello\n")
    expect_format_error(read_howto100m_captions, csv_file, "line 1", "not valid JSON")
    expect_format_error(read_howto100m_captions, tmp_path / "absent.json", None, "file not found")
    top = write_json(tmp_path / "list.json", [1, 2])
    expect_format_error(read_howto100m_captions, top, None, "the top level must be a JSON object")
