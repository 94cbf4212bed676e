"""Class order and display names: numeric folders sort by value, names come from a CSV."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from training.data import DataError, load_splits
from training.data.classes import ClassIndex, read_display_names, sort_class_ids


def _image(path: Path, color=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), color).save(path)
    return path


def _class_folders(root: Path, names: list[str]) -> Path:
    for name in names:
        _image(root / name / "a.png")
    return root


def test_integer_folders_sort_numerically_not_lexicographically():
    assert sort_class_ids(["10", "2", "0", "11", "1", "9"]) == ["0", "1", "2", "9", "10", "11"]
    assert sort_class_ids(["00010", "00002", "00000"]) == ["00000", "00002", "00010"]


def test_other_names_sort_by_code_point_like_keras():
    assert sort_class_ids(["dog", "Cat", "10", "2"]) == ["10", "2", "Cat", "dog"]


def test_two_folders_with_the_same_number_are_refused():
    with pytest.raises(DataError, match=r"'1'.*'01'|'01'.*'1'"):
        sort_class_ids(["1", "01", "2"])


def test_load_splits_labels_follow_numeric_order(tmp_path):
    root = _class_folders(tmp_path, ["0", "1", "2", "10", "11", "3"])
    splits = load_splits(root, validation_split=0.0)
    assert splits.class_ids == ("0", "1", "2", "3", "10", "11")
    assert splits.class_names == splits.class_ids  # no names file: names are the ids
    for record in splits.train:
        assert splits.class_ids[record.label] == record.path.parent.name
    assert splits.layout == "class-folders"


def test_display_names_from_class_names_csv(tmp_path):
    root = _class_folders(tmp_path, ["0", "1", "10"])
    (root / "class_names.csv").write_text("ClassId,Name\n0,zero\n1,one\n10,ten\n")
    splits = load_splits(root)
    assert splits.class_ids == ("0", "1", "10")
    assert splits.class_names == ("zero", "one", "ten")


def test_display_names_from_signnames_csv_match_padded_folders(tmp_path):
    root = _class_folders(tmp_path, ["00000", "00001", "00002"])
    (root / "signnames.csv").write_text("ClassId,SignName\n0,Speed limit (20km/h)\n1,Speed limit (30km/h)\n")
    splits = load_splits(root)
    assert splits.class_ids == ("00000", "00001", "00002")
    assert splits.class_names == ("Speed limit (20km/h)", "Speed limit (30km/h)", "00002")


def test_display_names_for_named_folders_and_unmatched_rows(tmp_path, caplog):
    root = _class_folders(tmp_path, ["cat", "dog"])
    (root / "class_names.csv").write_text("ClassId,Name\ncat,Cat\ndog,Dog\nbird,Bird\n")
    splits = load_splits(root)
    assert splits.class_names == ("Cat", "Dog")
    assert "'bird' matches no class folder" in caplog.text


def test_names_file_without_the_right_columns_is_an_error(tmp_path):
    (tmp_path / "class_names.csv").write_text("id,label\n0,zero\n")
    with pytest.raises(DataError, match=r"class_names.csv needs columns ClassId and one of \['Name', 'SignName'\]; "
                       r"found columns \['id', 'label'\]"):
        read_display_names(tmp_path)


def test_resolve_accepts_ids_numbers_and_display_names():
    numeric = ClassIndex.from_folders(["00000", "00001", "00002"], {"2": "Two"})
    assert [numeric.resolve(v) for v in ("00001", "1", "01", "2", "Two", "3", "x")] == [1, 1, 1, 2, 2, None, None]
    named = ClassIndex.from_folders(["dog", "cat"], {"cat": "Felis"})
    assert [named.resolve(v) for v in ("cat", "dog", "Felis", "0", "bird")] == [0, 1, 0, None, None]


def test_two_classes_with_the_same_display_name_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"'Stop' for class folders \['1', '2'\]"):
        ClassIndex.from_folders(["0", "1", "2"], {"0": "Yield", "1": "Stop", "2": "Stop"})
    with pytest.raises(DataError, match=r"'1' for class folders \['0', '1'\]"):  # a name equal to an unnamed id
        ClassIndex.from_folders(["0", "1"], {"0": "1"})
    root = _class_folders(tmp_path, ["a", "b"])
    (root / "class_names.csv").write_text("ClassId,Name\na,Same\nb,Same\n")
    with pytest.raises(DataError, match="'Same'"):
        load_splits(root)
