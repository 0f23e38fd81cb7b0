import copy

import numpy as np
import pytest

from tests.datasets._util import expect_format_error, write_json
from vidlang.datasets import CoinStep, CoinVideo, coin_frame_labels, coin_step_vocabulary, read_coin
from vidlang.errors import VidlangError

VALID = {"database": {
    "LtRSn-ntcLY": {"duration": 131.03, "class": "ReplaceCDDriveWithSSD", "subset": "training",
                    "recipe_type": 131, "start": 56.64, "end": 85.71, "video_url": "https://y/LtRSn-ntcLY",
                    "annotation": [{"id": "212", "segment": [60.0, 69.0], "label": "take out the laptop CD drive"},
                                   {"id": "213", "segment": [70.5, 85.2], "label": "install the SSD"}]},
    "v2": {"duration": 5.5, "class": "ReplaceCDDriveWithSSD", "subset": "testing", "recipe_type": "131",
           "annotation": [{"id": 212, "segment": [0, 2], "label": "take out the laptop CD drive"}]},
}}


def test_parses_records_and_vocabulary(tmp_path):
    videos = read_coin(write_json(tmp_path / "COIN.json", VALID))
    assert videos[0] == CoinVideo("LtRSn-ntcLY", 131.03, "ReplaceCDDriveWithSSD", "training", 131,
                                  (CoinStep(212, "take out the laptop CD drive", 60.0, 69.0),
                                   CoinStep(213, "install the SSD", 70.5, 85.2)),
                                  56.64, 85.71, "https://y/LtRSn-ntcLY")
    assert videos[1] == CoinVideo("v2", 5.5, "ReplaceCDDriveWithSSD", "testing", 131,
                                  (CoinStep(212, "take out the laptop CD drive", 0.0, 2.0),))
    assert coin_step_vocabulary(videos) == {212: "take out the laptop CD drive", 213: "install the SSD"}
    clash = CoinVideo("v3", 3.0, "x", "testing", 1, (CoinStep(213, "something else", 0, 1),))
    with pytest.raises(VidlangError, match="step id 213 has two labels"):
        coin_step_vocabulary([*videos, clash])


def _ann(d, **kv):
    d["database"]["LtRSn-ntcLY"]["annotation"][1].update(kv)


@pytest.mark.parametrize("mutation, entry, fragment", [
    (lambda d: d["database"]["v2"].pop("class"), "v2", "missing key 'class'"),
    (lambda d: d["database"]["v2"].update(subset="validation"), "v2", "subset 'validation'"),
    (lambda d: d["database"]["v2"].pop("annotation"), "v2", "missing key 'annotation'"),
    (lambda d: _ann(d, id="0"), "LtRSn-ntcLY annotation 1", "step id = 0 is out of range"),
    (lambda d: _ann(d, id="abc"), "LtRSn-ntcLY annotation 1", "step id must be an integer"),
    (lambda d: _ann(d, segment=[86, 85.2]), "LtRSn-ntcLY annotation 1", "starts after it ends"),
    (lambda d: _ann(d, segment=[float("inf"), 85.2]), "LtRSn-ntcLY annotation 1", "segment start is inf"),
    (lambda d: _ann(d, label=["install"]), "LtRSn-ntcLY annotation 1", "label must be a string"),
    (lambda d: _ann(d, id="212"), "LtRSn-ntcLY annotation 1", "step id 212 labelled 'install the SSD'"),
])
def test_malformed(tmp_path, mutation, entry, fragment):
    data = copy.deepcopy(VALID)
    mutation(data)
    expect_format_error(read_coin, write_json(tmp_path / "COIN.json", data), entry, fragment)


def _video(duration, *steps):
    return CoinVideo("v", duration, "task", "testing", 1, tuple(CoinStep(i, f"s{i}", s, e) for i, s, e in steps))


def test_frame_labels_fractional_bounds_and_length():
    # duration 7.2 -> ceil = 8 frames; [1.5, 3.2) covers floor(1.5)=1 .. ceil(3.2)=4 exclusive.
    y = coin_frame_labels(_video(7.2, (5, 1.5, 3.2)))
    np.testing.assert_array_equal(y, [0, 5, 5, 5, 0, 0, 0, 0])
    assert y.dtype == np.int64
    # integer bounds: [2, 4] covers 2, 3 (end exclusive); a zero-length integer segment covers nothing.
    y = coin_frame_labels(_video(6.0, (3, 2.0, 4.0), (4, 5.0, 5.0)), background=-1)
    np.testing.assert_array_equal(y, [-1, -1, 3, 3, -1, -1])


def test_frame_labels_overlap_later_start_wins_regardless_of_file_order():
    a, b = (1, 0.0, 4.0), (2, 2.5, 6.0)
    expected = [1, 1, 2, 2, 2, 2]
    np.testing.assert_array_equal(coin_frame_labels(_video(6.0, a, b)), expected)
    np.testing.assert_array_equal(coin_frame_labels(_video(6.0, b, a)), expected)


def test_frame_labels_clip_at_duration_fps_and_explicit_length():
    v = _video(4.0, (7, 2.2, 9.0))  # segment runs past the video
    np.testing.assert_array_equal(coin_frame_labels(v), [0, 0, 7, 7])
    # fps 2: frames of 0.5 s; [2.2, 9) -> floor(4.4)=4 .. 8
    np.testing.assert_array_equal(coin_frame_labels(v, fps=2), [0, 0, 0, 0, 7, 7, 7, 7])
    # length from the feature store (one row shorter / longer than ceil(duration))
    np.testing.assert_array_equal(coin_frame_labels(v, length=3), [0, 0, 7])
    np.testing.assert_array_equal(coin_frame_labels(v, length=6), [0, 0, 7, 7, 7, 7])
    with pytest.raises(ValueError):
        coin_frame_labels(v, fps=0)
