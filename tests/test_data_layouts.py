"""The three dataset layouts, GTSRB's two CSV flavours, and the validation split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from training.data import DataError, Reason, Record, load_splits
from training.data.split import gtsrb_track, stratified_split, validation_count

KAGGLE_HEADER = "Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"
GT_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"


def _image(path: Path, color=(10, 20, 30), size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _kaggle(root: Path) -> Path:
    for class_id in ("0", "1", "2"):
        for track in range(2):
            for frame in range(3):
                _image(root / "Train" / class_id / f"{int(class_id):05d}_{track:05d}_{frame:05d}.png")
    _image(root / "Meta" / "0.png")  # Kaggle's Meta folder is not a split
    for i in range(4):
        _image(root / "Test" / f"{i:05d}.png")
    (root / "Test.csv").write_text("\n".join([
        KAGGLE_HEADER,
        "8,6,1,1,7,5,2,Test/00000.png",
        "8,6,0,0,8,6,0,Test/00001.png",
        "8,6,0,0,8,6,01,Test/00002.png",   # zero-padded id still means class 1
        "8,6,0,0,8,6,7,Test/00003.png",    # no class 7
        "8,6,0,0,8,6,1,Test/09999.png",    # no such file
    ]) + "\n")
    return root


def test_kaggle_layout_with_test_csv(tmp_path):
    splits = load_splits(_kaggle(tmp_path), validation_split=0.5, seed=1)
    assert splits.layout == "split-folders"
    assert splits.class_ids == ("0", "1", "2")
    assert len(splits.train) + len(splits.valid) == 18
    assert [(r.path.name, r.label, r.roi) for r in splits.test] == [
        ("00000.png", 2, (1, 1, 7, 5)), ("00001.png", 0, (0, 0, 8, 6)), ("00002.png", 1, (0, 0, 8, 6))]
    reasons = {s.path.name: s.reason for s in splits.skipped}
    assert reasons == {"00003.png": Reason.UNKNOWN_CLASS, "09999.png": Reason.MISSING}
    assert "ClassId '7'" in next(s.detail for s in splits.skipped if s.reason is Reason.UNKNOWN_CLASS)


def test_gtsrb_track_frames_never_straddle_the_split(tmp_path):
    splits = load_splits(_kaggle(tmp_path), validation_split=0.5, seed=1)
    tracks = lambda records: {r.path.stem.rsplit("_", 1)[0] for r in records}  # noqa: E731
    assert tracks(splits.train).isdisjoint(tracks(splits.valid))
    assert Counter(r.label for r in splits.valid) == {0: 3, 1: 3, 2: 3}  # one whole track per class


def _gtsrb_original(root: Path, test_table_dir: Path | None = None) -> Path:
    for class_number in range(2):
        folder = root / "Final_Training" / "Images" / f"{class_number:05d}"
        rows = [GT_HEADER]
        for frame in range(3):
            name = f"00000_{frame:05d}.ppm"
            _image(folder / name, size=(10, 12))
            rows.append(f"{name};10;12;1;2;9;11;{class_number}")
        rows.append(f"00000_00099.ppm;10;12;1;2;9;11;{class_number}")  # row without a file
        (folder / f"GT-{class_number:05d}.csv").write_text("\n".join(rows) + "\n")
    images = root / "Final_Test" / "Images"
    for i in range(3):
        _image(images / f"{i:05d}.ppm", size=(10, 12))
    (images / "GT-final_test.test.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n")
    table_dir = test_table_dir or root
    table_dir.mkdir(parents=True, exist_ok=True)
    (table_dir / "GT-final_test.csv").write_text(
        f"{GT_HEADER}\n00000.ppm;10;12;1;1;9;9;1\n00001.ppm;10;12;0;0;10;12;0\n00002.ppm;10;12;0;0;10;12;5\n")
    (root / "signnames.csv").write_text("ClassId,SignName\n0,Speed limit (20km/h)\n1,Speed limit (30km/h)\n")
    return root


def test_gtsrb_original_layout(tmp_path):
    splits = load_splits(_gtsrb_original(tmp_path), validation_split=0.0)
    assert splits.layout == "gtsrb-original"
    assert splits.class_ids == ("00000", "00001")
    assert splits.class_names == ("Speed limit (20km/h)", "Speed limit (30km/h)")
    assert len(splits.train) == 6 and not splits.valid
    assert all(r.roi == (1, 2, 9, 11) and r.path.suffix == ".ppm" for r in splits.train)
    assert not any(r.path.suffix == ".csv" for r in splits.train)
    assert [(r.path.name, r.label, r.roi) for r in splits.test] == [
        ("00000.ppm", 1, (1, 1, 9, 9)), ("00001.ppm", 0, (0, 0, 10, 12))]
    assert sorted((s.path.name, s.reason) for s in splits.skipped) == [
        ("00000_00099.ppm", Reason.MISSING), ("00000_00099.ppm", Reason.MISSING), ("00002.ppm", Reason.UNKNOWN_CLASS)]


def test_gtsrb_original_finds_the_test_table_beside_the_images(tmp_path):
    root = _gtsrb_original(tmp_path, test_table_dir=tmp_path / "Final_Test" / "Images")
    assert len(load_splits(root).test) == 2


def test_valid_and_test_class_folders(tmp_path):
    for split in ("train", "val", "test"):
        for class_id in ("a", "b"):
            _image(tmp_path / split / class_id / "x.png")
    _image(tmp_path / "val" / "zebra" / "z.png")  # a class training does not know
    splits = load_splits(tmp_path, validation_split=0.3)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (2, 2, 2)
    assert {r.path.parts[-3] for r in splits.valid} == {"val"}
    assert [(s.path.name, s.reason) for s in splits.skipped] == [("z.png", Reason.UNKNOWN_CLASS)]


def test_explicit_test_csv_replaces_the_layout_test_split(tmp_path):
    root = _kaggle(tmp_path / "data")
    elsewhere = tmp_path / "labels"
    _image(elsewhere / "imgs" / "q.png")
    (elsewhere / "mine.csv").write_text("Path,ClassId\nimgs/q.png,2\nTest/00001.png,1\n")  # 2nd: relative to root
    splits = load_splits(root, test_csv=elsewhere / "mine.csv")
    assert [(r.path.name, r.label, r.roi) for r in splits.test] == [("q.png", 2, None), ("00001.png", 1, None)]
    with pytest.raises(DataError, match=r"nope\.csv is not a file"):
        load_splits(root, test_csv=tmp_path / "nope.csv")


def test_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match="neither a directory nor a builtin dataset"):
        load_splits(tmp_path / "missing")
    with pytest.raises(DataError, match="no class folders"):
        load_splits(tmp_path)
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\), got 1\.5"):
        load_splits(tmp_path, validation_split=1.5)


def _records(per_class: dict[int, int]) -> list[Record]:
    return [Record(Path(f"/d/{label}/img{i:03d}.png"), label) for label, n in per_class.items() for i in range(n)]


def test_validation_split_is_stratified_and_reproducible():
    records = _records({0: 10, 1: 20, 2: 5, 3: 1})
    train, valid = stratified_split(records, 0.2, seed=3)
    assert Counter(r.label for r in valid) == {0: 2, 1: 4, 2: 1}
    assert set(train).isdisjoint(valid) and set(train) | set(valid) == set(records)
    assert stratified_split(records, 0.2, seed=3) == (train, valid)
    assert stratified_split(list(reversed(records)), 0.2, seed=3)[1] == list(reversed(valid))
    assert stratified_split(records, 0.2, seed=4)[1] != valid


def test_validation_count_keeps_one_training_image():
    assert [validation_count(n, 0.2) for n in (1, 2, 3, 5, 10)] == [0, 0, 1, 1, 2]
    assert validation_count(2, 0.9) == 1
    with pytest.raises(ValueError, match=r"got -0\.1"):
        stratified_split([], -0.1, seed=0)


@pytest.mark.parametrize(("name", "track"), [
    ("00000_00012.ppm", "00000"), ("00042_00001.PPM", "00042"),  # original GTSRB: track_frame.ppm
    ("00000_00012_00029.png", "00000_00012"), ("00042_00003_00000.PNG", "00042_00003"),  # Kaggle
])
def test_gtsrb_frame_names_give_their_track(name, track):
    assert gtsrb_track(name) == track


@pytest.mark.parametrize("name", [
    "20210517_123456.jpg", "1_001.png", "00000_00012.png", "00000_00012_00029.ppm", "00000_00012_00029.jpg",
    "000000_00012.ppm", "0000_00012.ppm", "00000_00012_00029_00001.png", "00000_00012.ppm.bak", "a0000_00012.ppm",
])
def test_other_names_are_not_gtsrb_frames(name):
    assert gtsrb_track(name) is None


def test_photos_named_by_date_split_by_file_not_by_date():
    records = [Record(Path(f"/d/0/2021051{day}_{i:06d}.jpg"), 0) for day in (7, 8) for i in range(5)]
    train, valid = stratified_split(records, 0.2, seed=0)
    assert len(valid) == 2 and len(train) == 8  # taken for two tracks, one whole day would go to validation


def test_a_test_table_without_the_right_columns_is_an_error(tmp_path):
    root = _kaggle(tmp_path)
    (root / "Test.csv").write_text("Width,Height,File\n8,6,Test/00000.png\n")
    with pytest.raises(DataError, match=r"Test.csv needs columns ClassId and one of \['Path', 'Filename'\]; "
                                        r"found columns \['Width', 'Height', 'File'\]"):
        load_splits(root)


def test_summary_is_the_run_reports_dataset_section(tmp_path):
    splits = load_splits(_kaggle(tmp_path), validation_split=0.5, seed=1)
    summary = splits.summary()
    assert summary == {"source": str(tmp_path), "layout": "split-folders", "classes": 3, "train": 9,
                       "validation": 9, "test": 3, "skipped": 2,
                       "skipped_by_reason": {"unknown class": 1, "missing file": 1}}
    assert json.loads(json.dumps(summary)) == summary
