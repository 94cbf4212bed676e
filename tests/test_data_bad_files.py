"""Bad data is skipped with named reasons (default) or refused all at once (strict)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import DataError, Reason, load_splits
from training.data.check import check_image


def _save(path: Path, image: Image.Image, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def _png_bytes(size=(32, 32)) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)  # incompressible
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()


def _messy_dataset(root: Path) -> dict[str, Reason | None]:
    """A class-folders dataset with one file of every kind; maps file name -> expected reason."""
    good = root / "0"
    _save(good / "rgb.png", Image.new("RGB", (8, 8), (1, 2, 3)))
    _save(good / "grey.png", Image.new("L", (8, 8), 7))
    _save(good / "rgba.png", Image.new("RGBA", (8, 8), (1, 2, 3, 4)))
    _save(good / "palette.png", Image.new("P", (8, 8), 3))
    _save(good / "deep.png", Image.fromarray(np.full((8, 8), 40000, np.uint16)))
    _save(good / "photo.jpg", Image.new("RGB", (8, 8), (9, 9, 9)), "JPEG")
    (good / "truncated.png").write_bytes(_png_bytes()[:400])
    (good / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (good / "notes.txt").write_text("not a picture\n")
    (good / "empty.png").write_bytes(b"")
    (good / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (good / "Thumbs.db").write_bytes(b"\0")
    _save(root / "0" / ".ipynb_checkpoints" / "old.png", Image.new("RGB", (8, 8)))
    _save(root / "__MACOSX" / "0" / "._rgb.png", Image.new("RGB", (8, 8)))  # not a class
    (root / "1").mkdir()  # empty class
    (root / "README.txt").write_text("loose file at the root: not in any class\n")
    return {"rgb.png": None, "grey.png": None, "rgba.png": None, "palette.png": None, "deep.png": None,
            "photo.jpg": None, "truncated.png": Reason.CORRUPT, "garbage.jpg": Reason.CORRUPT,
            "notes.txt": Reason.NOT_IMAGE, "empty.png": Reason.EMPTY_FILE, ".DS_Store": Reason.HIDDEN,
            "Thumbs.db": Reason.HIDDEN, ".ipynb_checkpoints": Reason.HIDDEN, "__MACOSX": Reason.HIDDEN,
            "1": Reason.EMPTY_CLASS}


def _with_test_table(root: Path) -> Path:
    table = root / "labels.csv"
    table.write_text("ClassId,Path\n0,0/rgb.png\n0,0/gone.png\n9,0/grey.png\nnope,0/rgba.png\n")
    return table


def test_every_bad_file_is_skipped_with_its_reason(tmp_path, caplog):
    expected = _messy_dataset(tmp_path)
    with caplog.at_level(logging.WARNING):
        splits = load_splits(tmp_path, validation_split=0.0, test_csv=_with_test_table(tmp_path))
    assert splits.class_ids == ("0", "1")  # the empty class keeps its label
    assert sorted(r.path.name for r in splits.train) == sorted(k for k, v in expected.items() if v is None)
    found = {s.path.name: s.reason for s in splits.skipped if s.path.parent.name != "Test"}
    assert found == {k: v for k, v in expected.items() if v is not None} | {
        "gone.png": Reason.MISSING, "grey.png": Reason.UNKNOWN_CLASS, "rgba.png": Reason.UNKNOWN_CLASS}
    assert [r.path.name for r in splits.test] == ["rgb.png"]
    assert splits.skipped_counts() == {"hidden file": 4, "empty class folder": 1, "missing file": 1,
                                       "unknown class": 2, "corrupt image": 2, "not an image": 1, "empty file": 1}
    for name in ("truncated.png", "garbage.jpg", "notes.txt", "empty.png", "gone.png"):
        assert name in caplog.text  # the warning names the files
    assert ".DS_Store" not in caplog.text


def test_strict_mode_raises_one_error_listing_every_problem(tmp_path):
    expected = _messy_dataset(tmp_path)
    with pytest.raises(DataError) as raised:
        load_splits(tmp_path, strict=True, test_csv=_with_test_table(tmp_path))
    message = str(raised.value)
    assert message.startswith("8 data problem(s) in ")
    for name, reason in expected.items():
        if reason is not None and reason.is_problem:
            assert f"{name}: {reason}" in message
    assert "gone.png: missing file" in message and "ClassId 'nope'" in message and "ClassId '9'" in message
    assert ".DS_Store" not in message and "__MACOSX" not in message


def test_strict_mode_accepts_a_clean_dataset_with_hidden_files(tmp_path):
    _save(tmp_path / "a" / "x.png", Image.new("RGB", (4, 4)))
    (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
    splits = load_splits(tmp_path, strict=True)
    assert len(splits.train) == 1 and [s.reason for s in splits.skipped] == [Reason.HIDDEN]


def test_a_class_whose_files_are_all_bad_counts_as_empty(tmp_path):
    _save(tmp_path / "a" / "x.png", Image.new("RGB", (4, 4)))
    (tmp_path / "b" / "y.png").parent.mkdir()
    (tmp_path / "b" / "y.png").write_bytes(b"")
    splits = load_splits(tmp_path)
    assert splits.class_ids == ("a", "b")
    assert {(s.path.name, s.reason) for s in splits.skipped} == {("y.png", Reason.EMPTY_FILE),
                                                                ("b", Reason.EMPTY_CLASS)}


def test_no_usable_training_image_is_always_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="no usable training images"):
        load_splits(tmp_path)


def test_check_image_reports_missing_and_valid_files(tmp_path):
    assert check_image(tmp_path / "absent.png").reason is Reason.MISSING
    assert check_image(_save(tmp_path / "ok.gif", Image.new("P", (3, 3)), "GIF")) is None
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_png_bytes()[:-30])
    problem = check_image(truncated)
    assert problem.reason is Reason.CORRUPT and problem.detail


def _gtsrb_class_with_bad_tables(root: Path) -> Path:
    """Two GTSRB class folders whose ``GT-*.csv`` cannot be read: no Filename column, and not UTF-8."""
    for class_id, table in (("00000", "Width;Height\n8;8\n"), ("00001", None)):
        folder = root / "Final_Training" / "Images" / class_id
        _save(folder / "00000_00000.ppm", Image.new("RGB", (8, 8)))
        if table is None:
            (folder / f"GT-{class_id}.csv").write_bytes(b"Filename;Roi.X1\n\xff\xfe;1\n")
        else:
            (folder / f"GT-{class_id}.csv").write_text(table)
    return root


def test_a_bad_roi_table_is_skipped_not_fatal(tmp_path, caplog):
    root = _gtsrb_class_with_bad_tables(tmp_path)
    with caplog.at_level(logging.WARNING):
        splits = load_splits(root, validation_split=0.0)
    assert [(r.path.name, r.roi) for r in splits.train] == [("00000_00000.ppm", None)] * 2
    assert sorted((s.path.name, s.reason) for s in splits.skipped) == [
        ("GT-00000.csv", Reason.BAD_TABLE), ("GT-00001.csv", Reason.BAD_TABLE)]
    assert splits.skipped_counts() == {"bad label table": 2}
    assert "GT-00000.csv" in caplog.text and "found columns ['Width', 'Height']" in caplog.text
    strict_message = r"(?s)2 data problem\(s\).*GT-00000.csv: bad label table \(GT-00000.csv needs one of"
    with pytest.raises(DataError, match=strict_message):
        load_splits(root, strict=True)


def test_a_symlink_cycle_is_walked_once_and_reported(tmp_path):
    _save(tmp_path / "a" / "x.png", Image.new("RGB", (4, 4)))
    _save(tmp_path / "a" / "deeper" / "y.png", Image.new("RGB", (4, 4)))
    (tmp_path / "a" / "deeper" / "up").symlink_to("..")  # a/deeper/up is a again
    (tmp_path / "a" / "again").symlink_to(tmp_path / "a" / "deeper")  # a second way into a/deeper
    splits = load_splits(tmp_path, validation_split=0.0)
    assert sorted(r.path.relative_to(tmp_path).as_posix() for r in splits.train) == ["a/deeper/y.png", "a/x.png"]
    assert sorted((s.path.relative_to(tmp_path).as_posix(), s.reason) for s in splits.skipped) == [
        ("a/again", Reason.REACHED_TWICE), ("a/deeper/up", Reason.LINK_CYCLE)]
    with pytest.raises(DataError, match=r"(?s)a/deeper/up: link cycle \(it leads back to"):
        load_splits(tmp_path, strict=True)


def test_a_link_out_of_a_class_folder_never_relabels_another_class(tmp_path):
    for label in ("cat", "dog"):
        for i in range(3):
            _save(tmp_path / label / f"{label}{i}.png", Image.new("RGB", (4, 4), (i, 0, 0)))
    (tmp_path / "cat" / "up").symlink_to("..")  # the split folder: dog's images would become cats
    (tmp_path / "cat" / "dog0.png").symlink_to(tmp_path / "dog" / "dog0.png")  # one dog file, linked as a cat
    (tmp_path / "cat" / "again.png").symlink_to(tmp_path / "cat" / "cat0.png")  # a second path to a cat
    (tmp_path.parent / f"{tmp_path.name}-elsewhere.png").write_bytes((tmp_path / "cat" / "cat1.png").read_bytes())
    (tmp_path / "cat" / "farm.png").symlink_to(tmp_path.parent / f"{tmp_path.name}-elsewhere.png")  # a link farm
    splits = load_splits(tmp_path, validation_split=0.0)
    labels = {r.path.relative_to(tmp_path).as_posix(): splits.class_ids[r.label] for r in splits.train}
    assert labels == {"cat/cat0.png": "cat", "cat/cat1.png": "cat", "cat/cat2.png": "cat", "cat/farm.png": "cat",
                      "dog/dog0.png": "dog", "dog/dog1.png": "dog", "dog/dog2.png": "dog"}
    assert sorted((s.path.relative_to(tmp_path).as_posix(), s.reason, s.detail) for s in splits.skipped) == [
        ("cat/again.png", Reason.REACHED_TWICE, f"the same file as {tmp_path / 'cat' / 'cat0.png'}"),
        ("cat/dog0.png", Reason.LINK_OUTSIDE, f"it is {(tmp_path / 'dog' / 'dog0.png').resolve()}, an image of the "
                                              "class folder dog"),
        ("cat/up", Reason.LINK_OUTSIDE, f"it leads to {tmp_path.resolve()}")]
    with pytest.raises(DataError, match=r"(?s)3 data problem\(s\).*link out of its class folder.*reached twice"):
        load_splits(tmp_path, strict=True)


def test_names_that_are_not_utf8_are_skipped_and_shown_escaped(tmp_path):
    import os

    for label in ("a", "b"):
        for i in range(2):
            _save(tmp_path / label / f"{i}.png", Image.new("RGB", (4, 4)))
    bad_file = os.path.join(os.fsencode(tmp_path / "a"), b"caf\xe9.png")
    with open(bad_file, "wb") as handle:
        handle.write((tmp_path / "a" / "0.png").read_bytes())
    bad_class = os.path.join(os.fsencode(tmp_path), b"\xff\xfeclass")
    os.mkdir(bad_class)
    with open(os.path.join(bad_class, b"1.png"), "wb") as handle:
        handle.write((tmp_path / "a" / "0.png").read_bytes())
    splits = load_splits(tmp_path, validation_split=0.0)
    assert tuple(splits.class_ids) == ("a", "b") and len(splits.train) == 4
    assert sorted((s.reason, s.shown_path) for s in splits.skipped) == [
        (Reason.BAD_NAME, f"{tmp_path}/\\xff\\xfeclass"), (Reason.BAD_NAME, f"{tmp_path}/a/caf\\xe9.png")]
    with pytest.raises(DataError, match=r"caf\\xe9\.png: name not UTF-8 \(rename it to read it\)"):
        load_splits(tmp_path, strict=True)

