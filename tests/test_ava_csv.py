import random
from pathlib import Path

import pytest

from avaforge.formats.ava_csv import (
    AvaRow,
    check_video_id,
    format_row,
    parse_rows,
    read_excluded,
    read_rows,
    video_id_from_filename,
    write_excluded,
    write_rows,
)
from avaforge.formats.errors import FormatError
from tests.reference_data import ava_csv_bytes, ava_excluded_bytes, ava_rows


def test_ava_release_csv_round_trips_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "ava.csv"
    src.write_bytes(ava_csv_bytes(ava_rows(seed=0)))
    rows = read_rows(src)
    # the first row of mmaction2's AVA sample: "0.670" must read as 0.67 and be written back as "0.670"
    assert AvaRow("0f39OWEqJ24", 902, 0.031, 0.162, 0.670, 0.995, 12, 0) in rows
    write_rows(tmp_path / "out.csv", rows)
    assert (tmp_path / "out.csv").read_bytes() == src.read_bytes()


def test_unsorted_ground_truth_round_trips_as_the_same_rows(tmp_path: Path) -> None:
    """mmaction2's evaluation gt lists persons in detection order, not AVA's; the writer sorts them."""
    shuffled = ava_rows(seed=1)
    random.Random(1).shuffle(shuffled)
    src = tmp_path / "gt.csv"
    src.write_bytes(ava_csv_bytes(shuffled))
    rows = read_rows(src)
    assert len(rows) == len(shuffled)
    write_rows(tmp_path / "out.csv", rows)
    assert sorted(read_rows(tmp_path / "out.csv")) == sorted(rows)
    assert sorted((tmp_path / "out.csv").read_text().splitlines()) == sorted(src.read_text().splitlines())
    assert (tmp_path / "out.csv").read_bytes() == ava_csv_bytes(ava_rows(seed=1))  # AVA's order


def test_excluded_timestamps_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "ex.csv"
    src.write_bytes(ava_excluded_bytes([("_-Z6wFjXtGQ", 902), ("0f39OWEqJ24", 903)]))
    entries = read_excluded(src)
    assert entries == [("0f39OWEqJ24", 903), ("_-Z6wFjXtGQ", 902)]  # ASCII order: '0' < '_'
    write_excluded(tmp_path / "out.csv", entries)
    assert (tmp_path / "out.csv").read_bytes() == src.read_bytes()
    write_excluded(tmp_path / "empty.csv", [])
    assert (tmp_path / "empty.csv").read_bytes() == b""


def test_rows_written_with_three_decimals_and_four_digit_seconds(tmp_path: Path) -> None:
    row = AvaRow("cam_01.part2", 7, 0.14218725000000002, 0.44999999999999996, 0.17187475, 0.575, 3, 0)
    # each corner rounded to 3 decimals (0.14218725... -> 0.142, 0.44999... -> 0.450), the second as 4 digits
    assert format_row(row) == "cam_01.part2,0007,0.142,0.450,0.172,0.575,3,0"


@pytest.mark.parametrize("name", ["1", "2DUITARAsWQ", "my_video.v2", "_-Z6wFjXtGQ", "a-b_c.d"])
def test_video_ids_with_underscores_dots_and_non_integers_survive(tmp_path: Path, name: str) -> None:
    """Seed bug: names were split on '_' and '.' and parsed as integers."""
    rows = [AvaRow(name, 3, 0.1, 0.2, 0.3, 0.4, 1, 0)]
    write_rows(tmp_path / "a.csv", rows)
    assert read_rows(tmp_path / "a.csv") == rows


@pytest.mark.parametrize("bad", ["", "a,b", "a/b", "../x", ".hidden", "sp ace", "x" * 129])
def test_invalid_video_ids_rejected(bad: str) -> None:
    with pytest.raises(FormatError):
        check_video_id(bad)


def test_video_id_from_filename() -> None:
    assert video_id_from_filename("/x/My Clip (1).mp4") == "My_Clip__1_"
    assert video_id_from_filename("cam_01.part2.mov") == "cam_01.part2"


def test_writer_refuses_minus_one_person_id(tmp_path: Path) -> None:
    """Seed bug: untracked boxes got id -1 and reached the csv."""
    with pytest.raises(FormatError, match="person id -1"):
        write_rows(tmp_path / "a.csv", [AvaRow("v", 2, 0.1, 0.1, 0.2, 0.2, 1, -1)])
    assert not (tmp_path / "a.csv").exists()


def test_writer_refuses_inverted_and_out_of_range_boxes(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="x1>=x2"):
        write_rows(tmp_path / "a.csv", [AvaRow("v", 2, 0.5, 0.1, 0.2, 0.2, 1, 0)])
    with pytest.raises(FormatError, match="not within"):
        write_rows(tmp_path / "a.csv", [AvaRow("v", 2, 0.1, 0.1, 1.2, 0.2, 1, 0)])


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    write_rows(path, [AvaRow("v", 2, 0.1, 0.1, 0.2, 0.2, 1, 0)])
    before = path.read_bytes()
    with pytest.raises(FormatError):
        write_rows(path, [AvaRow("v", 2, 0.1, 0.1, 0.2, 0.2, 1, -1)])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_truncated_csv_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("v,0002,0.1,0.1,0.2,0.2,1,0\nv,0003,0.1,0.1")
    with pytest.raises(FormatError) as exc:
        read_rows(path)
    assert f"{path}:2" in str(exc.value)
    assert "truncated" in str(exc.value)


def test_non_utf8_and_missing_and_bad_fields(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("vidé,0002,0.1,0.1,0.2,0.2,1,0\n".encode("latin-1"))
    with pytest.raises(FormatError, match="not UTF-8"):
        read_rows(path)
    with pytest.raises(FormatError, match="file not found"):
        read_rows(tmp_path / "nope.csv")
    rows, problems = parse_rows("v,02,0.1,0.1,0.2,0.2,stand,0\n\nv,2,nan,0.1,0.2,0.2,1,0\n", "t.csv")
    assert rows == []
    # line 1: action "stand", line 2: blank, line 3: nan corner (and an unpadded second, which is allowed)
    assert [p.where for p in problems] == ["t.csv:1", "t.csv:2", "t.csv:3"]
    assert "action_id 'stand' is not an integer" in problems[0].message


def test_empty_file_reads_as_no_rows(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    assert read_rows(tmp_path / "e.csv") == []
