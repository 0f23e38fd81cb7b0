import csv
import json

import pytest

from tests.datasets._util import expect_format_error
from vidlang.datasets import InterlinkClip, InterlinkVideo, parse_clip_time, read_interlink

CLIPS = [{"clip_id": "0", "clip": "0:00:00 - 0:00:05", "caption": "a man opens the box"},
         {"clip_id": 1, "clip": "0:00:05.5 - 1:02:03.25", "caption": "he lifts the lid"}]


def write_tsv(path, rows, column="video", quote=False):
    """quote=True: csv-module quoting (pandas' default); False: raw JSON in the field, as a naive writer does."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        lines = [[column, "clips", "n_clips"]]
        lines += [[video, clips if isinstance(clips, str) else json.dumps(clips), "2"] for video, clips in rows]
        for line in lines:
            if quote:
                w.writerow(line)
            else:
                f.write("\t".join(line) + "\n")
    return path


def test_parse_clip_time():
    assert parse_clip_time("0:01:02 - 0:01:07.5") == (62.0, 67.5)
    assert parse_clip_time(" 1:00:00-1:00:01 ") == (3600.0, 3601.0)
    for bad in ("0:61:00 - 0:62:00", "00:05 - 00:06", "0:00:01", "a - b"):
        with pytest.raises(ValueError):
            parse_clip_time(bad)


@pytest.mark.parametrize("column, quote", [("video", False), ("path", True)])
def test_reads_either_video_column_and_quoting(tmp_path, column, quote):
    path = write_tsv(tmp_path / "interlink.tsv", [("how/vid1.mp4", CLIPS), ("vid2.mp4", [])], column, quote)
    assert read_interlink(path) == [
        InterlinkVideo("how/vid1.mp4", (InterlinkClip("0", 0.0, 5.0, "a man opens the box"),
                                        InterlinkClip("1", 5.5, 3723.25, "he lifts the lid"))),
        InterlinkVideo("vid2.mp4", ())]


def _clip(**kv):
    return [CLIPS[0], {**CLIPS[1], **kv}]


@pytest.mark.parametrize("clips, entry, fragment", [
    ("[{not json", "line 3 v.mp4", "'clips' is not valid JSON"),
    ('{"clip_id": "0"}', "line 3 v.mp4", "'clips' must be a JSON list"),
    (_clip(clip="0:00:09 - 0:00:05"), "line 3 v.mp4 clip 1", "starts after it ends"),
    (_clip(clip="5s to 9s"), "line 3 v.mp4 clip 1", "is not 'H:MM:SS - H:MM:SS'"),
    (_clip(clip_id="0"), "line 3 v.mp4 clip 1", "duplicate clip_id '0'"),
    (_clip(caption=""), "line 3 v.mp4 clip 1", "caption is empty"),
    ([CLIPS[0], {"clip_id": "1", "clip": "0:00:05 - 0:00:06"}], "line 3 v.mp4 clip 1", "missing key 'caption'"),
    ('[{"clip_id": "0", "clip": "0:00:00 - 0:00:05", "caption": NaN}]', "line 3 v.mp4", "NaN"),
])
def test_malformed(tmp_path, clips, entry, fragment):
    path = write_tsv(tmp_path / "interlink.tsv", [("ok.mp4", CLIPS), ("v.mp4", clips)])
    expect_format_error(read_interlink, path, entry, fragment)


def test_header_problems(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_text("name\tclips\n")  # no rows: the header alone is checked
    expect_format_error(read_interlink, p, "header", "exactly one of the columns ['video', 'path']")
    p.write_text("video\tpath\tclips\nv\tv\t[]\n")
    expect_format_error(read_interlink, p, "header", "exactly one of the columns")
    p.write_text("video,clips\nv,[]\n")
    expect_format_error(read_interlink, p, "header", "missing column(s) ['clips'] (TAB-separated)")
