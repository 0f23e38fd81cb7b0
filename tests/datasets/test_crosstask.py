import numpy as np
import pytest

from tests.datasets._util import expect_format_error
from vidlang.datasets import CrossTaskSegment, crosstask_targets, read_crosstask

TASKS = ("23521\nMake Jello Shots\nhttp://www.wikihow.com/Make-Jello-Shots\n3\n"
         "pour water,pour jello powder,stir mixture\n\n"
         "59684\nBuild Simple Floating Shelves\nhttp://www.wikihow.com/Build-Floating-Shelves\n2\n"
         "cut shelf,drill shelf\n\n")
RELATED = "11111\nMake Tea\nhttp://w/tea\n1\nboil water\n\n"


def make_release(root, tasks=TASKS, videos=None, val=None, annotations=None, related=RELATED):
    (root / "annotations").mkdir(parents=True)
    (root / "tasks_primary.txt").write_text(tasks)
    if related is not None:
        (root / "tasks_related.txt").write_text(related)
    (root / "videos.csv").write_text(videos if videos is not None else
                                     "23521,a_b-c,https://y/1\n23521,vid2,https://y/2\n"
                                     "59684,vid3,https://y/3\n11111,vid9,https://y/9\n")
    (root / "videos_val.csv").write_text(val if val is not None else "23521,vid2,https://y/2\n")
    anns = annotations if annotations is not None else {
        "23521_a_b-c.csv": "1,2.5,5.2\n3,6,9\n", "23521_vid2.csv": "2,0,1.5\n", "59684_vid3.csv": ""}
    for name, text in anns.items():
        (root / "annotations" / name).write_text(text)
    return root


def test_parses_release(tmp_path):
    rel = read_crosstask(make_release(tmp_path / "crosstask_release"))
    assert rel.primary_tasks == ["23521", "59684"]
    assert rel.tasks["23521"].steps == ("pour water", "pour jello powder", "stir mixture")
    assert rel.tasks["23521"].name == "Make Jello Shots"
    assert not rel.tasks["11111"].primary
    assert [(v.task_id, v.video_id) for v in rel.val] == [("23521", "vid2")]
    assert [(v.task_id, v.video_id) for v in rel.train] == [("23521", "a_b-c"), ("59684", "vid3"),
                                                              ("11111", "vid9")]
    # video ids keep their underscores
    assert rel.annotations[("23521", "a_b-c")] == (CrossTaskSegment(1, 2.5, 5.2), CrossTaskSegment(3, 6.0, 9.0))
    assert rel.annotations[("59684", "vid3")] == ()
    y = rel.targets("23521", "a_b-c", length=8)
    expected = np.zeros((8, 3), dtype=np.uint8)
    expected[2:6, 0] = 1  # floor(2.5)=2 .. ceil(5.2)=6
    expected[6:8, 2] = 1  # [6, 9) clipped at T=8
    np.testing.assert_array_equal(y, expected)
    assert y.dtype == np.uint8


def test_targets_overlap_keeps_both_columns_and_rejects_bad_step():
    segs = [CrossTaskSegment(1, 0.0, 3.0), CrossTaskSegment(2, 2.2, 4.0)]
    y = crosstask_targets(segs, n_steps=2, length=5)
    np.testing.assert_array_equal(y, [[1, 0], [1, 0], [1, 1], [0, 1], [0, 0]])
    with pytest.raises(ValueError):
        crosstask_targets([CrossTaskSegment(3, 0, 1)], n_steps=2, length=5)


@pytest.mark.parametrize("kwargs, file, entry, fragment", [
    (dict(tasks=TASKS.replace("\n3\n", "\n4\n")), "tasks_primary.txt", "task 23521", "declares 4 steps but lists 3"),
    (dict(tasks=TASKS + TASKS), "tasks_primary.txt", "task 23521", "duplicate task id"),
    (dict(tasks=TASKS.replace("\n3\n", "\nthree\n")), "tasks_primary.txt", "task 23521",
     "number of steps must be an integer"),
    (dict(tasks="23521\nMake Jello Shots\n"), "tasks_primary.txt", "line 1", "5 non-empty lines"),
    (dict(videos="99999,vidX,https://y\n"), "videos.csv", "line 1 task 99999", "unknown task id"),
    (dict(related=None), "videos.csv", "line 4 task 11111", "unknown task id"),
    (dict(videos="23521,vid2\n"), "videos.csv", "line 1", "expected 3 comma-separated fields"),
    (dict(val="23521,vid2,u\n23521,vid2,u\n"), "videos_val.csv", "line 2 video vid2", "duplicate video"),
    (dict(annotations={"23521_ghost.csv": "1,0,1\n"}), "23521_ghost.csv", "video ghost", "not in videos.csv"),
    (dict(annotations={"77777_vid2.csv": "1,0,1\n"}), "77777_vid2.csv", "task 77777", "unknown task id"),
    (dict(annotations={"23521.csv": "1,0,1\n"}), "23521.csv", None, "not <task_id>_<video_id>.csv"),
    (dict(annotations={"23521_vid2.csv": "4,0,1\n"}), "23521_vid2.csv", "line 1", "step = 4 is out of range"),
    (dict(annotations={"23521_vid2.csv": "0,0,1\n"}), "23521_vid2.csv", "line 1", "step = 0 is out of range"),
    (dict(annotations={"23521_vid2.csv": "1,0,1\n2,5,3\n"}), "23521_vid2.csv", "line 2", "starts after it ends"),
    (dict(annotations={"23521_vid2.csv": "1,nan,1\n"}), "23521_vid2.csv", "line 1", "start is nan"),
    (dict(annotations={"23521_vid2.csv": "1,-2,1\n"}), "23521_vid2.csv", "line 1", "negative"),
    (dict(annotations={"23521_vid2.csv": "1,0\n"}), "23521_vid2.csv", "line 1", "expected 3"),
])
def test_malformed(tmp_path, kwargs, file, entry, fragment):
    root = make_release(tmp_path / "crosstask_release", **kwargs)
    path = next(root.rglob(file))
    expect_format_error(read_crosstask, root, entry, fragment)
    with pytest.raises(Exception) as info:
        read_crosstask(root)
    assert str(info.value).startswith(str(path))


def test_task_ids_with_underscores(tmp_path):
    tasks = "t_1\nA\nu\n1\ns1\n\nt_1_b\nB\nu\n1\ns2\n\n"
    root = make_release(tmp_path / "r", tasks=tasks, related=None, videos="t_1,x_y,u\nt_1_b,z,u\nt_1,b_w,u\n",
                        val="", annotations={"t_1_x_y.csv": "1,0,1\n", "t_1_b_z.csv": "1,2,3\n",
                                             "t_1_b_w.csv": "1,4,5\n"})
    rel = read_crosstask(root)
    assert set(rel.annotations) == {("t_1", "x_y"), ("t_1_b", "z"), ("t_1", "b_w")}
    assert rel.annotations[("t_1", "b_w")] == (CrossTaskSegment(1, 4.0, 5.0),)
    assert rel.val == () and len(rel.train) == 3


def test_missing_files(tmp_path):
    root = make_release(tmp_path / "r")
    (root / "videos_val.csv").unlink()
    with pytest.raises(Exception, match="videos_val.csv: file not found"):
        read_crosstask(root)
