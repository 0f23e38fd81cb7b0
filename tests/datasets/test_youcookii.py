import copy

import pytest

from tests.datasets._util import expect_format_error, write_json
from vidlang.datasets import YouCookSegment, YouCookVideo, read_youcookii

VALID = {"database": {
    "xHr8X2Wpmno": {"duration": 206.86, "subset": "validation", "recipe_type": "226",
                    "annotations": [{"segment": [47, 60], "id": 0, "sentence": "pick the ends off the verdalago"},
                                    {"segment": [62.5, 70], "id": 1, "sentence": "chop the onion"}],
                    "video_url": "https://www.youtube.com/watch?v=xHr8X2Wpmno"},
    "abc": {"duration": 10, "subset": "training", "recipe_type": 101, "annotations": []},
}}


def test_parses_records(tmp_path):
    videos = read_youcookii(write_json(tmp_path / "yc.json", VALID))
    assert videos == [
        YouCookVideo("xHr8X2Wpmno", 206.86, "validation", "226",
                     (YouCookSegment(47.0, 60.0, "pick the ends off the verdalago", 0),
                      YouCookSegment(62.5, 70.0, "chop the onion", 1)),
                     "https://www.youtube.com/watch?v=xHr8X2Wpmno"),
        YouCookVideo("abc", 10.0, "training", "101", (), None),
    ]
    start, end, sentence, seg_id = videos[0].segments[1]  # segments unpack as (start, end, sentence, id)
    assert (start, end, sentence, seg_id) == (62.5, 70.0, "chop the onion", 1)


def _ann(d, **kv):
    d["database"]["xHr8X2Wpmno"]["annotations"][1].update(kv)


@pytest.mark.parametrize("mutation, entry, fragment", [
    (lambda d: d.pop("database"), None, "missing key 'database'"),
    (lambda d: d["database"]["abc"].pop("duration"), "abc", "missing key 'duration'"),
    (lambda d: d["database"]["abc"].update(duration="10"), "abc", "duration must be a number"),
    (lambda d: d["database"]["abc"].update(duration=0), "abc", "must be positive"),
    (lambda d: d["database"]["abc"].update(subset="train"), "abc", "subset 'train'"),
    (lambda d: _ann(d, segment=[70, 62.5]), "xHr8X2Wpmno annotation 1", "starts after it ends"),
    (lambda d: _ann(d, segment=[-1, 5]), "xHr8X2Wpmno annotation 1", "negative"),
    (lambda d: _ann(d, segment=[1, 2, 3]), "xHr8X2Wpmno annotation 1", "[start, end]"),
    (lambda d: _ann(d, segment=[1, float("nan")]), "xHr8X2Wpmno annotation 1", "segment end is nan"),
    (lambda d: _ann(d, id=0), "xHr8X2Wpmno annotation 1", "duplicate segment id 0"),
    (lambda d: _ann(d, sentence=""), "xHr8X2Wpmno annotation 1", "sentence is empty"),
    (lambda d: d["database"]["xHr8X2Wpmno"]["annotations"][0].pop("sentence"), "xHr8X2Wpmno annotation 0",
     "missing key 'sentence'"),
])
def test_malformed(tmp_path, mutation, entry, fragment):
    data = copy.deepcopy(VALID)
    mutation(data)
    expect_format_error(read_youcookii, write_json(tmp_path / "yc.json", data), entry, fragment)
