import copy

import pytest

from tests.datasets._util import expect_format_error, write_json
from vidlang.datasets import (MsrvttMCQuestion, MsrvttPair, MsrvttSentence, MsrvttVideo, read_msrvtt_data,
                              read_msrvtt_jsfusion, read_msrvtt_mc)

JSF = ("key,vid_key,video_id,sentence\n"
       "ret0,msr9770,video9770,a person is connecting something to system\n"
       'ret1,msr7,video7,"a man, smiling, talks"\n')


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_jsfusion_parses(tmp_path):
    pairs = read_msrvtt_jsfusion(_write(tmp_path, "jsf.csv", JSF))
    assert pairs == [MsrvttPair("ret0", "msr9770", "video9770", "a person is connecting something to system"),
                     MsrvttPair("ret1", "msr7", "video7", "a man, smiling, talks")]


@pytest.mark.parametrize("text, entry, fragment", [
    ("key,vid_key,sentence\nret0,msr1,hello\n", "header", "missing column(s) ['video_id']"),
    (JSF + "ret0,msr8,video8,again\n", "line 4 key ret0", "duplicate key 'ret0'"),
    (JSF + "ret2,msr8,video9,mismatch\n", "line 4 key ret2", "does not name video_id 'video9'"),
    (JSF + "ret2,msr8,vid8,bad id\n", "line 4 key ret2", "not of the form video<N>"),
    (JSF + "ret2,msr8,video8\n", "line 4", "expected 4 fields, got 3"),
    (JSF + "ret2,msr8,video8,\n", "line 4 key ret2", "empty sentence"),
    ("", "line 1", "empty file"),
    ("\x00\x01binary\x00", "header", "missing column"),
])
def test_jsfusion_malformed(tmp_path, text, entry, fragment):
    expect_format_error(read_msrvtt_jsfusion, _write(tmp_path, "jsf.csv", text), entry, fragment)


MC = ("key\tvid_key\tvideo_id\ta1\ta2\ta3\ta4\ta5\tanswer\textra\n"
      "mc0\tmsr7960\tvideo7960\ta dog runs\ta cat sleeps\ta man cooks\ta car drives\ta girl sings\t2\tz\n"
      "mc1\tmsr1\tvideo1\tone\ttwo\tthree\tfour\tfive\t0\t\n")


def test_mc_parses_tab_separated_with_extra_columns(tmp_path):
    qs = read_msrvtt_mc(_write(tmp_path, "MSR_MC_test.csv", MC))
    assert qs[0] == MsrvttMCQuestion("msr7960", "video7960",
                                     ("a dog runs", "a cat sleeps", "a man cooks", "a car drives", "a girl sings"),
                                     2, "mc0")
    assert qs[1].answer == 0 and qs[1].candidates[4] == "five"
    # without the optional key column
    minimal = "vid_key\ta1\ta2\ta3\ta4\ta5\tanswer\nmsr3\tq\tw\te\tr\tt\t4\n"
    assert read_msrvtt_mc(_write(tmp_path, "m.csv", minimal)) == [
        MsrvttMCQuestion("msr3", "video3", ("q", "w", "e", "r", "t"), 4, None)]


@pytest.mark.parametrize("text, entry, fragment", [
    (MC.replace("\t", ","), "header", "TAB-separated"),
    (MC + "mc2\tmsr2\tvideo2\ta\tb\tc\td\te\t5\tx\n", "line 4 vid_key msr2", "answer = 5 is out of range"),
    (MC + "mc2\tmsr2\tvideo2\ta\tb\tc\td\te\t-1\tx\n", "line 4 vid_key msr2", "answer = -1 is out of range"),
    (MC + "mc2\tmsr2\tvideo2\ta\tb\tc\td\te\ttwo\tx\n", "line 4 vid_key msr2", "answer must be an integer"),
    (MC + "mc2\tvideo2\tvideo2\ta\tb\tc\td\te\t1\tx\n", "line 4 vid_key video2", "not of the form msr<N>"),
    (MC + "mc2\tmsr2\tvideo2\ta\t\tc\td\te\t1\tx\n", "line 4 vid_key msr2", "candidate a2 is empty"),
])
def test_mc_malformed(tmp_path, text, entry, fragment):
    expect_format_error(read_msrvtt_mc, _write(tmp_path, "MSR_MC_test.csv", text), entry, fragment)


DATA = {"info": {}, "videos": [
    {"category": 9, "url": "https://y/a", "video_id": "video0", "start time": 137.72, "end time": 149.44,
     "split": "train", "id": 0},
    {"video_id": "video1", "split": "test"}],
    "sentences": [{"caption": "a car drives", "video_id": "video0", "sen_id": 0},
                  {"caption": "a man talks", "video_id": "video1", "sen_id": 1},
                  {"caption": "a road", "video_id": "video0", "sen_id": 2}]}


def test_data_json_parses(tmp_path):
    data = read_msrvtt_data(write_json(tmp_path / "MSRVTT_data.json", DATA))
    assert data.videos["video0"] == MsrvttVideo("video0", "train", 9, "https://y/a", 137.72, 149.44)
    assert data.videos["video1"] == MsrvttVideo("video1", "test")
    assert data.sentences[1] == MsrvttSentence("video1", "a man talks", 1)
    assert data.captions_by_video() == {"video0": ["a car drives", "a road"], "video1": ["a man talks"]}


@pytest.mark.parametrize("mutation, entry, fragment", [
    (lambda d: d["sentences"][2].update(video_id="video5"), "sentences[2]", "'video5' is not listed"),
    (lambda d: d["videos"].append({"video_id": "video0"}), "video0", "duplicate video_id"),
    (lambda d: d["sentences"][2].update(sen_id=1), "sentences[2]", "duplicate sen_id 1"),
    (lambda d: d["videos"][0].update({"end time": 100.0}), "video0", "starts after it ends"),
    (lambda d: d["sentences"][0].pop("caption"), "sentences[0]", "missing key 'caption'"),
    (lambda d: d.pop("sentences"), None, "missing key 'sentences'"),
])
def test_data_json_malformed(tmp_path, mutation, entry, fragment):
    data = copy.deepcopy(DATA)
    mutation(data)
    expect_format_error(read_msrvtt_data, write_json(tmp_path / "MSRVTT_data.json", data), entry, fragment)
